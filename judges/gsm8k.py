"""GSM8K judge: read the final number out of a response and compare it with the gold one.

Extraction is strict first, flexible second (as in lm-evaluation-harness), and the verdict
records which rule matched: ``strict:hash`` (``#### N``), ``strict:answer_is``,
``strict:boxed`` (balanced braces, so ``\\boxed{\\frac{1}{2}}`` reads whole), then
``flexible:last_number``. A strict rule reads a plain number first and otherwise hands its
span to Math-Verify, which reads LaTeX (``\\frac{3}{4}``, ``\\dfrac``, ``$...$``).
Typographic characters (Unicode minus and dashes, thin and non-breaking spaces, full-width
digits) are normalised before any rule runs. Equivalence (``1200`` vs ``1,200.00``, ``0.5``
vs ``1/2``) is decided by Math-Verify, not a hand-written comparator.

A training target needs more than the right number (:meth:`Gsm8kJudge.check_target`):

* ``format:no_final_line``: its last line is ``#### <number>``, as the prompts ask;
* ``arithmetic``: every written-out calculation ``a op b = c`` in it is right (a solution
  that reaches the right number through ``5 x 3 = 16`` teaches broken arithmetic), read with
  unit words set aside and ``%`` as /100 (:func:`judges.gsm8k_steps.without_units`).

A paraphrase of the gold must also keep the gold's worked steps
(:meth:`Gsm8kJudge.judge_paraphrase`): ``fidelity:too_short`` under ``MIN_LENGTH_RATIO`` of
the gold's length, ``fidelity:missing_steps`` when it works out (states after an "=", in a calculation that
is not wrong) fewer than ``MIN_STEP_COVERAGE`` of the results the gold computes (its
``<<...=r>>`` annotations, with multiplicity): "Carlos memorized 4 digits" states a result
without working it out; ``fidelity:underived`` when it calculates with a number that
neither the question, an earlier step nor its gold gives (a deleted step,
:mod:`judges.gsm8k_steps`); ``fidelity:extra_step`` when a step's result is neither one the
gold computes nor used later nor the answer (a step that leads nowhere); and then the gold's
solution calculation by calculation (``fidelity:other_calculation``, ``skipped_calculation``,
``unsupported_number``, ``other_person``: :mod:`judges.gsm8k_alignment`).
The thresholds and why they are what they are: docs/admission.md, "Paraphrase fidelity".
"""

from __future__ import annotations

import operator
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from judges.base import Judge, TargetProblem, Verdict, copies_most_lines
from judges.gsm8k_alignment import (
    Calculation,
    other_calculations,
    other_people,
    skipped_calculations,
    unsupported_numbers,
)
from judges.gsm8k_steps import (
    NOT_UNITS,
    PLAIN_NUMBER,
    gold_givens,
    number_value,
    underived_numbers,
    unneeded_results,
    without_annotations,
    without_units,
)
from judges.templates import gold_environment

# A number as people write it: optional sign, thousands separators, decimals, or a fraction.
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_PREFIX = r"[\s:*$\\]*"  # markdown bold, a colon, a dollar sign (escaped or not) before the number
_LEADING_NUMBER = re.compile(r"[\s:*$]*(?:\\\$)?[\s$]*(" + _NUMBER + r")(?![\d^{}\\])")

# Where a strict rule's answer starts; within a rule the last occurrence wins (a model may
# restate an intermediate "answer is" before the final one).
_HASH = re.compile(r"####")
_ANSWER_IS = re.compile(r"(?:final\s+)?answer\s*(?:is|:|=)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\s*\{")

#: Paraphrase fidelity (see the module docstring and docs/admission.md).
MIN_LENGTH_RATIO = 0.5
MIN_STEP_COVERAGE = 0.75

_TYPOGRAPHY = {
    "\u2212": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2010": "-", "\u2011": "-",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2007": " ", "\u200b": "",
    "\u00d7": "*", "\u00f7": "/", "\u2215": "/", "\u2044": "/",
}
_TYPOGRAPHY_RE = re.compile("|".join(map(re.escape, _TYPOGRAPHY)))
_DIGIT_GROUP_SPACE = re.compile(r"(?<=\d) (?=\d{3}\b)")  # "1 200" (a thin space once)


