"""Cost of a real curation run as the row count grows (e.g. 64 → 512 → 7,473 GSM8K rows).

Each size runs ``python -m pipeline.run`` in a subprocess, exactly as a user would, while a
sampler sums the RSS of the whole process tree (the CLI plus vLLM's engine and worker
processes) every half second. RSS counts pages shared between those processes (torch's
libraries, mapped model files) once per process; PSS splits them, so the PSS sum is the
tree's real footprint. Both are reported, with each process's share at the RSS peak.
Runs resume: an interrupted size continues where it stopped when the script is started
again (its output folder is kept under ``--runs``).

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


def tree_memory(root: psutil.Process) -> dict[str, tuple[int, int]]:
    """(RSS, PSS) in bytes of each process of the tree, keyed by "pid name"."""
    sizes = {}
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a process may exit while we look
            info = process.memory_full_info()
            sizes[f"{process.pid} {process.name()}"] = (info.rss, info.pss)
    return sizes


def run_size(size: int, runs: Path, task: str, extra: list[str]) -> dict:
    out = runs / f"{task}-{size}"
    command = [sys.executable, "-m", "pipeline.run", "--task", task, "--limit", str(size),
               "--out", str(out), *extra]
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    peak_rss, peak_pss, at_peak = 0, 0, {}
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_rss, peak_pss, at_peak
        root = psutil.Process(process.pid)
        while not done.is_set():
            sizes = tree_memory(root)
            rss = sum(r for r, _ in sizes.values())
            if rss > peak_rss:
                peak_rss, at_peak = rss, sizes
            peak_pss = max(peak_pss, sum(p for _, p in sizes.values()))
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
        "peak_rss_gib": round(peak_rss / 2**30, 2), "peak_pss_gib": round(peak_pss / 2**30, 2),
        "rss_pss_gib_at_peak": {name: [round(r / 2**30, 2), round(p / 2**30, 2)]
                                for name, (r, p) in at_peak.items()},
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
    print(f"\n{'rows':>6} {'wall s':>8} {'s/row':>7} {'tok/s':>7} {'peak RSS':>9} {'peak PSS':>9}"
          "  shares m/p/g %   (memory in GiB)")
    for r in results:
        shares = "/".join(f"{r['shares_pct'].get(s, 0.0):.1f}" for s in ("model", "paraphrase", "gold"))
        print(f"{r['rows']:>6} {r['wall_s']:>8} {r['stage_seconds_total'] / r['rows']:>7.2f} "
              f"{r['tokens_per_s']!s:>7} {r['peak_rss_gib']:>9} {r['peak_pss_gib']:>9}  {shares}")
    for r in results:
        stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in r["stage_seconds"].items())
        # Stage and engine seconds are both summed over shards, so the ratio stays right for a
        # run that was killed and resumed (the wall time above is this invocation's only).
        ratio = r["stage_seconds_total"] / r["engine_seconds"] if r["engine_seconds"] else float("nan")
        print(f"{r['rows']:>6} rows: {stages}; all stages / engine time of the generation passes "
              f"= {ratio:.3f}")
    (args.runs / "results.json").write_text(json.dumps(results, indent=1))
    if len(results) > 1:
        last = results[-1]
        growth = (last["stage_seconds_total"] / base["stage_seconds_total"]) / (last["rows"] / base["rows"])
        print(f"stage cost grew {growth:.2f}x per row from {base['rows']} to {last['rows']} rows "
              f"(1.00 = linear)")


if __name__ == "__main__":
    main()
