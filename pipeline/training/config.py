"""The options of ``python -m pipeline.train`` as a dataclass the library owns (as TRL keeps
``SFTConfig`` in the library and its script thin): the trainer and the command both read it,
and neither imports the other's module for it. Every ``SFTConfig`` field is accepted next
to these (see :mod:`pipeline.train`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.training.data import MODES


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
    lean_step: bool = field(
        default=True,
        metadata={"help": "On CPU, run each batch as one packed sequence of its real tokens (no "
                  "padding), the LM head on labelled positions only, and LoRA dropout from cheaper "
                  "random draws (the same loss; pipeline/training/lean.py). --no-lean-step runs TRL's "
                  "own step. GPUs always run TRL's."},
    )
    merge: bool = field(
        default=False,
        metadata={"help": "Also save base + adapter merged into <out>/merged (weights, config, "
                  "tokenizer), loadable by vLLM and transformers."},
    )
