"""The rule-based half of the NQ judge: answers normalised the SQuAD way, the alias match
(``heuristic:exact``, ``heuristic:contains``) and what a paraphrase of the gold may add
(``paraphrase:*``). No LLM here; :mod:`judges.nq` asks one for what these rules leave open.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from judges.base import Verdict
from judges.nq_rows import aliases as row_aliases

#: Longest response (in normalised tokens) that containment may decide; the answer prompt
#: asks for a sentence or less, and a long answer can mention the alias among wrong claims.
MAX_CONTAINS_TOKENS = 40
#: Words that turn "contains the alias" into "may well be wrong": negation, alternatives,
#: contrast, uncertainty, lists. Normalisation has already removed apostrophes ("isn't" -> "isnt").
HEDGE_WORDS = frozenset([
    "not", "no", "never", "neither", "nor", "none", "nobody", "nothing", "cannot", "cant",
    "isnt", "wasnt", "arent", "werent", "dont", "doesnt", "didnt", "wont", "wouldnt", "hasnt",
    "havent", "hadnt", "or", "either", "but", "however", "although", "though", "instead",
    "rather", "except", "unless", "unknown", "unclear", "uncertain", "unsure", "possibly",
    "perhaps", "maybe", "probably",
    # a response that calls something wrong ("Philippe Petit ...; this answer is incorrect")
    "incorrect", "wrong", "false", "untrue", "mistaken",
    # lists of candidates ("X, along with Y and Z"): the alias is one of several answers
    "and", "also", "along", "both", "between", "versus", "vs",
])

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_SPACE_LIKE = re.compile(r"[-\u2010-\u2015\u2212/_]")  # hyphens, dashes, minus, slash, underscore
_NUMBER_TOKEN = re.compile(r"^\d[\d.:]*$")
_KEEP_BETWEEN_DIGITS = {".", ":"}  # 3.5, 9:30


def normalize(text: str) -> str:
    """SQuAD answer normalisation, plus accent folding and dashes/slashes read as spaces."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _SPACE_LIKE.sub(" ", text)
    kept = []
    for i, char in enumerate(text):
        if char in _KEEP_BETWEEN_DIGITS and 0 < i < len(text) - 1 \
                and text[i - 1].isdigit() and text[i + 1].isdigit():
            kept.append(char)
        elif char in string.punctuation or unicodedata.category(char).startswith("P"):
            continue
        else:
            kept.append(char)
    return " ".join(_ARTICLES.sub(" ", "".join(kept)).split())


def _has_digit(text: str) -> bool:
    return any(c.isdigit() for c in text)


def _find_span(needle: list[str], haystack: list[str]) -> list[int]:
    """Start positions where ``needle`` occurs in ``haystack`` as a run of whole tokens."""
    size = len(needle)
    return [i for i in range(len(haystack) - size + 1) if haystack[i:i + size] == needle]


def heuristic_verdict(response: str, answers: Sequence[str], question: str = "") -> Verdict | None:
    """A verdict when the alias match is clear, else None (the LLM judge decides)."""
    normalized = normalize(response)
    if not normalized:
        return Verdict(False, "empty_response", reason="the response is empty")
    targets = [(alias, normalize(alias)) for alias in answers]
    targets = [(alias, norm) for alias, norm in targets if norm]  # "The" would match anything
    for alias, norm in targets:
        if norm == normalized:
            return Verdict(True, "heuristic:exact", extracted=alias,
                           reason=f"the response is the answer {alias!r}")
    tokens = normalized.split()
    if len(tokens) > MAX_CONTAINS_TOKENS:
        return None
    question_tokens = normalize(question).split()
    # When some alias is a number or date, another number in the response competes with it.
    expects_number = any(_has_digit(norm) for _, norm in targets)
    known_tokens = set(question_tokens).union(*(norm.split() for _, norm in targets))
    for alias, norm in targets:
        alias_tokens = norm.split()
        if _find_span(alias_tokens, question_tokens):
            continue  # the alias is part of the question: containment proves nothing
        for start in _find_span(alias_tokens, tokens):
            end = start + len(alias_tokens)
            outside = tokens[:start] + tokens[end:]
            # "not X", "X or Y", "X, but ...": the LLM judge reads it. A hedge word the
            # question holds itself ("... of poland and the baltic republics") hedges nothing.
            if HEDGE_WORDS.intersection(outside).difference(question_tokens):
                return None
            if _has_digit(norm):
                neighbours = tokens[max(start - 1, 0):start] + tokens[end:end + 1]
                if any(_NUMBER_TOKEN.match(t) for t in neighbours):
                    continue  # "18 2017", "1 2": part of a longer number or date
            if expects_number and any(_has_digit(t) and t not in known_tokens for t in outside):
                return None  # "won Super Bowl LII in 1960", "291 episodes, and 276 ...": which?
            return Verdict(True, "heuristic:contains", extracted=alias,
                           reason=f"the response contains the answer {alias!r}")
    return None


_ANSWER_IS = re.compile(r"\b(?:correct\s+|final\s+)?answer\s*(?:is|:)\s*:?\s*(.*)", re.I | re.S)
_CLAUSE_END = re.compile(r"\b(?:which|that|who|where|because)\b|[.;!?\n](?:\s|$)", re.I)


