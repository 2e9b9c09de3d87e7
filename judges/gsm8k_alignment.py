"""A GSM8K paraphrase held against its gold calculation by calculation.

The fidelity rules of :mod:`judges.gsm8k` read results: the right answer, most of the gold's
results worked out, nothing calculated with that was not given or derived. On fresh rows
(#44) the paraphrases they admitted were still wrong in ways results cannot show, so a
paraphrase must also be the gold's solution step for step, in what it calculates:

* ``fidelity:other_calculation``: a calculation the gold never does, even with a result the
  gold has ("2 * 3 = 6 games" where the gold adds 2 + 4; "which is $40 / 2 = $20" pasted
  into a right step). Two calculations are the same step when they start from the same
  numbers (1 and 100 aside: "x 10%" is "x 10/100") and come to the same result (1 %).
* ``fidelity:skipped_calculation``: a right calculation the gold writes out and the
  paraphrase does not, even when its result turns up anyway ("800 - 700 = 100" dropped
  while 100 is known from "200 / 2 = 100"; "D2 = 625" stated instead of "644 - 19 = 625").
* ``fidelity:unsupported_number``: a number in the paraphrase that neither the question, the
  gold nor one of its own calculations gives ("A pickup truck can fill 208 gallons").
* ``fidelity:other_person``: a calculation put in the mouth of a name from the question that
  the gold's line for that calculation does not hold, where that line names someone
  ("Cassandra collected 5000 - 276 = 4724 pennies" for "James has 5000 - 276 = 4724").

What this cannot see is a wrong word around the right calculation ("Yvonne swims 10 laps,
which is 10/2 = 5 laps", said of her sister in the gold): docs/admission.md says how often
that got through on rows nobody tuned on. The calculations come from
:func:`judges.gsm8k.calculations`; this module only compares them, so it imports nothing
from the judge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fractions import Fraction
from typing import NamedTuple

from judges.gsm8k_steps import (
    CONSTANTS,
    PLAIN_NUMBER,
    given_numbers,
    number_value,
    without_annotations,
)


class Calculation(NamedTuple):
    """One written-out calculation ``a op b = c``."""

    line: int  # the index of its line in the text
    shown: str  # "a op b = c", as written (unit words set aside)
    operands: tuple[Fraction, ...]  # the numbers it starts from, sorted
    result: Fraction  # the value written right of its "="
    right: bool  # does the left side come to the result?


# "x 10%" is "x 10/100", "x 1" changes nothing: neither tells two steps apart.
_NEUTRAL_OPERANDS = frozenset({Fraction(1), Fraction(100)})

# Capitalised words that start a question's sentences without naming anyone.
_NOT_NAMES = frozenset({
    "a", "an", "the", "if", "how", "what", "which", "who", "whom", "whose", "when", "where",
    "why", "there", "here", "this", "that", "these", "those", "each", "every", "all", "some",
    "any", "both", "either", "neither", "one", "two", "three", "four", "five", "six", "seven",
    "eight", "nine", "ten", "he", "she", "they", "it", "we", "you", "i", "his", "her", "their",
    "its", "our", "your", "my", "him", "them", "us", "after", "before", "during", "while",
    "since", "until", "then", "so", "but", "and", "or", "for", "to", "in", "on", "at", "by",
    "with", "from", "of", "as", "also", "now", "today", "yesterday", "tomorrow", "last", "next",
    "first", "second", "third", "finally", "meanwhile", "however", "altogether", "together",
})


def same_step(a: Calculation, b: Calculation) -> bool:
    """Whether two calculations start from the same numbers and come to the same result."""
    def key(c: Calculation) -> list[Fraction]:
        return sorted(v for v in c.operands if v not in _NEUTRAL_OPERANDS)
    tolerance = Fraction(1, 100) * max(1, abs(b.result))
    return key(a) == key(b) and abs(a.result - b.result) <= tolerance


def other_calculations(own: Iterable[Calculation], gold: list[Calculation]) -> list[str]:
    """The paraphrase's calculations that are none of the gold's."""
    return [c.shown for c in own if not any(same_step(c, g) for g in gold)]


def skipped_calculations(own: list[Calculation], gold: Iterable[Calculation]) -> list[str]:
    """The gold's right calculations that the paraphrase does not write out."""
    return [g.shown for g in gold if g.right and not any(same_step(c, g) for c in own)]


def _numbers(text: str) -> list[tuple[str, Fraction]]:
    """Each number of ``text``: as written, and its value."""
    return [(n, v) for n in PLAIN_NUMBER.findall(text) if (v := number_value(n)) is not None]


def unsupported_numbers(text: str, question: str, gold: str,
                        own: Iterable[Calculation]) -> list[str]:
    """Numbers of ``text`` that neither the question, the gold, :data:`CONSTANTS` nor one of
    ``own`` calculations' results gives (a percent or cents either way)."""
    known = given_numbers(question) | CONSTANTS | {c.result for c in own}
    known |= {value for _, value in _numbers(without_annotations(gold))}
    unsupported: list[str] = []
    for shown, value in _numbers(text):
        if not {value, value / 100, value * 100} & known and shown not in unsupported:
            unsupported.append(shown)
    return unsupported


def names(question: str, gold: str) -> frozenset[str]:
    """The question's names: capitalised words other than the usual sentence openers, and
    never written in lower case by the question or the gold ("Every", "Then")."""
    lower = set(re.findall(r"\b[a-z]+\b", f"{question}\n{gold}"))
    return frozenset(word for word in re.findall(r"\b[A-Z][a-z]+\b", question)
                     if word.lower() not in _NOT_NAMES and word.lower() not in lower)


def other_people(text: str, gold: str, question: str, own: Iterable[Calculation],
                 gold_calculations: list[Calculation]) -> list[str]:
    """The paraphrase's calculations whose line names someone from the question that the
    gold lines holding the same calculation do not, where those lines name someone."""
    people = names(question, gold)
    own_lines = text.splitlines()
    gold_lines = without_annotations(gold).splitlines()

    def named(line: str) -> set[str]:
        return set(re.findall(r"\b[A-Z][a-z]+\b", line)) & people

    found: list[str] = []
    for c in own:
        homes = {g.line for g in gold_calculations if same_step(c, g)}
        theirs = set().union(*(named(gold_lines[i]) for i in homes if i < len(gold_lines)))
        mine = named(own_lines[c.line]) if c.line < len(own_lines) else set()
        if theirs and mine - theirs:
            found.append(f"{', '.join(sorted(mine - theirs))}: {c.shown}")
    return found
