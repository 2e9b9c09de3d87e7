"""A backend without a model: deterministic answers for fast tests of the stages and the run.

``FakeBackend(reply)`` answers every conversation with ``reply(conversation)``: a function of
the chat messages that returns the text, a :class:`Generation` when a test needs a finish
reason, token counts or an error, or a list of texts or :class:`Sample` s: the ``n`` samples
of ``--samples`` (cycled). A text reply counts one token per word, is cut at
``max_tokens`` words ("length") and, with the loop guard on, stopped by the guard's own rule
where it trips ("repetition"). Same conversation, same answer, in any batch: a stage test
runs the whole pipeline (:func:`pipeline.curate.run` with ``served=``) in a second, without an
engine. The real engines keep their own integration tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from pipeline.backends.base import Backend, Generation, Messages, Sample, SamplingSettings, Score
from pipeline.backends.loop_guard import loop_start
from pipeline.backends.model import ResolvedModel

Reply = Callable[[Messages], "str | Generation | list[str | Sample]"]


def last_user_message(conversation: Messages) -> str:
    """The text a reply function usually looks at: the last user turn."""
    return next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "")


def word_score(text: str) -> float:
    """The fake's mean log-prob of a text: longer words are less likely (deterministic)."""
    words = text.split()
    return -sum(len(w) for w in words) / max(1, len(words)) / 10


class FakeBackend(Backend):
    samples_per_prompt = True
    scores_completions = True
    scores_after_generation = True  # Backend.score_generated: score(), counted the same

    def __init__(self, reply: Reply, model_name: str = "fake-model", shards_per_call: int = 1,
                 score: Callable[[str], float] = word_score):
        self.reply = reply
        self.score_of = score
        self.model_name = model_name
        self.shards_per_call = shards_per_call
        self.counters: Counter[str] = Counter()
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True

    def generate(self, conversations: list[Messages], sampling: SamplingSettings) -> list[Generation]:
        self.counters["requests"] += len(conversations)
        out = []
        for conversation in conversations:
            answer = self.reply(conversation)
            if isinstance(answer, list):  # samples (cycled to n); one sample when n == 1
                answer = self._sampled(answer, conversation, sampling)
            elif isinstance(answer, str):
                answer = self._as_generation(answer, conversation, sampling)
            out.append(answer)
        return out

    @staticmethod
    def _as_generation(answer: str, conversation: Messages, sampling: SamplingSettings) -> Generation:
        words = answer.split()
        end, reason = len(words), "stop"
        if end > sampling.max_tokens:
            end, reason = sampling.max_tokens, "length"
        looped = loop_start(words[:end], sampling.loop_guard) if sampling.loop_guard else None
        if looped is not None and looped < end:
            end, reason = looped, "repetition"
        text = answer if reason == "stop" else " ".join(words[:end])
        return Generation(text, reason, prompt_tokens=len(last_user_message(conversation).split()),
                          completion_tokens=end)

    def _sampled(self, answers: list[str | Sample], conversation: Messages,
                 sampling: SamplingSettings) -> Generation:
        samples = []
        for index in range(sampling.n):
            answer = answers[index % len(answers)]
            if isinstance(answer, str):
                one = self._as_generation(answer, conversation, sampling)
                answer = Sample(one.text or "", one.finish_reason or "stop", one.completion_tokens)
            samples.append(answer)
        first = samples[0]
        return Generation(first.text, first.finish_reason,
                          prompt_tokens=len(last_user_message(conversation).split()),
                          completion_tokens=sum(s.completion_tokens for s in samples),
                          samples=tuple(samples) if sampling.n > 1 else ())

    def score(self, conversations: list[Messages], completions: list[str]) -> list[Score | None]:
        self.counters["scored"] += len(completions)
        return [Score(self.score_of(text), len(text.split())) if text else None
                for text in completions]

    def served(self) -> tuple[ResolvedModel, FakeBackend, dict[str, str]]:
        """What :func:`pipeline.curate.run` takes as ``served``: (model, backend, engine
        settings) — the fingerprint keys the stages on this fake, never on a real model."""
        model = ResolvedModel(spec=self.model_name, path=self.model_name,
                              fingerprint=f"fake:{self.model_name}")
        return model, self, {"backend": "fake"}
