"""NQ end to end through a real vLLM OpenAI-compatible server on 127.0.0.1: generation and
paraphrase with ``--backend openai``, the LLM judge pointed at the same server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import polars as pl
import pytest

from pipeline.backends.device import record_engine_start
from pipeline.backends.model import resolve_model
from tests.conftest import run_cli
from tests.export_checks import assert_valid_s3ft_export

pytestmark = pytest.mark.slow
SERVED = "smollm2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
         "--model", resolve_model().path, "--served-model-name", SERVED,
         "--host", "127.0.0.1", "--port", str(port), "--enforce-eager", "--dtype", "float32",
         "--max-model-len", "2048"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    record_engine_start("vllm OpenAI-compatible server")
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 900
    try:
        while True:
            assert process.poll() is None, f"vLLM server exited: see {log.name}"
            assert time.monotonic() < deadline, "vLLM server did not come up in time"
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
        log.close()


def test_nq_curation_through_an_openai_server(vllm_server, tmp_path):
    out = tmp_path / "nq"
    args = ("--task", "nq", "--limit", "16", "--backend", "openai", "--base-url", vllm_server,
            "--model", SERVED, "--judge-base-url", vllm_server, "--judge-model", SERVED,
            "--out", str(out))
    env = {"S3FT_CACHE_DIR": str(tmp_path / "cache")}
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    train = assert_valid_s3ft_export(out / "train.parquet", "nq", rows=16)
    assert set(train["model"]) == {SERVED}
    rules = set(train["judge_rule"])
    assert rules <= {"heuristic:exact", "heuristic:contains", "llm:correct", "llm:incorrect",
                     "judge_unparsed", "judge_inconsistent", "judge_untrusted", "llm_error",
                     "empty_response", "no_response"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine_starts"] == 0
    assert summary["stages"]["generate"]["generated_tokens"] == train["completion_tokens"].sum()
    first_requests = summary["backend_counters"]["requests"]
    assert first_requests > 0
    # The embedded 135M model, judging its own answers, fails its calibration and so decides
    # nothing: no row is admitted on its word.
    calibration = summary["judge_calibration"]
    assert calibration["judge_model"] == SERVED and calibration["positives"] == 16
    assert calibration["trusted"] is False and calibration["tnr"] < 0.9
    assert "NOT trusted" in first.stdout + first.stderr
    assert "judge calibration: " in first.stderr and "answers (100.0%)" in first.stderr
    assert not any(rule.startswith("llm:") for rule in train["judge_rule"])
    untrusted = train.filter(pl.col("judge_rule") == "judge_untrusted")
    assert summary["rows_without_trusted_verdict"] == untrusted.height
    assert not untrusted["admitted"].any()
    assert set(train.filter(pl.col("admitted"))["judge_rule"]) <= {"heuristic:exact",
                                                                   "heuristic:contains"}

    # Recompute every stage: every generation and judge call is answered from the cache.
    again = run_cli(*args, "--fresh", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend_counters"].get("requests", 0) == 0
    assert summary["backend_counters"]["cache_hits"] >= first_requests
    assert summary["judge_backend_counters"].get("requests", 0) == 0
    assert assert_valid_s3ft_export(out / "train.parquet", "nq", rows=16).equals(train)


def test_a_capable_judge_is_trusted_and_decides_rows(vllm_server, tmp_path):
    """Generation on the real server, the judge on a stand-in that grades correctly: it passes
    its calibration and its verdicts are used."""
    from tests.fake_openai_server import FakeOpenAIServer, grading_judge

    out = tmp_path / "nq-judged"
    with FakeOpenAIServer(served_model="grader", responder=grading_judge) as judge_server:
        result = run_cli("--task", "nq", "--limit", "16", "--backend", "openai", "--base-url",
                         vllm_server, "--model", SERVED, "--judge-base-url", judge_server.base_url,
                         "--judge-model", "grader", "--out", str(out),
                         env={"S3FT_CACHE_DIR": str(tmp_path / "cache")})
        assert result.returncode == 0, result.stderr[-3000:]
        asked = judge_server.request_count
    summary = json.loads((out / "summary.json").read_text())
    calibration = summary["judge_calibration"]
    assert calibration["trusted"] is True and calibration["judge_model"] == "grader"
    train = assert_valid_s3ft_export(out / "train.parquet", "nq", rows=16)
    assert "judge_untrusted" not in set(train["judge_rule"])
    llm_rows = train.filter(pl.col("judge_rule").str.starts_with("llm:")).height
    assert asked == calibration["positives"] + calibration["negatives"] + llm_rows
