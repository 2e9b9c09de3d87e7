"""How many MBPP programs per second the sandboxed judge gets through.

Judges every reference solution of MBPP (974 programs) with ``MbppJudge.judge_many`` and
prints programs/s plus the CPU time each program costs (judge process, spawner, and the
sandboxed processes), because wall-clock figures on a shared 2-core machine swing with
whatever else runs; CPU per program tells what the machine could do when idle.

    S3FT_DATA_DIR=/work/shared/data python benchmarks/judge_throughput.py [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from judges import sandbox  # noqa: E402
from judges.mbpp import MbppJudge, gold_response  # noqa: E402


def load_rows(data_dir: str) -> list[dict]:
    path = Path(data_dir) / "mbpp" / "mbpp.jsonl"
    if not path.is_file():
        sys.exit(f"MBPP data not found at {path}; set S3FT_DATA_DIR or pass --data-dir")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def spawner_cpu_s() -> float:
    """CPU seconds of the sandbox spawner and of every run it has reaped (wrappers, inits,
    programs), from /proc: those processes are not children of this one."""
    proc = sandbox._spawner._proc  # benchmark-only peek at the private handle
    if proc is None:
        return 0.0
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / ticks  # utime, stime, cutime, cstime


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(judge: MbppJudge, rows: list[dict]) -> dict:
    responses = [gold_response(row) for row in rows]
    load_before = os.getloadavg()[0]
    cpu_before = own_cpu_s() + spawner_cpu_s()
    started = time.perf_counter()
    verdicts = judge.judge_many(responses, rows)
    wall = time.perf_counter() - started
    cpu = own_cpu_s() + spawner_cpu_s() - cpu_before
    return {
        "programs": len(rows),
        "wall_s": wall,
        "per_s": len(rows) / wall,
        "cpu_ms_per_program": 1000 * cpu / len(rows),
        "rules": Counter(v.rule for v in verdicts),
        "load": (load_before, os.getloadavg()[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("S3FT_DATA_DIR", str(REPO / "data")))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parallel programs (default: os.cpu_count())")
    parser.add_argument("--limit", type=int, default=0, help="judge only the first N tasks")
    parser.add_argument("--repeat", type=int, default=1, help="measure this many times")
    parser.add_argument("--skip", type=int, nargs="*", default=[],
                        help="task ids to leave out (e.g. 123, whose reference alone takes "
                             "~6 s of CPU)")
    args = parser.parse_args()

    rows = [row for row in load_rows(args.data_dir) if row["task_id"] not in set(args.skip)]
    if args.limit:
        rows = rows[: args.limit]
    caps = sandbox.capabilities()  # detection and spawner start-up are not measured
    judge = MbppJudge(workers=args.workers, calibrate_timeouts=False, timeout_s=60.0)
    judge.judge_many([gold_response(rows[0])], rows[:1])
    print(f"sandbox mode: {caps.mode}  workers: {args.workers}  cores: {os.cpu_count()}  "
          f"programs: {len(rows)}")
    for i in range(args.repeat):
        r = measure(judge, rows)
        rules = ", ".join(f"{k}={v}" for k, v in sorted(r["rules"].items()))
        print(f"run {i + 1}: {r['programs']} programs in {r['wall_s']:.1f} s = "
              f"{r['per_s']:.1f} programs/s; CPU {r['cpu_ms_per_program']:.1f} ms/program "
              f"(=> ~{1000 * (os.cpu_count() or 1) / r['cpu_ms_per_program']:.0f} programs/s "
              f"if the cores were idle); load avg {r['load'][0]:.1f} -> {r['load'][1]:.1f}; "
              f"{rules}")


if __name__ == "__main__":
    main()
