"""Judge stage: the task's judge checks every candidate against the gold answer
(``judge``), and, as a second instance of the same stage, every paraphrase of the gold
(``judge_paraphrase``, with :meth:`judges.base.Judge.judge_paraphrase`).

An LLM judge is proven first (:meth:`JudgeStage.prepare`): it is scored on known-right and
known-wrong answers built from the run's own rows (:mod:`judges.calibration`), the figures
are saved beside the ``judge`` stage's shards (so a rerun, and ``judge_paraphrase``, decide
with the same calibration) and logged in one line.
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
from judges.calibration import CALIBRATION_SIZE, Calibration
from pipeline import faults
from pipeline.errors import RunFailed
from pipeline.progress import Progress
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


def verdict_columns(verdicts: list[Verdict | None], prefix: str) -> list[pl.Series]:
    """The verdict columns (None where a row was not judged)."""
    # safe_text: a program's error message or an LLM's reason may hold a lone surrogate.
    return [
        pl.Series(f"{prefix}verdict", [v.correct if v else None for v in verdicts],
                  dtype=pl.Boolean),
        pl.Series(f"{prefix}judge_rule", [v.rule if v else None for v in verdicts],
                  dtype=pl.String),
        pl.Series(f"{prefix}judge_extracted", [safe_text(v.extracted) if v else None
                                               for v in verdicts], dtype=pl.String),
        pl.Series(f"{prefix}judge_reason", [safe_text(v.reason) if v else None
                                            for v in verdicts], dtype=pl.String),
    ]


CALIBRATION_FILE = "llm-judge-calibration.json"
#: The verdict on every sample of a row (``--samples`` > 1), one list entry per sample.
SAMPLE_VERDICT_COLUMNS = {"sample_verdicts": pl.List(pl.Boolean),
                          "sample_judge_rules": pl.List(pl.String),
                          "sample_judge_extracted": pl.List(pl.String),
                          "sample_judge_reasons": pl.List(pl.String)}


class JudgeStage(Stage):
    """Verdicts on the model's answers (``candidate``), or with ``paraphrase`` on the
    paraphrases (rows that were paraphrased; the verdict columns are None elsewhere)."""

    version = "2"

    def __init__(self, judge: Judge, *, paraphrase: bool = False, samples: int = 1):
        self.judge = judge
        self.paraphrase = paraphrase
        self.samples = samples  # answers per prompt (--samples): every one is judged
        self.name = "judge_paraphrase" if paraphrase else "judge"
        self.prefix = "paraphrase_" if paraphrase else ""
        self.columns = {f"{self.prefix}verdict": pl.Boolean, f"{self.prefix}judge_rule": pl.String,
                        f"{self.prefix}judge_extracted": pl.String,
                        f"{self.prefix}judge_reason": pl.String}
        if samples > 1:
            self.columns.update(SAMPLE_VERDICT_COLUMNS)
        self.reads = (("paraphrase", "paraphrase_prompt_version") if paraphrase
                      else ("candidate", "gold") + (("sample_texts",) if samples > 1 else ()))
        #: The ``judge`` stage's folder name (set by the plan): where a paraphrase judge finds
        #: the calibration the answers' judge saved.
        self.calibration_stage_dir: str | None = None

    def settings(self) -> dict[str, Any]:
        return {"judge": self.judge.name, "judge_version": self.judge.version,
                "judge_settings": self.judge.settings()}

    def prepare(self, upstream: list[Shard], record_dir: Path, fresh: bool) -> None:
        """Prove an LLM judge before it decides any row (nothing to do for rule judges). The
        paraphrase judge uses the calibration the ``judge`` stage saved (the same one)."""
        if not self.judge.uses_llm:
            return
        if self.paraphrase:
            if self.judge.calibration is not None:  # proven in this process already
                return
            if self.calibration_stage_dir is None:
                raise RuntimeError("judge_paraphrase: the plan did not name the judge stage")
            record_dir, fresh = record_dir.parent / self.calibration_stage_dir, False
        record = record_dir / CALIBRATION_FILE
        if record.is_file() and not fresh:
            calibration = Calibration.from_dict(json.loads(record.read_text()))
            self.judge.calibration = calibration
        else:
            frame = pl.concat([pl.read_parquet(s.path) for s in upstream], how="vertical_relaxed")
            with Progress("judge calibration", CALIBRATION_SIZE, "answers") as shown:
                calibration = self.judge.calibrate(frame.to_dicts(), frame["candidate"].to_list())
                if calibration is not None:  # at most CALIBRATION_SIZE answers were asked
                    shown.resize(calibration.positives + calibration.negatives)
                    shown.reach(shown.total)
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
        if self.samples > 1 and not self.paraphrase:
            return self._judge_samples(frame, stats)
        rows = frame.to_dicts()
        # Every answer is judged; of the paraphrases, those of the rows that were paraphrased.
        todo = [i for i, row in enumerate(rows)
                if not self.paraphrase or row["paraphrase_prompt_version"] is not None]
        texts = frame["paraphrase" if self.paraphrase else "candidate"].to_list()
        verdicts, errors = judge_responses(self.judge, [texts[i] for i in todo],
                                           [rows[i] for i in todo], paraphrase=self.paraphrase)
        stats["judged"] += len(todo)
        stats["correct"] += sum(v.correct for v in verdicts)
        stats["judge_errors"] += sum(e is not None for e in errors)
        full: list[Verdict | None] = [None] * len(rows)
        full_errors: list[str | None] = [None] * len(rows)
        for index, verdict, error in zip(todo, verdicts, errors, strict=True):
            full[index], full_errors[index] = verdict, error
        frame = frame.with_columns(verdict_columns(full, prefix=self.prefix))
        return append_error(frame, self.name, full_errors)

    def _judge_samples(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        """Every sample of every row judged (one batch); the verdict columns hold the first
        sample's (the candidate's), the ``sample_*`` lists every sample's."""
        rows = frame.to_dicts()
        owners = [(i, j) for i, row in enumerate(rows) for j in range(len(row["sample_texts"] or ()))]
        verdicts, errors = judge_responses(self.judge, [rows[i]["sample_texts"][j] for i, j in owners],
                                           [rows[i] for i, _ in owners])
        stats["judged"] += len(owners)
        stats["correct"] += sum(v.correct for v in verdicts)
        stats["judge_errors"] += sum(e is not None for e in errors)
        per_row: list[list[Verdict]] = [[] for _ in rows]
        row_errors: list[list[str]] = [[] for _ in rows]
        for (i, _), verdict, error in zip(owners, verdicts, errors, strict=True):
            per_row[i].append(verdict)
            if error:
                row_errors[i].append(error)
        # A row whose request failed has no samples: judged as having no response.
        first = [v[0] if v else Verdict(False, "no_response", reason="generation failed")
                 for v in per_row]

        def each(read: Callable[[Verdict], Any]) -> list[Any]:
            return [[read(v) for v in verdicts_of_row] if verdicts_of_row else None
                    for verdicts_of_row in per_row]

        frame = frame.with_columns(
            *verdict_columns(first, prefix=""),
            pl.Series("sample_verdicts", each(lambda v: v.correct), dtype=pl.List(pl.Boolean)),
            pl.Series("sample_judge_rules", each(lambda v: v.rule), dtype=pl.List(pl.String)),
            pl.Series("sample_judge_extracted", each(lambda v: safe_text(v.extracted)),
                      dtype=pl.List(pl.String)),
            pl.Series("sample_judge_reasons", each(lambda v: safe_text(v.reason)),
                      dtype=pl.List(pl.String)),
        )
        # One error per row (the first failed sample's): a rerun judges the row again.
        return append_error(frame, self.name, [e[0] if e else None for e in row_errors])
