"""Generation fanned out over a Ray cluster with Ray Data's vLLM processor (``ray.data.llm``).

Each call (a group of the pipeline's shards, see ``shards_per_call``) is one Ray Data job:
rows → ``build_processor(vLLMEngineProcessorConfig(...))`` with ``replicas`` engine replicas →
rows back in order. Ray Data has no checkpointing, so resume stays the pipeline's job: a group
is written shard by shard under the usual completion markers when its job returns, and a
killed driver loses at most the group in flight. Each job starts its engine replicas anew
(Ray Data tears its actor pool down at the end of a job), so a group should hold several
shards per replica.

Prompts are tokenised here with the same chat template as the in-process engine (too-long
prompts are caught before they reach the cluster) and sent as ``tokenized_prompt``, so both
engines see the same token ids. ``should_continue_on_error`` turns a failing request into an
error row instead of a dead job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import cached_property
from typing import Any

from pipeline.backends import device
from pipeline.backends.base import (
    Backend,
    Generation,
    Messages,
    SamplingSettings,
    Score,
    chat_token_ids,
    scoring_requests,
    tokenize_within_context,
)
from pipeline.backends.loop_guard import stopped_by_guard
from pipeline.errors import UsageError

log = logging.getLogger(__name__)

#: Environment the engine replicas need (set on the driver by device.configure_environment).
FORWARDED_ENV = ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU",
                 "VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "HF_HUB_OFFLINE", "VLLM_CONFIGURE_LOGGING")


def import_ray() -> Any:
    try:
        import ray
        import ray.data.llm  # noqa: F401  (fails early if ray[data] is incomplete)
    except ImportError as exc:
        raise UsageError(f"--engine ray needs Ray Data: pip install 's3ft[ray]' ({exc})") from None
    return ray


class RayBackend(Backend):
    scores_completions = True  # prompt_logprobs through the processor, as in-process

    def __init__(self, model_path: str, model_name: str, *, engine_kwargs: dict[str, Any],
                 address: str | None, replicas: int, tensor_parallel_size: int = 1,
                 shards_per_call: int | None = None, kv_cache_gib: int,
                 cache_root: Any = None, startup_timeout_s: int = 1800):
        if replicas < 1 or tensor_parallel_size < 1:
            raise UsageError("--replicas and --tensor-parallel-size must be at least 1")
        self.model_name = model_name
        self.model_path = model_path
        self.max_model_len = engine_kwargs["max_model_len"]
        self.address = address
        self.replicas = replicas
        self.engine_kwargs = {k: v for k, v in engine_kwargs.items() if k != "model"}
        self.engine_kwargs["tensor_parallel_size"] = tensor_parallel_size
        self.shards_per_call = shards_per_call or 2 * replicas
        self._cache_root = cache_root
        self._kv_cache_gib = kv_cache_gib
        self.startup_timeout_s = startup_timeout_s
        self.engine_starts = 0  # Ray jobs started (each starts `replicas` engines)

    @cached_property
    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.model_path)

    @cached_property
    def ray(self) -> Any:
        ray = import_ray()
        if self._cache_root is not None:
            device.configure_environment(self._cache_root, self._kv_cache_gib)
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            extra = {} if self.address else {"include_dashboard": False}  # a local one-node Ray
            ray.init(address=self.address, runtime_env={"env_vars": env}, **extra)
        return ray

    def start(self) -> None:
        _ = self.ray  # connect; the engines start inside each job

    def close(self) -> None:
        """Disconnect from the cluster (a cluster this process started is shut down)."""
        ray = self.__dict__.pop("ray", None)
        if ray is not None and ray.is_initialized():
            ray.shutdown()

    def encode(self, conversation: Messages) -> list[int]:
        return chat_token_ids(self.tokenizer, conversation)

    @staticmethod
    def _params(sampling: SamplingSettings) -> dict[str, Any]:
        params: dict[str, Any] = {
            "temperature": sampling.temperature, "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens, "stop": list(sampling.stop) or None,
            "include_stop_str_in_output": True,  # as the in-process backend
        }
        if sampling.json_schema:
            params["structured_outputs"] = {"json": sampling.json_schema}
        if sampling.loop_guard:  # the engines load the processor (device.engine_kwargs)
            params["extra_args"] = sampling.loop_guard.extra_args()
        return params

    def _processor(self, params: dict[str, Any], batch_size: int,
                   postprocess: Callable[[dict[str, Any]], dict[str, Any]] | None) -> Any:
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        gpus = self.ray.cluster_resources().get("GPU", 0)
        config = vLLMEngineProcessorConfig(
            model_source=self.model_path,
            engine_kwargs=self.engine_kwargs,
            batch_size=batch_size,
            # A fixed pool: an int would autoscale from 1 and may leave one engine doing it all.
            concurrency=(self.replicas, self.replicas),
            # One batch per replica at a time, so the first engine up cannot take every batch.
            max_tasks_in_flight_per_actor=1,
            should_continue_on_error=True,
            # Engine metrics need ray[serve]; the pipeline keeps its own counters.
            log_engine_metrics=False,
            chat_template_stage=False, tokenize_stage=False, detokenize_stage=False,
            # Without GPUs the engine stage must ask for a CPU, or it waits for a GPU forever.
            placement_group_config=None if gpus else {"bundles": [{"CPU": 1}]},
        )
        return build_processor(config, preprocess=lambda row: {
            **row, "tokenized_prompt": row["ids"], "sampling_params": dict(params)},
            postprocess=postprocess)

    def _run_job(self, rows: list[dict[str, Any]], params: dict[str, Any],
                 postprocess: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 ) -> dict[int, dict[str, Any]]:
        """One Ray Data job over ``rows`` (each with ``index`` and ``ids``): output rows by index."""
        ray = self.ray
        self.engine_starts += 1
        device.record_engine_start(f"ray job {self.model_path}", count=self.replicas)
        # One batch per replica: rows spread over the engines in a few large batches.
        batch_size = max(1, -(-len(rows) // self.replicas))
        # Dispatch only once every replica is up (Ray's default starts with the first one
        # ready, which then gets all the batches); a cluster that cannot host them all fails
        # with Ray's "Timed out while starting actors" instead of running on fewer.
        ray.data.DataContext.get_current().wait_for_min_actors_s = self.startup_timeout_s
        dataset = ray.data.from_items(rows, override_num_blocks=self.replicas)
        outputs = self._processor(params, batch_size, postprocess)(dataset).take_all()
        by_index = {int(o["index"]): o for o in outputs}
        if len(by_index) != len(rows):
            raise RuntimeError(f"Ray job returned {len(by_index)} rows for {len(rows)} requests")
        return by_index

    def _finish_reason(self, out: dict[str, Any], tokens: int, sampling: SamplingSettings) -> str:
        """The processor does not return vLLM's finish_reason: an answer that used every
        allowed token was cut off, and one the loop guard ended is told by its tokens."""
        if tokens >= sampling.max_tokens:
            return "length"
        tokens_out = out.get("generated_tokens")  # a list, or an array after Arrow
        if sampling.loop_guard and tokens_out is not None and stopped_by_guard(
                [int(t) for t in tokens_out], sampling.loop_guard, {self.tokenizer.eos_token_id}):
            return "repetition"
        return "stop"

    def generate(self, conversations: list[Messages], sampling: SamplingSettings) -> list[Generation]:
        results, runnable = tokenize_within_context(
            self.tokenizer, conversations, self.max_model_len, sampling.max_tokens)
        rows = [{"index": index, "ids": ids} for index, ids in runnable]
        if rows:
            by_index = self._run_job(rows, self._params(sampling))
            for row in rows:
                out = by_index[row["index"]]
                error = out.get("__inference_error__") or None
                tokens = int(out.get("num_generated_tokens") or 0)
                results[row["index"]] = Generation(
                    text=None if error else out["generated_text"],
                    finish_reason=None if error else self._finish_reason(out, tokens, sampling),
                    prompt_tokens=len(row["ids"]), completion_tokens=tokens,
                    error=f"engine_error: {error}" if error else None)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def score(self, conversations: list[Messages], completions: list[str]) -> list[Score | None]:
        """As the in-process engine's: one prefill per (conversation, completion) with
        ``prompt_logprobs=0``, one Ray job; the mean is taken on the engine's node, so only two
        numbers per row come back. A failed request scores None."""
        scores: list[Score | None] = [None] * len(conversations)
        todo = scoring_requests(self.tokenizer, conversations, completions, self.max_model_len)
        if not todo:
            return scores
        rows = [{"index": index, "ids": ids, "start": start} for index, start, ids in todo]
        by_index = self._run_job(rows, {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0},
                                 postprocess=_mean_completion_logprob)
        for index, _, _ in todo:
            out = by_index[index]
            if not out.get("__inference_error__") and out.get("score_tokens"):
                scores[index] = Score(float(out["score_sum"]) / int(out["score_tokens"]),
                                      int(out["score_tokens"]))
        return scores


def _mean_completion_logprob(row: dict[str, Any]) -> dict[str, Any]:
    """Ray postprocess: the summed log-prob of the completion's tokens (from ``start`` on)."""
    logprobs, ids, start = row.get("prompt_logprobs"), row["ids"], int(row["start"])
    if row.get("__inference_error__") or logprobs is None:
        return {"index": row["index"], "score_sum": None, "score_tokens": 0,
                "__inference_error__": row.get("__inference_error__") or "no prompt_logprobs"}
    total = 0.0
    for pos in range(start, len(ids)):
        total += _logprob_of(logprobs[pos], int(ids[pos]))
    return {"index": row["index"], "score_sum": total, "score_tokens": len(ids) - start,
            "__inference_error__": None}


def _logprob_of(entry: Any, token: int) -> float:
    """One prompt position's entry, {token id: {"logprob": ...}}; Ray may hand the dict over
    with its keys as strings after a trip through Arrow."""
    found = entry.get(token, entry.get(str(token))) if isinstance(entry, dict) else None
    if found is None:
        raise ValueError(f"prompt_logprobs has no entry for token {token}: {entry!r:.200}")
    return float(found["logprob"])
