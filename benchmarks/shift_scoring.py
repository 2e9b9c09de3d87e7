"""Distribution-shift scoring, three ways on the same rows, side by side in one invocation.

The shift figures are each row's target and gold, scored under the base model after the row's
prompt. A curated run's rows are scored:

- **before** (:func:`score_each_prefill`, the stage's first path, kept here as it was sent):
  one prefill per (prompt, text) with ``prompt_logprobs=0``: the prompt computed once per
  text, and a vocabulary-wide log-softmax at every prompt position;
- **cold** (``VllmBackend.score``, :class:`pipeline.backends.prefix_scoring.PrefixScorer`):
  each prompt once without log-probs, each text read from the prefix cache;
- **after** (what a run does now): the generate stage answers the prompts (``--max-tokens``,
  the task's stop strings) with ``token_logprobs`` and scores every gold and answer right away
  (``generate.score_columns``: prompts from the prefix cache generation left, answers from
  generation's own log-probs), and the shift stage scores what is left (a paraphrase target,
  a model target that is not the answer generated here) cold. Timed: the scoring only, plus
  what asking for token log-probs added to generation (generation timed with and without them,
  alternating; a difference of two noisy numbers, so printed apart).

``--as-paraphrase 0.278`` gives that share of rows a paraphrase target (the run's paraphrase
of the row, where it wrote one), e.g. the mix of the full-size NQ run, so the after column is
measured at a realistic paraphrase share; a paraphrase's text is scored the same way admitted
or not. Prints seconds, the share of before, and the largest difference of a mean log-prob:

    python benchmarks/shift_scoring.py --run out/nq --rows 200 --dtype float32
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
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
    for (index, start, ids), output in zip(todo, outputs, strict=True):
        logprobs = [output.prompt_logprobs[pos][ids[pos]].logprob for pos in range(start, len(ids))]
        scores[index] = Score(sum(logprobs) / len(logprobs), len(logprobs))
    return scores


def rows_of(run: str, rows: int, as_paraphrase: float) -> list[dict[str, Any]]:
    """The first ``rows`` rows of a run (prompt, target, gold, source), the first rows with a
    paraphrase and a gold target turned into paraphrase targets until ``as_paraphrase`` of all
    rows have one."""
    import polars as pl

    frame = pl.read_parquet(f"{run}/train.parquet",
                            columns=["id", "prompt", "target", "gold", "source", "paraphrase"])
    chosen = frame.head(rows).to_dicts()
    wanted = round(as_paraphrase * len(chosen)) - sum(r["source"] == "paraphrase" for r in chosen)
    for row in chosen:
        if wanted > 0 and row["source"] == "gold" and row["paraphrase"] and row["paraphrase"] != row["gold"]:
            row["target"], row["source"], wanted = row["paraphrase"], "paraphrase", wanted - 1
    return chosen


def texts_of(rows: list[dict[str, Any]]) -> tuple[list, list[str]]:
    """What the shift stage scores: each target, and each gold that differs from it."""
    conversations, texts = [], []
    for row in rows:
        for text in dict.fromkeys([row["target"], row["gold"]]):
            conversations.append(row["prompt"])
            texts.append(text)
    return conversations, texts


def generate(backend: Any, rows: list[dict[str, Any]], sampling: Any, task: Any) -> tuple[list, float]:
    from pipeline.stages.generate import run_backend

    began = time.perf_counter()
    generations = run_backend(backend, [r["prompt"] for r in rows], sampling, Counter(), "generate",
                              task.dropped_stops)
    return generations, time.perf_counter() - began


def after(backend: Any, rows: list[dict[str, Any]], generations: list) -> tuple[dict, list, list, Counter]:
    """The generate stage's scoring, then the shift stage's (right after the generation)."""
    import polars as pl

    from pipeline.stages.generate import score_columns
    from pipeline.stages.shift import ShiftStage

    stats: Counter = Counter()
    began = time.perf_counter()
    columns = score_columns(backend, [r["prompt"] for r in rows], generations,
                            [r["gold"] for r in rows], stats)
    warm = time.perf_counter() - began
    frame = pl.DataFrame({"id": [r["id"] for r in rows], "target": [r["target"] for r in rows],
                          "gold": [r["gold"] for r in rows], "prompt": [r["prompt"] for r in rows],
                          "candidate": [g.text for g in generations]}).with_columns(columns)
    began = time.perf_counter()
    scored = ShiftStage(backend, "benchmark").process(frame, stats)
    cold = time.perf_counter() - began
    return {"generate stage": warm, "shift stage": cold}, scored["target_logprob"].to_list(), \
        scored["gold_logprob"].to_list(), stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a curated run folder (its train.parquet)")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--as-paraphrase", type=float, default=0.0,
                        help="share of rows given a paraphrase target (default: the run's own)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-tokens", type=int, help="answer length (default: the task's)")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds of each, alternating")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()

    from dataclasses import replace

    import polars as pl

    from pipeline.backends.base import SamplingSettings
    from pipeline.backends.model import DEFAULT_MODEL, cache_dir, resolve_model
    from pipeline.backends.vllm_backend import VllmBackend
    from pipeline.config import RunConfig
    from pipeline.tasks import load_task

    task = load_task(pl.read_parquet(f"{args.run}/train.parquet", columns=["task"])["task"][0])
    rows = rows_of(args.run, args.rows, args.as_paraphrase)
    conversations, texts = texts_of(rows)
    sampling = SamplingSettings(max_tokens=args.max_tokens or task.max_tokens, stop=task.stop)
    model = resolve_model(DEFAULT_MODEL)
    backend = VllmBackend(model.path, model.spec, cache_root=cache_dir(), dtype=args.dtype,
                          kv_cache_gib=RunConfig.kv_cache_gib)
    try:
        backend.score(conversations[:8], texts[:8])  # warm-up, not timed
        times: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            began = time.perf_counter()
            before = score_each_prefill(backend, conversations, texts)
            times.setdefault("before", []).append(time.perf_counter() - began)
            began = time.perf_counter()
            backend.score(conversations, texts)
            times.setdefault("cold", []).append(time.perf_counter() - began)
            _, plain = generate(backend, rows, sampling, task)
            generations, with_logprobs = generate(backend, rows, replace(sampling, token_logprobs=True), task)
            counted = dict(backend.counters)
            parts, targets, golds, stats = after(backend, rows, generations)
            sent = {k: backend.counters[k] - counted[k] for k in counted}
            times.setdefault("generation", []).append(plain)
            times.setdefault("generation with token log-probs", []).append(with_logprobs)
            for name, seconds in parts.items():
                times.setdefault(name, []).append(seconds)
    finally:
        backend.close()
    best = {name: min(values) for name, values in times.items()}
    best["after"] = best["generate stage"] + best["shift stage"]
    by_text = dict(zip(((c[-1]["content"], t) for c, t in zip(conversations, texts, strict=True)),
                       before, strict=True))
    diffs = [abs(by_text[(r["prompt"][-1]["content"], text)].mean_logprob - value)
             for r, t, g in zip(rows, targets, golds, strict=True)
             for text, value in ((r["target"], t), (r["gold"], g)) if value is not None]
    overhead = best["generation with token log-probs"] - best["generation"]
    sources = Counter(r["source"] for r in rows)
    figures = {"rows": len(rows), "texts": len(texts), "sources": dict(sources), "dtype": args.dtype,
               "seconds": best, "after_share_of_before": best["after"] / best["before"],
               "logprob_overhead_seconds": overhead,
               "after_with_overhead_share": (best["after"] + overhead) / best["before"],
               "texts_scored_in_shift_stage": stats["scored_texts"],
               "texts_scored_by_generate": stats["generate_scored_texts"],
               "max_abs_mean_logprob_diff": max(diffs), "compared": len(diffs),
               "after_requests": sent}
    print(f"{len(rows)} rows ({', '.join(f'{n} {s}' for s, n in sources.most_common())} targets), "
          f"{len(texts)} texts, {args.dtype}, best of {args.repeats}")
    for name in ("before", "cold", "generate stage", "shift stage", "after"):
        print(f"{name:>16} {best[name]:8.1f} s {best[name] / best['before']:8.1%}")
    print(f"generation {best['generation']:.1f} s, with token log-probs "
          f"{best['generation with token log-probs']:.1f} s ({overhead:+.1f} s); after with it: "
          f"{figures['after_with_overhead_share']:.1%} of before")
    print(f"shift stage scored {stats['scored_texts']} of {len(texts)} texts itself; largest mean "
          f"log-prob difference from before {max(diffs):.2e} over {len(diffs)} texts")
    print("after, what the engine was sent: " + ", ".join(f"{k} {v:,}" for k, v in sent.items()))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
