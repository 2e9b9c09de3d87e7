"""Generate stage: the base model answers every prompt (greedy), or samples ``--samples k``
answers per prompt, kept as list columns (``sample_texts``, ...) with the first in ``candidate``.

With ``score_texts`` (the run measures the distribution shift, on an engine that scores), the
stage also scores the row's gold and every answer it generated right away, while the engine
still holds their prompts (``gold_score``, ``answer_scores``): the shift stage then computes a
prompt again only for a target written later (a paraphrase). The scores are a saving, not part
of what the stage answers: they are null where they were not taken (another engine, Ray, or
``--no-measure-shift``; the shift stage scores those texts itself), and the stage's key is the
same either way, so a run resumed on another engine or with other options reuses its answers.
A shard regenerated without them differs in those columns, so the stages after it redo it."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import polars as pl

from pipeline.backends.base import Backend, Generation, SamplingSettings
from pipeline.stage import Stage, append_error
from pipeline.tasks import TaskSpec
from pipeline.text import needs_repair, safe_text

log = logging.getLogger(__name__)

MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
#: The columns of every sample of a row (``--samples`` > 1), one list entry per sample.
SAMPLE_COLUMNS = {"sample_texts": pl.List(pl.String), "sample_finish_reasons": pl.List(pl.String),
                  "sample_tokens": pl.List(pl.Int64), "sample_logprobs": pl.List(pl.Float64)}
#: A text's :class:`pipeline.backends.base.Score` in a column.
SCORE = pl.Struct({"mean_logprob": pl.Float64, "tokens": pl.Int64})
#: The columns of ``score_texts``: the gold's score, and each generated answer's (the samples').
SCORE_COLUMNS = {"gold_score": SCORE, "answer_scores": pl.List(SCORE)}


def run_backend(backend: Backend, conversations: list[list[dict[str, str]]],
                sampling: SamplingSettings, stats: Counter, prefix: str,
                drop_stops: tuple[str, ...] = ()) -> list[Any]:
    """Generate and count tokens and engine time under ``<prefix>_*`` stats keys; a stop
    string of ``drop_stops`` that ended a text is cut off it (:func:`without_stop`)."""
    if not conversations:
        return []
    backend.start()  # engine start-up is not generation time
    began = time.perf_counter()
    generations = backend.generate(conversations, sampling)
    stats[f"{prefix}_seconds"] += time.perf_counter() - began
    # A model or server may return lone surrogates, which no Parquet file can hold.
    stats["texts_repaired"] += sum(needs_repair(g.text) for g in generations)
    generations = [_repaired(g) for g in generations]
    if drop_stops:
        generations = [_without_stops(g, drop_stops) for g in generations]
    stats[f"{prefix}_prompt_tokens"] += sum(g.prompt_tokens for g in generations)
    stats[f"{prefix}_completion_tokens"] += sum(g.completion_tokens for g in generations)
    stats[f"{prefix}_errors"] += sum(g.error is not None for g in generations)
    # Every output: the samples of a row when it has several.
    outputs = [o for g in generations for o in (g.samples or (g,))]
    stats[f"{prefix}_truncated"] += sum(o.finish_reason == "length" for o in outputs)
    looped = [o for o in outputs if o.finish_reason == "repetition"]
    stats[f"{prefix}_loop_stopped"] += len(looped)
    # What those outputs would have spent without the guard, at most: the rest of their budget.
    stats[f"{prefix}_loop_tokens_saved"] += sum(sampling.max_tokens - o.completion_tokens
                                                for o in looped)
    return generations


def stops_setting(task: TaskSpec) -> dict[str, Any]:
    """The stop strings cut off generated texts, for a stage key: absent when none are (so a
    task whose stop strings all belong to its format keeps the keys it had before)."""
    return {"stops_removed": list(task.dropped_stops)} if task.dropped_stops else {}


def sample_columns(generations: list[Generation]) -> list[pl.Series]:
    """:data:`SAMPLE_COLUMNS` of each row (None for a row whose request failed)."""
    def each(read: Any) -> list[Any]:
        return [[read(s) for s in g.samples] if g.samples else None for g in generations]

    return [pl.Series("sample_texts", each(lambda s: s.text), dtype=SAMPLE_COLUMNS["sample_texts"]),
            pl.Series("sample_finish_reasons", each(lambda s: s.finish_reason),
                      dtype=SAMPLE_COLUMNS["sample_finish_reasons"]),
            pl.Series("sample_tokens", each(lambda s: s.completion_tokens),
                      dtype=SAMPLE_COLUMNS["sample_tokens"]),
            pl.Series("sample_logprobs", each(lambda s: s.mean_logprob),
                      dtype=SAMPLE_COLUMNS["sample_logprobs"])]


def without_stop(text: str | None, finish_reason: str | None, stops: tuple[str, ...]) -> str | None:
    """``text`` without the stop string of ``stops`` that ended it. The backends keep stop
    strings in the output (MBPP's ``[DONE]`` belongs to its target format); a stop string
    that does not (NQ's blank line) would otherwise be trained on as part of the answer."""
    if text is None or finish_reason != "stop":
        return text
    for stop in stops:
        if stop and text.endswith(stop):
            return text[: -len(stop)]
    return text


def _without_stops(generation: Generation, stops: tuple[str, ...]) -> Generation:
    samples = tuple(replace(s, text=without_stop(s.text, s.finish_reason, stops) or "")
                    for s in generation.samples)
    return replace(generation, text=without_stop(generation.text, generation.finish_reason, stops),
                   samples=samples)


def _repaired(generation: Generation) -> Generation:
    """The generation with lone surrogates replaced, in its text and every sample's; the
    same object when there are none (the common case: no copy per row)."""
    if not needs_repair(generation.text) and not any(needs_repair(s.text) for s in generation.samples):
        return generation
    samples = tuple(replace(s, text=safe_text(s.text)) if needs_repair(s.text) else s
                    for s in generation.samples)
    text = safe_text(generation.text) if needs_repair(generation.text) else generation.text
    return replace(generation, text=text, samples=samples)


class GenerateStage(Stage):
    name = "generate"
    version = "1"  # the stop strings cut off (``stops_removed``) are part of settings()
    columns = {
        "prompt": MESSAGES,
        "candidate": pl.String,
        "finish_reason": pl.String,
        "prompt_tokens": pl.Int64,
        "completion_tokens": pl.Int64,
        "model": pl.String,
        "prompt_version": pl.String,
    }
    reads = ("id",)  # and the task's own variables, which the load stage checked

    def __init__(self, task: TaskSpec, backend: Backend, sampling: SamplingSettings,
                 model_fingerprint: str, engine_settings: dict[str, Any], score_texts: bool = False):
        self.task = task
        self.backend = backend
        self.model_fingerprint = model_fingerprint
        self.engine_settings = engine_settings
        self.score_texts = score_texts
        # The generated tokens' log-probs score the answers without a second pass.
        self.sampling = replace(sampling, token_logprobs=True) if score_texts else sampling
        if sampling.n > 1:
            self.columns = {**self.columns, **SAMPLE_COLUMNS}
        self.columns = {**self.columns, **SCORE_COLUMNS}  # null where not taken
        if score_texts:
            self.reads = (*self.reads, "gold")

    @property
    def shards_per_call(self) -> int:
        """Shards handed to the backend at once (a Ray job per group; 1 in-process)."""
        return self.backend.shards_per_call

    def settings(self) -> dict[str, Any]:
        return {"model": self.model_fingerprint, "prompt": self.task.answer_prompt.version,
                "sampling": self.sampling.as_dict(), "engine": self.engine_settings,
                **stops_setting(self.task)}

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        template = self.task.answer_prompt
        conversations = [template.messages(**row) for row in frame.to_dicts()]
        generations = run_backend(self.backend, conversations, self.sampling, stats, "generate",
                                  self.task.dropped_stops)
        sampled = self.sampling.n > 1
        frame = frame.with_columns(
            pl.Series("prompt", conversations, dtype=MESSAGES),
            pl.Series("candidate", [g.text for g in generations], dtype=pl.String),
            pl.Series("finish_reason", [g.finish_reason for g in generations], dtype=pl.String),
            pl.Series("prompt_tokens", [g.prompt_tokens for g in generations], dtype=pl.Int64),
            # The candidate's tokens (with samples: the first one's; the stats count them all).
            pl.Series("completion_tokens", [g.samples[0].completion_tokens if g.samples
                                            else g.completion_tokens for g in generations],
                      dtype=pl.Int64),
            pl.lit(self.backend.model_name, dtype=pl.String).alias("model"),
            pl.lit(template.version, dtype=pl.String).alias("prompt_version"),
            *(sample_columns(generations) if sampled else ()),
        )
        frame = frame.with_columns(score_columns(
            self.backend, conversations, generations, frame["gold"].to_list(), stats)
            if self.score_texts else [pl.lit(None, dtype=d).alias(c) for c, d in SCORE_COLUMNS.items()])
        return append_error(frame, self.name, [g.error for g in generations])


def score_columns(backend: Backend, conversations: list[Any], generations: list[Generation],
                  golds: list[str], stats: Counter) -> list[pl.Series]:
    """:data:`SCORE_COLUMNS`: each row's gold and answers scored by the backend right after it
    generated them (:meth:`Backend.score_generated`), each distinct text of a row once."""
    texts = [dict.fromkeys([gold, *answers_of(g)]) for gold, g in zip(golds, generations, strict=True)]
    todo = [(row, text) for row, row_texts in enumerate(texts) for text in row_texts if text]
    began = time.perf_counter()
    try:
        scores = backend.score_generated([conversations[row] for row, _ in todo],
                                         [t for _, t in todo], [generations[row] for row, _ in todo])
    except Exception as error:  # noqa: BLE001 (the answers are kept: the shift stage scores them)
        log.warning("scoring %d texts after generation failed (%s: %s); the shift stage will "
                    "score them", len(todo), type(error).__name__, error)
        scores = [None] * len(todo)
        stats["generate_scoring_errors"] += 1
    stats["generate_scoring_seconds"] += time.perf_counter() - began
    stats["generate_scored_texts"] += len(todo)
    found = {(row, text): score for (row, text), score in zip(todo, scores, strict=True)}

    def as_struct(row: int, text: str | None) -> dict[str, Any] | None:
        score = found.get((row, text))
        return {"mean_logprob": score.mean_logprob, "tokens": score.tokens} if score else None

    return [pl.Series("gold_score", [as_struct(row, gold) for row, gold in enumerate(golds)],
                      dtype=SCORE_COLUMNS["gold_score"]),
            pl.Series("answer_scores", [[as_struct(row, text) for text in answers_of(g)] if g.text
                                        is not None else None for row, g in enumerate(generations)],
                      dtype=SCORE_COLUMNS["answer_scores"])]


def answers_of(generation: Generation) -> list[str | None]:
    """The texts generated for a row: every sample's, or the one answer."""
    return [s.text for s in generation.samples] if generation.samples else [generation.text]
