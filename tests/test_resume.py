"""Crash safety and caching: kill and resume, config keys, --limit reuse, row-level errors,
and the run lock. The uninterrupted reference is the shared ``gsm8k_run`` (16 rows, 2 shards).
The killed run is a real process; its resume and the other runs use the session's engine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

from pipeline.config import RunConfig
from pipeline.curate import plan
from pipeline.storage import RunLock
from tests.conftest import GSM8K_ARGS, PROJECT, curate_in_process, data_dir, export_differences, run_cli

ARGS = GSM8K_ARGS


@pytest.mark.slow
def test_sigkill_after_first_shard_then_resume_gives_the_same_export(gsm8k_run, engine, tmp_path):
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.run", *ARGS, "--out", str(out)], cwd=PROJECT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 900
    try:
        while not list(out.glob("stages/generate-*/shard-00000.done.json")):
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no generate shard finished in time"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the run and its engine processes
        process.wait(60)
    assert not list(out.glob("stages/generate-*/shard-00001.done.json"))
    assert not (out / "train.parquet").exists()

    # The resume: GSM8K_ARGS on the session's engine (the same stage keys as the CLI's).
    summary, _ = curate_in_process(engine, task="gsm8k", limit=16, shard_size=8, out=str(out))
    generate = summary["stages"]["generate"]
    assert (generate["shards_computed"], generate["shards_reused"]) == (1, 1)
    assert export_differences(out / "train.parquet", gsm8k_run["out"] / "train.parquet") == []


@pytest.mark.slow
def test_sigterm_ends_the_engine_processes_and_keeps_finished_shards(tmp_path):
    # `kill <pid>` (or a scheduler's preemption) used to end the CLI at once and leave the
    # vLLM EngineCore (0.9 GB) and its worker (3.4 GB) running as orphans.
    out = tmp_path / "terminated"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.run", *ARGS, "--out", str(out)], cwd=PROJECT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    deadline = time.monotonic() + 900
    engine_processes: list[psutil.Process] = []
    try:
        while not list(out.glob("stages/generate-*/shard-00000.done.json")):
            assert process.poll() is None, "the run ended before it could be stopped"
            assert time.monotonic() < deadline, "no generate shard finished in time"
            time.sleep(0.2)
        engine_processes = psutil.Process(process.pid).children(recursive=True)
        assert any("EngineCore" in p.name() for p in engine_processes), engine_processes
        process.terminate()
        _, err = process.communicate(timeout=120)
        assert process.returncode == 143, err[-2000:]
        assert err.strip().splitlines()[-1].startswith("interrupted (SIGTERM): finished shards")
        _, alive = psutil.wait_procs(engine_processes, timeout=20)
        assert alive == [], f"engine processes left running: {alive}"
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever a failure left
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(60)
    assert list(out.glob("stages/generate-*/shard-00000.done.json"))
    assert not (out / "train.parquet").exists()


@pytest.mark.slow
def test_a_smaller_limit_reuses_every_full_shard(gsm8k_run, engine, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(gsm8k_run["out"], out)
    # GSM8K_ARGS with --limit 12, on the session's engine (float32, the same engine settings:
    # the same stage keys as the CLI run's).
    summary, _ = curate_in_process(engine, task="gsm8k", limit=12, shard_size=8, out=str(out))
    for stage in ("generate", "judge", "paraphrase", "select"):
        cost = summary["stages"][stage]
        assert (cost["shards_computed"], cost["shards_reused"]) == (1, 1), stage
    export = pl.read_parquet(out / "train.parquet")
    reference = pl.read_parquet(gsm8k_run["out"] / "train.parquet")
    assert export.height == 12
    assert export.head(8).equals(reference.head(8))
    # Greedy decoding of the same prompts in a different batch gives the same candidates.
    assert export["candidate"].to_list()[8:] == reference["candidate"].to_list()[8:12]


def keys_for(**overrides) -> tuple[dict[str, str], Path]:
    p = plan(RunConfig(**{"limit": 16, "shard_size": 8, **overrides}))
    return p.keys, p.out_dir


def test_config_keys_change_exactly_the_affected_stages(tmp_path, monkeypatch):
    base, base_out = keys_for()
    assert base_out.name.startswith("gsm8k-")

    shorter, shorter_out = keys_for(max_tokens=100)
    assert shorter["load"] == base["load"]
    assert all(shorter[s] != base[s] for s in ("generate", "judge", "paraphrase", "select"))
    assert shorter_out != base_out

    same, same_out = keys_for(limit=40)  # --limit is not in any key: shards are reused
    assert (same, same_out) == (base, base_out)

    prompts = tmp_path / "prompts"
    shutil.copytree(PROJECT / "prompts", prompts)
    monkeypatch.setenv("S3FT_PROMPTS_DIR", str(prompts))
    assert keys_for()[0] == base  # same contents, same keys
    paraphrase_file = prompts / "gsm8k" / "paraphrase.jinja"
    paraphrase_file.write_text(paraphrase_file.read_text() + "\nBe brief.\n")
    reworded, reworded_out = keys_for()
    assert (reworded["generate"], reworded["judge"]) == (base["generate"], base["judge"])
    assert reworded["paraphrase"] != base["paraphrase"]
    assert reworded_out != base_out
    answer_file = prompts / "gsm8k" / "answer.jinja"
    answer_file.write_text(answer_file.read_text() + "\nBe brief.\n")
    assert keys_for()[0]["generate"] != base["generate"]

    # The data is keyed by its bytes: a copy elsewhere keeps every key, one changed row not.
    other_data = tmp_path / "train.jsonl"
    other_data.write_bytes((data_dir() / "gsm8k" / "train.jsonl").read_bytes())
    assert keys_for(data=str(other_data))[0]["load"] == base["load"]
    other_data.write_bytes(other_data.read_bytes().replace(b"?", b"?!", 1))
    assert keys_for(data=str(other_data))[0]["load"] != base["load"]


@pytest.mark.slow
def test_bad_rows_become_error_rows_and_the_run_completes(gsm8k_train, engine, tmp_path):
    rows = [dict(r) for r in gsm8k_train[:5]]
    rows[2]["question"] = "Count the apples. " * 1500  # far over max_model_len - max_tokens
    rows[3]["question"] = "ENGINE_FAULT " + rows[3]["question"]
    rows[4]["question"] = "JUDGE_FAULT " + rows[4]["question"]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    # 3 of 5 rows fail: over the default failure budget (5 %), so this test allows it.
    curate_in_process(engine, task="gsm8k", data=str(data), max_tokens=48, out=str(out),
                      max_error_rate=1.0, env={"S3FT_INJECT_FAULTS": "engine=ENGINE_FAULT,judge=JUDGE_FAULT"})
    export = pl.read_parquet(out / "train.parquet")
    assert export.height == 5
    errors = export["error"].to_list()
    assert errors[0] is None and errors[1] is None
    assert "generate: prompt_too_long" in errors[2]
    assert "generate: engine_error" in errors[3]
    assert "judge: judge_error" in errors[4]
    assert export["candidate"][2] is None and export["candidate"][3] is None
    assert export["judge_rule"].to_list()[2:] == ["no_response", "no_response", "judge_error"]
    # S3FT fallback: no usable candidate and no passing paraphrase -> gold.
    assert export["source"].to_list()[2:4] == ["gold", "gold"]
    assert export["target"][2] == export["gold"][2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_with_errors"] == 3
    assert summary["errors_by_stage"]["generate"] >= 2 and summary["errors_by_stage"]["judge"] >= 1


def test_a_second_run_on_a_locked_folder_is_refused(tmp_path, gsm8k_train):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_train[:2]))
    out = tmp_path / "out"
    with RunLock(out):
        result = run_cli("--task", "gsm8k", "--data", str(data), "--out", str(out), timeout=300)
    assert result.returncode == 3
    assert f"another run (pid {os.getpid()}) is using {out}" in result.stderr
    assert not (out / "stages").exists()
