"""Paraphrase stage: for rows whose own answer was not admitted, the same model rewrites the
gold answer in its own words; the judge checks the paraphrase (correct and faithful to the
gold, :meth:`judges.base.Judge.judge_paraphrase`) and admission decides whether it may be
the target (:func:`pipeline.admission.admit`: not cut off, not a copy of the gold, ...)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from judges import Judge
from pipeline import progress
from pipeline.admission import admission_columns, admit
from pipeline.backends.base import Backend, SamplingSettings
from pipeline.generate import run_backend
from pipeline.judge import judge_responses, verdict_columns
from pipeline.stage import Stage, append_error
from pipeline.tasks import TaskSpec


class ParaphraseStage(Stage):
    name = "paraphrase"
    version = "2"
    columns = {
        "paraphrase": pl.String,
        "paraphrase_finish_reason": pl.String,
        "paraphrase_tokens": pl.Int64,
        "paraphrase_prompt_version": pl.String,
        "paraphrase_verdict": pl.Boolean,
        "paraphrase_judge_rule": pl.String,
        "paraphrase_judge_extracted": pl.String,
        "paraphrase_judge_reason": pl.String,
        "paraphrase_admitted": pl.Boolean,
        "paraphrase_admission_rule": pl.String,
        "paraphrase_admission_reason": pl.String,
    }

    def __init__(self, task: TaskSpec, backend: Backend, judge: Judge, sampling: SamplingSettings,
                 paraphrase_all: bool):
        self.task = task
        self.backend = backend
        self.judge = judge
        self.sampling = sampling
        self.paraphrase_all = paraphrase_all

    @property
    def shards_per_call(self) -> int:
        """Shards handed to the backend at once (a Ray job per group; 1 in-process)."""
        return getattr(self.backend, "shards_per_call", 1)

    def settings(self) -> dict[str, Any]:
        return {"prompt": self.task.paraphrase_prompt.version, "sampling": self.sampling.as_dict(),
                "paraphrase_all": self.paraphrase_all}

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        rows = frame.to_dicts()
        todo = [i for i, row in enumerate(rows) if self.paraphrase_all or not row["admitted"]]
        template = self.task.paraphrase_prompt
        conversations = [template.messages(**rows[i]) for i in todo]
        generations = run_backend(self.backend, conversations, self.sampling, stats, "paraphrase")
        with progress.quiet():  # the rows were counted as their paraphrases came back
            verdicts, judge_errors = judge_responses(
                self.judge, [g.text for g in generations], [rows[i] for i in todo],
                paraphrase=True)
        admissions = [admit(self.judge, g.text, g.finish_reason, v, rows[i], rows[i]["gold"],
                            paraphrase=True)
                      for g, v, i in zip(generations, verdicts, todo, strict=True)]
        stats["paraphrased"] += len(todo)
        stats["paraphrase_correct"] += sum(v.correct for v in verdicts)
        stats.update(f"paraphrase_admission_{a.rule}" for a in admissions)

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
            *[pl.Series(s.name, spread(s.to_list()), dtype=s.dtype)
              for s in verdict_columns(verdicts, prefix="paraphrase_")],
            *[pl.Series(s.name, spread(s.to_list()), dtype=s.dtype)
              for s in admission_columns(admissions, prefix="paraphrase_")],
        )
        errors = [g.error or e for g, e in zip(generations, judge_errors, strict=True)]
        return append_error(frame, self.name, spread(errors))
