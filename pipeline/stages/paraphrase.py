"""Paraphrase stage: for rows whose own answer was not admitted, the same model rewrites the
gold answer in its own words. This stage only generates; the judge stage checks the
paraphrase (``judge_paraphrase``: correct and faithful to the gold,
:meth:`judges.base.Judge.judge_paraphrase`) and admission decides whether it may be the
target (``admit_paraphrase``: not cut off, not a copy of the gold, ...)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from pipeline.backends.base import Backend, SamplingSettings
from pipeline.stage import Stage, append_error
from pipeline.stages.generate import run_backend, stops_setting
from pipeline.tasks import TaskSpec


class ParaphraseStage(Stage):
    name = "paraphrase"
    version = "3"  # 3: generation only (judged and admitted by the stages after it)
    #: ``paraphrase_prompt_version`` is set on every row that was paraphrased (its text may
    #: still be None when generation failed): the rows the next stages judge and admit.
    columns = {
        "paraphrase": pl.String,
        "paraphrase_finish_reason": pl.String,
        "paraphrase_tokens": pl.Int64,
        "paraphrase_prompt_version": pl.String,
    }
    reads = ("admitted", "gold")

    def __init__(self, task: TaskSpec, backend: Backend, sampling: SamplingSettings,
                 paraphrase_all: bool):
        self.task = task
        self.backend = backend
        self.sampling = sampling
        self.paraphrase_all = paraphrase_all

    @property
    def shards_per_call(self) -> int:
        """Shards handed to the backend at once (a Ray job per group; 1 in-process)."""
        return self.backend.shards_per_call

    def settings(self) -> dict[str, Any]:
        return {"prompt": self.task.paraphrase_prompt.version, "sampling": self.sampling.as_dict(),
                "paraphrase_all": self.paraphrase_all, **stops_setting(self.task)}

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        rows = frame.to_dicts()
        todo = [i for i, row in enumerate(rows) if self.paraphrase_all or not row["admitted"]]
        template = self.task.paraphrase_prompt
        conversations = [template.messages(**rows[i]) for i in todo]
        generations = run_backend(self.backend, conversations, self.sampling, stats, "paraphrase",
                                  self.task.dropped_stops)
        stats["paraphrased"] += len(todo)

        def spread(values: list[Any]) -> list[Any]:
            """Values for the paraphrased rows, None for the others."""
            full: list[Any] = [None] * len(rows)
            for index, value in zip(todo, values, strict=True):
                full[index] = value
            return full

        frame = frame.with_columns(
            pl.Series("paraphrase", spread([g.text for g in generations]), dtype=pl.String),
            pl.Series("paraphrase_finish_reason", spread([g.finish_reason for g in generations]),
                      dtype=pl.String),
            pl.Series("paraphrase_tokens", spread([g.completion_tokens for g in generations]),
                      dtype=pl.Int64),
            pl.Series("paraphrase_prompt_version", spread([template.version] * len(todo)),
                      dtype=pl.String),
        )
        return append_error(frame, self.name, spread([g.error for g in generations]))
