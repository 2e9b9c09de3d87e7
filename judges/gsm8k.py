"""GSM8K judge: read the final number out of a response and compare it with the gold one.

Extraction is strict first, flexible second (as in lm-evaluation-harness), and the verdict
records which rule matched. Equivalence (``1200`` vs ``1,200.00``, ``0.5`` vs ``1/2``) is
decided by Math-Verify, not a hand-written comparator.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from judges.base import Verdict

# A number as people write it: optional sign, thousands separators, decimals, or a fraction.
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_PREFIX = r"[\s:*$\\]*"  # markdown bold, a colon, a dollar sign (escaped or not) before the number

# Strict rules, tried in order; within a rule the last occurrence wins (a model may restate
# an intermediate "answer is" before the final one).
_STRICT_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("strict:hash", re.compile(r"####" + _PREFIX + f"({_NUMBER})")),
    (
        "strict:answer_is",
        re.compile(r"(?:final\s+)?answer\s*(?:is|:|=)" + _PREFIX + f"({_NUMBER})", re.IGNORECASE),
    ),
    ("strict:boxed", re.compile(r"\\boxed\{" + _PREFIX + f"({_NUMBER})" + r"[^{}]*\}")),
]


def normalize_number(text: str) -> str:
    """``$1,200.00`` -> ``1200.00``; ``50%`` -> ``50``; ``3 / 4`` -> ``3/4``."""
    text = text.strip().strip("*").replace("\\$", "").replace("$", "").replace("%", "")
    text = text.replace(",", "").replace(" ", "").rstrip(".")
    return text


def extract_gold(answer: str) -> str | None:
    """The number after ``####`` in a GSM8K gold solution."""
    match = re.search(r"####\s*(.+?)\s*$", answer.strip())
    if not match:
        return None
    number = _NUMBER_RE.search(match.group(1))
    return normalize_number(number.group(0)) if number else None


def extract_answer(response: str) -> tuple[str | None, str]:
    """Return ``(number, rule)``; ``number`` is None when no rule found one."""
    if not response or not response.strip():
        return None, "empty_response"
    for rule, pattern in _STRICT_RULES:
        matches = pattern.findall(response)
        if matches:
            return normalize_number(matches[-1]), rule
    numbers = _NUMBER_RE.findall(response)
    if numbers:
        return normalize_number(numbers[-1]), "flexible:last_number"
    return None, "no_answer"


def equivalent(gold: str, predicted: str) -> bool:
    """Math-Verify equivalence of two normalized numbers."""
    from math_verify import parse, verify

    # Math-Verify's timeouts use SIGALRM, which only works on the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold_parsed = parse(gold, parsing_timeout=timeout)
    predicted_parsed = parse(predicted, parsing_timeout=timeout)
    if not gold_parsed or not predicted_parsed:
        return False
    return bool(verify(gold_parsed, predicted_parsed, timeout_seconds=timeout))


class Gsm8kJudge:
    name = "gsm8k"
    version = "1"

    def judge(self, response: str, example: Mapping[str, Any]) -> Verdict:
        gold = extract_gold(str(example["answer"]))
        if gold is None:
            return Verdict(False, "bad_gold", reason="gold answer has no '#### <number>' line")
        predicted, rule = extract_answer(response or "")
        if predicted is None:
            return Verdict(False, rule, reason="no number found in the response")
        correct = equivalent(gold, predicted)
        reason = "" if correct else f"expected {gold}, got {predicted}"
        return Verdict(correct, rule, extracted=predicted, reason=reason)
