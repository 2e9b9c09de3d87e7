"""Seconds per training step and peak memory of ``pipeline.train`` on CPU (the smoke config).

Builds a small train.parquet from real GSM8K rows (gold answers as targets) unless ``--data``
is given, then trains the default model for ``--steps`` steps in this process, so the peak RSS
is the training's own. One configuration per run; compare variants by running it again:

    python benchmarks/train_step.py                              # LoRA all-linear, batch 4
    python benchmarks/train_step.py --lora-target-modules q_proj k_proj v_proj o_proj
    python benchmarks/train_step.py --gradient-checkpointing
    python benchmarks/train_step.py --no-lora
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def gsm8k_parquet(rows: int, path: Path) -> Path:
    """The first ``rows`` GSM8K training rows in the export's schema, gold answers as targets."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.backends.model import DEFAULT_MODEL
    from pipeline.stages.export import TRAIN_SCHEMA
    from pipeline.stages.load import load_rows
    from pipeline.tasks import load_task

    task = load_task("gsm8k")
    frame, _ = load_rows(task, None, limit=rows)
    records = []
    for row in frame.to_dicts():
        gold = task.gold_response(row)
        records.append({"id": row["id"], "task": "gsm8k", "prompt": task.answer_prompt.messages(**row),
                        "completion": [{"role": "assistant", "content": gold}], "source": "gold",
                        "target": gold, "gold": gold, "model": DEFAULT_MODEL})
    pq.write_table(pa.Table.from_pylist(records, schema=TRAIN_SCHEMA), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a train.parquet (default: GSM8K rows, see --rows)")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--lora-target-modules", nargs="+", default=["all-linear"])
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--no-lora", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from pipeline.train import TrainArguments
    from pipeline.training.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or gsm8k_parquet(args.rows, Path(tmp) / "train.parquet")
        metrics = train(
            TrainArguments(data=str(data), out=str(Path(tmp) / "out"), lora=not args.no_lora,
                           lora_target_modules=args.lora_target_modules),
            {"max_steps": args.steps, "per_device_train_batch_size": args.batch, "save_strategy": "no",
             "gradient_checkpointing": args.gradient_checkpointing, "disable_tqdm": True},
        )
    figures = {key: metrics[key] for key in ("rows", "steps", "seconds_per_step", "train_runtime",
                                             "peak_rss_mib", "first_loss", "final_loss", "dtype", "device")}
    figures.update(batch=args.batch, lora=not args.no_lora, target_modules=args.lora_target_modules,
                   gradient_checkpointing=args.gradient_checkpointing,
                   cpu_load_1min=os.getloadavg()[0], cores=os.cpu_count())
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
