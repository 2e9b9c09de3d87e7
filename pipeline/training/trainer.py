"""The TRL step: SFTConfig defaults, the LoRA adapter, the ``SFTTrainer`` run and its logs.

Loss is on the completion only: TRL tokenizes the prompt with ``add_generation_prompt=True``, so
the assistant header (``<|im_start|>assistant\\n`` for ChatML) belongs to the prompt and is
masked, as it is what the model is given at inference; the completion tokens are the answer
followed by the chat template's end of turn (``<|im_end|>\\n``), all of them trained, so the
model learns to stop (the trailing newline is trained too; generation stops at ``<|im_end|>``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import resource
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.backends.device import cpu_has_fast_bf16
from pipeline.errors import UsageError
from pipeline.progress import Progress
from pipeline.training.config import TrainArguments
from pipeline.training.data import TrainInputError, build_examples, resolve_training_model

log = logging.getLogger(__name__)


#: LoRA learning rate when none is given: TRL's 2e-5 default is meant for full fine-tuning;
#: LoRA adapters start at zero and need roughly ten times more (TRL and PEFT docs use 1e-4..2e-4).
LORA_LEARNING_RATE = 1e-4
FULL_LEARNING_RATE = 2e-5


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
    lean = args.lean_step and config.use_cpu  # on CUDA, TRL's fused head already skips unlabelled positions
    if lean:
        from pipeline.training.lean import LeanSFTTrainer, use_fast_lora_dropout
    trainer = (LeanSFTTrainer if lean else SFTTrainer)(
        model=model_path,
        args=config,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=lora_config(args) if args.lora else None,
        callbacks=[timer],
    )
    if lean and args.lora:
        use_fast_lora_dropout(trainer.model)
    return PreparedTraining(trainer, tokenizer, args, model_path, len(examples), out, timer)


def training_options(path: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A training YAML (``--train-config``) split into (our options, SFTConfig options)."""
    import yaml

    if not path:
        return {}, {}
    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"--train-config {path}: not a readable YAML file ({exc})") from None
    if not isinstance(values, dict):
        raise UsageError(f"--train-config {path}: expected a mapping of option: value")
    fixed = sorted({"data", "mode", "out"} & set(values))
    if fixed:
        raise UsageError(f"--train-config {path}: {', '.join(fixed)} is set by the command "
                         f"itself; remove it")
    ours = {f.name for f in dataclasses.fields(TrainArguments)}
    return ({k: v for k, v in values.items() if k in ours},
            {k: v for k, v in values.items() if k not in ours})


def trained_folder_name(mode: str, config_path: str | None) -> str:
    """``<mode>-lora``, or ``<mode>-full`` where the training YAML sets ``lora: false``: the
    name :func:`resolve_output_dir` gives, for callers that choose the folder first."""
    return f"{mode}-{'lora' if training_options(config_path)[0].get('lora', True) else 'full'}"


def train_from_config(data: str, mode: str, out: str, config_path: str | None) -> dict[str, Any]:
    """:func:`train` on ``data`` in ``mode`` into ``out``, with a training YAML's options.

    No checkpoints unless the YAML asks for them (``save_strategy``, or
    ``resume_from_checkpoint``): ``compare`` and ``run --train`` never resume one (a rerun
    reuses the finished model or trains anew), and the final checkpoint of a full fine-tuning
    holds the weights again plus the optimizer's state (1.6 GB beside a 0.5 GB model at 135M).
    """
    ours, sft = training_options(config_path)
    if not {"save_strategy", "resume_from_checkpoint"} & set(sft):
        sft["save_strategy"] = "no"
    return train(TrainArguments(data=data, mode=mode, out=out, **ours), make_sft_config(sft))


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


