"""The judge contract every task judge follows.

A judge decides whether a model response answers a task row correctly. It never raises for
a bad response (an empty or garbled answer is simply wrong, with a rule saying why); the
pipeline still guards every call, so a judge bug becomes an error row, not a dead run.

Besides correctness, a judge knows what a *training target* of its task must look like; the
admission step (:mod:`pipeline.stages.admission`) asks it through the methods below, so a task's
rules live in one class:

* :meth:`Judge.judge_paraphrase`: a paraphrase of the gold must be correct *and* faithful
  (GSM8K keeps the worked steps, NQ states a gold alias, ...). Default: :meth:`Judge.judge`.
* :meth:`Judge.check_target`: a correct text can still be a bad target (no ``#### N`` line,
  broken arithmetic on the way to the right number). Default: no check.
* :meth:`Judge.is_copy_of_gold`: a "paraphrase" that is the gold itself, or the gold
  repeated. Default: equal after normalising case and white space, or nearly so (a
  difflib ratio of ``NEAR_COPY_RATIO``).
* :meth:`Judge.format_target`: the one format every target of the task is written in
  (model, paraphrase and gold alike). Default: the text unchanged.
* :meth:`Judge.format_gold`: the gold target, from the task file's ``gold`` template.
* :meth:`Judge.check_gold`: every row's gold must pass its own judge before curation; the
  rows whose gold fails are left out of the run. Default: judge each gold target.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
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

    @property
    def undecided(self) -> bool:
        """Nothing proved the response right or wrong (``correct`` is then False by default)."""
        return self.rule in UNDECIDED_RULES


#: Rules of a verdict no rule or trusted judge decided: an answer the alias rules could not
#: prove (``needs_judge``), or one only an LLM judge that failed its calibration read
#: (``judge_untrusted``). Never a training target; in a score, not counted as correct.
UNDECIDED_RULES = ("judge_untrusted", "needs_judge")


@dataclass(frozen=True)
class TargetProblem:
    """Why a correct text is still not a usable training target: ``rule`` is recorded per
    row (e.g. ``format:no_final_line``, ``arithmetic``), ``reason`` says what was seen."""

    rule: str
    reason: str


_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Case and white space folded: what "the same text" means for copy detection."""
    return _SPACES.sub(" ", text.replace("\r\n", "\n")).strip().lower()


#: Texts this similar (difflib ratio after normalising) are the same text with a typo: a
#: paraphrase that changes one word in ten is a copy, not the model's own words.
NEAR_COPY_RATIO = 0.9


def is_near_copy(text: str, original: str) -> bool:
    """``text`` is ``original`` with at most a few characters changed."""
    from difflib import SequenceMatcher

    text, original = normalize_text(text), normalize_text(original)
    if not text or not original:
        return False
    return SequenceMatcher(None, text, original, autojunk=False).ratio() >= NEAR_COPY_RATIO


def is_repetition_of(text: str, original: str) -> bool:
    """``text`` is ``original`` itself or ``original`` written out several times in a row."""
    text, original = normalize_text(text), normalize_text(original)
    if not original:
        return False
    if text == original:
        return True
    pieces = [p.strip() for p in text.split(original)]
    return text.count(original) >= 2 and all(not p for p in pieces)


#: A paraphrase holding more than this share of the original's lines word for word is a
#: copy, whatever it adds (the gold with one line inserted, or prose pasted before it).
COPIED_LINES_SHARE = 0.5
#: Lines shorter than this (in words) are not counted: "#### 72" or "So:" prove no copying.
MIN_COPIED_LINE_WORDS = 3


def copies_most_lines(text: str, original: str) -> bool:
    """More than :data:`COPIED_LINES_SHARE` of ``original``'s lines (of at least
    :data:`MIN_COPIED_LINE_WORDS` words) appear word for word in ``text``."""
    lines = [normalize_text(line) for line in original.splitlines()]
    lines = [line for line in lines if len(line.split()) >= MIN_COPIED_LINE_WORDS]
    if not lines:
        return False
    said = normalize_text(text)
    return sum(line in said for line in lines) > COPIED_LINES_SHARE * len(lines)


class JudgeInputError(ValueError):
    """A judge's input is wrong (a template, a user's code file, a row): the message names it
    and the fix. ``exit_code`` tells a command line (s3ft's prints it as one ``error:`` line)
    that this is the user's to fix, not a bug."""

    exit_code = 2


