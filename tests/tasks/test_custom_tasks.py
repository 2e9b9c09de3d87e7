"""A user's own tasks, end to end on the real engine and the embedded model: task folders
written outside the repository, from real data, one per judge kind a user reaches for.

The session's engine (conftest's ``engine``, float32) serves every in-process run; one run
goes through the CLI as a user would type it, against a stand-in OpenAI-compatible server
(the CLI's handling of a task folder is what it checks, not the engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.config import RunConfig
from pipeline.stages.select import SOURCES
from pipeline.tasks import load_task
from tests.conftest import run_cli
from tests.fake_openai_server import FakeOpenAIServer
from tests.tasks.tasks_helpers import alias_task, choice_task, module_task, numeric_task, regex_task

pytestmark = pytest.mark.slow


def curate(engine, folder: Path, out: Path, trust: bool = False) -> tuple[dict, list[dict]]:
    from pipeline.curate import run

    summary = run(RunConfig(task=str(folder), out=str(out), dtype="float32", shard_size=8,
                            progress=False, trust_task_code=trust), served=engine)
    return summary, pq.read_table(out / "train.parquet").to_pylist()


def assert_targets_are_right(folder: Path, rows: list[dict], rule_prefixes: tuple[str, ...]) -> None:
    """Every row has a target; every model or paraphrase target passes the task's judge when
    judged again, and the verdicts came from that task's judge kind."""
    from pipeline.stages.load import load_rows

    task = load_task(str(folder), trust_code=True)  # the test's own folders
    judge = task.make_judge()
    frame, _ = load_rows(task, None, None)
    variables = {r["id"]: r for r in frame.to_dicts()}
    assert rows and {r["source"] for r in rows} <= set(SOURCES)
    for row in rows:
        assert row["judge_rule"].startswith(rule_prefixes), row["judge_rule"]
        if row["source"] == "gold":
            assert row["target"] == row["gold"] == variables[row["id"]]["gold"]
            continue
        verdict = judge.judge(row["target"], variables[row["id"]])
        assert verdict.correct, (row["id"], row["source"], row["target"], verdict)


def test_numeric_task_with_its_own_columns(engine, tmp_path):
    folder = numeric_task(tmp_path / "numbers", rows=8)
    summary, rows = curate(engine, folder, tmp_path / "run")
    assert summary["rows"] == len(rows) == 8 and summary["task"] == "numbers"
    assert summary["gold_check"]["rows_left_out"] == 0
    assert_targets_are_right(folder, rows, ("strict", "flexible", "no_number", "no_answer",
                                            "judge_error"))
    gold_rows = [r for r in rows if r["source"] == "gold"]
    assert all(r["target"].endswith(f"#### {r['target'].split()[-1]}") for r in gold_rows)


def test_alias_task_without_passages(engine, tmp_path):
    folder = alias_task(tmp_path / "closedqa", rows=8)
    summary, rows = curate(engine, folder, tmp_path / "run")
    assert summary["rows"] == 8
    assert_targets_are_right(folder, rows, ("heuristic", "needs_judge"))


def test_choice_task_leaves_out_a_row_whose_gold_fails(engine, tmp_path):
    folder = choice_task(tmp_path / "arc", rows=8, bad_gold=True)
    task = load_task(str(folder))
    from pipeline.stages.load import load_rows

    frame, _ = load_rows(task, None, None)
    bad_id = frame["id"][-1]
    summary, rows = curate(engine, folder, tmp_path / "run")
    assert summary["gold_check"] == {"rows_left_out": 1, "left_out": {bad_id: summary["gold_check"]
                                                                      ["left_out"][bad_id]}}
    assert "bad_gold" in summary["gold_check"]["left_out"][bad_id]
    assert bad_id not in {r["id"] for r in rows} and len(rows) == frame.height - 1
    assert_targets_are_right(folder, rows, ("choice:",))


def test_regex_task(engine, tmp_path):
    folder = regex_task(tmp_path / "regexmath", rows=8)
    summary, rows = curate(engine, folder, tmp_path / "run")
    assert summary["rows"] == 8
    assert_targets_are_right(folder, rows, ("regex:",))


def test_module_judge_task(engine, tmp_path):
    folder = module_task(tmp_path / "ownjudge", rows=8)
    summary, rows = curate(engine, folder, tmp_path / "run", trust=True)
    assert summary["rows"] == 8 and summary["rows_with_errors"] == 0
    assert_targets_are_right(folder, rows, ("module:judge",))
    assert summary["judge_settings"]["module"].startswith("my_judge.py:judge@")


def test_a_task_folder_from_the_command_line(tmp_path):
    folder = numeric_task(tmp_path / "mytask", rows=4)
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        done = run_cli("--task", str(folder), "--limit", "3", "--backend", "openai", "--base-url",
                       server.base_url, "--model", server.served_model, "--out", str(out),
                       env={"S3FT_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert pq.read_table(out / "train.parquet").num_rows == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task_file"] == str(folder.resolve() / "task.yaml")
    card_info = (out / "config.yaml").read_text()
    assert "task: " + str(folder) in card_info
