"""Select stage: the S3FT rule for the training target of every row.

the model's answer if admitted → else its paraphrase if admitted → else gold
(:mod:`pipeline.stages.admission` decides what is admitted). Every target is written in the task's
one target format (:meth:`judges.base.Judge.format_target`: e.g. MBPP code between
``[BEGIN]`` and ``[DONE]``, whoever wrote it).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from judges import Judge
from pipeline.stage import Stage
from pipeline.stages.admission import verdict_of

SOURCES = ("model", "paraphrase", "gold")


class SelectStage(Stage):
    name = "select"
    version = "2"
    columns = {"target": pl.String, "source": pl.String}
    reads = ("admitted", "candidate", "paraphrase", "paraphrase_admitted", "gold")

    def __init__(self, judge: Judge):
        self.judge = judge

    def settings(self) -> dict[str, Any]:
        return {"judge": self.judge.name, "judge_version": self.judge.version}

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        sources, targets = [], []
        for row in frame.iter_rows(named=True):
            if row["admitted"]:
                source = "model"
                target = self.judge.format_target(row["candidate"], verdict_of(row), row)
            elif row["paraphrase_admitted"]:
                source = "paraphrase"
                target = self.judge.format_target(row["paraphrase"],
                                                  verdict_of(row, "paraphrase_"), row)
            else:
                source, target = "gold", row["gold"]
            sources.append(source)
            targets.append(target)
        stats.update(f"source_{s}" for s in sources)
        return frame.with_columns(pl.Series("target", targets, dtype=pl.String),
                                  pl.Series("source", sources, dtype=pl.String))
