"""MBPP judge throughput of this tree against another checkout, side by side in one run.

Runs ``benchmarks/judge_throughput.py`` of each tree in turn (A B A B ...: this machine is
noisy, so the rounds alternate), then prints programs/s and CPU ms per program for both,
and the median ratio. Make the baseline with ``git worktree add /tmp/base <commit>``.

    S3FT_DATA_DIR=../shared/data python benchmarks/judge_ab.py --baseline /tmp/base [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
_RUN = re.compile(r"= ([\d.]+) programs/s; CPU ([\d.]+) ms/program.*?; (\S.*)$")


def measure(tree: Path, extra: list[str]) -> tuple[float, float, str]:
    done = subprocess.run([sys.executable, str(tree / "benchmarks" / "judge_throughput.py"), *extra],
                          cwd=tree, capture_output=True, text=True, check=True)
    match = next(m for m in map(_RUN.search, done.stdout.splitlines()) if m)
    return float(match.group(1)), float(match.group(2)), match.group(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip", default="123", help="task ids left out (123: ~6 s of CPU alone)")
    args = parser.parse_args()
    extra = ["--skip", *args.skip.split(",")] if args.skip else []
    results: dict[str, list[tuple[float, float, str]]] = {"baseline": [], "this tree": []}
    for round_no in range(args.rounds):
        for name, tree in (("baseline", args.baseline), ("this tree", HERE)):
            per_s, cpu_ms, rules = measure(tree, extra)
            results[name].append((per_s, cpu_ms, rules))
            print(f"round {round_no + 1} {name:9}: {per_s:6.1f} programs/s, {cpu_ms:6.1f} ms CPU "
                  f"per program ({rules})", flush=True)
    print()
    for name, runs in results.items():
        print(f"{name:9}: median {statistics.median(r[0] for r in runs):.1f} programs/s, "
              f"{statistics.median(r[1] for r in runs):.1f} ms CPU/program")
    ratio = statistics.median(b[0] / a[0] for a, b in zip(results["baseline"], results["this tree"],
                                                        strict=True))
    print(f"this tree / baseline, programs/s: {ratio:.3f} (median of paired rounds)")


if __name__ == "__main__":
    main()
