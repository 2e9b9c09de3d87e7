"""The loop guard, with and without, on the same rows, in one invocation (one engine).

Curates each task twice, end to end (answers, judge, paraphrases, export), once with
``--no-loop-guard`` and once with the guard (the order alternates per task: this machine is
noisy), then prints per task: generated tokens (answers and paraphrases), engine and wall time,
rows the guard stopped, how those rows ended without it, and every difference on rows that
finished on their own without the guard (text, verdict: the goal is none), and the final shares.

    S3FT_DATA_DIR=../shared/data python benchmarks/loop_guard.py \\
        --rows gsm8k=512,mbpp=374,nq=512 --json /tmp/loop_guard.json

float32 by default: in bfloat16 greedy answers change from run to run on CPU, which would hide
what the guard changed behind what the dtype did.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

#: (text column, finish column, verdict column) of the answers and of the paraphrases.
PASSES = {"answers": ("candidate", "finish_reason", "verdict", "generate"),
          "paraphrases": ("paraphrase", "paraphrase_finish_reason", "paraphrase_verdict", "paraphrase")}


def compare(off: list[dict], on: list[dict], text: str, finish: str, verdict: str) -> dict[str, Any]:
    """How the guarded run's rows differ from the unguarded run's, by row id."""
    guarded = {row["id"]: row for row in on}
    both = [(row, guarded[row["id"]]) for row in off if row[text] is not None
            and guarded.get(row["id"], {}).get(text) is not None]
    finished = [(a, b) for a, b in both if a[finish] == "stop"]
    stopped = [(a, b) for a, b in both if b[finish] == "repetition"]
    return {
        "rows": len(both),
        "length_without_guard": sum(a[finish] == "length" for a, _ in both),
        "stopped_by_guard": len(stopped),
        "stopped_that_hit_the_limit_without": sum(a[finish] == "length" for a, _ in stopped),
        "false_stops": sum(a[finish] == "stop" for a, _ in stopped),
        "still_length_with_guard": sum(b[finish] == "length" for _, b in both),
        "finished_rows": len(finished),
        "finished_text_changed": sum(a[text] != b[text] for a, b in finished),
        "finished_verdict_changed": sum(a[verdict] != b[verdict] for a, b in finished),
        "stopped_text_is_prefix": sum(a[text].startswith(b[text]) for a, b in stopped),
        "changed_ids": [a["id"] for a, b in finished if a[text] != b[text] or a[verdict] != b[verdict]],
    }


def curate(engine: Any, task: str, rows: int, out: Path, guard: bool, dtype: str,
           kv_cache_gib: int) -> tuple[dict[str, Any], list[dict], float]:
    import pyarrow.parquet as pq

    from pipeline.config import RunConfig
    from pipeline.curate import run

    began = time.perf_counter()
    summary = run(RunConfig(task=task, limit=rows, out=str(out), dtype=dtype, loop_guard=guard,
                            kv_cache_gib=kv_cache_gib, fresh=True, progress=False), served=engine)
    wall = time.perf_counter() - began
    return summary, pq.read_table(out / "train.parquet").to_pylist(), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="gsm8k=512,mbpp=374,nq=512",
                        help="task=rows, comma-separated (the train split's first rows)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--kv-cache-gib", type=int, default=8,
                        help="room for every row of a 256-row shard at once in float32")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temp folder)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from pipeline.config import RunConfig
    from pipeline.curate import _backend

    plan = [(name, int(rows)) for name, rows in (p.split("=") for p in args.rows.split(","))]
    root = args.out or Path(tempfile.mkdtemp(prefix="loop-guard-"))
    engine = _backend(RunConfig(dtype=args.dtype, kv_cache_gib=args.kv_cache_gib))
    engine[1].start()
    figures: dict[str, Any] = {}
    try:
        for number, (task, rows) in enumerate(plan):
            runs: dict[str, Any] = {}
            for guard in ((False, True) if number % 2 == 0 else (True, False)):
                label = "on" if guard else "off"
                summary, table, wall = curate(engine, task, rows, root / f"{task}-{label}", guard,
                                              args.dtype, args.kv_cache_gib)
                runs[label] = {"summary": summary, "table": table, "wall": wall}
                print(f"{task} guard {label}: {wall:.0f}s", flush=True)
            figures[task] = report(task, rows, runs)
    finally:
        engine[1].close()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    print_table(figures)


def report(task: str, rows: int, runs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": rows}
    for label in ("off", "on"):
        summary, wall = runs[label]["summary"], runs[label]["wall"]
        stages = summary["stages"]
        out[label] = {
            "wall_s": round(wall, 1),
            "shares_pct": {s: v["share_pct"] for s, v in summary["sources"].items()},
            **{f"{stage}_{key}": stages[stage].get(key) for stage in ("generate", "paraphrase")
               for key in ("generated_tokens", "engine_seconds", "loop_stopped", "loop_tokens_saved")},
        }
        out[label]["generated_tokens"] = (out[label]["generate_generated_tokens"]
                                          + out[label]["paraphrase_generated_tokens"])
    for name, (text, finish, verdict, _) in PASSES.items():
        out[name] = compare(runs["off"]["table"], runs["on"]["table"], text, finish, verdict)
    off, on = out["off"]["generated_tokens"], out["on"]["generated_tokens"]
    out["tokens_saved_pct"] = round(100 * (off - on) / off, 1) if off else 0.0
    for name, (_, _, _, stage) in PASSES.items():
        a, b = out["off"][f"{stage}_generated_tokens"], out["on"][f"{stage}_generated_tokens"]
        out[name]["tokens_saved_pct"] = round(100 * (a - b) / a, 1) if a else 0.0
    return out


def print_table(figures: dict[str, Any]) -> None:
    print()
    head = (f"{'task':6} {'rows':>5} {'pass':12} {'tokens off':>10} {'tokens on':>9} {'saved':>6} "
            f"{'stopped':>7} {'of them length':>14} {'false stops':>11} {'finished changed':>16}")
    print(head)
    for task, f in figures.items():
        for name, (_, _, _, stage) in PASSES.items():
            c = f[name]
            print(f"{task:6} {c['rows']:5d} {name:12} {f['off'][f'{stage}_generated_tokens']:10d} "
                  f"{f['on'][f'{stage}_generated_tokens']:9d} {c['tokens_saved_pct']:5.1f}% "
                  f"{c['stopped_by_guard']:7d} {c['stopped_that_hit_the_limit_without']:14d} "
                  f"{c['false_stops']:11d} "
                  f"{c['finished_text_changed']:>7d} text {c['finished_verdict_changed']:>2d} verdict")
        print(f"{task:6} all tokens: {f['tokens_saved_pct']}% fewer; wall {f['off']['wall_s']}s -> "
              f"{f['on']['wall_s']}s; shares off {f['off']['shares_pct']} on {f['on']['shares_pct']}")


if __name__ == "__main__":
    main()
