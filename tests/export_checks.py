"""Checks every curated export must pass, whatever the task."""

from __future__ import annotations

import polars as pl
import pyarrow.parquet as pq

from pipeline.export import TRAIN_SCHEMA
from pipeline.load import load_rows
from pipeline.tasks import get_task


def assert_valid_s3ft_export(path, task: str, rows: int, split: str = "train") -> pl.DataFrame:
    """The export has the schema, the expected rows in source order, and one target per row
    chosen by the S3FT rule; returns it for further task-specific checks."""
    assert pq.read_schema(path).equals(TRAIN_SCHEMA)
    train = pl.read_parquet(path)
    source_rows, _ = load_rows(get_task(task), None, limit=rows, split=split)
    assert train["id"].to_list() == source_rows["id"].to_list()
    gold = dict(zip(source_rows["id"], source_rows["gold"], strict=True))
    for row in train.iter_rows(named=True):
        assert row["task"] == task
        assert row["target"], row["id"]
        assert row["completion"] == [{"role": "assistant", "content": row["target"]}]
        assert row["gold"] == gold[row["id"]]
        assert (row["source"] == "model") == bool(row["verdict"]), row["id"]
        if row["source"] == "model":
            assert row["target"] == row["candidate"]
            assert row["paraphrase"] is None  # only rows judged wrong are paraphrased
        elif row["source"] == "paraphrase":
            assert row["paraphrase_verdict"] is True
            assert row["target"] == row["paraphrase"]
        else:
            assert row["source"] == "gold"
            assert not row["paraphrase_verdict"]
            assert row["target"] == row["gold"]
        if not row["verdict"]:
            assert row["paraphrase_verdict"] is not None or row["error"], row["id"]
    return train
