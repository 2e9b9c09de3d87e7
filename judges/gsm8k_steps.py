"""Every number a GSM8K solution calculates with comes from somewhere.

A paraphrase of the gold can drop a step and still pass "the right answer, most of the
gold's results worked out": "He will read 3 books because 240 / 80 = 3" uses 240, which the
deleted line computed. :func:`underived_numbers` walks a solution's written-out calculations
in order: the numbers a calculation starts from must be given by the question (digits,
number words, "half", "a dozen", percents), computed by an earlier calculation, or one of a
few everyday constants (:data:`CONSTANTS`: 60 minutes, 12 months, 100 percent, ...); the
result then joins what is known. The final ``#### N`` must be known too (or be it in cents or dollars).
Numbers in prose ("3 books") are not read: only calculations use numbers. A gold solution
may take a number as given that this misses (a quarter's 25 cents, a result said in prose);
a paraphrase of it may take the same ones (:func:`gold_givens`).
"""

from __future__ import annotations

import re
from fractions import Fraction

#: Numbers a solution may use without the question giving them: units and everyday counts.
CONSTANTS = frozenset(Fraction(n) for n in (0, 1, 2, 3, 4, 5, 7, 10, 12, 24, 28, 30, 31, 52,
                                            60, 100, 365, 1000)) | {Fraction(1, 2), Fraction(1, 4)}
_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000, "million": 1_000_000,
    "dozen": 12, "half": 2, "twice": 2, "double": 2, "triple": 3, "thrice": 3, "quarter": 4,
    "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9,
    "tenth": 10,
}
PLAIN_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+")
_CALCULATION = re.compile(r"[\d.,$()\s+\-*/x%]*$")  # the arithmetic just left of an "="
_OPERATOR = re.compile(r"\d\s*[-+*/x]\s*[\d($]")


# Unit words: "20 pounds / 4 pound/rock = 5 rocks" is checked as "20 / 4 = 5". In the text
# left of an "=", a "per unit" ("/rock" after a word or number) goes first, then the words (one
# or two) between a number and an operator, and then the unit just before the "=". Joining
# words, number words ("2 dozen"), "x" and one-letter names ("b = ...") are never units, and
# "4 pounds - 6 ounces" (a sum of different units) is left unread.
_PER_UNIT = re.compile(r"(?<=[A-Za-z\d])/[a-z]{2,}\b")
_UNIT = r"([A-Za-z]{2,}(?:\s+[A-Za-z]{2,})?)"  # one or two words
_UNIT_BEFORE_OPERATOR = re.compile(r"(?<=\d)(%?)\s+" + _UNIT + r"(?=\s*(?:[-+*/]|x\s))")
_UNIT_AT_END = re.compile(r"(?<=\d)(%?)\s+" + _UNIT + r"\s*$")
NOT_UNITS = frozenset({
    "and", "or", "of", "per", "times", "by", "to", "is", "are", "was", "were", "be", "plus",
    "minus", "an", "the", "so", "then", "because", "since", "which", "that", "gives", "equals",
    "makes", "leaves", "left", "more", "less", "than", "each", "every", "in", "on", "at", "for",
    "from", "with", "dozen", "dozens", "half", "hundred", "hundreds", "thousand", "thousands",
    "million", "millions", "billion", "quarter", "quarters", "third", "thirds", "percent"})


def without_units(left_text: str) -> str:
    """The text left of an "=" with the unit words of its calculation set aside."""
    units: list[str] = []

    def drop(match: re.Match[str]) -> str:
        words = match.group(2).lower().split()
        if NOT_UNITS & set(words):
            return match.group(0)
        units.append(" ".join(words).rstrip("s"))
        return match.group(1) + " "

    text, per_units = _PER_UNIT.subn("", left_text)
    units += ["per"] * per_units
    text = _UNIT_BEFORE_OPERATOR.sub(drop, text)
    if not units:
        return left_text  # no quantity in units: "1/2 a cup = 4" stays as written
    text = _UNIT_AT_END.sub(drop, text)
    if len(set(units)) > 1 and re.search(r"\d\s*[-+]\s*[\d$(]", text):
        return left_text  # "4 pounds - 6 ounces = 58 ounces": not a sum of plain numbers
    return text


def without_annotations(text: str) -> str:
    """``text`` without GSM8K's calculator annotations (``<<48/2=24>>``)."""
    return re.sub(r"<<[^<>]*>>", "", text)