#: Words that carry no claim of their own (a closed-book paraphrase may add them).
_FUNCTION_WORD_TEXT = """
a an the is are was were be been being am of in on at to for from by with as and or but
it its this that these those there here their they them he she his her him who whom whose
which what when where why how do does did has have had not no yes so than then also
answer correct called named known about into over after before during
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORD_TEXT.split())


def stem(token: str) -> str:
    """A crude suffix strip, so "seasons" matches "season" and "voiced" "voice"."""
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if len(token) > len(suffix) + 2 and token.endswith(suffix):
            token = token[: -len(suffix)]
            break
    return token[:-1] if len(token) > 3 and token.endswith("e") else token


def paraphrase_problem(text: str, example: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why a paraphrase that contains a gold alias is still not a faithful restatement, or
    None. The model was handed the answer; what it adds is where it goes wrong:

    * ``paraphrase:answer_is_other``: "The correct answer is the middle cranial fossa, which
      contains the pituitary gland": what it calls the answer is not the alias;
    * ``paraphrase:not_a_statement``: "The correct answer is: Ramones": the prompt's own
      words around the alias, not a statement in the model's words;
    * ``paraphrase:new_number``: "Rocky (2013)": a number found in neither the question, the
      aliases nor the passage;
    * ``paraphrase:unsupported_words``: a task without a passage (closed book) has only the
      question and the gold to check a claim against; a paraphrase that adds other content
      words ("Bobby Scott ... by the band The Black Eyre Society") is not admitted;
    * ``paraphrase:several_answers``: two different aliases (e.g. two cast members) garbled
      into one claim.
    """
    aliases = [normalize(a) for a in row_aliases(example)]
    aliases = [a for a in aliases if a]
    stated = _ANSWER_IS.search(text)
    if stated:
        clause = normalize(_CLAUSE_END.split(stated.group(1), maxsplit=1)[0]).split()
        if clause and not any(_find_span(a.split(), clause) for a in aliases):
            return ("paraphrase:answer_is_other", "what the paraphrase calls the answer ("
                    f"{' '.join(clause)[:80]!r}) is not a gold alias")
        return ("paraphrase:not_a_statement", "it wraps the answer in 'the answer is' (the "
                "prompt's words) instead of answering the question in a sentence")
    known = _row_words(example)
    new = _new_numbers(text, known)
    if new:
        return ("paraphrase:new_number", f"states {new[0]!r}, found in neither the question, "
                "the aliases nor the passage")
    tokens = normalize(text).split()
    if not str(example.get("passage") or "").strip():
        # No passage (a closed-book task): the question and the gold answer are all there
        # is to check a claim against, so a paraphrase may use only their words.
        unsupported = _unsupported_words(text, known)
        if unsupported:
            return ("paraphrase:unsupported_words", f"adds {', '.join(unsupported[:4])!s}: found "
                    "in neither the question nor the gold answer, and the task has no passage "
                    "to check them against")
    present = [a for a in aliases if _find_span(a.split(), tokens)]
    distinct = [a for a in present if not any(a != b and a in b for b in present)]
    if len(set(distinct)) > 1:
        return ("paraphrase:several_answers", "names several gold aliases of different "
                f"answers ({', '.join(sorted(set(distinct))[:3])})")
    return None


#: Content words a right answer may hold that neither the question, the passage nor the gold
#: has: one, for an inflection the crude stem misses ("came" for "come", "serving").
MAX_UNSUPPORTED_WORDS = 1


def unsupported_claim(text: str, example: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why a right answer to a reading-comprehension row is still no target, or None.

    The alias rules only check that the answer is *named*. A sampled or rambling answer often
    names it inside claims of its own ("North Carolina State defeated South Carolina", "held
    in Cannes, France, during the Fall of 2022"); trained on, those teach the model to make
    things up. With the row's passage as the evidence, a target may state no number and at
    most :data:`MAX_UNSUPPORTED_WORDS` content word found in neither the question, the
    passage nor the gold aliases. A row without a passage (closed book) has nothing to check
    a claim against, so its answers are left to the judge.
    """
    if not str(example.get("passage") or "").strip():
        return None
    known = _row_words(example)
    new = _new_numbers(text, known)
    if new:
        return ("unsupported:number", f"states {new[0]!r}, found in neither the question, the "
                "passage nor the gold aliases")
    unsupported = _unsupported_words(text, known)
    if len(unsupported) > MAX_UNSUPPORTED_WORDS:
        return ("unsupported:words", f"adds {', '.join(unsupported[:4])}: found in neither the "
                "question, the passage nor the gold aliases, so nothing shows the claim is right")
    return None


def _row_words(example: Mapping[str, Any]) -> list[str]:
    """The normalised words of what a claim can be checked against: question, passage, aliases."""
    aliases = [normalize(a) for a in row_aliases(example)]
    return normalize(" ".join([str(example.get("question") or ""),
                               str(example.get("passage") or ""), *aliases])).split()


def _new_numbers(text: str, known: list[str]) -> list[str]:
    seen = set(known)
    return [t for t in normalize(text).split() if _has_digit(t) and t not in seen]


def _unsupported_words(text: str, known: list[str]) -> list[str]:
    known_stems = {stem(t) for t in known}
    return [t for t in normalize(text).split()
            if t not in FUNCTION_WORDS and stem(t) not in known_stems]
