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

import pytest

from pipeline.model import resolve_model
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
                     "judge_unparsed", "llm_error", "empty_response", "no_response"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine_starts"] == 0
    assert summary["stages"]["generate"]["generated_tokens"] == train["completion_tokens"].sum()
    first_requests = summary["backend_counters"]["requests"]
    assert first_requests > 0

    # Recompute every stage: every generation and judge call is answered from the cache.
    again = run_cli(*args, "--fresh", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend_counters"].get("requests", 0) == 0
    assert summary["backend_counters"]["cache_hits"] >= first_requests
    assert summary["judge_backend_counters"].get("requests", 0) == 0
    assert assert_valid_s3ft_export(out / "train.parquet", "nq", rows=16).equals(train)
