"""The loop guard inside vLLM's sampling loop (a v1 logits processor).

vLLM loads it by name (:data:`pipeline.backends.loop_guard.PROCESSOR`) in its engine process,
in Ray actors and in ``vllm serve --logits-processors``; the rule itself is in
:mod:`pipeline.backends.loop_guard`, which needs no vLLM.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from pipeline.backends.loop_guard import LoopGuard, RepetitionWatch


class LoopGuardProcessor(LogitsProcessor):
    """vLLM v1 logits processor: a request whose output loops may only end, now.

    Requests opt in through ``SamplingParams.extra_args`` (:meth:`LoopGuard.extra_args`);
    others are untouched, so one engine serves guarded and unguarded requests.
    """

    def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool):
        # batch index -> (watch, the request's running output tokens, the token that ends it)
        self.watched: dict[int, tuple[RepetitionWatch, list[int], int]] = {}

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        LoopGuard.from_extra_args(sampling_params.extra_args)  # malformed settings fail here

    def is_argmax_invariant(self) -> bool:
        return False  # it changes what greedy decoding picks (end-of-sequence, not the loop)

    @staticmethod
    def _new_request(params: Any, _prompt: Any, output: list[int]) -> Any:
        guard = LoopGuard.from_extra_args(params.extra_args)
        eos = params.eos_token_id
        if guard is None or eos is None:  # ignore_eos requests are never stopped early
            return None
        return RepetitionWatch(guard), output, eos

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.watched, batch_update, self._new_request)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        for index, (watch, output, eos) in self.watched.items():
            if watch.catch_up(output):
                row = logits[index]
                keep = row[eos].clone()
                row.fill_(float("-inf"))
                row[eos] = keep if torch.isfinite(keep) else 0.0
        return logits
