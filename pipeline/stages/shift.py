"""Shift stage: how far each training target is from the base model's own distribution.

S3FT's argument is that training on targets the model finds likely (its own answers, its own
paraphrases) moves it less than training on gold answers, so it forgets less. This stage
measures that for every curated dataset: the base model's mean log-probability per token of
each row's target and of its gold (``target_logprob``, ``gold_logprob``). The summary compares the mix with
what plain SFT would train on (every row's gold), per source; see
:func:`pipeline.reporting.summary.shift_summary`.

Most texts were scored already: the generate stage scores each row's gold and answers while
the engine still holds their prompts (``gold_score``, ``answer_scores``), so this stage looks
those up and scores only the rest (a paraphrase, an answer rewritten in the task's target
format), one prompt each. On 200 NQ rows both stages together took 21 % of the time this stage
took scoring everything, 30 % with a paraphrase target on 28 % of the rows: a paraphrase's
prompt is computed again (``benchmarks/shift_scoring.py``, docs/evaluation.md).

The in-process engine and Ray (one more Ray Data job, every text) score; a backend that cannot
(an OpenAI-compatible chat server) leaves the columns null and the summary says so;
``--no-measure-shift`` skips the pass.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from pipeline.backends.base import Backend, Score
from pipeline.stage import Stage


class ShiftStage(Stage):
    name = "shift"
    version = "2"  # 2: reads the scores the generate stage took
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
            known = [scored_already(row) for row in rows]
            # One request per distinct text not scored yet: a row whose target is its gold is
            # scored once.
            texts = [(i, text) for i, row in enumerate(rows)
                     for text in dict.fromkeys([row["target"], row["gold"]]) if text not in known[i]]
            scores = self.backend.score([rows[i]["prompt"] for i, _ in texts],
                                        [t for _, t in texts]) if texts else []
            for (i, text), score in zip(texts, scores, strict=True):
                known[i][text] = score
            targets = [known[i][row["target"]] for i, row in enumerate(rows)]
            golds = [known[i][row["gold"]] for i, row in enumerate(rows)]
            stats["scored_texts"] += len(texts)
            stats["texts_scored_by_generate"] += sum(
                len(dict.fromkeys([row["target"], row["gold"]])) for row in rows) - len(texts)
            stats["scored_tokens"] += sum(s.tokens for s in scores if s is not None)
            stats["not_scored"] += sum(s is None for s in scores)
        return frame.with_columns(
            pl.Series("target_logprob", [s.mean_logprob if s else None for s in targets], dtype=pl.Float64),
            pl.Series("target_scored_tokens", [s.tokens if s else None for s in targets], dtype=pl.Int64),
            pl.Series("gold_logprob", [s.mean_logprob if s else None for s in golds], dtype=pl.Float64),
            pl.Series("gold_scored_tokens", [s.tokens if s else None for s in golds], dtype=pl.Int64),
        )


def scored_already(row: dict[str, Any]) -> dict[str, Score | None]:
    """{text: Score} for the texts the generate stage scored for this row (its gold, its
    answers: :data:`pipeline.stages.generate.SCORE_COLUMNS`). A null score (the text did not
    fit the context, or scoring failed there) is left out: this stage tries it again."""
    if "gold_score" not in row:
        return {}
    # With samples, ``candidate`` is the picked one by now; ``sample_texts`` are as generated.
    answers = row.get("sample_texts") or [row["candidate"]]
    pairs = [(row["gold"], row["gold_score"]),
             *zip(answers, row["answer_scores"] or (), strict=False)]
    return {text: Score(score["mean_logprob"], score["tokens"]) for text, score in pairs if score}