class ChatReply(Protocol):
    """One reply of a :class:`ChatModel` (s3ft's backends return ``Generation``)."""

    text: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    error: str | None


class ChatModel(Protocol):
    """The LLM an LLM judge asks: any object with these (s3ft's vLLM, OpenAI-compatible and
    Ray backends are ones). Conversations are lists of ``{"role", "content"}`` messages."""

    model_name: str

    def start(self) -> None: ...

    def generate_json(self, conversations: Sequence[list[dict[str, str]]], max_tokens: int,
                      schema: dict[str, Any]) -> Sequence[ChatReply]:
        """Greedy replies constrained to the JSON ``schema``, one per conversation, in order."""
        ...


def _no_progress(done: int) -> None:
    """The default progress hook: judging reports nothing."""


class Judge(ABC):
    """What ``judges.get(name)`` returns. Subclasses set ``name`` and ``version``."""

    #: Called with the number of responses judged since the last call, as a slow judge
    #: (programs in a sandbox) goes; a caller sets it to drive its progress display.
    on_progress: Callable[[int], None] = staticmethod(_no_progress)

    name: str
    #: Bump when the judge's behaviour changes, so cached verdicts are recomputed.
    version: str

    @abstractmethod
    def judge(self, response: str, example: Mapping[str, Any]) -> Verdict:
        """Judge ``response`` against ``example``, the task row with its source field names."""

    def judge_many(self, responses: list[str], examples: list[Mapping[str, Any]]) -> list[Verdict]:
        """Judge a batch (a judge that can batch or parallelise overrides this)."""
        return [self.judge(r, e) for r, e in zip(responses, examples, strict=True)]

    def judge_paraphrase(self, text: str, example: Mapping[str, Any]) -> Verdict:
        """Is ``text``, a paraphrase of the gold, correct and faithful to it?"""
        return self.judge(text, example)

    def judge_paraphrases(self, texts: list[str],
                          examples: list[Mapping[str, Any]]) -> list[Verdict]:
        return [self.judge_paraphrase(t, e) for t, e in zip(texts, examples, strict=True)]

    def check_target(self, text: str, verdict: Verdict,
                     example: Mapping[str, Any]) -> TargetProblem | None:
        """Why a correct ``text`` is not a usable target, or None when it is."""
        return None

    def is_copy_of_gold(self, text: str, example: Mapping[str, Any], gold: str) -> bool:
        """``text`` is the gold answer (``gold``, the target form) copied, maybe repeated."""
        return is_repetition_of(text, gold) or is_near_copy(text, gold)

    def format_target(self, text: str, verdict: Verdict | None, example: Mapping[str, Any]) -> str:
        """``text`` written in the task's one target format."""
        return text

    def format_gold(self, text: str, example: Mapping[str, Any]) -> str:
        """The gold target written from the task file's ``gold`` template (``text``)."""
        return text.strip()

    def check_gold(self, examples: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
        """``(row id, why)`` for every row whose gold target (``gold``) fails this judge:
        a task whose gold cannot pass cannot tell a right answer from a wrong one."""
        verdicts = self.judge_many([str(e["gold"]) for e in examples], list(examples))
        return [(str(e["id"]), f"the gold answer fails the judge: {v.rule} {v.reason}".strip())
                for e, v in zip(examples, verdicts, strict=True) if not v.correct]

    def settings(self) -> dict[str, Any]:
        """What changes the verdicts besides the code: part of the judge stage's key."""
        return {}

    #: Set by a judge that asks an LLM; such a judge must prove itself (see
    #: :mod:`judges.calibration`) before it decides rows.
    uses_llm: bool = False
    #: The :class:`ChatModel` an LLM judge asks (None: no LLM). The run closes it after the
    #: stages unless it is the generation backend itself.
    chat: Any = None
    #: What the judge's LLM did this invocation (requests, tokens, rules), for
    #: ``summary.json``; None for a judge without an LLM.
    usage: Mapping[str, int] | None = None
    #: The LLM judge's calibration (None: rule-based, or not proven yet).
    calibration: Any = None

    def calibrate(self, examples: list[Mapping[str, Any]],
                  responses: list[str | None]) -> Any:
        """Score an LLM judge on known answers from these rows; None for rule judges."""
        return None
