"""``python -m pipeline.train --data runs/<run>/train.parquet --mode s3ft``: fine-tune on a curated set.

A thin layer over TRL's ``SFTTrainer``: every training mode is a column choice on the same
``train.parquet`` (see ``pipeline/export.py``), so the S3FT run and its SFT / SDFT baselines
differ only in their targets:

* ``s3ft``: ``target`` (model answer if judged correct, else passing paraphrase, else gold);
* ``sft``: ``gold`` for every row;
* ``sdft``: ``paraphrase`` where ``paraphrase_admitted`` is true, else ``gold``.

Options follow TRL's conventions (as in ``trl/scripts/sft.py``): our :class:`TrainArguments`
plus every ``SFTConfig`` / ``TrainingArguments`` field as a flag (``--learning_rate``,
``--max_steps``, ...), defaults < YAML ``--config`` < command line. ``--help`` lists our
options without importing torch; ``--help-all`` lists every TRL flag (imports transformers).

Loss is on the completion only: TRL tokenizes the prompt with ``add_generation_prompt=True``, so
the assistant header (``<|im_start|>assistant\\n`` for ChatML) belongs to the prompt and is
masked, as it is what the model is given at inference; the completion tokens are the answer
followed by the chat template's end of turn (``<|im_end|>\\n``), all of them trained, so the
model learns to stop (the trailing newline is trained too; generation stops at ``<|im_end|>``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import resource
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError

log = logging.getLogger(__name__)

#: Where each mode reads its training text (the other columns every mode needs: ``prompt``).
MODES: dict[str, str] = {
    "s3ft": "target column: the S3FT selection (model answer / paraphrase / gold)",
    "sft": "gold column for every row",
    "sdft": "paraphrase column where paraphrase_admitted is true, gold otherwise",
}
MODE_COLUMNS: dict[str, tuple[str, ...]] = {
    "s3ft": ("target",),
    "sft": ("gold",),
    "sdft": ("paraphrase", "paraphrase_admitted", "gold"),
}

#: LoRA learning rate when none is given: TRL's 2e-5 default is meant for full fine-tuning;
#: LoRA adapters start at zero and need roughly ten times more (TRL and PEFT docs use 1e-4..2e-4).
LORA_LEARNING_RATE = 1e-4
FULL_LEARNING_RATE = 2e-5


@dataclass
class TrainArguments:
    """Our script options; every SFTConfig field is accepted next to them."""

    data: str | None = field(
        default=None, metadata={"help": "train.parquet written by `python -m pipeline.run` (required)."}
    )
    mode: str = field(
        default="s3ft",
        metadata={"help": "Which target to train on: " + "; ".join(f"{k} = {v}" for k, v in MODES.items()),
                  "choices": list(MODES)},
    )
    out: str | None = field(
        default=None,
        metadata={"help": "Output folder (adapter, logs, loss curve, merged/). Same as --output_dir. "
                  "Default: <data folder>/<mode>-lora (or <mode>-full with --no-lora)."},
    )
    model: str | None = field(
        default=None,
        metadata={"help": "Hub id, model folder, .gguf or embedded:<name>. Default: the model recorded in "
                  "the data's `model` column (the one that wrote the S3FT answers), else the embedded "
                  "SmolLM2-135M-Instruct."},
    )
    limit: int | None = field(default=None, metadata={"help": "Train on the first N rows only."})
    lora: bool = field(
        default=True, metadata={"help": "Train a LoRA adapter; --no-lora fine-tunes every weight."}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (S3FT paper: 8)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (S3FT paper: 16)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout (S3FT paper: 0.1)."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "Modules that get adapters: all-linear (every linear layer but the output "
                  "head: attention and MLP) or names such as q_proj k_proj v_proj o_proj."},
    )
    merge: bool = field(
        default=False,
        metadata={"help": "Also save base + adapter merged into <out>/merged (weights, config, "
                  "tokenizer), loadable by vLLM and transformers."},
    )


class TrainInputError(ValueError):
    """Bad training input (file, column, row or flag); the message says which and what to do."""


# --------------------------------------------------------------------------- data


def read_train_table(path: str | Path, mode: str) -> Any:
    """Read and check ``train.parquet``: it exists, has rows and the columns ``mode`` needs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if mode not in MODES:
        raise TrainInputError(f"--mode {mode!r}: unknown mode; choose one of {', '.join(MODES)}")
    path = Path(path)
    if not path.is_file():
        raise TrainInputError(f"--data {path}: no such file (expected runs/<run>/train.parquet "
                              f"from `python -m pipeline.run`)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise TrainInputError(f"--data {path}: not a readable Parquet file ({exc})") from exc
    needed = ("prompt", *MODE_COLUMNS[mode])
    missing = [name for name in needed if name not in table.column_names]
    if missing:
        hint = (" (rerun curation; the SDFT baseline needs the paraphrase stage)"
                if mode == "sdft" else "")
        raise TrainInputError(
            f"--data {path}: --mode {mode} needs column(s) {', '.join(missing)}, which the file lacks "
            f"(it has: {', '.join(table.column_names)}){hint}"
        )
    if table.num_rows == 0:
        raise TrainInputError(f"--data {path}: the file has no rows; nothing to train on")
    return table


def chosen_text(row: Mapping[str, Any], mode: str) -> str | None:
    """The training target of one row under ``mode`` (see :data:`MODES`)."""
    if mode == "s3ft":
        return row["target"]
    if mode == "sft":
        return row["gold"]
    if mode == "sdft":
        return row["paraphrase"] if row["paraphrase_admitted"] else row["gold"]
    raise TrainInputError(f"--mode {mode!r}: unknown mode; choose one of {', '.join(MODES)}")


def build_examples(path: str | Path, mode: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Conversational prompt/completion rows for TRL: ``prompt`` = the exported messages,
    ``completion`` = one assistant message with the mode's target."""
    table = read_train_table(path, mode)
    if limit is not None:
        if limit < 1:
            raise TrainInputError(f"--limit {limit}: must be at least 1")
        table = table.slice(0, limit)
    columns = ["prompt", *MODE_COLUMNS[mode]] + (["id"] if "id" in table.column_names else [])
    examples = []
    for index, row in enumerate(table.select(columns).to_pylist()):
        where = f"--data {path}: row {index}" + (f" (id {row['id']})" if row.get("id") else "")
        prompt = row["prompt"]
        if not prompt or not all(isinstance(m, dict) and m.get("role") and m.get("content") is not None
                                 for m in prompt):
            raise TrainInputError(f"{where}: `prompt` must be a non-empty list of {{role, content}} messages")
        text = chosen_text(row, mode)
        if not text:
            column = ("paraphrase" if mode == "sdft" and row["paraphrase_admitted"]
                      else MODE_COLUMNS[mode][-1])
            raise TrainInputError(f"{where}: --mode {mode} trains on `{column}`, which is empty here")
        examples.append({
            "prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
            "completion": [{"role": "assistant", "content": text}],
        })
    return examples


def model_from_data(path: str | Path) -> str | None:
    """The single model spec recorded in the data's ``model`` column, if any."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if "model" not in pq.read_schema(path).names:
        return None
    table = pq.read_table(path, columns=["model"])
    specs = [s for s in pc.unique(table["model"]).to_pylist() if s]
    if len(specs) > 1:
        raise TrainInputError(f"--data {path}: rows come from several models ({', '.join(specs)}); "
                              f"pass --model to pick the one to fine-tune")
    return specs[0] if specs else None


def resolve_training_model(spec: str | None, data: str | Path) -> str:
    """A loadable model path: ``--model``, else the data's model if it resolves, else the default.

    S3FT targets are the base model's own answers, so training a different model than the one
    in the data is warned about loudly.
    """
    from pipeline.model import DEFAULT_MODEL, resolve_model

    if spec:
        return resolve_model(spec).path
    recorded = model_from_data(data)
    if recorded:
        try:
            path = resolve_model(recorded).path
            if Path(path).is_dir() or _hub_model_available(path):
                return path
            reason = "it is a Hub id that is neither cached nor downloadable (HF_HUB_OFFLINE)"
        except (UsageError, OSError) as exc:
            reason = str(exc)
        log.warning("the data was generated by %s, which does not resolve here (%s); training %s instead. "
                    "S3FT targets are that model's own answers: pass --model to train the right one.",
                    recorded, reason, DEFAULT_MODEL)
    return resolve_model(DEFAULT_MODEL).path


def _hub_model_available(repo_id: str) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes"):
        return True
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


# --------------------------------------------------------------------------- settings


def sft_defaults() -> dict[str, Any]:
    """Our SFTConfig defaults, where they differ from TRL's (each one overridable)."""
    import torch

    defaults: dict[str, Any] = {
        "completion_only_loss": True,  # mask the prompt, train on the answer only
        "logging_steps": 1,  # loss of every step, for train_log.csv and the loss curve
        "learning_rate": None,  # chosen in prepare_training: LoRA or full fine-tuning
        "report_to": "none",
    }
    if not torch.cuda.is_available():
        # TRL defaults to bf16 autocast and gradient checkpointing. On CPUs without AVX512-BF16/AMX
        # bf16 is emulated (slower than fp32). Checkpointing trades time for memory; measured with
        # SmolLM2-135M, LoRA, batch 4 of GSM8K rows on 2 cores: 23 vs 15 s/step, 4.5 vs 7.7 GB peak
        # (benchmarks/train_step.py). Small CPU models fit, so time wins; pass
        # --gradient_checkpointing true where memory is short.
        from pipeline.device import cpu_has_fast_bf16

        defaults.update(use_cpu=True, bf16=cpu_has_fast_bf16(), gradient_checkpointing=False)
    return defaults


def make_sft_config(overrides: Mapping[str, Any] | None = None) -> Any:
    """SFTConfig from our defaults plus ``overrides`` (any SFTConfig field), for :func:`train`."""
    from trl import SFTConfig

    values = {**sft_defaults(), **(overrides or {})}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(SFTConfig)})
    if unknown:
        raise TrainInputError(f"unknown SFTConfig option(s): {', '.join(unknown)}")
    return SFTConfig(**values)


