"""Select stage: the S3FT rule for the training target of every row.

model answer if judged correct → else the paraphrase if its verdict is correct → else gold.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

SOURCES = ("model", "paraphrase", "gold")


class SelectStage:
    name = "select"
    version = "1"
    columns = {"target": pl.String, "source": pl.String}

    def settings(self) -> dict[str, Any]:
        return {}

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        model_ok = pl.col("verdict").fill_null(False) & pl.col("candidate").is_not_null()
        paraphrase_ok = (pl.col("paraphrase_verdict").fill_null(False)
                         & pl.col("paraphrase").is_not_null())
        frame = frame.with_columns(
            pl.when(model_ok).then(pl.lit("model"))
            .when(paraphrase_ok).then(pl.lit("paraphrase"))
            .otherwise(pl.lit("gold")).alias("source"),
        ).with_columns(
            pl.when(pl.col("source") == "model").then(pl.col("candidate"))
            .when(pl.col("source") == "paraphrase").then(pl.col("paraphrase"))
            .otherwise(pl.col("gold")).alias("target"),
        )
        for source, count in frame["source"].value_counts().iter_rows():
            stats[f"source_{source}"] += count
        return frame