def normalize_typography(text: str) -> str:
    """Unicode minus/dashes -> ``-``, odd spaces -> `` ``, ``×`` -> ``*``, full-width digits
    -> ASCII (NFKC), so the rules below see numbers the way they are meant."""
    text = unicodedata.normalize("NFKC", text)
    return _TYPOGRAPHY_RE.sub(lambda m: _TYPOGRAPHY[m.group(0)], text)


def normalize_number(text: str) -> str:
    """``$1,200.00`` -> ``1200.00``; ``50%`` -> ``50``; ``3 / 4`` -> ``3/4``."""
    text = text.strip().strip("*").replace("\\$", "").replace("$", "").replace("%", "")
    text = text.replace(",", "").replace(" ", "").rstrip(".")
    return text


def extract_gold(answer: str) -> str | None:
    """The number after ``####`` in a GSM8K gold solution."""
    match = re.search(r"####\s*(.+?)\s*$", normalize_typography(answer).strip())
    if not match:
        return None
    number = _NUMBER_RE.search(match.group(1))
    return normalize_number(number.group(0)) if number else None


def _latex_value(span: str) -> str | None:
    """What Math-Verify reads in ``span`` (LaTeX or a plain expression), as a string it can
    parse again, or None."""
    from math_verify import parse

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    span = span.strip()
    if not span:
        return None
    if "\\" in span and "$" not in span:
        span = f"${span}$"
    parsed = parse(span, parsing_timeout=timeout)
    return str(parsed[1]) if len(parsed) >= 2 and str(parsed[1]).strip() else None


def _read_span(span: str) -> str | None:
    """The answer a strict rule's span starts with: a plain number, else LaTeX."""
    match = _LEADING_NUMBER.match(span)
    if match:
        return normalize_number(match.group(1))
    if "\\" in span:  # \frac{1}{2}, \dfrac, $\frac..$: Math-Verify reads it
        return _latex_value(span.split("\n", 1)[0])
    return None


