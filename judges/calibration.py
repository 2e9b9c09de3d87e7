"""An LLM judge earns its use: it is scored on answers whose verdict is known before it
decides any row.

The calibration set is built from the run's own data, with no hand labels: known positives
(gold answers; model answers the alias heuristic matched) and known negatives (a row's
answer paired with another row's question and aliases; another row's gold). A judge whose
true-negative rate (it says "wrong" to wrong answers) or true-positive rate is under the
thresholds is not trusted: the rows it would have decided are not admitted (rule
``judge_untrusted``), and the run says so. The embedded 135M model, judging itself, says
"correct" to almost anything, so it fails here by design.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Defaults of --judge-min-tnr / --judge-min-tpr. A judge that passes one wrong answer in
#: ten would let ~10 % wrong targets in on the rows it decides; 90 % is the most we accept.
MIN_TNR = 0.9
MIN_TPR = 0.8
#: Known positives and known negatives asked (each); 40 + 40 keeps the cost of proving a
#: judge at ~80 short requests while a judge at 76 % TNR (the 135M model) is far below 90 %.
CALIBRATION_SIZE = 40


@dataclass(frozen=True)
class Calibration:
    judge_model: str
    positives: int
    negatives: int
    true_positives: int
    true_negatives: int
    unparsed: int  # replies that were not a verdict (counted as wrong answers of the judge)
    min_tpr: float
    min_tnr: float
    failed: int = 0  # requests that got no reply at all (server down, timeouts)
    first_failure: str = ""

    @property
    def unreachable(self) -> bool:
        """Most requests got no reply: the judge's figures say nothing about the judge."""
        return self.failed > (self.positives + self.negatives) / 2

    @property
    def tpr(self) -> float | None:
        return self.true_positives / self.positives if self.positives else None

    @property
    def tnr(self) -> float | None:
        return self.true_negatives / self.negatives if self.negatives else None

    @property
    def trusted(self) -> bool:
        return (self.tpr is not None and self.tnr is not None
                and self.tpr >= self.min_tpr and self.tnr >= self.min_tnr)

    def describe(self) -> str:
        """One line for the log and the summary."""
        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{100 * value:.1f}%"

        head = (f"LLM judge {self.judge_model!r}: {pct(self.tpr)} of {self.positives} known-right "
                f"answers judged right (needs {100 * self.min_tpr:.0f}%), {pct(self.tnr)} of "
                f"{self.negatives} known-wrong answers judged wrong (needs "
                f"{100 * self.min_tnr:.0f}%)")
        if self.trusted:
            return head + "; trusted."
        return (head + "; NOT trusted: the rows it would decide are not admitted "
                "(rule judge_untrusted). Use a stronger judge with --judge-base-url and "
                "--judge-model.")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tpr": self.tpr, "tnr": self.tnr, "trusted": self.trusted}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        fields = ("judge_model", "positives", "negatives", "true_positives", "true_negatives",
                  "unparsed", "min_tpr", "min_tnr", "failed", "first_failure")
        return cls(**{name: data[name] for name in fields if name in data})
