"""Shift stage: how far each training target is from the base model's own distribution.

S3FT's argument is that training on targets the model finds likely (its own answers, its own
paraphrases) moves it less than training on gold answers, so it forgets less. This stage
measures that for every curated dataset: one prefill pass of the base model over each row's
target, and over its gold where the target is something else, gives the mean log-probability
per token of each (``target_logprob``, ``gold_logprob``). The summary compares the mix with
what plain SFT would train on (every row's gold), per source; see
:func:`pipeline.reporting.summary.shift_summary`.

The in-process engine and Ray (one more Ray Data job) score; a backend that cannot (an
OpenAI-compatible chat server) leaves the columns null and the summary says so;
``--no-measure-shift`` skips the pass.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from pipeline.backends.base import Backend
from pipeline.stage import Stage


class ShiftStage(Stage):
    name = "shift"
    version = "1"
    columns = {"target_logprob": pl.Float64, "target_scored_tokens": pl.Int64,
               "gold_logprob": pl.Float64, "gold_scored_tokens": pl.Int64}
    reads = ("target", "gold")

    def __init__(self, backend: Backend, model_fingerprint: str, enabled: bool = True):
        self.backend = backend
        self.model_fingerprint = model_fingerprint
        self.enabled = enabled and backend.scores_completions

    @property
    def shards_per_call(self) -> int:
        """As the generate stage: one scoring call (a Ray job) for a group of shards."""
        return self.backend.shards_per_call

    def settings(self) -> dict[str, Any]:
        return {"model": self.model_fingerprint, "enabled": self.enabled}

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        rows = frame.to_dicts()
        targets: list[Any] = [None] * len(rows)
        golds: list[Any] = [None] * len(rows)
        if self.enabled:
            # One request per distinct text: a row whose target is its gold is scored once.
            texts = [(i, "target", row["target"]) for i, row in enumerate(rows)]
            texts += [(i, "gold", row["gold"]) for i, row in enumerate(rows)
                      if row["gold"] != row["target"]]
            scores = self.backend.score([rows[i]["prompt"] for i, _, _ in texts],
                                        [text for _, _, text in texts])
            for (i, kind, _), score in zip(texts, scores, strict=True):
                (targets if kind == "target" else golds)[i] = score
            golds = [g if rows[i]["gold"] != rows[i]["target"] else targets[i]
                     for i, g in enumerate(golds)]
            stats["scored_texts"] += len(texts)
            stats["scored_tokens"] += sum(s.tokens for s in scores if s is not None)
            stats["not_scored"] += sum(s is None for s in scores)
        return frame.with_columns(
            pl.Series("target_logprob", [s.mean_logprob if s else None for s in targets], dtype=pl.Float64),
            pl.Series("target_scored_tokens", [s.tokens if s else None for s in targets], dtype=pl.Int64),
            pl.Series("gold_logprob", [s.mean_logprob if s else None for s in golds], dtype=pl.Float64),
            pl.Series("gold_scored_tokens", [s.tokens if s else None for s in golds], dtype=pl.Int64),
        )
