"""The loop after generation, before and after, in one invocation on one run's rows.

Runs the three side-by-side benchmarks one after another (each in a process of its own, never
two at once) on a curated run and prints one table:

- distribution-shift scoring (``shift_scoring.py``): one prefill per (prompt, text) with
  vocabulary-wide prompt log-probs, against the prefix scorer; the run's first ``--rows`` rows;
- training (``train_step.py --compare``): TRL's step against the lean step, batch ``--batch``,
  ``--steps`` steps on the run's ``train.parquet``;
- in-domain evaluation of an adapter (``adapter_in_domain.py``): generation through vLLM's
  LoRA against a merged copy, beside the base model; ``--limit`` test rows of the run's task.
  The adapter is ``--adapter``, else one trained here for ``--steps`` steps on the run's rows.

    S3FT_DATA_DIR=../shared/data python benchmarks/loop_speed.py --run out/nq --rows 200 --limit 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_benchmark(script: str, *args: str, json_path: Path) -> dict:
    """One benchmark script in its own process; its ``--json`` figures (its table goes to stdout)."""
    subprocess.run([sys.executable, str(HERE / script), *args, "--json", str(json_path)], check=True)
    return json.loads(json_path.read_text())


def train_adapter(data: Path, out: Path, steps: int, batch: int) -> Path:
    subprocess.run([sys.executable, "-m", "pipeline.train", "--data", str(data), "--out", str(out),
                    "--max_steps", str(steps), "--per_device_train_batch_size", str(batch),
                    "--save_strategy", "no", "--disable_tqdm", "true"],
                   check=True, cwd=HERE.parent, stdout=subprocess.DEVNULL)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a curated run folder (its train.parquet)")
    parser.add_argument("--rows", type=int, default=200, help="rows of the run the shift stage scores")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--limit", type=int, default=64, help="test rows for the in-domain evaluation")
    parser.add_argument("--adapter", type=Path, help="a LoRA adapter folder (default: train one here)")
    parser.add_argument("--dtype", default="float32", help="engine dtype for shift scoring and in-domain")
    parser.add_argument("--json", type=Path, help="write every figure here too")
    args = parser.parse_args()

    import polars as pl

    data = args.run / "train.parquet"
    task = pl.read_parquet(data, columns=["task"])["task"][0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shift = run_benchmark("shift_scoring.py", "--run", str(args.run), "--rows", str(args.rows),
                              "--dtype", args.dtype, json_path=tmp / "shift.json")
        training = run_benchmark("train_step.py", "--compare", "--data", str(data), "--batch",
                                 str(args.batch), "--steps", str(args.steps), json_path=tmp / "train.json")
        adapter = args.adapter or train_adapter(data, tmp / "adapter", args.steps, args.batch)
        in_domain = run_benchmark("adapter_in_domain.py", "--adapter", str(adapter), "--task", task,
                                  "--limit", str(args.limit), "--dtype", args.dtype,
                                  json_path=tmp / "in_domain.json")

    trl, lean = (training["runs"][name][0] for name in ("TRL step", "lean step"))
    seconds = in_domain["seconds"]
    rows = [
        # After: the scoring the generate and shift stages do, and what asking generation for
        # token log-probs added to it.
        (f"shift scoring, {shift['texts']} texts of {args.rows} rows (s)", shift["seconds"]["before"],
         shift["seconds"]["after"] + max(0.0, shift["logprob_overhead_seconds"])),
        (f"training, batch {args.batch} (s per step)", trl["seconds_per_step"], lean["seconds_per_step"]),
        (f"in-domain, adapter, {args.limit} rows (s; base {seconds['base']:.0f})",
         seconds["adapter via LoRA"], seconds["adapter merged"]),
    ]
    print(f"\n{task}: run {args.run}, engine {args.dtype}, training bf16 autocast where the CPU has it")
    print(f"{'':58} {'before':>8} {'after':>8} {'after/before':>13}")
    for label, before, after in rows:
        print(f"{label:58} {before:8.1f} {after:8.1f} {after / before:12.0%}")
    print(f"training tokens/s: {trl['tokens_per_s']:.0f} -> {lean['tokens_per_s']:.0f}; "
          f"in-domain adapter / base: {seconds['adapter via LoRA'] / seconds['base']:.2f}x -> "
          f"{seconds['adapter merged'] / seconds['base']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"shift": shift, "training": training, "in_domain": in_domain},
                                        indent=2))


if __name__ == "__main__":
    main()
