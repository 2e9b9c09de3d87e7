"""End to end on the real engine and model: ``python -m pipeline.run --task gsm8k --limit 16``.

One run (two shards of 8) is shared by every test here; the same command is then run again
to show that finished stages are reused without starting the engine.
"""

import json
import shutil

import polars as pl
import pytest

import judges
from pipeline.config import RunConfig, load_yaml
from tests.conftest import GSM8K_ARGS, run_cli
from tests.export_checks import assert_valid_s3ft_export

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def train(gsm8k_run) -> pl.DataFrame:
    return pl.read_parquet(gsm8k_run["out"] / "train.parquet")


def test_export_is_a_valid_s3ft_training_set(gsm8k_run, gsm8k_train):
    train = assert_valid_s3ft_export(gsm8k_run["out"] / "train.parquet", "gsm8k", rows=16)
    assert train["id"].n_unique() == 16
    for row, source in zip(train.iter_rows(named=True), gsm8k_train[:16], strict=True):
        assert len(row["prompt"]) == 1 and row["prompt"][0]["role"] == "user"
        assert row["prompt"][0]["content"].endswith("Question: " + source["question"])


def test_rows_not_admitted_were_paraphrased_and_the_rest_not(train):
    rejected = train.filter(~pl.col("admitted"))
    assert rejected["paraphrase"].null_count() == 0
    assert rejected["paraphrase_verdict"].null_count() == 0
    assert rejected["paraphrase_admission_rule"].null_count() == 0
    admitted = train.filter(pl.col("admitted"))
    assert admitted["paraphrase"].null_count() == admitted.height


def test_admission_is_the_judges_rules_applied_again(train, gsm8k_train):
    """Every recorded admission decision is what the rules give on the recorded row: a
    cut-off answer is never admitted, a paraphrase passes only with the gold's steps."""
    from judges.base import Verdict
    from pipeline.stages.admission import admit

    judge = judges.get("gsm8k")
    by_question = {row["question"]: row for row in gsm8k_train[:16]}
    for row in train.iter_rows(named=True):
        example = by_question[row["prompt"][0]["content"].split("Question: ", 1)[1]]
        verdict = Verdict(row["verdict"], row["judge_rule"])
        decision = admit(judge, row["candidate"], row["finish_reason"], verdict, example,
                         row["gold"], paraphrase=False)
        assert (decision.admitted, decision.rule) == (row["admitted"], row["admission_rule"])
        if row["finish_reason"] in ("length", "repetition"):
            assert row["admission_rule"] == "truncated"
        if row["paraphrase"] is not None:
            verdict = judge.judge_paraphrase(row["paraphrase"], example)
            assert verdict.rule == row["paraphrase_judge_rule"]
            decision = admit(judge, row["paraphrase"], row["paraphrase_finish_reason"], verdict,
                             example, row["gold"], paraphrase=True)
            assert decision.rule == row["paraphrase_admission_rule"]


def test_recorded_verdicts_match_the_judge(train, gsm8k_train):
    judge = judges.get("gsm8k")
    by_question = {row["question"]: row for row in gsm8k_train[:16]}
    for row in train.iter_rows(named=True):
        example = by_question[row["prompt"][0]["content"].split("Question: ", 1)[1]]
        verdict = judge.judge(row["candidate"], example)
        assert (verdict.correct, verdict.rule) == (row["verdict"], row["judge_rule"])
        if row["paraphrase"] is not None:
            assert judge.judge_paraphrase(row["paraphrase"], example).correct \
                == row["paraphrase_verdict"]


def test_generation_provenance(train):
    assert set(train["model"]) == {"embedded:smollm2-135m-instruct"}
    assert all(v.startswith("gsm8k/answer.jinja@") for v in train["prompt_version"])
    assert train["finish_reason"].is_in(["stop", "length", "repetition"]).all()
    assert (train["completion_tokens"] > 0).all()
    assert train["error"].null_count() == 16


