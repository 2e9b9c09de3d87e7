"""Judge stage: the task's judge checks every candidate against the gold answer."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import polars as pl

from judges import Judge, Verdict
from pipeline import faults
from pipeline.stage import append_error

log = logging.getLogger(__name__)


def judge_responses(judge: Judge, responses: list[str | None],
                    examples: list[Mapping[str, Any]]) -> tuple[list[Verdict], list[str | None]]:
    """Verdicts for every response; a judge exception becomes an error for that row only."""
    verdicts: list[Verdict | None] = [None] * len(responses)
    errors: list[str | None] = [None] * len(responses)
    todo = []
    for index, response in enumerate(responses):
        if response is None:  # generation failed: nothing to judge, the row falls back
            verdicts[index] = Verdict(False, "no_response", reason="generation failed")
        else:
            todo.append(index)
    batch = getattr(judge, "judge_many", None)
    if batch is not None and todo and not faults.marker("judge"):
        try:
            for index, verdict in zip(todo, batch([responses[i] for i in todo],
                                                  [examples[i] for i in todo]), strict=True):
                verdicts[index] = verdict
            todo = []
        except Exception as exc:  # fall back to one by one to isolate the bad row
            log.warning("judge_many failed (%s); judging row by row", exc)
    for index in todo:
        try:
            faults.check("judge", str(examples[index].get("prompt", "")))
            verdicts[index] = judge.judge(responses[index], examples[index])
        except Exception as exc:
            verdicts[index] = Verdict(False, "judge_error", reason=f"{type(exc).__name__}: {exc}")
            errors[index] = f"judge_error: {type(exc).__name__}: {exc}"
    return verdicts, errors  # type: ignore[return-value]


def verdict_columns(verdicts: list[Verdict], prefix: str) -> list[pl.Series]:
    return [
        pl.Series(f"{prefix}verdict", [v.correct for v in verdicts], dtype=pl.Boolean),
        pl.Series(f"{prefix}judge_rule", [v.rule for v in verdicts], dtype=pl.String),
        pl.Series(f"{prefix}judge_extracted", [v.extracted for v in verdicts], dtype=pl.String),
        pl.Series(f"{prefix}judge_reason", [v.reason for v in verdicts], dtype=pl.String),
    ]


class JudgeStage:
    name = "judge"
    version = "1"
    columns = {"verdict": pl.Boolean, "judge_rule": pl.String,
               "judge_extracted": pl.String, "judge_reason": pl.String}

    def __init__(self, judge: Judge, judge_settings: dict[str, Any]):
        self.judge = judge
        self.judge_settings = judge_settings

    def settings(self) -> dict[str, Any]:
        return {"judge": self.judge.name, "judge_version": self.judge.version,
                "judge_settings": self.judge_settings}

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        verdicts, errors = judge_responses(self.judge, frame["candidate"].to_list(),
                                           frame.to_dicts())
        stats["correct"] += sum(v.correct for v in verdicts)
        stats["judge_errors"] += sum(e is not None for e in errors)
        frame = frame.with_columns(verdict_columns(verdicts, prefix=""))
        return append_error(frame, self.name, errors)
