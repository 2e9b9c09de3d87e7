"""MBPP end to end: the paper's split by task id, the sandboxed unit-test judge in the
pipeline, and a real 16-row curation run on the real engine."""

import polars as pl
import pytest

import judges
from pipeline.stages.load import DataError, load_rows
from pipeline.tasks import load_task
from tests.export_checks import assert_valid_s3ft_export

MBPP = load_task("mbpp")


def test_standard_split_by_task_id():
    sizes = {}
    for split in ("prompt", "test", "validation", "train"):
        frame, _ = load_rows(MBPP, None, limit=None, split=split)
        sizes[split] = frame.height
        ids = frame["task_id"].to_list()
        assert ids == sorted(ids)
        if split == "train":
            assert (ids[0], ids[-1]) == (601, 974)
    assert sizes == {"prompt": 10, "test": 500, "validation": 90, "train": 374}
    with pytest.raises(DataError, match="has splits prompt, test, train, validation"):
        load_rows(MBPP, None, limit=None, split="dev")


def test_gold_response_is_the_reference_in_the_prompts_delimiters():
    frame, _ = load_rows(MBPP, None, limit=1, split="train")
    row = frame.row(0, named=True)
    from judges.mbpp import code_target

    assert row["gold"] == code_target(row["code"])
    assert "\r" not in row["gold"]
    assert row["id"] == "mbpp-601"
    prompt = MBPP.answer_prompt.render(**row)
    assert row["text"] in prompt and row["test_list"][0] in prompt and "[BEGIN]" in prompt
    # The gold target passes the judge, so SFT on gold trains on working code.
    assert judges.get("mbpp").judge(row["gold"], row).correct


@pytest.mark.slow
def test_mbpp_curation_run(mbpp_run):
    train = assert_valid_s3ft_export(mbpp_run["out"] / "train.parquet", "mbpp", rows=16)
    summary = mbpp_run["summary"]
    assert summary["gold_check"] == {"rows_left_out": 0, "left_out": {}}
    assert "gold check: 16/16 rows (100.0%)" in mbpp_run["log"]
    assert summary["rows"] == 16  # (the run used the session's engine: its starts are not its own)
    rules = set(train["judge_rule"])
    assert rules <= {"pass", "pass:harness", "fail", "error", "timeout", "killed", "no_code"}
    assert summary["judge_settings"]["protocol"] == "values" and summary["judge_settings"]["seccomp"]
    # Every candidate stopped at [DONE] or ran out of tokens; a stopped one keeps its [DONE].
    stopped = train.filter(pl.col("finish_reason") == "stop")
    assert all(c.rstrip().endswith("[DONE]") or "[DONE]" not in c for c in stopped["candidate"])
    judge = judges.get("mbpp")
    source_rows, _ = load_rows(MBPP, None, limit=16, split="train")
    for row, example in zip(train.iter_rows(named=True), source_rows.iter_rows(named=True),
                            strict=True):
        assert judge.judge(row["candidate"], example).correct == row["verdict"]
        # One target format for model, paraphrase and gold alike.
        assert row["target"].startswith("[BEGIN]\n") and row["target"].endswith("\n[DONE]")
        assert "\r" not in row["target"] and "```" not in row["target"]