def test_summary_matches_the_export(gsm8k_run, train):
    summary = gsm8k_run["summary_first"]
    counts = train["source"].value_counts()
    assert summary["rows"] == 16
    for source, count in counts.iter_rows():
        assert summary["sources"][source]["count"] == count
    assert sum(s["share_pct"] for s in summary["sources"].values()) == pytest.approx(100, abs=0.2)
    assert summary["model_accuracy_pct"] == pytest.approx(100 * train["verdict"].mean(), abs=0.1)
    assert summary["model_admitted_pct"] == pytest.approx(100 * train["admitted"].mean(), abs=0.1)
    for kind, prefix in (("model", ""), ("paraphrase", "paraphrase_")):
        counts = dict(train[f"{prefix}admission_rule"].drop_nulls().value_counts().iter_rows())
        assert {r: info["count"] for r, info in summary["admission"][kind].items()} == counts
    assert summary["judge_calibration"] is None  # GSM8K's judge asks no LLM
    assert summary["stages"]["generate"]["generated_tokens"] == train["completion_tokens"].sum()
    assert summary["stages"]["generate"]["tokens_per_s"] > 0
    assert summary["engine_starts"] == 1
    assert "S3FT training mix" in gsm8k_run["first"].stdout
    # Progress in the log (no terminal here): the header, per-request lines, the end.
    log = gsm8k_run["first"].stderr
    assert "generate: 16 rows in 2 shards, 0 done earlier, 2 to go" in log
    assert "generate: 8/16 rows (50.0%)" in log and "generate: 16/16 rows (100.0%)" in log
    assert "tok/s" in log and "generate: 16 rows in 2 shards, 2 done earlier, 0 to go" in \
        gsm8k_run["second"].stderr
    # The engine ran each shard as one batch (a batch that fails is retried one request at
    # a time, several times slower: it must not happen on healthy rows).
    assert "retrying request by request" not in log


def test_rerun_reuses_finished_stages_without_an_engine(gsm8k_run, train):
    again = gsm8k_run["summary_second"]
    assert again["engine_starts"] == 0
    for name, cost in again["stages"].items():
        assert (cost["shards_computed"], cost["shards_reused"]) == (0, 2), name
    assert pl.read_parquet(gsm8k_run["out"] / "train.parquet").equals(train)


def test_config_yaml_reproduces_the_run(gsm8k_run):
    path = gsm8k_run["out"] / "config.yaml"
    options = load_yaml(RunConfig, path)
    assert (options["task"], options["limit"], options["shard_size"]) == ("gsm8k", 16, 8)
    assert "resolved" not in path.read_text()  # options only; what the run resolved is run.json
    resolved = json.loads((gsm8k_run["out"] / "run.json").read_text())
    assert set(resolved["stage_keys"]) == {"load", "generate", "judge", "admit", "paraphrase",
                                           "judge_paraphrase", "admit_paraphrase", "select", "shift",
                                           "export"}
    assert resolved["judge"]["judge"] == "gsm8k" and resolved["dtype"] in ("float32", "bfloat16")
    assert json.loads((gsm8k_run["out"] / "summary.json").read_text())["out"] == str(
        gsm8k_run["out"])


def test_train_after_curation_in_one_command(gsm8k_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(gsm8k_run["out"], out)
    train_config = tmp_path / "train.yaml"
    train_config.write_text("max_steps: 1\nper_device_train_batch_size: 2\nlimit: 2\n")
    result = run_cli(*GSM8K_ARGS, "--out", str(out),
                     "--train", "s3ft", "--train-config", str(train_config))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine_starts"] == 0  # curation reused, only training ran
    adapter = out / "s3ft-lora"
    assert (adapter / "adapter_config.json").is_file()
    assert not list(adapter.glob("checkpoint-*"))  # nothing resumes one: none is saved
    metrics = json.loads((adapter / "train_metrics.json").read_text())
    assert metrics["steps"] == 1
