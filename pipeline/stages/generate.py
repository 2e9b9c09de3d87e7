"""Generate stage: the base model answers every prompt (greedy)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from typing import Any

import polars as pl

from pipeline.backends.base import Backend, SamplingSettings
from pipeline.stage import Stage, append_error
from pipeline.tasks import TaskSpec
from pipeline.text import needs_repair, safe_text

MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))


def run_backend(backend: Backend, conversations: list[list[dict[str, str]]],
                sampling: SamplingSettings, stats: Counter, prefix: str) -> list[Any]:
    """Generate and count tokens and engine time under ``<prefix>_*`` stats keys."""
    if not conversations:
        return []
    backend.start()  # engine start-up is not generation time
    began = time.perf_counter()
    generations = backend.generate(conversations, sampling)
    stats[f"{prefix}_seconds"] += time.perf_counter() - began
    # A model or server may return lone surrogates, which no Parquet file can hold.
    stats["texts_repaired"] += sum(needs_repair(g.text) for g in generations)
    generations = [replace(g, text=safe_text(g.text)) if needs_repair(g.text) else g
                   for g in generations]
    stats[f"{prefix}_prompt_tokens"] += sum(g.prompt_tokens for g in generations)
    stats[f"{prefix}_completion_tokens"] += sum(g.completion_tokens for g in generations)
    stats[f"{prefix}_errors"] += sum(g.error is not None for g in generations)
    stats[f"{prefix}_truncated"] += sum(g.finish_reason == "length" for g in generations)
    looped = [g for g in generations if g.finish_reason == "repetition"]
    stats[f"{prefix}_loop_stopped"] += len(looped)
    # What those rows would have spent without the guard, at most: the rest of their budget.
    stats[f"{prefix}_loop_tokens_saved"] += sum(sampling.max_tokens - g.completion_tokens
                                                for g in looped)
    return generations


class GenerateStage(Stage):
    name = "generate"
    version = "1"
    columns = {
        "prompt": MESSAGES,
        "candidate": pl.String,
        "finish_reason": pl.String,
        "prompt_tokens": pl.Int64,
        "completion_tokens": pl.Int64,
        "model": pl.String,
        "prompt_version": pl.String,
    }

    def __init__(self, task: TaskSpec, backend: Backend, sampling: SamplingSettings,
                 model_fingerprint: str, engine_settings: dict[str, Any]):
        self.task = task
        self.backend = backend
        self.sampling = sampling
        self.model_fingerprint = model_fingerprint
        self.engine_settings = engine_settings

    @property
    def shards_per_call(self) -> int:
        """Shards handed to the backend at once (a Ray job per group; 1 in-process)."""
        return self.backend.shards_per_call

    def settings(self) -> dict[str, Any]:
        return {"model": self.model_fingerprint, "prompt": self.task.answer_prompt.version,
                "sampling": self.sampling.as_dict(), "engine": self.engine_settings}

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        template = self.task.answer_prompt
        conversations = [template.messages(**row) for row in frame.to_dicts()]
        generations = run_backend(self.backend, conversations, self.sampling, stats, "generate")
        frame = frame.with_columns(
            pl.Series("prompt", conversations, dtype=MESSAGES),
            pl.Series("candidate", [g.text for g in generations], dtype=pl.String),
            pl.Series("finish_reason", [g.finish_reason for g in generations], dtype=pl.String),
            pl.Series("prompt_tokens", [g.prompt_tokens for g in generations], dtype=pl.Int64),
            pl.Series("completion_tokens", [g.completion_tokens for g in generations],
                      dtype=pl.Int64),
            pl.lit(self.backend.model_name, dtype=pl.String).alias("model"),
            pl.lit(template.version, dtype=pl.String).alias("prompt_version"),
        )
        return append_error(frame, self.name, [g.error for g in generations])
