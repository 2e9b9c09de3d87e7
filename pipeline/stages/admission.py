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
3. ``judge_untrusted``: the verdict came from an LLM judge that failed its calibration;
   ``needs_judge``: the rules found the answer named but could not prove the rest of the
   text right, and no trusted judge read it.
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
    if verdict.undecided:
        return Admission(False, verdict.rule, verdict.reason)
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

    def __init__(self, judge: Judge, *, paraphrase: bool = False, samples: int = 1,
                 pick: str = "likeliest"):
        self.judge = judge
        self.paraphrase = paraphrase
        self.samples = samples  # answers per prompt (--samples): one of them is picked
        self.pick = pick
        self.name = "admit_paraphrase" if paraphrase else "admit"
        self.prefix = "paraphrase_" if paraphrase else ""
        self.columns = {f"{self.prefix}admitted": pl.Boolean,
                        f"{self.prefix}admission_rule": pl.String,
                        f"{self.prefix}admission_reason": pl.String}
        if samples > 1 and not paraphrase:
            self.columns.update(PICK_COLUMNS)
        verdicts = tuple(f"{self.prefix}{c}" for c in ("verdict", "judge_rule", "judge_extracted",
                                                        "judge_reason"))
        self.reads = ("gold", *verdicts) + (
            ("paraphrase", "paraphrase_finish_reason", "paraphrase_prompt_version") if paraphrase
            else ("candidate", "finish_reason"))
        if samples > 1 and not paraphrase:
            self.reads += ("sample_texts", "sample_verdicts", "sample_judge_rules")

    def settings(self) -> dict[str, Any]:
        settings = {"judge": self.judge.name, "judge_version": self.judge.version}
        if self.judge.settings():  # options a target check reads (e.g. math's prove_own_answers)
            settings["judge_settings"] = self.judge.settings()
        if self.samples > 1 and not self.paraphrase:
            settings["pick"] = self.pick
        return settings

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        if self.samples > 1 and not self.paraphrase:
            return pick_samples(self.judge, frame, self.pick, stats)
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


#: What the pick adds to a row of samples (``--samples`` > 1).
PICK_COLUMNS = {"sample_admission_rules": pl.List(pl.String), "correct_samples": pl.Int64,
                "admitted_samples": pl.Int64, "picked_sample": pl.Int64}
#: The columns that describe the candidate: with samples, the picked sample's values.
_CANDIDATE = {"candidate": "sample_texts", "finish_reason": "sample_finish_reasons",
              "completion_tokens": "sample_tokens", "verdict": "sample_verdicts",
              "judge_rule": "sample_judge_rules", "judge_extracted": "sample_judge_extracted",
              "judge_reason": "sample_judge_reasons"}


def pick(rule: str, texts: list[str], logprobs: list[float | None], tokens: list[int],
         admitted: list[int]) -> int | None:
    """The sample that becomes the target, among the admitted ones (their indexes)."""
    if not admitted:
        return None
    if rule == "first":
        return admitted[0]
    if rule == "shortest":
        return min(admitted, key=lambda j: (tokens[j], j))
    # likeliest: the highest mean token log-prob (a sample without one ranks last).
    return max(admitted, key=lambda j: (logprobs[j] if logprobs[j] is not None else float("-inf"), -j))


def pick_samples(judge: Judge, frame: pl.DataFrame, rule: str, stats: Counter) -> pl.DataFrame:
    """Admit every sample of every row, then pick one admitted sample per row (``rule``).
    The candidate columns (text, finish reason, tokens, verdict) then describe the picked
    sample; a row with none admitted keeps its first sample, and is paraphrased."""
    rows = frame.to_dicts()
    out: dict[str, list[Any]] = {name: [] for name in (*_CANDIDATE, *PICK_COLUMNS)}
    admissions: list[Admission] = []
    for row in rows:
        texts = row["sample_texts"] or []
        decisions = [admit(judge, texts[j], row["sample_finish_reasons"][j],
                           Verdict(bool(row["sample_verdicts"][j]), row["sample_judge_rules"][j],
                                   row["sample_judge_extracted"][j],
                                   row["sample_judge_reasons"][j] or ""),
                           row, row["gold"], paraphrase=False) for j in range(len(texts))]
        chosen = pick(rule, texts, row["sample_logprobs"] or [], row["sample_tokens"] or [],
                      [j for j, d in enumerate(decisions) if d.admitted])
        shown = 0 if chosen is None else chosen
        for name, source in _CANDIDATE.items():
            out[name].append(row[source][shown] if texts else row[name])
        out["sample_admission_rules"].append([d.rule for d in decisions] if texts else None)
        out["correct_samples"].append(sum(bool(v) for v in row["sample_verdicts"] or []))
        out["admitted_samples"].append(sum(d.admitted for d in decisions))
        out["picked_sample"].append(chosen)
        admissions.append(decisions[shown] if decisions else admit(
            judge, row["candidate"], row["finish_reason"], verdict_of(row), row, row["gold"],
            paraphrase=False))
    stats.update(f"admission_{a.rule}" for a in admissions)
    # pass@1 (the first sample, as one sampled answer would be), pass@k, and admitted@k.
    stats["rows_sampled"] += len(rows)
    stats["first_sample_correct"] += sum(bool((r["sample_verdicts"] or [False])[0]) for r in rows)
    stats["any_sample_correct"] += sum(any(r["sample_verdicts"] or []) for r in rows)
    stats["rows_with_an_admitted_sample"] += sum(p is not None for p in out["picked_sample"])
    dtypes = {**{name: frame.schema[name] for name in _CANDIDATE}, **PICK_COLUMNS}
    return frame.with_columns(
        *(pl.Series(name, values, dtype=dtypes[name]) for name, values in out.items()),
        *admission_columns(admissions, prefix=""))
