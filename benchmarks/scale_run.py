"""Cost of a real curation run as the row count grows (e.g. 64 → 512 → 7,473 GSM8K rows).

Each size runs ``python -m pipeline.run`` in a subprocess, exactly as a user would, while a
sampler sums the RSS of the whole process tree (the CLI plus vLLM's engine and worker
processes) every half second. Runs resume: an interrupted size continues where it stopped
when the script is started again (its output folder is kept under ``--runs``).

    python benchmarks/scale_run.py --sizes 64,512,7473 --runs runs/scale
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

PROJECT = Path(__file__).resolve().parents[1]


def tree_rss(root: psutil.Process) -> int:
    total = 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a process may exit while we look
            total += process.memory_info().rss
    return total


def run_size(size: int, runs: Path, task: str, extra: list[str]) -> dict:
    out = runs / f"{task}-{size}"
    command = [sys.executable, "-m", "pipeline.run", "--task", task, "--limit", str(size),
               "--out", str(out), *extra]
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.is_set():
            peak = max(peak, tree_rss(root))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"size {size} failed:\n{stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    stages = summary["stages"]
    generated = sum(stages[s].get("generated_tokens", 0) for s in ("generate", "paraphrase"))
    engine = sum(stages[s].get("engine_seconds", 0.0) for s in ("generate", "paraphrase"))
    return {
        "rows": size, "wall_s": round(time.perf_counter() - began, 1),
        "peak_rss_gib": round(peak / 2**30, 2),
        "stage_seconds": {name: cost["seconds"] for name, cost in stages.items()},
        "generated_tokens": generated, "engine_seconds": round(engine, 1),
        "tokens_per_s": round(generated / engine, 1) if engine else None,
        "shares_pct": {s: v["share_pct"] for s, v in summary["sources"].items()},
        "model_accuracy_pct": summary["model_accuracy_pct"],
        "stage_seconds_total": round(sum(c["seconds"] for c in stages.values()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,512")
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--runs", type=Path, default=PROJECT / "runs" / "scale")
    parser.add_argument("extra", nargs="*", help="more pipeline.run options, after --")
    args = parser.parse_args()
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        result = run_size(size, args.runs, args.task, args.extra)
        results.append(result)
        print(json.dumps(result))
    base = results[0]
    print(f"\n{'rows':>6} {'wall s':>8} {'s/row':>7} {'tok/s':>7} {'peak GiB':>9}  shares m/p/g %")
    for r in results:
        shares = "/".join(f"{v:.1f}" for v in r["shares_pct"].values())
        print(f"{r['rows']:>6} {r['wall_s']:>8} {r['stage_seconds_total'] / r['rows']:>7.2f} "
              f"{r['tokens_per_s']!s:>7} {r['peak_rss_gib']:>9}  {shares}")
    for r in results:
        stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in r["stage_seconds"].items())
        print(f"{r['rows']:>6} rows: {stages}; whole run / engine time of the generation passes "
              f"= {r['wall_s'] / r['engine_seconds']:.3f}" if r["engine_seconds"] else "")
    (args.runs / "results.json").write_text(json.dumps(results, indent=1))
    if len(results) > 1:
        last = results[-1]
        growth = (last["stage_seconds_total"] / base["stage_seconds_total"]) / (last["rows"] / base["rows"])
        print(f"stage cost grew {growth:.2f}x per row from {base['rows']} to {last['rows']} rows "
              f"(1.00 = linear)")


if __name__ == "__main__":
    main()