def resolve_output_dir(args: TrainArguments, sft_output_dir: str | None) -> Path:
    """``--out``, else an explicit ``--output_dir``, else ``<data folder>/<mode>-lora|full``."""
    if args.out:
        return Path(args.out)
    if sft_output_dir and sft_output_dir != "trainer_output":  # TRL's placeholder default
        return Path(sft_output_dir)
    return Path(args.data).parent / f"{args.mode}-{'lora' if args.lora else 'full'}"


def lora_config(args: TrainArguments) -> Any:
    from peft import LoraConfig

    modules = args.lora_target_modules
    return LoraConfig(
        r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, task_type="CAUSAL_LM",
        # PEFT takes the "all-linear" shortcut only as a plain string.
        target_modules="all-linear" if modules == ["all-linear"] else list(modules),
    )


# --------------------------------------------------------------------------- training


@dataclass
class PreparedTraining:
    """Everything :func:`train` runs, built but not started (tests inspect the tokenized rows)."""

    trainer: Any  # trl.SFTTrainer
    tokenizer: Any
    args: TrainArguments
    model_path: str
    rows: int
    out: Path
    timer: Any


def prepare_training(args: TrainArguments, training_args: Any = None) -> PreparedTraining:
    """Check the input, resolve model and settings, and build the ``SFTTrainer``.

    ``training_args``: an ``SFTConfig`` (used as is; the CLI passes one), or a mapping of
    SFTConfig fields applied over our defaults, or None.
    """
    if not args.data:
        raise TrainInputError("--data is required: the train.parquet written by `python -m pipeline.run`")
    examples = build_examples(args.data, args.mode, args.limit)  # fail on bad input before heavy imports
    model_path = resolve_training_model(args.model, args.data)

    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    config = training_args if isinstance(training_args, SFTConfig) else make_sft_config(training_args)
    if config.learning_rate is None:
        config.learning_rate = LORA_LEARNING_RATE if args.lora else FULL_LEARNING_RATE
    out = resolve_output_dir(args, config.output_dir)
    config.output_dir = str(out)
    if not config.completion_only_loss:
        log.warning("completion_only_loss is off: the prompt tokens are trained too")
    if args.lora and config.gradient_checkpointing:
        # Frozen embeddings give checkpointed blocks inputs without grad; PEFT needs this to backprop.
        config.gradient_checkpointing_kwargs = {"use_reentrant": False,
                                                **(config.gradient_checkpointing_kwargs or {})}

    log.info("training %s on %d rows of %s (--mode %s, %s) into %s", model_path, len(examples), args.data,
             args.mode, "LoRA" if args.lora else "full fine-tuning", out)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    timer = _step_timer()
    trainer = SFTTrainer(
        model=model_path,
        args=config,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=lora_config(args) if args.lora else None,
        callbacks=[timer],
    )
    return PreparedTraining(trainer, tokenizer, args, model_path, len(examples), out, timer)