def number_value(text: str) -> Fraction | None:
    """``1,200`` as 1200; None for what is not a number."""
    try:
        return Fraction(text.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def given_numbers(question: str) -> set[Fraction]:
    """What the question gives: its numbers (a percent also as a share), its number words."""
    found: set[Fraction] = set()
    for match in PLAIN_NUMBER.finditer(question):
        value = number_value(match.group(0))
        if value is not None:
            found |= {value, value / 100}  # "40%", "40 percent": 40 and 0.4
    for word in re.findall(r"[a-z]+", question.lower()):
        number = _WORDS.get(word, _WORDS.get(word.rstrip("s")))
        if number:  # "a fifth", "half": the part and how many parts
            found |= {Fraction(number), 1 / Fraction(number)}
    return found


def underived_numbers(solution: str, question: str, given: frozenset[Fraction] = frozenset()
                      ) -> list[str]:
    """The numbers ``solution`` calculates with (or gives as its ``#### N``) that neither the
    question, an earlier calculation, :data:`CONSTANTS` nor ``given`` gives, in order of use.
    The ``#### N`` is never taken as a constant: "10 eggs a week ... #### 4" skipped 40 / 10.
    A paraphrase is given what the gold itself takes as given (:func:`gold_givens`)."""
    known = given_numbers(question) | given
    missing: list[str] = []
    body, _, final = without_annotations(solution).partition("####")
    for line in body.splitlines():
        parts = line.split("=")
        for left, right in zip(parts, parts[1:], strict=False):
            run = _CALCULATION.search(left).group(0)  # type: ignore[union-attr]
            if _OPERATOR.search(run):
                for number in PLAIN_NUMBER.findall(run):
                    value = number_value(number)
                    if value is not None and value not in known | CONSTANTS \
                            and number not in missing:
                        missing.append(number)
            # what the "=" gives: every number up to the next one ("= S + 143", "= $0.25")
            known |= {v for n in PLAIN_NUMBER.findall(right) if (v := number_value(n)) is not None}
    answer = PLAIN_NUMBER.search(final)
    value = number_value(answer.group(0)) if answer else None
    if value is not None and not {value, value / 100, value * 100} & known:  # dollars, cents
        missing.append(answer.group(0))  # type: ignore[union-attr]
    return missing


def unneeded_results(solution: str, needed: set[Fraction]) -> list[str]:
    """Results of ``solution``'s calculations that nothing needs: not among ``needed`` (the
    gold's results; a percent or cents either way), not used by a later calculation, not the
    ``#### N``. "the see-saw: 20 pounds / 5 rocks = 5 rocks", added after the right steps, is
    one: a step the gold does not take, leading nowhere."""
    body, _, final = without_annotations(solution).partition("####")
    answer = PLAIN_NUMBER.search(final)
    ends = {number_value(answer.group(0))} if answer else set()
    # In order: ("use", value) for each number a calculation starts from, ("result", text,
    # value) for what its "=" gives.
    events: list[tuple] = []
    for line in body.splitlines():
        parts = line.split("=")
        for left, right in zip(parts, parts[1:], strict=False):
            run = _CALCULATION.search(without_units(left)).group(0)  # type: ignore[union-attr]
            if not _OPERATOR.search(run):
                continue
            events += [("use", v) for n in PLAIN_NUMBER.findall(run) if (v := number_value(n)) is not None]
            result = re.match(r"\s*\$?\s*(" + PLAIN_NUMBER.pattern + ")", right)
            if result and (value := number_value(result.group(1))) is not None:
                events.append(("result", result.group(1), value))
    unneeded = []
    for i, event in enumerate(events):
        if event[0] != "result":
            continue
        value = event[2]
        if {value, value * 100, value / 100} & (needed | ends):
            continue
        if any(later == ("use", value) for later in events[i + 1:]):
            continue
        unneeded.append(event[1])
    return unneeded


def gold_givens(gold: str, question: str) -> frozenset[Fraction]:
    """What the gold solution calculates with without deriving it (a coin's 25 cents, "192
    minutes" said in prose): 256 of the 7,473 training solutions have some. A paraphrase may
    use them too, but not its final answer: 63 golds give theirs in prose only ("40 eggs / 10
    eggs each week, they will last 4 weeks"), and a paraphrase must work its answer out."""
    final = PLAIN_NUMBER.search(without_annotations(gold).partition("####")[2])
    answer = number_value(final.group(0)) if final else None
    return frozenset(v for n in underived_numbers(gold, question)
                     if (v := number_value(n)) is not None and v != answer)
