"""Export stage: ``train.parquet`` in TRL's conversational prompt/completion form.

:class:`ExportStage` writes each shard's rows in the train schema (a stage like the others:
resumable, keyed); :func:`build_train_table` and :func:`write_train` join its shards into the
one file.

Every row carries the gold answer, the candidate with its verdict, the paraphrase with its
verdict and the selected target, so SFT, SDFT and S3FT trainings are column choices on the
same file, not reruns.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.stage import Shard, Stage
from pipeline.stages.generate import MESSAGES
from pipeline.storage import atomic_write_bytes

_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])

TRAIN_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("task", pa.string()),
    ("prompt", pa.list_(_MESSAGE)),
    ("completion", pa.list_(_MESSAGE)),
    ("source", pa.string()),  # model | paraphrase | gold
    ("target", pa.string()),
    ("gold", pa.string()),
    ("candidate", pa.string()),
    ("verdict", pa.bool_()),
    ("judge_rule", pa.string()),
    ("judge_reason", pa.string()),
    ("admitted", pa.bool_()),  # the candidate may be the target (pipeline/stages/admission.py)
    ("admission_rule", pa.string()),
    ("admission_reason", pa.string()),
    ("paraphrase", pa.string()),
    ("paraphrase_verdict", pa.bool_()),
    ("paraphrase_judge_rule", pa.string()),
    ("paraphrase_judge_reason", pa.string()),
    ("paraphrase_admitted", pa.bool_()),
    ("paraphrase_admission_rule", pa.string()),
    ("paraphrase_admission_reason", pa.string()),
    ("finish_reason", pa.string()),
    ("paraphrase_finish_reason", pa.string()),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("paraphrase_tokens", pa.int64()),
    ("error", pa.string()),
    ("model", pa.string()),
    ("prompt_version", pa.string()),
    ("paraphrase_prompt_version", pa.string()),
    # --samples: how many answers were sampled, how many were judged correct, which one is
    # `candidate` (null: none admitted), and the sampling settings (JSON).
    ("samples", pa.int64()),
    ("correct_samples", pa.int64()),
    ("picked_sample", pa.int64()),
    ("sampling", pa.string()),
    # The base model's mean log-prob per token of the target and of the gold
    # (pipeline/stages/shift.py; null where not measured).
    ("target_logprob", pa.float64()),
    ("target_scored_tokens", pa.int64()),
    ("gold_logprob", pa.float64()),
    ("gold_scored_tokens", pa.int64()),
])


class ExportStage(Stage):
    """Every row in the train schema: the target as the assistant's completion, the task's
    name, and the columns of :data:`TRAIN_SCHEMA` (the stage keeps those, in that order)."""

    name = "export"
    version = "1"
    columns = {"task": pl.String, "completion": MESSAGES, "samples": pl.Int64,
               "correct_samples": pl.Int64, "picked_sample": pl.Int64, "sampling": pl.String}
    reads = ("target", "verdict", "admitted")

    def __init__(self, task: str, sampling: dict[str, Any] | None = None):
        self.task = task
        #: How answers were sampled (recorded in every row's ``sampling``).
        self.sampling = json.dumps(sampling or {}, sort_keys=True)

    def settings(self) -> dict[str, Any]:
        return {"task": self.task, "schema": TRAIN_SCHEMA.names, "sampling": self.sampling}

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        if "picked_sample" not in frame.columns:  # one answer per prompt
            frame = frame.with_columns(
                pl.lit(1, dtype=pl.Int64).alias("samples"),
                pl.col("verdict").fill_null(False).cast(pl.Int64).alias("correct_samples"),
                pl.when(pl.col("admitted")).then(0).otherwise(None).cast(pl.Int64)
                .alias("picked_sample"))
        else:
            frame = frame.with_columns(pl.col("sample_texts").list.len().fill_null(0)
                                       .cast(pl.Int64).alias("samples"))
        frame = frame.with_columns(
            pl.lit(self.sampling).alias("sampling"),
            pl.lit(self.task).alias("task"),
            pl.concat_list(
                pl.struct(pl.lit("assistant").alias("role"), pl.col("target").alias("content"))
            ).alias("completion"),
        )
        stats["exported"] += frame.height
        return frame.select(TRAIN_SCHEMA.names)


def build_train_table(shards: list[Shard]) -> pa.Table:
    """The export stage's shards as one table, typed by :data:`TRAIN_SCHEMA`."""
    frame = pl.concat([pl.read_parquet(s.path) for s in shards], how="vertical_relaxed")
    return frame.select(TRAIN_SCHEMA.names).to_arrow().cast(TRAIN_SCHEMA)


def write_train(table: pa.Table, path: Path) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
