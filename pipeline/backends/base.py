"""What a generation backend takes and returns.

A backend turns a batch of chat conversations into one :class:`Generation` each, in order.
It never raises for a single bad request: that row gets ``error`` set and ``text=None``, so
one failure becomes an error row instead of a dead run.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.backends.loop_guard import LoopGuard

Messages = list[dict[str, str]]  # [{"role": "user", "content": "..."}, ...]


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling parameters shared by every backend (one greedy answer by default, as S3FT
    prescribes; ``n`` > 1 samples several per prompt)."""

    max_tokens: int = 384
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    #: Constrain the output to this JSON schema (guided decoding), e.g. for LLM-judge verdicts.
    json_schema: dict[str, Any] | None = field(default=None, hash=False)
    #: Stop a generation that loops (finish_reason "repetition"); None: run to the limit.
    loop_guard: LoopGuard | None = None
    #: Samples per prompt, each with its mean token log-prob (:attr:`Generation.samples`).
    n: int = 1
    top_k: int = 0  # 0: off
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    #: When sampling (temperature > 0): the run's seed; each prompt's samples are drawn from a
    #: seed derived from it and the prompt (:func:`request_seed`), so a resumed or re-sharded
    #: run draws the same ones.
    seed: int | None = None
    #: Return each generated token's log-prob (:attr:`Generation.generated`): the texts are
    #: then scored without computing their tokens again (:meth:`Backend.score_generated`).
    token_logprobs: bool = False

    def as_dict(self) -> dict:
        """The settings, as stage keys and ``run.json`` record them. The sampling fields are
        left out while they have their defaults, so a greedy run keys its stages as before
        they existed and reuses the shards of earlier versions."""
        settings = asdict(self)
        for name, default in _SAMPLING_DEFAULTS.items():
            if settings[name] == default:
                del settings[name]
        # How the texts come back, not which: the same answers, and so the same keys, whether
        # or not their token log-probs were asked for.
        del settings["token_logprobs"]
        return settings


#: The fields added for ``--samples`` (see :meth:`SamplingSettings.as_dict`).
_SAMPLING_DEFAULTS = {"n": 1, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0, "seed": None}


