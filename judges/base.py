"""The judge contract every task judge follows.

A judge decides whether a model response answers a task row correctly. It never raises for
a bad response (an empty or garbled answer is simply wrong, with a rule saying why); the
pipeline still guards every call, so a judge bug becomes an error row, not a dead run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Verdict:
    """The outcome of judging one response.

    correct: the response counts as a correct answer.
    rule: which rule decided (e.g. ``strict:hash``, ``flexible:last_number``, ``pass``,
        ``timeout``) or why nothing could be decided (``no_answer``, ``empty_response``).
    extracted: the answer the judge read out of the response, if any.
    reason: a short human-readable explanation (which assert failed, the LLM's reason, ...).
    """

    correct: bool
    rule: str
    extracted: str | None = None
    reason: str = ""


class Judge(Protocol):
    """What ``judges.get(name)`` returns."""

    name: str
    #: Bump when the judge's behaviour changes, so cached verdicts are recomputed.
    version: str

    def judge(self, response: str, example: Mapping[str, Any]) -> Verdict:
        """Judge ``response`` against ``example``, the task row with its source field names."""
        ...