def _braced(text: str, start: int) -> str | None:
    """The contents of the brace group opening at ``text[start - 1]`` (balanced), or None."""
    depth = 1
    for position in range(start, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[start:position]
    return None


def _strict(text: str) -> tuple[str | None, str | None]:
    for rule, pattern in (("strict:hash", _HASH), ("strict:answer_is", _ANSWER_IS)):
        for match in reversed(list(pattern.finditer(text))):
            span = text[match.end():].split("\n", 1)[0]
            if rule == "strict:answer_is" and span.lstrip(" :*$").startswith("\\boxed"):
                continue  # "The answer is \boxed{42}": the boxed rule reads it
            value = _read_span(span)
            if value:
                return value, rule
    for match in reversed(list(_BOXED.finditer(text))):
        content = _braced(text, match.end())
        if content is None:
            continue
        plain = _LEADING_NUMBER.fullmatch(content.strip())
        value = normalize_number(plain.group(1)) if plain else _latex_value(f"\\boxed{{{content}}}")
        if value:
            return value, "strict:boxed"
    return None, None


def extract_answer(response: str) -> tuple[str | None, str]:
    """Return ``(number, rule)``; ``number`` is None when no rule found one."""
    if not response or not response.strip():
        return None, "empty_response"
    text = normalize_typography(response)
    value, rule = _strict(text)
    if value is not None and rule is not None:
        return value, rule
    numbers = _NUMBER_RE.findall(text)
    if numbers:
        return normalize_number(numbers[-1]), "flexible:last_number"
    return None, "no_answer"


def equivalent(gold: str, predicted: str) -> bool:
    """Math-Verify equivalence of two normalized numbers (or a number and LaTeX)."""
    from math_verify import parse, verify

    # Math-Verify's timeouts use SIGALRM, which only works on the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold_parsed = parse(gold, parsing_timeout=timeout)
    predicted_parsed = parse(predicted if "\\" not in predicted or "$" in predicted
                             else f"${predicted}$", parsing_timeout=timeout)
    if not gold_parsed or not predicted_parsed:
        return False
    return bool(verify(gold_parsed, predicted_parsed, timeout_seconds=timeout))


# ---------------------------------------------------------------- what a target must be

_FINAL_LINE = re.compile(r"^\s*####\s*\$?\s*(" + _NUMBER + r")\s*\.?\s*$")
# A written-out calculation is checked only when both sides of its "=" are plain arithmetic
# (digits, operators, parentheses, "$", "%" read as /100) once unit words are set aside:
# "60 students x 2/3 = 40" (the run starts with an operator: a quantity before it), "20% of 50
# = 10", "= 5A/5", "1 1/2" are never checked, so the check errs towards passing, never towards
# failing a right solution.
_RUN_CHARS = r"[\d.,$()\s+\-*/x%]"
_LEFT_RUN = re.compile(_RUN_CHARS + r"*$")
_RIGHT_RUN = re.compile(r"^" + _RUN_CHARS + r"*")
_MIXED_NUMBER_BEFORE = re.compile(r"\d\s+(?:and)?\s*$")
# "2 hours and 30 minutes * 2": a compound quantity, not "30 * 2".
_QUANTITY_BEFORE = re.compile(r"\d%?\s+([A-Za-z]+)(?:\s+and)?\s*$")
def final_line_value(text: str) -> str | None:
    """The number on a ``#### N`` last line, or None when the last line is something else."""
    lines = [line for line in normalize_typography(text).splitlines() if line.strip()]
    match = _FINAL_LINE.match(lines[-1]) if lines else None
    return normalize_number(match.group(1)) if match else None


_OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def _evaluate(expression: str) -> Fraction | None:
    """Exact value of ``1,200 * 3 / (4 + 1)``; None for anything that is not plain arithmetic."""
    expression = expression.replace(",", "").replace("$", "").replace("x", "*")
    expression = re.sub(r"(\d*\.?\d+)\s*%", r"(\1/100)", expression)  # 24% is 24/100
    if not re.fullmatch(r"[\d.\s()+\-*/]+", expression) or "**" in expression \
            or re.search(r"\d\s+\d", expression):  # "1 1/2", "0 900": not one number
        return None
    tokens = re.findall(r"\d*\.\d+|\d+|[-+*/()]", expression)
    position = 0

    def atom() -> Fraction:
        nonlocal position
        token = tokens[position]
        position += 1
        if token == "(":
            value = sum_()
            position += 1  # ")"
            return value
        if token == "-":
            return -atom()
        return Fraction(token)

    def level(operand: Callable[[], Fraction], operators: str) -> Fraction:
        """``operand (op operand)*`` for one precedence level, left to right."""
        nonlocal position
        value = operand()
        while position < len(tokens) and tokens[position] in operators:
            apply = _OPERATORS[tokens[position]]
            position += 1
            value = apply(value, operand())
        return value

    def product() -> Fraction:
        return level(atom, "*/")

    def sum_() -> Fraction:
        return level(product, "+-")

    try:
        value = sum_()
    except (IndexError, ValueError, ZeroDivisionError):
        return None
    return value if position == len(tokens) else None


def _calculation_sides(left_text: str, right_text: str) -> tuple[str, str] | None:
    """The arithmetic just left and just right of one "=", or None when either side is not
    a whole plain-arithmetic expression."""
    left = _LEFT_RUN.search(left_text).group(0)  # type: ignore[union-attr]
    before = left_text[:len(left_text) - len(left)]
    new_clause = left.lstrip()[:1] in (".", ",", ";")  # "over 100 acts, 70 + 40 = 100"
    quantity = _QUANTITY_BEFORE.search(before)
    compound = quantity and not new_clause and quantity.group(1).lower() not in NOT_UNITS
    left = re.sub(r"^[.,;]+\s+", "", left.strip())  # ". 0900-0130": the sentence's full stop
    right_run = _RIGHT_RUN.match(right_text).group(0)  # type: ignore[union-attr]
    after = right_text[len(right_run):]
    right = right_run.strip().rstrip(".,")
    if not left or not right or left[0] in "+-*/x" or not re.search(r"\d\s*[-+*/x]\s*[\d($]", left):
        return None
    if _MIXED_NUMBER_BEFORE.search(before) or before.rstrip().endswith(("/", "*", "^")):
        return None
    glued = not right_run[-1:].isspace() and (after[:1].isalnum() or after[:1] == ":")
    if glued or re.search(r"\^$|\d:$", before.rstrip()) or compound:
        return None  # "= 5A/5", "= 6:48", "x^2", "6:00 + 48", "2 hours and 30 * 2"
    if "%" in right.rstrip("%") or re.search(r"%\s*[\d(]", left):
        return None  # "50%10", "5 % 3": not percents
    if after.lstrip().startswith(("and ", "(")):
        return None  # "17/3 = 5 and 2/3": a mixed number
    both = f"{left} {right}"
    if re.search(r"\b0\d", both) or re.search(r",(?!\d{3}(?!\d))", both) \
            or re.search(r"/\s*\d+(?:\.\d+)?\s*/", left):
        return None  # "0900-0130" (a time), "0,2" (a decimal comma), "28 / 1/5" (÷ a fraction)
    return left, right


def _matches(left: Fraction, right: Fraction, expression: str, unit: str,
             percent: bool = False) -> bool:
    """``left`` (computed) is what ``right`` (written) says, allowing rounding (1 %), a whole
    quotient ("13 / 6 = 2 full cycles"), dollars written as cents, and a percent written
    either way ("216/600*100 = 36%" and "216/600 = 36%")."""
    tolerance = Fraction(1, 100) * max(1, abs(right))
    if abs(left - right) <= tolerance:
        return True
    if percent and abs(left - right * 100) <= tolerance * 100:
        return True
    if "/" in expression and right.denominator == 1 and left >= 0 and int(left) == right:
        return True
    return unit.startswith("cent") and abs(left * 100 - right) <= tolerance


def _equalities(text: str):
    """Each "=" of ``text``: ``(text right of it, its Calculation or None)``, where the
    calculation is checked with a 1 % tolerance, for rounded divisions such as
    ``10 / 3 = 3.33``. Chains ``a + b = c + d = e`` included."""
    for index, line in enumerate(normalize_typography(text).splitlines()):
        parts = line.split("=")
        for left_text, right_text in zip(parts, parts[1:], strict=False):
            sides = _calculation_sides(without_units(left_text), right_text)
            values = (_evaluate(sides[0]), _evaluate(sides[1])) if sides else (None, None)
            if sides is None or None in values:
                yield right_text, None
                continue
            unit = right_text.strip().lstrip("$0123456789.,").strip().lower()
            # "1.2 x 100% = 120 inches", "$7500/75% = $100" (each 1 %): "%" read as a count too
            readings = {values[0], _evaluate(sides[0].replace("%", "")) if "%" in sides[0] else None}
            right = any(_matches(left, values[1], sides[0], unit, sides[1].endswith("%"))
                        for left in readings if left is not None)
            shown = " ".join(f"{sides[0]} = {sides[1]}".split())
            operands = sorted(v for n in PLAIN_NUMBER.findall(sides[0])
                              if (v := number_value(n)) is not None)
            yield right_text, Calculation(index, shown, tuple(operands), values[1], right)


def calculations(text: str) -> list[Calculation]:
    """Every written-out calculation ``a op b = c`` in ``text``."""
    return [checked for _, checked in _equalities(text) if checked is not None]


def arithmetic_errors(text: str) -> list[str]:
    """The written-out calculations in ``text`` whose result is wrong."""
    return [c.shown for c in calculations(text) if not c.right]


def _results(text: str) -> Counter[Fraction]:
    """The results ``text`` states after an "=" (``... x 8 large paintings = $480``
    counts), with multiplicity; a result of a calculation checked as wrong does not."""
    found: Counter[Fraction] = Counter()
    for right_text, checked in _equalities(text):
        match = re.match(r"\s*\$?\s*(" + _NUMBER + ")", right_text)
        if match and "/" not in match.group(1) and (checked is None or checked.right):
            found[Fraction(normalize_number(match.group(1)))] += 1
    return found


def worked_steps(gold: str) -> Counter[Fraction]:
    """The results the gold solution computes, with multiplicity: its ``<<a*b=c>>``
    calculator annotations, else its written-out calculations."""
    steps: Counter[Fraction] = Counter()
    for result in re.findall(r"<<[^<>=]*=([^<>]*)>>", gold.split("####")[0]):
        try:
            steps[Fraction(normalize_number(result))] += 1
        except (ValueError, ZeroDivisionError):
            continue
    return steps or _results(_body(gold))


def _body(text: str) -> str:
    """The solution without calculator annotations and without its ``####`` line."""
    return without_annotations(text.split("####")[0]).strip()


def _unaligned(text: str, gold: str, question: str) -> tuple[str, str] | None:
    """Why ``text`` is not the gold's solution calculation by calculation, or None
    (:mod:`judges.gsm8k_alignment`)."""
    body = _body(text)
    own, theirs = calculations(body), calculations(without_annotations(gold))
    found = other_calculations(own, theirs)
    if found:
        return ("fidelity:other_calculation", f"calculates {'; '.join(found[:3])}, which the "
                "gold never does")
    found = skipped_calculations(own, theirs)
    if found:
        return ("fidelity:skipped_calculation", f"does not write out the gold's "
                f"{'; '.join(found[:3])}")
    found = unsupported_numbers(body, question, gold, own)
    if found:
        return ("fidelity:unsupported_number", f"says {', '.join(found[:4])}, which neither "
                "the question, the gold nor a calculation gives")
    found = other_people(body, gold, question, own, theirs)
    if found:
        return ("fidelity:other_person", f"credits the gold's step to someone else: "
                f"{'; '.join(found[:2])}")
    return None


class Gsm8kJudge(Judge):
    """The ``math`` judge kind. ``gold_answer`` (a template over the row) says where the gold
    number is for a task whose answers are not GSM8K solutions: its ``#### N`` line if it has
    one, else its last number. Default: the ``answer`` field's ``#### N`` line (GSM8K).
    ``require_final_line``: a target must end with ``#### N`` (what the GSM8K prompt asks).
    ``prove_own_answers``: the model's own answer must do the gold's calculations, as a
    paraphrase must (where the gold writes any out); off, its right number, format and
    arithmetic admit it."""

    name = "gsm8k"
    # 4: a copy by lines; a paraphrase calculates only with what it derived. 5: percents and
    # units in the arithmetic check; a paraphrase's step that leads nowhere is refused. 6: a
    # paraphrase is the gold's solution calculation by calculation (judges/gsm8k_alignment.py),
    # and its words, which no rule proves, keep it out unless the task says otherwise. 7: an own
    # answer is held to the gold's calculations too (its right number alone proves little).
    version = "7"

    def __init__(self, gold_answer: str | None = None, require_final_line: bool = True,
                 admit_unproven_wording: bool = False, prove_own_answers: bool = True):
        self.gold_answer = gold_answer
        self.prove_own_answers = prove_own_answers
        self.require_final_line = require_final_line
        self.admit_unproven_wording = admit_unproven_wording
        self._gold_template = None
        if gold_answer is not None:
            self._gold_template = gold_environment().from_string(gold_answer)

    def settings(self) -> dict[str, Any]:
        if (self.gold_answer is None and self.require_final_line and not self.admit_unproven_wording
                and self.prove_own_answers):
            return {}  # the built-in GSM8K judge: no settings, as before
        return {"gold_answer": self.gold_answer, "require_final_line": self.require_final_line,
                "admit_unproven_wording": self.admit_unproven_wording,
                "prove_own_answers": self.prove_own_answers}

    def gold_number(self, example: Mapping[str, Any]) -> str | None:
        if self._gold_template is None:
            return extract_gold(str(example["answer"]))
        text = normalize_typography(self._gold_template.render(**example))
        if "####" in text:
            return extract_gold(text)
        numbers = _NUMBER_RE.findall(text)
        return normalize_number(numbers[-1]) if numbers else None

    def _solution(self, example: Mapping[str, Any]) -> str:
        """The gold solution whose worked steps a paraphrase must keep."""
        return str(example["answer"] if self._gold_template is None else example.get("gold", ""))

    def judge(self, response: str, example: Mapping[str, Any]) -> Verdict:
        gold = self.gold_number(example)
        if gold is None:
            return Verdict(False, "bad_gold", reason="gold answer has no '#### <number>' line"
                           if self._gold_template is None else "no number in the gold answer")
        predicted, rule = extract_answer(response or "")
        if predicted is None:
            return Verdict(False, rule, reason="no number found in the response")
        correct = equivalent(gold, predicted)
        reason = "" if correct else f"expected {gold}, got {predicted}"
        return Verdict(correct, rule, extracted=predicted, reason=reason)

    def judge_paraphrase(self, text: str, example: Mapping[str, Any]) -> Verdict:
        verdict = self.judge(text, example)
        if not verdict.correct:
            return verdict
        gold = self._solution(example)
        gold_body, own_body = _body(gold), _body(text)
        if len(own_body) < MIN_LENGTH_RATIO * len(gold_body):
            return Verdict(False, "fidelity:too_short", verdict.extracted,
                           f"the worked solution is {len(own_body)} characters against the "
                           f"gold's {len(gold_body)} (needs {MIN_LENGTH_RATIO:.0%})")
        problem = self._unproven_calculations(text, example)
        if problem:
            return Verdict(False, problem[0], verdict.extracted, problem[1])
        proven = ("right answer; every calculation is one of the gold's and every one the gold "
                  "writes out is here, every number given or derived")
        if not self.admit_unproven_wording:
            # The model was given the solution, so its numbers prove little about its words:
            # on fresh rows 6 of 11 paraphrases proven this far were wrong in words around
            # right calculations (docs/admission.md). No rule can read the words; nothing
            # is admitted that the pipeline cannot prove.
            return Verdict(False, "needs_judge", verdict.extracted,
                           "its words are not proven (its calculations are the gold's); the row "
                           "keeps its gold. A task that accepts the rate measured in "
                           "docs/admission.md sets judge.admit_unproven_wording: true")
        return Verdict(True, "fidelity:" + verdict.rule, verdict.extracted, proven)

    def _unproven_calculations(self, text: str, example: Mapping[str, Any]) -> tuple[str, str] | None:
        """(rule, reason) where ``text`` is not the gold's solution calculation by calculation:
        steps missing, a number from nowhere, a step that leads nowhere, a calculation the gold
        never does or one it writes out and the text skips (judges/gsm8k_alignment.py)."""
        gold = self._solution(example)
        own_body, gold_body = _body(text), _body(gold)
        steps = worked_steps(gold)
        kept = sum((steps & _results(own_body)).values())
        if steps and kept < MIN_STEP_COVERAGE * sum(steps.values()):
            missing = ", ".join(str(v) for v in sorted(steps - _results(own_body))[:6])
            return ("fidelity:missing_steps", f"works out {kept} of the gold's {sum(steps.values())} "
                    f"steps (needs {MIN_STEP_COVERAGE:.0%}); not worked out: {missing}")
        question = str(example.get("question") or "")
        skipped = underived_numbers(text, question, gold_givens(gold, question)) if question else []
        if skipped:
            return ("fidelity:underived", f"calculates with {', '.join(skipped[:4])}, which neither "
                    "the question nor an earlier step gives: a step was skipped")
        extra = unneeded_results(text, set(steps) | set(_results(gold_body)))
        if extra:
            return ("fidelity:extra_step", f"computes {', '.join(extra[:4])}, which the gold never "
                    "does and nothing later uses: a step that leads nowhere")
        return _unaligned(text, gold, question)

    def is_copy_of_gold(self, text: str, example: Mapping[str, Any], gold: str) -> bool:
        """The gold copied, or more than half of its lines word for word (calculator
        annotations aside), whatever the paraphrase adds around them."""
        return super().is_copy_of_gold(text, example, gold) or copies_most_lines(
            without_annotations(text), without_annotations(gold))

    def check_target(self, text: str, verdict: Verdict,
                     example: Mapping[str, Any]) -> TargetProblem | None:
        if self.require_final_line and final_line_value(text) is None:
            return TargetProblem("format:no_final_line",
                                 "the last line is not '#### <number>' (the answer prompt's form)")
        errors = arithmetic_errors(text)
        if errors:
            return TargetProblem("arithmetic", "wrong calculation: " + "; ".join(errors[:3]))
        own_answer = not verdict.rule.startswith("fidelity:")  # a paraphrase is proven already
        if own_answer and self.prove_own_answers and worked_steps(self._solution(example)):
            # On a fresh draw, 7 of 7 own answers with the gold's number were unsound (10 x 10
            # for rows of 12 and 8 bricks...), 3 with no arithmetic slip (docs/admission.md):
            # a 135M model reaches the number by chance as often as by reasoning.
            problem = self._unproven_calculations(text, example)
            if problem:
                return TargetProblem("own_answer:" + problem[0].removeprefix("fidelity:"),
                                     "the right number, but not by the gold's calculations, so "
                                     "nothing proves the reasoning: " + problem[1])
        return None
