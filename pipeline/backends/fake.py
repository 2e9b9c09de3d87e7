"""A backend without a model: deterministic answers for fast tests of the stages and the run.

``FakeBackend(reply)`` answers every conversation with ``reply(conversation)``: a function of
the chat messages that returns the text, or a :class:`Generation` when a test needs a finish
reason, token counts or an error. Same conversation, same answer, in any batch: a stage test
runs the whole pipeline (:func:`pipeline.curate.run` with ``served=``) in a second, without an
engine. The real engines keep their own integration tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from pipeline.backends.base import Backend, Generation, Messages, SamplingSettings
from pipeline.backends.model import ResolvedModel

Reply = Callable[[Messages], "str | Generation"]


def last_user_message(conversation: Messages) -> str:
    """The text a reply function usually looks at: the last user turn."""
    return next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "")


class FakeBackend(Backend):
    def __init__(self, reply: Reply, model_name: str = "fake-model", shards_per_call: int = 1):
        self.reply = reply
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
            if isinstance(answer, str):
                words = len(answer.split())
                cut = words > sampling.max_tokens
                text = " ".join(answer.split()[:sampling.max_tokens]) if cut else answer
                answer = Generation(text, "length" if cut else "stop",
                                    prompt_tokens=len(last_user_message(conversation).split()),
                                    completion_tokens=min(words, sampling.max_tokens))
            out.append(answer)
        return out

    def served(self) -> tuple[ResolvedModel, FakeBackend, dict[str, str]]:
        """What :func:`pipeline.curate.run` takes as ``served``: (model, backend, engine
        settings) — the fingerprint keys the stages on this fake, never on a real model."""
        model = ResolvedModel(spec=self.model_name, path=self.model_name,
                              fingerprint=f"fake:{self.model_name}")
        return model, self, {"backend": "fake"}