def train(args: TrainArguments, training_args: Any = None) -> dict[str, Any]:
    """Fine-tune on ``args.data``; save the adapter (or full model), logs, loss curve and, with
    ``args.merge``, the merged model. Returns the run's metrics and output paths
    (``training_args`` as in :func:`prepare_training`)."""
    run = prepare_training(args, training_args)
    trainer, out = run.trainer, run.out
    result = trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    trainer.save_model(str(out))  # the adapter (LoRA) or the full model, with the tokenizer

    history = trainer.state.log_history
    paths = write_training_log(out, history, run.timer.durations,
                               title=f"{args.mode} · {Path(run.model_path).name}")
    merged = None
    if args.merge:
        merged = save_merged(trainer.model, run.tokenizer, out) if args.lora else out
        if not args.lora:
            log.info("--merge with --no-lora: %s already holds the full model", out)

    losses = [entry["loss"] for entry in history if "loss" in entry]
    timed = run.timer.durations[1:] or run.timer.durations  # the first step includes warm-up
    metrics = {
        "mode": args.mode,
        "rows": run.rows,
        "model": run.model_path,
        "lora": args.lora,
        "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss,
        "seconds_per_step": statistics.median(timed) if timed else None,
        "train_runtime": result.metrics.get("train_runtime"),
        "peak_rss_mib": peak_rss_mib(),
        "device": str(trainer.args.device),
        "dtype": str(next(trainer.model.parameters()).dtype).removeprefix("torch."),
        "out": str(out),
        "merged": str(merged) if merged else None,
        **paths,
    }
    (out / "train_metrics.json").write_text(json.dumps(metrics, indent=2))
    del trainer, run
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return metrics