def request_seed(seed: int, key: str) -> int:
    """A per-request seed from the run's seed and what identifies the request (a row id, a
    prompt): the same samples whatever batch or shard the request lands in."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class Sample:
    """One of the ``n`` answers to a prompt."""

    text: str
    finish_reason: str
    completion_tokens: int
    #: Mean log-probability per token under the model (raw logits: before temperature).
    mean_logprob: float | None = None


@dataclass(frozen=True)
class Score:
    """How likely the model finds a given reply: mean log-probability per token."""

    mean_logprob: float
    tokens: int


@dataclass(frozen=True)
class GeneratedTokens:
    """One generated text as the engine produced it: its token ids and each one's log-prob
    under the model (raw logits), before any text was cut off it (a stop string)."""

    ids: tuple[int, ...]
    logprobs: tuple[float, ...]

    def known_prefix(self, tokens: list[int]) -> list[float]:
        """The log-probs of the longest start of ``tokens`` that this text also starts with:
        the same tokens after the same prompt, so the same log-probs."""
        known = []
        for token, generated, logprob in zip(tokens, self.ids, self.logprobs, strict=False):
            if token != generated:
                break
            known.append(logprob)
        return known


#: Finish reasons of a generation that did not end on its own (the token limit, the loop guard).
CUT_OFF = frozenset({"length", "repetition"})


@dataclass(frozen=True)
class Generation:
    text: str | None
    #: "stop", "length", "repetition" (the loop guard stopped it), or None when it failed
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0  # with samples: all of them together
    error: str | None = None
    #: With ``SamplingSettings.n`` > 1, every sample, the first one also in ``text``.
    samples: tuple[Sample, ...] = ()
    #: With ``SamplingSettings.token_logprobs``, each text's tokens and log-probs (one per
    #: sample; the first is ``text``'s).
    generated: tuple[GeneratedTokens, ...] = ()


class Backend(ABC):
    """What the generate and paraphrase stages (and an LLM judge) call. Every hook the run
    uses is here, with its default; a backend overrides what it has."""

    #: Identifies the model in provenance columns (Hub id, folder, or served model name).
    model_name: str
    #: Shards the generate and paraphrase stages hand over at once (a Ray job per group).
    shards_per_call: int = 1
    #: Engines started so far (``summary.json``: a resumed run that starts none says so).
    engine_starts: int = 0
    #: What the backend counted (requests, cache hits, retries, ...) for ``summary.json``;
    #: None when it counts nothing.
    counters: Mapping[str, int] | None = None
    #: Whether it answers ``SamplingSettings.n`` > 1 with ``n`` samples per prompt (the run
    #: refuses ``--samples`` on a backend that does not, before any work).
    samples_per_prompt: bool = False

    #: Whether :meth:`score` works (it needs the model's log-probs of a given text: the
    #: in-process engine has them, an OpenAI-compatible chat server does not).
    scores_completions: bool = False

    def score(self, conversations: list[Messages], completions: list[str]) -> list[Score | None]:
        """The model's mean log-prob per token of each completion as the reply to its
        conversation (None where it cannot be scored, e.g. too long for the context)."""
        raise NotImplementedError(f"{type(self).__name__} cannot score completions "
                                  f"(scores_completions is False)")

    #: Whether :meth:`score_generated` costs less than :meth:`score` right after generating:
    #: the generate stage then scores the texts it knows (the gold, its answers) at once.
    scores_after_generation: bool = False

    def score_generated(self, conversations: list[Messages], completions: list[str],
                        generations: list[Generation | None]) -> list[Score | None]:
        """:meth:`score`, called right after :meth:`generate` answered these conversations
        (``generations``: each completion's row's answer, or None). A backend whose engine
        still holds the prompts it just computed reads them from there, and takes a
        completion's tokens that agree with a generated text from its log-probs
        (:attr:`Generation.generated`). Default: :meth:`score`."""
        return self.score(conversations, completions)

    def start(self) -> None:  # noqa: B027 (an optional hook: most backends need no start)
        """Get ready to serve (start an engine, open a client); idempotent. Default: nothing."""

    @abstractmethod
    def generate(self, conversations: list[Messages], sampling: SamplingSettings) -> list[Generation]:
        """One :class:`Generation` per conversation, same order; never raises for one bad
        request (that row's ``error`` is set instead)."""


    def generate_json(self, conversations: Sequence[Messages], max_tokens: int,
                      schema: dict[str, Any]) -> list[Generation]:
        """Greedy replies constrained to the JSON ``schema`` (guided decoding): what an LLM
        judge asks (:class:`judges.base.ChatModel`)."""
        return self.generate(list(conversations),
                             SamplingSettings(max_tokens=max_tokens, json_schema=schema))
    def close(self) -> None:  # noqa: B027 (an optional hook)
        """Free the engine or client (the run calls it once, before export). Default: nothing."""


def chat_token_ids(tokenizer: Any, conversation: Messages) -> list[int]:
    """Token ids of the conversation under the model's chat template, ready to answer."""
    return list(tokenizer.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=False))


def scoring_requests(tokenizer: Any, conversations: list[Messages], completions: list[str],
                     max_model_len: int) -> list[tuple[int, int, list[int]]]:
    """The token ids to prefill for :meth:`Backend.score`: [(index, where the completion
    starts, prompt + completion ids)], leaving out empty completions and those that do not fit
    the context (their score is None)."""
    requests = []
    for index, (conversation, text) in enumerate(zip(conversations, completions, strict=True)):
        prompt = chat_token_ids(tokenizer, conversation)
        reply = tokenizer(text or "", add_special_tokens=False)["input_ids"]
        if reply and len(prompt) + len(reply) < max_model_len:
            requests.append((index, len(prompt), prompt + reply))
    return requests


def tokenize_within_context(tokenizer: Any, conversations: list[Messages], max_model_len: int,
                            max_tokens: int) -> tuple[list[Generation | None], list[tuple[int, list[int]]]]:
    """Tokenise every conversation; one whose prompt leaves no room for ``max_tokens`` becomes
    an error :class:`Generation` here, with the tokenizer, instead of the engine failing the
    whole batch. Returns (results with those errors filled in, [(index, ids)] to generate)."""
    results: list[Generation | None] = [None] * len(conversations)
    runnable: list[tuple[int, list[int]]] = []
    budget = max_model_len - max_tokens
    for index, conversation in enumerate(conversations):
        ids = chat_token_ids(tokenizer, conversation)
        if len(ids) > budget:
            results[index] = Generation(
                None, None, prompt_tokens=len(ids),
                error=f"prompt_too_long: {len(ids)} prompt tokens > {budget} allowed "
                      f"(max_model_len {max_model_len} - max_tokens {max_tokens})")
        else:
            runnable.append((index, ids))
    return results, runnable
