"""Judge stage: the task's judge checks every candidate against the gold answer.

An LLM judge is proven first (:meth:`JudgeStage.prepare`): it is scored on known-right and
known-wrong answers built from the run's own rows (:mod:`judges.calibration`), the figures
are saved beside the stage's shards (so a rerun decides the same) and logged in one line.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from judges import Judge, Verdict
from judges.calibration import Calibration
from pipeline import faults
from pipeline.errors import RunFailed
from pipeline.stage import Shard, Stage, append_error
from pipeline.storage import atomic_write_json
from pipeline.text import safe_text

log = logging.getLogger(__name__)


def judge_responses(judge: Judge, responses: list[str | None],
                    examples: list[Mapping[str, Any]], *, paraphrase: bool = False,
                    ) -> tuple[list[Verdict], list[str | None]]:
    """Verdicts for every response (with ``paraphrase``, the judge's paraphrase check); a
    judge exception becomes an error for that row only."""
    one: Callable[[str, Mapping[str, Any]], Verdict] = \
        judge.judge_paraphrase if paraphrase else judge.judge
    batch = judge.judge_paraphrases if paraphrase else judge.judge_many
    verdicts: list[Verdict | None] = [None] * len(responses)
    errors: list[str | None] = [None] * len(responses)
    todo = []
    for index, response in enumerate(responses):
        if response is None:  # generation failed: nothing to judge, the row falls back
            verdicts[index] = Verdict(False, "no_response", reason="generation failed")
        else:
            todo.append(index)
    if todo and not faults.marker("judge"):
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
            verdicts[index] = one(responses[index], examples[index])
        except Exception as exc:
            verdicts[index] = Verdict(False, "judge_error", reason=f"{type(exc).__name__}: {exc}")
            errors[index] = f"judge_error: {type(exc).__name__}: {exc}"
    # An LLM judge that gave no usable reply has not judged: a failed row (retried by a
    # rerun, counted against the failure budget), not an "incorrect" verdict.
    for index, verdict in enumerate(verdicts):
        if verdict is not None and verdict.rule in JUDGE_FAILURES and errors[index] is None:
            errors[index] = f"{verdict.rule}: {verdict.reason}"[:500]
    return verdicts, errors  # type: ignore[return-value]


#: Verdict rules that mean the judge did not judge (see :mod:`judges.nq`).
JUDGE_FAILURES = frozenset({"llm_error", "judge_unparsed", "judge_inconsistent"})


def verdict_columns(verdicts: list[Verdict], prefix: str) -> list[pl.Series]:
    # safe_text: a program's error message or an LLM's reason may hold a lone surrogate.
    return [
        pl.Series(f"{prefix}verdict", [v.correct for v in verdicts], dtype=pl.Boolean),
        pl.Series(f"{prefix}judge_rule", [v.rule for v in verdicts], dtype=pl.String),
        pl.Series(f"{prefix}judge_extracted", [safe_text(v.extracted) for v in verdicts],
                  dtype=pl.String),
        pl.Series(f"{prefix}judge_reason", [safe_text(v.reason) for v in verdicts],
                  dtype=pl.String),
    ]


CALIBRATION_FILE = "llm-judge-calibration.json"


class JudgeStage(Stage):
    name = "judge"
    version = "2"
    columns = {"verdict": pl.Boolean, "judge_rule": pl.String,
               "judge_extracted": pl.String, "judge_reason": pl.String}

    def __init__(self, judge: Judge):
        self.judge = judge

    def settings(self) -> dict[str, Any]:
        return {"judge": self.judge.name, "judge_version": self.judge.version,
                "judge_settings": self.judge.settings()}

    def prepare(self, upstream: list[Shard], record_dir: Path, fresh: bool) -> None:
        """Prove an LLM judge before it decides any row (nothing to do for rule judges)."""
        if not self.judge.uses_llm:
            return
        record = record_dir / CALIBRATION_FILE
        if record.is_file() and not fresh:
            calibration = Calibration.from_dict(json.loads(record.read_text()))
            self.judge.calibration = calibration
        else:
            frame = pl.concat([pl.read_parquet(s.path) for s in upstream], how="vertical_relaxed")
            calibration = self.judge.calibrate(frame.to_dicts(), frame["candidate"].to_list())
            if calibration is None:
                return
            if calibration.unreachable:
                total = calibration.positives + calibration.negatives
                raise RunFailed(
                    f"judge: the LLM judge {calibration.judge_model!r} gave no reply to "
                    f"{calibration.failed} of {total} calibration requests (first: "
                    f"{calibration.first_failure[:300]}); is its server up (--judge-base-url, "
                    f"--judge-model)? Nothing was judged; rerun the same command once it is.")
            atomic_write_json(record, calibration.as_dict())
        (log.info if calibration.trusted else log.warning)("%s", calibration.describe())

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        verdicts, errors = judge_responses(self.judge, frame["candidate"].to_list(),
                                           frame.to_dicts())
        stats["correct"] += sum(v.correct for v in verdicts)
        stats["judge_errors"] += sum(e is not None for e in errors)
        frame = frame.with_columns(verdict_columns(verdicts, prefix=""))
        return append_error(frame, self.name, errors)
