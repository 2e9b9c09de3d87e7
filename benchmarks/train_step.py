"""Seconds per training step, real tokens/s, model-FLOP utilisation and peak memory of
``pipeline.train`` on CPU.

Builds a train.parquet from real rows of a task (gold answers as targets; ``--task nq`` rows
carry a passage, so they are mostly prompt) unless ``--data`` is given. ``--compare`` times
TRL's own step (``--no-lean-step``) against the lean step (pipeline/training/lean.py) in one
invocation, on the same rows in the same order, each in a process of its own (so each peak RSS
is its own), alternating over ``--rounds``, and prints them side by side with their losses:

    python benchmarks/train_step.py --compare --task nq --batch 8 --steps 8
    python benchmarks/train_step.py --task gsm8k --gradient-checkpointing   # one configuration

Tokens are real (non-padding) tokens, prompt and completion. MFU counts the model FLOPs of
those tokens, (4 with LoRA, frozen weights get no gradient; 6 without) x the backbone's matmul
parameters per token (LM head and attention scores left out, as both steps compute them
differently), against the best square bf16 (or float32) matmul this machine does on as many
threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def task_parquet(task_name: str, rows: int, path: Path) -> Path:
    """The first ``rows`` training rows of a task in the export's schema, gold answers as targets."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.backends.model import DEFAULT_MODEL
    from pipeline.stages.export import TRAIN_SCHEMA
    from pipeline.stages.load import load_rows
    from pipeline.tasks import load_task

    task = load_task(task_name)
    frame, _ = load_rows(task, None, limit=rows)
    records = []
    for row in frame.to_dicts():
        gold = task.gold_response(row)
        records.append({"id": row["id"], "task": task_name, "prompt": task.answer_prompt.messages(**row),
                        "completion": [{"role": "assistant", "content": gold}], "source": "gold",
                        "target": gold, "gold": gold, "model": DEFAULT_MODEL})
    pq.write_table(pa.Table.from_pylist(records, schema=TRAIN_SCHEMA), path)
    return path


def model_flops_per_token(model_path: str, lora: bool) -> float:
    """(4 with LoRA, 6 without) x the parameters of the backbone's linear layers."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    params = sum(m.weight.numel() for m in model.base_model.modules() if isinstance(m, torch.nn.Linear))
    return (4 if lora else 6) * params


def one_configuration(args: argparse.Namespace) -> dict:
    """Train ``--steps`` steps in this process; the figures of that run."""
    from pipeline.train import TrainArguments
    from pipeline.training.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or task_parquet(args.task, args.rows, Path(tmp) / "train.parquet")
        metrics = train(
            TrainArguments(data=str(data), out=str(Path(tmp) / "out"), lora=not args.no_lora,
                           lora_target_modules=args.lora_target_modules, lean_step=args.lean_step),
            {"max_steps": args.steps, "per_device_train_batch_size": args.batch, "save_strategy": "no",
             "gradient_checkpointing": args.gradient_checkpointing, "disable_tqdm": True, "seed": 0},
        )
        history = json.loads(Path(metrics["log_json"]).read_text())
    steps = [entry for entry in history if "loss" in entry]
    tokens_per_step = steps[-1]["num_tokens"] / len(steps)
    figures = {key: metrics[key] for key in ("rows", "steps", "seconds_per_step", "train_runtime",
                                             "peak_rss_mib", "dtype", "device", "model")}
    tokens_per_s = tokens_per_step / metrics["seconds_per_step"]
    figures.update(tokens_per_step=tokens_per_step, tokens_per_s=tokens_per_s,
                   losses=[entry["loss"] for entry in steps], batch=args.batch, lora=not args.no_lora,
                   lean_step=args.lean_step, target_modules=args.lora_target_modules,
                   gradient_checkpointing=args.gradient_checkpointing,
                   cpu_load_1min=os.getloadavg()[0], cores=os.cpu_count())
    return figures


def compare(args: argparse.Namespace, argv: list[str]) -> None:
    """TRL's step and the lean step, each in its own process, alternating; printed side by side."""
    import torch

    from benchmarks.general_scorers import peak_matmul_flops
    from pipeline.backends.device import cpu_has_fast_bf16

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or task_parquet(args.task, args.rows, Path(tmp) / "train.parquet")
        base = [a for a in argv if a not in ("--compare", "--no-lean-step")]
        runs: dict[str, list[dict]] = {"TRL step": [], "lean step": []}
        for _ in range(args.rounds):
            for name, flag in (("TRL step", ["--no-lean-step"]), ("lean step", [])):
                out = Path(tmp) / f"{len(runs[name])}-{name[:3]}.json"
                command = [sys.executable, __file__, *base, "--data", str(data), *flag, "--json", str(out)]
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                runs[name].append(json.loads(out.read_text()))
    first = runs["TRL step"][0]
    dtype = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    peak = peak_matmul_flops(dtype, torch.get_num_threads())
    per_token = model_flops_per_token(first["model"], first["lora"])
    print(f"{first['rows']} rows, batch {args.batch}, {args.steps} steps, "
          f"{'LoRA' if first['lora'] else 'full'}, {args.rounds} round(s) alternating, seconds per step "
          f"the median after the first; peak {str(dtype).removeprefix('torch.')} matmul "
          f"{peak / 1e9:.0f} GFLOP/s on {torch.get_num_threads()} threads; "
          f"{per_token / 1e6:.0f} model MFLOP per token")
    print(f"{'':10} {'s/step':>8} {'tokens/step':>11} {'tokens/s':>9} {'MFU':>6} {'peak RSS':>9}")
    rates = {}
    for name, results in runs.items():
        step = statistics.median(r["seconds_per_step"] for r in results)
        rates[name] = statistics.median(r["tokens_per_s"] for r in results)
        rss = max(r["peak_rss_mib"] for r in results)
        print(f"{name:10} {step:8.2f} {results[0]['tokens_per_step']:11.0f} {rates[name]:9.0f} "
              f"{rates[name] * per_token / peak:6.1%} {rss / 1024:7.1f} GB")
    print(f"lean / TRL tokens/s: {rates['lean step'] / rates['TRL step']:.2f}x")
    print("loss per step (first round; dropout draws differ):")
    for name, results in runs.items():
        print(f"  {name:10} " + " ".join(f"{loss:.3f}" for loss in results[0]["losses"]))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "peak_flops": peak, "flops_per_token": per_token},
                                        indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a train.parquet (default: --rows rows of --task)")
    parser.add_argument("--task", default="gsm8k", help="task whose gold rows make the data (default gsm8k)")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--lora-target-modules", nargs="+", default=["all-linear"])
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--no-lora", action="store_true")
    parser.add_argument("--no-lean-step", dest="lean_step", action="store_false",
                        help="TRL's own step (padded batches, every position through the LM head)")
    parser.add_argument("--compare", action="store_true", help="TRL's step and the lean step side by side")
    parser.add_argument("--rounds", type=int, default=1, help="with --compare: alternations")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.compare:
        compare(args, sys.argv[1:])
        return
    figures = one_configuration(args)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
