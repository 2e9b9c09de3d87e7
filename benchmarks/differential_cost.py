"""What MBPP's differential tests cost, side by side with the judge without them, in one run.

For each mode (``differential`` off, on; alternating rounds, as this machine is noisy) a fresh
judge with the pipeline's own limits first runs the gold check (``calibrate``: every reference
against its tests, and with differential tests also on the derived inputs, dropping those on
which it raises or hangs), then judges every reference as a candidate (``judge_many``), the
cost each sample of a run pays. Prints seconds and programs/s for both steps, both modes.

    S3FT_DATA_DIR=../shared/data python benchmarks/differential_cost.py [--limit N] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from judges import sandbox  # noqa: E402
from judges.mbpp import MbppJudge, gold_response  # noqa: E402


def one_round(rows: list[dict], differential: bool) -> dict:
    judge = MbppJudge(differential=differential)
    started = time.perf_counter()
    judge.calibrate(rows)
    calibrate_s = time.perf_counter() - started
    started = time.perf_counter()
    verdicts = judge.judge_many([gold_response(row) for row in rows], rows)
    judge_s = time.perf_counter() - started
    inputs = [len(v) for v in judge._outcomes.values()]  # benchmark-only peek
    return {"calibrate_s": calibrate_s, "judge_s": judge_s, "per_s": len(rows) / judge_s,
            "inputs": statistics.mean(inputs) if inputs else 0.0,
            "rules": Counter(v.rule for v in verdicts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("S3FT_DATA_DIR", str(REPO / "data")))
    parser.add_argument("--limit", type=int, default=0, help="only the first N tasks")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    path = Path(args.data_dir) / "mbpp" / "mbpp.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = rows[: args.limit] if args.limit else rows
    print(f"sandbox mode: {sandbox.capabilities().mode}  cores: {os.cpu_count()}  tasks: {len(rows)}")
    results: dict[str, list[dict]] = {"off": [], "on": []}
    for round_no in range(args.rounds):
        for name in ("off", "on"):
            r = one_round(rows, differential=name == "on")
            results[name].append(r)
            rules = ", ".join(f"{k}={v}" for k, v in sorted(r["rules"].items()))
            print(f"round {round_no + 1} differential {name:3}: gold check {r['calibrate_s']:6.1f} s; "
                  f"judging {r['judge_s']:5.1f} s = {r['per_s']:6.1f} programs/s; "
                  f"{r['inputs']:.1f} derived inputs per task; {rules}", flush=True)
    print()
    for name, runs in results.items():
        check = statistics.median(r["calibrate_s"] for r in runs)
        per_s = statistics.median(r["per_s"] for r in runs)
        print(f"differential {name:3}: median gold check {check:.1f} s, judging {per_s:.1f} programs/s")


if __name__ == "__main__":
    main()
