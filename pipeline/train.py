"""``python -m pipeline.train --data runs/<run>/train.parquet --mode s3ft``: fine-tune on a curated set.

A thin layer over TRL's ``SFTTrainer``: every training mode is a column choice on the same
``train.parquet`` (see ``pipeline/stages/export.py``), so the S3FT run and its SFT / SDFT baselines
differ only in their targets:

* ``s3ft``: ``target`` (model answer if judged correct, else passing paraphrase, else gold);
* ``sft``: ``gold`` for every row;
* ``sdft``: ``paraphrase`` where ``paraphrase_admitted`` is true, else ``gold``.

Options follow TRL's conventions (as in ``trl/scripts/sft.py``): our :class:`TrainArguments`
plus every ``SFTConfig`` / ``TrainingArguments`` field as a flag (``--learning_rate``,
``--max_steps``, ...), defaults < YAML ``--config`` < command line. ``--help`` lists our
options without importing torch; ``--help-all`` lists every TRL flag (imports transformers).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from typing import Any

from pipeline.config import LOG_FORMAT
from pipeline.training.config import TrainArguments
from pipeline.training.data import TrainInputError
from pipeline.training.trainer import FULL_LEARNING_RATE, LORA_LEARNING_RATE, sft_defaults, train


def quick_help() -> str:
    """``--help`` without importing transformers: our options, built from the same dataclass."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.train",
        description="Fine-tune a model with TRL on a curated train.parquet: S3FT targets, or the SFT / "
                    "SDFT baselines from the same file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every TRL SFTConfig / transformers TrainingArguments field is a flag too (TRL's "
               "conventions), e.g. --learning_rate, --num_train_epochs, --max_steps, "
               "--per_device_train_batch_size, --gradient_accumulation_steps, --max_length, --seed. "
               "Run --help-all to list them (imports transformers, takes a few seconds).\n\n"
               "Defaults that differ from TRL's: completion_only_loss=true, logging_steps=1, "
               f"report_to=none, learning_rate={LORA_LEARNING_RATE} with LoRA / {FULL_LEARNING_RATE} "
               "with --no-lora; without CUDA: use_cpu=true, bf16=false (unless the CPU has fast bf16), "
               "gradient_checkpointing=false.",
    )
    parser.add_argument("--config", metavar="YAML", help="YAML file with any of these options (and any "
                        "SFTConfig field); command-line flags override it.")
    for f in dataclasses.fields(TrainArguments):
        flags = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        help_text = f.metadata.get("help", "")
        if f.type in (bool, "bool"):
            parser.add_argument(*flags, action="store_true", help=f"{help_text} (default: {default})")
            if default is True:
                parser.add_argument(f"--no_{f.name}", f"--no-{f.name.replace('_', '-')}",
                                    action="store_true", help=f"Turn {f.name} off.")
        else:
            parser.add_argument(*flags, metavar=f.name.upper(), choices=f.metadata.get("choices"),
                                help=f"{help_text} (default: {default})")
    return parser.format_help()


def make_parser() -> Any:
    """TRL's parser over our options and SFTConfig, with our defaults in place."""
    from trl import SFTConfig, TrlParser

    parser = TrlParser((TrainArguments, SFTConfig), prog="python -m pipeline.train")
    parser.set_defaults(**sft_defaults())
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(quick_help())
        return 0
    if "--help-all" in argv:
        argv = ["--help"]
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    parser = make_parser()
    try:
        args, sft_config = parser.parse_args_and_config(args=argv)
    except ValueError as exc:  # TrlParser's complaint about a YAML key no dataclass knows
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        metrics = train(args, sft_config)
    except TrainInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    from pipeline.errors import report_errors

    sys.exit(report_errors(main))
