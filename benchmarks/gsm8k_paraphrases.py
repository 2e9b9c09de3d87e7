"""GSM8K paraphrases on a fresh draw, without the answer step: every row's gold rewritten by
the model, judged and admitted as the pipeline's paraphrase stages do (the embedded model
gets ~3 % of GSM8K right, so a real run paraphrases nearly every row). Writes the rows, the
paraphrases and their decisions to ``<out>/<name>.parquet`` for reading; the draw's lines
(0-based, of gsm8k/train.jsonl) go to ``<out>/<name>.lines.json``, never one that
docs/labels/draws.json or an earlier draw in ``<out>`` holds. With the built-in task a
paraphrase proven calculation by calculation is ``needs_judge`` (its words unproven); to read
what the rules would admit, pass ``--task`` a copy of prompts/gsm8k whose judge sets
``admit_unproven_wording: true`` (flags after the script's own go to the run's config).

    python benchmarks/gsm8k_paraphrases.py --name new --seed 1 --rows 2400   # a fresh draw
    python benchmarks/gsm8k_paraphrases.py --name held3 --lines gsm8k_held3  # a labelled one
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from pathlib import Path

import polars as pl

from pipeline.config import RunConfig, data_dir, parse_config
from pipeline.curate import plan
from pipeline.stages.admission import AdmitStage
from pipeline.stages.judge import JudgeStage
from pipeline.stages.paraphrase import ParaphraseStage

DRAWS = Path(__file__).resolve().parent.parent / "docs" / "labels" / "draws.json"


def draw(lines: list[str], out: Path, seed: int, rows: int, first: int) -> list[int]:
    """``rows`` of ``lines`` from ``first`` on that no labelled draw used."""
    taken = {i for key, used in json.loads(DRAWS.read_text()).items() if key.startswith("gsm8k")
             for i in used}
    for earlier in out.glob("*.lines.json"):
        taken |= set(json.loads(earlier.read_text()))
    free = [i for i in range(first, len(lines)) if i not in taken]
    return sorted(random.Random(seed).sample(free, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="Name of the draw (file names).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of a fresh draw.")
    parser.add_argument("--lines", help="Rerun a labelled draw: its key in docs/labels/draws.json.")
    parser.add_argument("--rows", type=int, default=2400, help="Rows in the draw.")
    parser.add_argument("--first", type=int, default=1200, help="First line that may be drawn.")
    parser.add_argument("--out", default="runs/gsm8k-paraphrases", help="Output folder.")
    args, engine_flags = parser.parse_known_args()  # e.g. --dtype float32
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = (data_dir() / "gsm8k" / "train.jsonl").read_text().splitlines()
    chosen = (json.loads(DRAWS.read_text())[args.lines] if args.lines
              else draw(lines, out, args.seed, args.rows, args.first))
    (out / f"{args.name}.lines.json").write_text(json.dumps(chosen))
    data = out / f"{args.name}.jsonl"
    data.write_text("".join(lines[i] + "\n" for i in chosen))
    config = parse_config(RunConfig, ["--task", "gsm8k", "--data", str(data), "--out",
                                      str(out / args.name), "--no-measure-shift", *engine_flags],
                          "paraphrase-only pass")
    p = plan(config)
    # Every row paraphrased, as if the model had answered it wrong.
    frame = p.frame.with_columns(pl.lit(False).alias("admitted"))
    stats: Counter = Counter()
    started = time.perf_counter()
    stages = [next(s for s in p.stages if isinstance(s, ParaphraseStage)),
              next(s for s in p.stages if isinstance(s, JudgeStage) and s.paraphrase),
              next(s for s in p.stages if isinstance(s, AdmitStage) and s.paraphrase)]
    for stage in stages:
        frame = stage.process(frame, stats)
    frame.write_parquet(out / f"{args.name}.parquet")
    rules = Counter(frame["paraphrase_admission_rule"].drop_nulls().to_list())
    print(f"{len(chosen)} rows in {time.perf_counter() - started:.0f} s; admitted "
          f"{rules.get('admitted', 0)}; decisions {dict(rules.most_common())}")
    judged = frame.filter(pl.col("paraphrase_judge_rule").str.starts_with("fidelity:"))
    print("judge rules of right-answer paraphrases:",
          dict(Counter(judged["paraphrase_judge_rule"].to_list()).most_common()))


if __name__ == "__main__":
    main()
