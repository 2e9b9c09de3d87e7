"""Rule judges for a user's own task: ``exact``, ``regex``, ``choice`` and ``module``.

Each compares an answer read out of the response with the row's gold answer
(``gold_answer``, a template over the row; default: the gold target). Extraction is strict
first, flexible second, and the rule that decided is recorded (``strict:whole``,
``flexible:last_line``, ``regex:match``, ``choice:strict``, ...), as lm-evaluation-harness
does with its filters.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from judges.base import Judge, Verdict
from judges.nq import NqJudge
from judges.templates import gold_environment
from judges.user_code import load_callable

_ANSWER_IS = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:)\s*(.+)", re.I)
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Case, punctuation, articles and white space folded (SQuAD's normalisation)."""
    text = text.lower().translate(_PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


class GoldAnswerJudge(Judge):
    """A judge that compares against the row's gold answer (``gold_answer`` template)."""

    def __init__(self, gold_answer: str | None = None):
        self.gold_answer = gold_answer or "{{ gold }}"
        self._template = gold_environment().from_string(self.gold_answer)

    def gold(self, example: Mapping[str, Any]) -> str:
        return self._template.render(**example).strip()

    def settings(self) -> dict[str, Any]:
        return {"gold_answer": self.gold_answer}


class ExactJudge(GoldAnswerJudge):
    """Correct when the whole response (strict), or its last line or an "answer is X"
    phrase (flexible), equals the gold answer after :func:`normalize_answer`."""

    name = "exact"
    version = "1"

    def judge(self, response: str, example: Mapping[str, Any]) -> Verdict:
        gold = normalize_answer(self.gold(example))
        text = (response or "").strip()
        if not text:
            return Verdict(False, "empty_response")
        lines = [line for line in text.splitlines() if line.strip()]
        said = _ANSWER_IS.search(text)
        candidates = [("strict:whole", text), ("flexible:last_line", lines[-1]),
                      ("flexible:answer_is", said.group(1) if said else "")]
        for rule, candidate in candidates:
            if candidate and normalize_answer(candidate) == gold:
                return Verdict(True, rule, candidate.strip())
        return Verdict(False, "no_match", lines[-1].strip(), f"expected {self.gold(example)!r}")


class RegexJudge(GoldAnswerJudge):
    """The first match of ``pattern`` in the response (its ``group``: 1 when the pattern
    has a group, else the whole match), compared with the gold answer after
    :func:`normalize_answer`."""

    name = "regex"
    version = "1"
    FLAGS = {"IGNORECASE": re.I, "MULTILINE": re.M, "DOTALL": re.S}

    def __init__(self, pattern: str, gold_answer: str | None = None,
                 flags: list[str] | str | None = None, group: int | None = None):
        super().__init__(gold_answer)
        names = flags.split() if isinstance(flags, str) else list(flags or [])
        unknown = [n for n in names if n.upper() not in self.FLAGS]
        if unknown:
            raise ValueError(f"judge.flags: {unknown[0]!r} is not one of {', '.join(self.FLAGS)}")
        value = 0
        for name in names:
            value |= self.FLAGS[name.upper()]
        self.pattern = re.compile(pattern, value)
        self.group = group if group is not None else (1 if self.pattern.groups else 0)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "pattern": self.pattern.pattern, "flags": self.pattern.flags,
                "group": self.group}

    def judge(self, response: str, example: Mapping[str, Any]) -> Verdict:
        match = self.pattern.search(response or "")
        if match is None:
            return Verdict(False, "regex:no_match", None, f"no match of {self.pattern.pattern!r}")
        found = match.group(self.group) or ""
        correct = normalize_answer(found) == normalize_answer(self.gold(example))
        return Verdict(correct, "regex:match", found,
                       "" if correct else f"expected {self.gold(example)!r}, got {found!r}")


