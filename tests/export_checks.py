"""Checks every curated export must pass, whatever the task."""

from __future__ import annotations

import polars as pl
import pyarrow.parquet as pq

from pipeline.stages.export import TRAIN_SCHEMA
from pipeline.stages.load import load_rows
from pipeline.tasks import load_task


def assert_valid_s3ft_export(path, task: str, rows: int, split: str = "train") -> pl.DataFrame:
    """The export has the schema, the expected rows in source order, and one target per row
    chosen by the S3FT rule; returns it for further task-specific checks."""
    assert pq.read_schema(path).equals(TRAIN_SCHEMA)
    train = pl.read_parquet(path)
    source_rows, _ = load_rows(load_task(task), None, limit=rows, split=split)
    assert train["id"].to_list() == source_rows["id"].to_list()
    gold = dict(zip(source_rows["id"], source_rows["gold"], strict=True))
    for row in train.iter_rows(named=True):
        assert row["task"] == task
        assert row["target"], row["id"]
        assert row["completion"] == [{"role": "assistant", "content": row["target"]}]
        assert row["gold"] == gold[row["id"]]
        assert (row["source"] == "model") == bool(row["admitted"]), row["id"]
        # Nothing is admitted that the judge did not find correct, or that was cut off.
        assert not row["admitted"] or (row["verdict"] and row["finish_reason"] == "stop"), row["id"]
        assert row["admission_rule"] == ("admitted" if row["admitted"] else row["admission_rule"])
        if row["source"] == "model":
            assert row["paraphrase"] is None  # only rows not admitted are paraphrased
        elif row["source"] == "paraphrase":
            assert row["paraphrase_verdict"] is True and row["paraphrase_admitted"] is True
            assert row["paraphrase_finish_reason"] == "stop"
            assert row["paraphrase_admission_rule"] == "admitted"
        else:
            assert row["source"] == "gold"
            assert not row["paraphrase_admitted"]
            assert row["target"] == row["gold"]
        if row["source"] != "gold":
            assert row["target"], row["id"]
        if not row["admitted"]:
            assert row["paraphrase_admission_rule"] is not None or row["error"], row["id"]
    return train
