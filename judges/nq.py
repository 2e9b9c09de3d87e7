"""Natural Questions judge: alias rules first, a calibrated LLM judge for the rest.

1. Alias rules (:mod:`judges.nq_rules`, :mod:`judges.alias_proof`). Response and answer
   aliases are normalised the SQuAD way (lower case, no punctuation, no articles, single
   spaces; here also accents folded, dashes and slashes read as spaces, and decimal points
   kept). They only ever say *correct*, and only when proven:
   * ``heuristic:exact``: the response equals an alias;
   * ``heuristic:proven``: an alias sits in the response as a whole-token span, with no
     hedge, competing number or restated-question alias around it (``heuristic_verdict``),
     and the rest of the response is the question restated: no content word the question
     and the alias do not hold, nothing repeated, no echo, label or second line
     (``why_unproven``).
   An alias inside a response that is not proven is ``needs_judge`` (the name is there, the
   rest may be false); an empty response is ``empty_response``. Both are not correct.
2. LLM judge, for ``needs_judge`` and no-alias rows, in ONE batched call per ``judge_many``:
   ``prompts/nq/judge.jinja`` asks for JSON ``{"reason": str, "correct": bool}``, with
   JSON-schema guided decoding where the backend supports it (``reason`` first, so the
   model explains before it decides). Rules: ``llm:correct``, ``llm:incorrect``; a reply
   that does not parse or was cut at the token limit is ``judge_unparsed``; one whose
   reason says the opposite of its flag is ``judge_inconsistent``; a failed request is
   ``llm_error``. None of them counts as correct.
3. Trust. Before the LLM decides any row, :meth:`NqJudge.calibrate` scores it on known
   answers (:mod:`judges.calibration`); an untrusted judge decides nothing: ``needs_judge``
   rows stay so, no-alias rows get ``judge_untrusted``, and no request is sent.

A paraphrase of the gold (:meth:`NqJudge.judge_paraphrase`) must be proven by the alias
rules, whatever an LLM says (the model was given the answer), and be a statement, not an
"answer is" wrapper (:func:`judges.nq_rules.paraphrase_problem`).

The LLM is any :class:`judges.base.ChatModel` (s3ft's backends are ones): the in-process vLLM engine (the
paper judges with the model being trained) or an OpenAI-compatible server.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from judges.alias_proof import alias_verdict
from judges.base import ChatModel, ChatReply, Judge, TargetProblem, Verdict
from judges.calibration import CALIBRATION_SIZE, MIN_TNR, MIN_TPR, Calibration
from judges.nq_rows import aliases as row_aliases
from judges.nq_rules import (  # noqa: F401 (re-exported: the NQ judge's public names)
    _find_span,
    heuristic_verdict,
    normalize,
    paraphrase_problem,
    unsupported_claim,
)
from judges.templates import PromptTemplate, template

_REASON_LIMIT = 500
#: A reason that says "wrong" while the flag says correct (and the reverse): the reply
#: contradicts itself, so neither half is evidence.
_SAYS_WRONG = re.compile(r"\b(?:incorrect|not correct|wrong|does not match|doesn't match|"
                         r"do not match|is not the same|different answer|no answer)\b", re.I)
_SAYS_RIGHT = re.compile(r"\b(?:is correct|are correct|matches|same answer|is the same)\b", re.I)

#: Guided-decoding schema of the LLM judge's reply. ``reason`` first: a grammar-constrained
#: model writes properties in this order, so it reasons before it commits to a verdict.
VERDICT_SCHEMA: dict[str, Any] = {
    "title": "nq_verdict",
    "type": "object",
    "properties": {"reason": {"type": "string"}, "correct": {"type": "boolean"}},
    "required": ["reason", "correct"],
    "additionalProperties": False,
}

def parse_llm_verdict(text: str) -> tuple[bool, str] | None:
    """``(correct, reason)`` from the judge's reply, or None when it is not the JSON asked for.

    Tolerates a code fence or words around the object; ``correct`` must be a JSON boolean
    (or the string "true"/"false").
    """
    candidates = [text.strip()]
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        candidates.append(fenced.group(1).strip())
    first, last = text.find("{"), text.rfind("}")
    if 0 <= first < last:
        candidates.append(text[first:last + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        correct = data.get("correct")
        if isinstance(correct, str) and correct.strip().lower() in ("true", "false"):
            correct = correct.strip().lower() == "true"
        if isinstance(correct, bool):
            return correct, str(data.get("reason") or "").strip()
    return None


class NqJudge(Judge):
    """``judges.get("nq", chat=backend)``; without ``chat`` the heuristic alone decides, and
    what it cannot decide is ``heuristic:no_match`` (not correct)."""

    name = "nq"
    version = "6"  # 6: an alias inside an answer admits it only when proven (alias_proof)

    def __init__(self, chat: ChatModel | None = None, *, max_tokens: int = 128,
                 prompt: PromptTemplate | None = None, min_tpr: float = MIN_TPR,
                 min_tnr: float = MIN_TNR):
        self.chat = chat
        self.max_tokens = max_tokens
        self.prompt = prompt or template("nq", "judge")
        self.min_tpr = min_tpr
        self.min_tnr = min_tnr
        #: Set by :meth:`calibrate` (or from a saved record); None: not proven yet.
        self.calibration: Calibration | None = None
        #: Verdicts by rule, plus llm_requests / llm_prompt_tokens / llm_completion_tokens.
        self.usage: Counter[str] = Counter()

    def settings(self) -> dict[str, Any]:
        """What changes the verdicts besides the code: for the judge stage's cache key."""
        return {"judge_model": self.chat.model_name if self.chat else None,
                "judge_prompt": self.prompt.version, "judge_max_tokens": self.max_tokens,
                "judge_schema": VERDICT_SCHEMA, "min_tpr": self.min_tpr, "min_tnr": self.min_tnr}

    @property
    def uses_llm(self) -> bool:
        return self.chat is not None

    def judge_paraphrase(self, text: str, example: Mapping[str, Any]) -> Verdict:
        question = str(example.get("question") or "")
        verdict = alias_verdict(text or "", row_aliases(example), question)
        if verdict is None:
            return Verdict(False, "heuristic:no_match",
                           reason="a paraphrase must state a gold alias so that the alias "
                                  "heuristic finds it; this one does not")
        if verdict.rule == "empty_response":
            return verdict
        problem = paraphrase_problem(text, example)  # the specific faults first, then the proof
        if problem is not None:
            return Verdict(False, problem[0], verdict.extracted, problem[1])
        if verdict.rule == "needs_judge":
            return Verdict(False, "paraphrase:unproven", verdict.extracted, verdict.reason)
        return verdict

    def check_target(self, text: str, verdict: Verdict,
                     example: Mapping[str, Any]) -> TargetProblem | None:
        """A right answer that wraps the answer in claims the passage does not hold is no
        target (:func:`judges.nq_rules.unsupported_claim`)."""
        problem = unsupported_claim(text, example)
        return TargetProblem(*problem) if problem else None

    def calibrate(self, examples: Sequence[Mapping[str, Any]],
                  responses: Sequence[str | None]) -> Calibration | None:
        """Score the LLM judge on known-right and known-wrong answers from these rows, and
        trust it or not from now on. None (nothing to prove) without an LLM."""
        if self.chat is None:
            return None
        cases = calibration_cases(examples, responses)
        verdicts = self._ask_llm([c[0] for c in cases], [c[1] for c in cases]) if cases else []
        positives = [v for v, c in zip(verdicts, cases, strict=True) if c[2]]
        negatives = [v for v, c in zip(verdicts, cases, strict=True) if not c[2]]
        self.calibration = Calibration(
            judge_model=self.chat.model_name, positives=len(positives), negatives=len(negatives),
            true_positives=sum(v.correct for v in positives),
            true_negatives=sum(v.rule == "llm:incorrect" for v in negatives),
            unparsed=sum(not v.rule.startswith("llm") for v in verdicts),
            min_tpr=self.min_tpr, min_tnr=self.min_tnr,
            failed=sum(v.rule == "llm_error" for v in verdicts),
            first_failure=next((v.reason for v in verdicts if v.rule == "llm_error"), ""))
        return self.calibration

    def judge(self, response: str, example: Mapping[str, Any]) -> Verdict:
        return self.judge_many([response], [example])[0]

    def format_gold(self, text: str, example: Mapping[str, Any]) -> str:
        # Some aliases carry a stray trailing comma or semicolon ("Super Bowl LII,").
        return text.strip().rstrip(",;").strip()

    def check_gold(self, examples: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
        """The gold must be found by the alias heuristic alone (no LLM is asked)."""
        problems = []
        for example in examples:
            verdict = heuristic_verdict(str(example["gold"]), row_aliases(example),
                                        str(example.get("question") or ""))
            if verdict is None or not verdict.correct:
                why = verdict.reason if verdict else "no answer alias found in it"
                problems.append((str(example["id"]), f"the gold answer fails the alias judge: {why}"))
        return problems

    def judge_many(self, responses: Sequence[str | None],
                   examples: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        """Heuristic on every row, then one batched LLM call for the rows it left open."""
        if len(responses) != len(examples):
            raise ValueError(f"{len(responses)} responses for {len(examples)} examples")
        verdicts: list[Verdict | None] = []
        for response, example in zip(responses, examples, strict=True):
            if response is None:
                verdicts.append(Verdict(False, "no_response", reason="generation failed"))
            else:
                verdicts.append(alias_verdict(response, row_aliases(example),
                                              str(example.get("question") or "")))
        # Rows the alias rules could not prove: no alias at all, or one in an unproven text.
        open_rows = [i for i, v in enumerate(verdicts) if v is None or v.rule == "needs_judge"]
        if open_rows:
            if self.chat is not None and self.calibration is not None \
                    and not self.calibration.trusted:
                for i in open_rows:
                    verdicts[i] = verdicts[i] or Verdict(
                        False, "judge_untrusted", reason="no alias matched, and the LLM judge "
                        "failed its calibration: " + self.calibration.describe())
            elif self.chat is None:
                for i in open_rows:
                    verdicts[i] = verdicts[i] or Verdict(
                        False, "heuristic:no_match",
                        reason="no answer alias found; no LLM judge configured")
            else:
                llm = self._ask_llm([responses[i] for i in open_rows],  # type: ignore[misc]
                                    [examples[i] for i in open_rows])
                for i, verdict in zip(open_rows, llm, strict=True):
                    verdicts[i] = verdict
        self.usage.update(v.rule for v in verdicts)  # type: ignore[union-attr]
        return verdicts  # type: ignore[return-value]

    def _ask_llm(self, responses: list[str], examples: list[Mapping[str, Any]]) -> list[Verdict]:
        assert self.chat is not None
        conversations = [
            self.prompt.messages(question=str(example.get("question") or ""),
                                 answers=row_aliases(example), response=response)
            for response, example in zip(responses, examples, strict=True)
        ]
        self.chat.start()
        generations = self.chat.generate_json(conversations, self.max_tokens, VERDICT_SCHEMA)
        self.usage["llm_requests"] += len(generations)
        self.usage["llm_prompt_tokens"] += sum(g.prompt_tokens for g in generations)
        self.usage["llm_completion_tokens"] += sum(g.completion_tokens for g in generations)
        return [self._read(g) for g in generations]

    @staticmethod
    def _read(generation: ChatReply) -> Verdict:
        if generation.error is not None or generation.text is None:
            return Verdict(False, "llm_error",
                           reason=f"the judge call failed: {generation.error or 'no text'}")
        parsed = parse_llm_verdict(generation.text)
        if parsed is None or generation.finish_reason == "length":
            cut = " (cut off at the token limit)" if generation.finish_reason == "length" else ""
            return Verdict(False, "judge_unparsed",
                           reason=f"judge reply is not the JSON verdict asked for{cut}; not counted "
                                  f"as correct: {generation.text[:200]!r}")
        correct, reason = parsed
        if (correct and _SAYS_WRONG.search(reason)) or (not correct and _SAYS_RIGHT.search(reason)
                                                         and not _SAYS_WRONG.search(reason)):
            return Verdict(False, "judge_inconsistent",
                           reason=f"the reply's flag (correct: {str(correct).lower()}) contradicts "
                                  f"its reason: {reason[:_REASON_LIMIT]!r}")
        return Verdict(correct, "llm:correct" if correct else "llm:incorrect",
                       reason=reason[:_REASON_LIMIT])


def calibration_cases(examples: Sequence[Mapping[str, Any]], responses: Sequence[str | None],
                      size: int = CALIBRATION_SIZE) -> list[tuple[str, Mapping[str, Any], bool]]:
    """``(response, example, is_right)`` cases whose verdict is known without any label.

    Rows are taken in a fixed order (by a hash of the question), so the set does not depend
    on sharding. Positives: a model answer the heuristic matched, else the row's gold alias.
    Negatives: row i's answer (else its gold) asked against row i+1's question and aliases,
    kept only when none of row i+1's aliases appears in it at all.
    """
    import hashlib

    order = sorted(range(len(examples)), key=lambda i: hashlib.sha256(
        str(examples[i].get("question")).encode()).hexdigest())[:size + 1]
    cases: list[tuple[str, Mapping[str, Any], bool]] = []
    for position, index in enumerate(order[:size]):
        example, response = examples[index], responses[index]
        question = str(example.get("question") or "")
        matched = response is not None and bool(
            (v := alias_verdict(response, row_aliases(example), question)) and v.correct)
        cases.append((response if matched else row_aliases(example)[0], example, True))
        if len(order) < 2:
            continue
        other = examples[order[(position + 1) % len(order)]]
        wrong = response if response and response.strip() else row_aliases(example)[0]
        tokens = normalize(wrong).split()
        if not any(_find_span(normalize(a).split(), tokens) for a in row_aliases(other)
                   if normalize(a)):  # none of the other row's aliases anywhere in it
            cases.append((wrong, other, False))
    return cases