def _step_timer() -> Any:
    """A callback that records the wall time of every optimizer step and reports progress
    (steps done / total and an ETA: a bar on a terminal, a log line every 30 s otherwise)."""
    from transformers import TrainerCallback

    from pipeline.progress import Progress

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.durations: list[float] = []
            self._last = 0.0
            self._progress: Progress | None = None

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 (TRL's signature)
            self._last = time.perf_counter()
            self._progress = Progress("train", state.max_steps, "steps").__enter__()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            now = time.perf_counter()
            self.durations.append(now - self._last)
            self._last = now
            if self._progress is not None:
                self._progress.update(1)

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if self._progress is not None:
                self._progress.__exit__(None, None, None)
                self._progress = None

    return StepTimer()


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save_merged(model: Any, tokenizer: Any, out: Path) -> Path:
    """Base + adapter merged into plain weights, with config and tokenizer: a folder vLLM loads.

    Saved in the training dtype: rounding merged fp32 weights to bf16 would swallow small
    adapter updates.
    """
    merged_dir = out / "merged"
    merged = model.merge_and_unload()
    merged.save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    return merged_dir


def write_training_log(out: Path, history: list[dict[str, Any]], durations: list[float],
                       title: str) -> dict[str, str | None]:
    """``train_log.json`` (TRL's full log history), ``train_log.csv`` (one row per logged step)
    and ``loss.png``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / "train_log.json", out / "train_log.csv"
    json_path.write_text(json.dumps(history, indent=2, default=str))
    steps = [entry for entry in history if "loss" in entry]
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "epoch", "loss", "learning_rate", "grad_norm", "seconds"])
        for entry in steps:
            step = entry.get("step")
            seconds = durations[step - 1] if step and step <= len(durations) else None
            writer.writerow([step, entry.get("epoch"), entry["loss"], entry.get("learning_rate"),
                             entry.get("grad_norm"), seconds])
    png = plot_loss(out / "loss.png", [e["step"] for e in steps], [e["loss"] for e in steps], title)
    return {"log_json": str(json_path), "log_csv": str(csv_path), "loss_png": str(png) if png else None}


def plot_loss(path: Path, steps: list[int], losses: list[float], title: str) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        log.warning("matplotlib is not installed: no loss curve (pip install matplotlib)")
        return None
    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot(steps, losses, marker="o" if len(steps) <= 50 else None, linewidth=1.2)
    axes.set(xlabel="step", ylabel="training loss", title=title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


# --------------------------------------------------------------------------- command line


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