class ChoiceJudge(GoldAnswerJudge):
    """Multiple choice. The gold answer is a label (``B``), a 0-based index (``1``) or the
    text of a choice; the response's choice is read strictly ("answer is B", "B.", "(B)",
    a response that is only the label) or flexibly ("option B", the one choice text the
    response quotes). A response that lists several options, or whose label and quoted
    option text disagree, chooses nothing. ``choices`` names the variable holding the
    choice texts (optional); ``labels`` the labels in order (default ``ABCDEFGHIJ``)."""

    name = "choice"
    version = "2"

    def __init__(self, gold_answer: str | None = None, labels: str = "ABCDEFGHIJ",
                 choices: str | None = None):
        super().__init__(gold_answer)
        self.labels = str(labels)
        self.choices = choices

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "labels": self.labels, "choices": self.choices}

    def _texts(self, example: Mapping[str, Any]) -> list[str]:
        return [str(c) for c in example.get(self.choices) or []] if self.choices else []

    def gold_label(self, example: Mapping[str, Any]) -> str | None:
        gold = self.gold(example)
        texts = self._texts(example)
        if len(gold) == 1 and gold.upper() in self.labels:
            return gold.upper()
        if gold.isdigit() and int(gold) < len(self.labels):
            return self.labels[int(gold)]
        matches = [i for i, t in enumerate(texts) if normalize_answer(t) == normalize_answer(gold)]
        return self.labels[matches[0]] if len(matches) == 1 else None

    def _labels(self, example: Mapping[str, Any]) -> str:
        """The labels in play: as many as the row has choices (so with four choices, a
        standalone "I" is the pronoun, not option I)."""
        texts = self._texts(example)
        return self.labels[:len(texts)] if texts else self.labels

    def _quoted(self, text: str, example: Mapping[str, Any]) -> set[int]:
        """The choices whose text the response quotes (a text inside another quoted text,
        like "Air" in "Air is a liquid", does not count on its own)."""
        said = normalize_answer(text)
        texts = [normalize_answer(t) for t in self._texts(example)]
        found = {i for i, t in enumerate(texts) if t and re.search(rf"\b{re.escape(t)}\b", said)}
        return {i for i in found if not any(j != i and texts[i] in texts[j] for j in found)}

    def read_label(self, response: str, example: Mapping[str, Any]) -> tuple[str | None, str]:
        """The label the response chooses and the rule that read it; None with
        ``choice:several`` (it lists several options), ``choice:conflicting`` (its label and
        the option text it quotes disagree, "B. the price of boards will increase" for
        option A) or ``choice:no_answer``."""
        labels = self._labels(example)
        pattern = re.escape(labels)
        text = response.strip()
        listed = set(re.findall(rf"(?m)^\s*\(?([{pattern}])[).:]\s", text + " "))
        if len(listed) > 1:
            return None, "choice:several"
        stated, rule = None, "choice:no_answer"
        strict = (re.fullmatch(rf"\(?([{pattern}])[).:]?", text)
                  or re.search(rf"answer\s*(?:is|:)\s*\(?([{pattern}])\b", text, re.I)
                  or re.match(rf"\(?([{pattern}])[).:](?:\s|$)", text))
        if strict:
            stated, rule = strict.group(1).upper(), "choice:strict"
        else:
            marked = re.search(rf"\b(?:option|choice)\s+\(?([{pattern}])\b|\(([{pattern}])\)", text, re.I)
            if marked:
                stated, rule = next(g for g in marked.groups() if g).upper(), "choice:flexible_label"
        quoted = {labels[i] for i in self._quoted(text, example) if i < len(labels)}
        if stated is not None:
            return (stated, rule) if quoted <= {stated} else (None, "choice:conflicting")
        if len(quoted) == 1:
            return quoted.pop(), "choice:flexible_text"
        return None, "choice:several" if quoted else "choice:no_answer"

    def judge(self, response: str, example: Mapping[str, Any]) -> Verdict:
        gold = self.gold_label(example)
        if gold is None:
            return Verdict(False, "bad_gold", reason=f"gold answer {self.gold(example)!r} is not "
                                                     f"a label, an index or one choice's text")
        label, rule = self.read_label(response or "", example)
        if label is None:
            why = {"choice:several": "the response names several options",
                   "choice:conflicting": "the response's label and the option text it quotes "
                                         "disagree"}.get(rule, "no choice found in the response")
            return Verdict(False, rule, None, why)
        return Verdict(label == gold, rule, label, "" if label == gold else f"expected {gold}")


class ModuleJudge(Judge):
    """The user's own function, ``judge(response: str, row: dict) -> bool | Verdict``, from
    a Python file beside the task file. The file's content is part of the stage key."""

    name = "module"
    version = "1"

    def __init__(self, path: str, folder: Path, callable: str = "judge"):
        self.file = Path(path) if Path(path).is_absolute() else folder / path
        self.callable_name = callable
        self.fn = load_callable(f"{self.file}:{callable}", folder, f"judge {self.file}")
        self.digest = hashlib.sha256(self.file.read_bytes()).hexdigest()[:12]

    def settings(self) -> dict[str, Any]:
        return {"module": f"{self.file.name}:{self.callable_name}@{self.digest}"}

    def judge(self, response: str, example: Mapping[str, Any]) -> Verdict:
        result = self.fn(response, dict(example))
        if isinstance(result, Verdict):
            return result
        if isinstance(result, bool):
            return Verdict(result, f"module:{self.callable_name}")
        raise TypeError(f"{self.file.name}:{self.callable_name} returned {type(result).__name__}; "
                        f"it must return True/False or a judges.Verdict")


class LlmJudge(GoldAnswerJudge):
    """An LLM judge for short free-form answers against the row's gold answer
    (``gold_answer``): the NQ judge with that one reference. A response that states the
    reference plainly is decided by the alias rules; the LLM (``prompt``, rendered with
    ``question``, ``answers`` and ``response``) decides the rest, and only once it has
    passed its calibration on known-right and known-wrong answers of the run."""

    name = "llm"
    version = "1"

    def __init__(self, prompt: Any, chat: Any = None, gold_answer: str | None = None,
                 **limits: Any):
        self.inner = NqJudge(chat=chat, prompt=prompt, **limits)
        super().__init__(gold_answer)
        self.chat = chat

    @property
    def uses_llm(self) -> bool:  # type: ignore[override]
        return self.chat is not None

    @property
    def usage(self) -> Any:
        return self.inner.usage

    @property
    def calibration(self) -> Any:  # type: ignore[override]
        return self.inner.calibration

    @calibration.setter
    def calibration(self, value: Any) -> None:
        self.inner.calibration = value

    def _with_reference(self, examples: Any) -> list[dict[str, Any]]:
        return [{**e, "answers": [self.gold(e)]} for e in examples]

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), **self.inner.settings()}

    def judge(self, response: str, example: Mapping[str, Any]) -> Verdict:
        return self.judge_many([response], [example])[0]

    def judge_many(self, responses: Any, examples: Any) -> list[Verdict]:
        return self.inner.judge_many(responses, self._with_reference(examples))

    def judge_paraphrase(self, text: str, example: Mapping[str, Any]) -> Verdict:
        return self.inner.judge_paraphrase(text, self._with_reference([example])[0])

    def calibrate(self, examples: Any, responses: Any) -> Any:
        return self.inner.calibrate(self._with_reference(examples), responses)

    def check_gold(self, examples: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
        return self.inner.check_gold(self._with_reference(examples))
