"""Admission: a text becomes a training target only when the pipeline knows it is right.

The judge says whether an answer is *correct*; admission decides whether it may be a
*target*, with one rule per row saying why (``admission_rule``, ``admission_reason``).
The same rules, in this order, apply to the model's answer and to its paraphrase:

1. ``truncated``: generation stopped on the token limit (or on repetition). Every such
   answer read by hand was a loop cut mid-line; a cut answer is never a target, whatever
   its verdict.
2. ``copy_of_gold`` (paraphrases only): the "paraphrase" is the gold itself, or the gold
   pasted several times (the judge defines "the same": case and spaces for text, the AST
   for code). The row's source is then ``gold``, and the summary counts it as a copy.
3. ``judge_untrusted``: the verdict came from an LLM judge that failed its calibration.
4. ``wrong``: the judge's verdict is "not correct" (its rule and reason are in the
   verdict columns).
5. the task's target check (:meth:`judges.base.Judge.check_target`), e.g. GSM8K's
   ``format:no_final_line`` and ``arithmetic``.

Otherwise ``admitted``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from judges import Judge, Verdict
from pipeline.backends.base import CUT_OFF
from pipeline.stage import Stage

ADMITTED = "admitted"


@dataclass(frozen=True)
class Admission:
    admitted: bool
    rule: str
    reason: str = ""


def admit(judge: Judge, text: str | None, finish_reason: str | None, verdict: Verdict,
          example: Mapping[str, Any], gold: str, *, paraphrase: bool) -> Admission:
    """Whether ``text`` (the model's answer, or with ``paraphrase`` its rewrite of the gold)
    may be this row's training target."""
    if text is None or not text.strip():
        return Admission(False, "no_text", "nothing was generated")
    if finish_reason in CUT_OFF:
        return Admission(False, "truncated", f"generation stopped on {finish_reason}, not on "
                                             "its own: a cut-off answer is never a target")
    if paraphrase and judge.is_copy_of_gold(text, example, gold):
        return Admission(False, "copy_of_gold", "the paraphrase is the gold answer itself")
    if verdict.rule == "judge_untrusted":
        return Admission(False, "judge_untrusted", verdict.reason)
    if not verdict.correct:
        return Admission(False, "wrong", f"{verdict.rule}: {verdict.reason}".rstrip(": "))
    problem = judge.check_target(text, verdict, example)
    if problem is not None:
        return Admission(False, problem.rule, problem.reason)
    return Admission(True, ADMITTED, f"judged correct by {verdict.rule}")


def admission_columns(admissions: list[Admission | None], prefix: str) -> list[pl.Series]:
    return [
        pl.Series(f"{prefix}admitted", [a.admitted if a else None for a in admissions],
                  dtype=pl.Boolean),
        pl.Series(f"{prefix}admission_rule", [a.rule if a else None for a in admissions],
                  dtype=pl.String),
        pl.Series(f"{prefix}admission_reason", [a.reason if a else None for a in admissions],
                  dtype=pl.String),
    ]


def verdict_of(row: Mapping[str, Any], prefix: str = "") -> Verdict:
    """The judge's verdict as the judge stage stored it in ``row`` (``paraphrase_``: the
    paraphrase's)."""
    return Verdict(bool(row[f"{prefix}verdict"]), str(row[f"{prefix}judge_rule"]),
                   row[f"{prefix}judge_extracted"], row[f"{prefix}judge_reason"] or "")


class AdmitStage(Stage):
    """Admission of the model's own answers (``admit``) or, with ``paraphrase``, of the
    paraphrases (``admit_paraphrase``: only rows that were paraphrased; None elsewhere)."""

    version = "1"

    def __init__(self, judge: Judge, *, paraphrase: bool = False):
        self.judge = judge
        self.paraphrase = paraphrase
        self.name = "admit_paraphrase" if paraphrase else "admit"
        self.prefix = "paraphrase_" if paraphrase else ""
        self.columns = {f"{self.prefix}admitted": pl.Boolean,
                        f"{self.prefix}admission_rule": pl.String,
                        f"{self.prefix}admission_reason": pl.String}

    def settings(self) -> dict[str, Any]:
        return {"judge": self.judge.name, "judge_version": self.judge.version}

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        text, finish = ("paraphrase", "paraphrase_finish_reason") if self.paraphrase \
            else ("candidate", "finish_reason")
        admissions = [
            None if self.paraphrase and row["paraphrase_prompt_version"] is None
            else admit(self.judge, row[text], row[finish], verdict_of(row, self.prefix), row,
                       row["gold"], paraphrase=self.paraphrase)
            for row in frame.iter_rows(named=True)
        ]
        stats.update(f"admission_{a.rule}" for a in admissions if a is not None)
        return frame.with_columns(admission_columns(admissions, prefix=self.prefix))
