"""The OpenAI-compatible backend against a local fake server that misbehaves on request:
retries, per-row errors, timeouts, garbage bodies, the disk cache (also after a kill -9),
and the concurrency bound. Short timeouts and backoffs keep every test under a few seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from judges.nq import VERDICT_SCHEMA
from pipeline.backends.base import SamplingSettings
from pipeline.backends.openai_backend import OpenAIBackend, OpenAIBackendError, resolve_api_key
from pipeline.backends.request_cache import RequestCacheError
from tests.fake_openai_server import FakeOpenAIServer

PROJECT = Path(__file__).resolve().parents[2]
GREEDY = SamplingSettings(max_tokens=32)


@pytest.fixture
def fake():
    with FakeOpenAIServer() as server:
        yield server


def backend_for(server: FakeOpenAIServer, tmp_path: Path, **options) -> OpenAIBackend:
    settings = {"timeout": 2.0, "max_retries": 2, "backoff_base": 0.01, "backoff_max": 1.0,
                "cache_path": tmp_path / "cache.sqlite", "api_key": "test-key", **options}
    return OpenAIBackend(server.base_url, server.served_model, **settings)


def ask(*prompts: str) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": p}] for p in prompts]


def test_answers_come_back_in_order_with_usage(fake, tmp_path):
    backend = backend_for(fake, tmp_path)
    out = backend.generate(ask("first question", "second", "third one here"), GREEDY)
    assert [g.text for g in out] == ["echo: first question", "echo: second", "echo: third one here"]
    assert all(g.finish_reason == "stop" and g.error is None for g in out)
    assert [g.prompt_tokens for g in out] == [2, 1, 3]
    assert [g.completion_tokens for g in out] == [3, 2, 4]
    body = fake.bodies[0]
    assert body["model"] == "fake-model" and body["temperature"] == 0.0 and body["max_tokens"] == 32
    assert "stop" not in body and "response_format" not in body
    assert backend.counters["requests"] == 3 and backend.counters["prompt_tokens"] == 6


def test_stop_sequences_are_sent(fake, tmp_path):
    backend_for(fake, tmp_path).generate(ask("q"), SamplingSettings(max_tokens=8, stop=("\n\n",)))
    assert fake.bodies[0]["stop"] == ["\n\n"]


def test_every_sampling_setting_the_row_records_is_sent(fake, tmp_path):
    """top_k, min_p and repetition_penalty go as the extra fields vLLM's server reads, and
    each conversation gets its own seed (as in-process): none is dropped."""
    from pipeline.backends.base import request_seed

    sampled = SamplingSettings(max_tokens=8, temperature=0.7, top_p=0.9, top_k=20, min_p=0.05,
                               repetition_penalty=1.1, seed=7)
    backend_for(fake, tmp_path).generate(ask("one", "two"), sampled)
    sent = sorted(fake.bodies, key=lambda b: b["messages"][0]["content"])
    for body in sent:
        assert (body["top_k"], body["min_p"], body["repetition_penalty"]) == (20, 0.05, 1.1)
        assert (body["temperature"], body["top_p"]) == (0.7, 0.9)
    assert sent[0]["seed"] != sent[1]["seed"]
    assert sent[0]["seed"] == request_seed(7, '[{"content": "one", "role": "user"}]')
    # Greedy with the defaults: nothing extra on the wire.
    backend_for(fake, tmp_path / "g").generate(ask("three"), GREEDY)
    assert not {"top_k", "min_p", "repetition_penalty", "seed"} & set(fake.bodies[-1])


def test_server_errors_are_retried_until_success(fake, tmp_path):
    backend = backend_for(fake, tmp_path, max_retries=3)
    prompt = "[[fail:500x2]] flaky"
    [out] = backend.generate(ask(prompt), GREEDY)
    assert out.error is None and out.text == f"echo: {prompt}"
    assert fake.attempts[prompt] == 3
    assert backend.counters["retries"] == 2 and backend.counters["errors"] == 0


def test_429_waits_for_retry_after(tmp_path):
    with FakeOpenAIServer(retry_after="0.5") as server:
        backend = backend_for(server, tmp_path, backoff_base=0.001)
        [out] = backend.generate(ask("[[fail:429x1]] busy"), GREEDY)
        first, second = server.arrivals
    assert out.error is None and out.text.startswith("echo:")
    # The backoff alone would wait ~1 ms; the server asked for 0.5 s.
    assert second - first >= 0.5, f"retried after {second - first:.3f} s, before Retry-After"


def test_persistent_failure_fails_only_that_row(fake, tmp_path):
    backend = backend_for(fake, tmp_path, max_retries=2)
    out = backend.generate(ask("fine 1", "[[fail:500]] broken", "fine 2"), GREEDY)
    assert out[0].text == "echo: fine 1" and out[2].text == "echo: fine 2"
    assert out[1].text is None and out[1].finish_reason is None
    assert out[1].error.startswith("http_500") and "after 3 attempts" in out[1].error
    assert fake.attempts["[[fail:500]] broken"] == 3
    assert backend.counters["errors"] == 1


def test_a_hanging_request_times_out_into_an_error_row(fake, tmp_path):
    backend = backend_for(fake, tmp_path, timeout=0.3, max_retries=4)
    began = time.perf_counter()
    out = backend.generate(ask("[[hang]] slow", "quick"), GREEDY)
    assert time.perf_counter() - began < 3
    assert out[0].error.startswith("timeout") and out[0].text is None
    assert "after 2 attempts" in out[0].error
    assert fake.attempts["[[hang]] slow"] == 2  # a timeout is retried once, not max_retries times
    assert out[1].text == "echo: quick"


@pytest.mark.parametrize("directive", ["[[garbage]]", "[[noshape]]"])
def test_a_body_that_is_no_completion_is_retried_then_an_error_row(fake, tmp_path, directive):
    backend = backend_for(fake, tmp_path, max_retries=1)
    out = backend.generate(ask(f"{directive} q", "good"), GREEDY)
    assert out[0].text is None and out[0].error.startswith("malformed_response")
    assert fake.attempts[f"{directive} q"] == 2
    assert out[1].text == "echo: good"


def test_a_server_that_is_down_gives_error_rows(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", timeout=1, max_retries=1,
                            backoff_base=0.01, cache_path=tmp_path / "c.sqlite")
    out = backend.generate(ask("a", "b"), GREEDY)
    assert all(g.text is None and g.error.startswith("connection_error") for g in out)
    assert backend.counters["requests"] == 4 and backend.counters["retries"] == 2


def test_a_wrong_model_name_stops_with_a_clear_error_without_retrying(fake, tmp_path):
    backend = OpenAIBackend(fake.base_url, "no-such-model", max_retries=3, backoff_base=0.01,
                            cache_path=tmp_path / "c.sqlite")
    with pytest.raises(OpenAIBackendError, match="no-such-model.*http_404"):
        backend.generate(ask("a"), GREEDY)
    assert fake.request_count == 1


def test_a_rerun_is_served_from_the_cache_but_failed_rows_are_asked_again(fake, tmp_path):
    prompts = ask("one", "two", "[[fail:500x2]] three")
    first = backend_for(fake, tmp_path, max_retries=1).generate(prompts, GREEDY)
    assert first[2].error is not None  # both attempts failed
    sent = fake.request_count
    # A new backend object, as a new process would have: only the failed row is sent again.
    again = backend_for(fake, tmp_path, max_retries=1)
    second = again.generate(prompts, GREEDY)
    assert fake.request_count == sent + 1
    assert [g.text for g in second[:2]] == [g.text for g in first[:2]]
    assert second[2].text == "echo: [[fail:500x2]] three"
    assert again.counters["cache_hits"] == 2 and again.counters["requests"] == 1
    third = backend_for(fake, tmp_path).generate(prompts, GREEDY)
    assert fake.request_count == sent + 1 and third == second


def test_cache_key_covers_sampling_and_duplicates_are_sent_once(fake, tmp_path):
    backend = backend_for(fake, tmp_path)
    backend.generate(ask("same", "same", "same"), GREEDY)
    assert fake.request_count == 1
    backend.generate(ask("same"), SamplingSettings(max_tokens=33))
    assert fake.request_count == 2


def test_no_cache_asks_every_time(fake, tmp_path):
    backend = backend_for(fake, tmp_path, use_cache=False)
    backend.generate(ask("q"), GREEDY)
    backend.generate(ask("q"), GREEDY)
    assert fake.request_count == 2 and not (tmp_path / "cache.sqlite").exists()


def test_concurrency_is_bounded(fake, tmp_path):
    backend = backend_for(fake, tmp_path, max_concurrency=3)
    out = backend.generate(ask(*[f"[[sleep:0.15]] q{i}" for i in range(10)]), GREEDY)
    assert all(g.error is None for g in out)
    # At most 3 at once, and the bound is actually used (requests do overlap).
    assert fake.max_in_flight == 3


def test_guided_json_is_sent_as_response_format(fake, tmp_path):
    backend_for(fake, tmp_path).generate_json(ask("judge me"), 64, VERDICT_SCHEMA)
    sent = fake.bodies[0]["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"] == VERDICT_SCHEMA
    assert sent["json_schema"]["name"] == VERDICT_SCHEMA["title"]


def test_generate_works_inside_a_running_event_loop(fake, tmp_path):
    backend = backend_for(fake, tmp_path)

    async def caller():
        return backend.generate(ask("from a loop"), GREEDY)

    [out] = asyncio.run(caller())
    assert out.text == "echo: from a loop"


def test_a_cache_file_that_is_no_database_is_named_in_the_error(fake, tmp_path):
    broken = tmp_path / "cache.sqlite"
    broken.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RequestCacheError, match="cache.sqlite.*delete the file"):
        backend_for(fake, tmp_path).generate(ask("q"), GREEDY)


def test_api_key_comes_from_the_named_variable_then_openai_api_key(monkeypatch):
    monkeypatch.delenv("S3FT_JUDGE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert resolve_api_key("S3FT_JUDGE_API_KEY") == "EMPTY"
    monkeypatch.setenv("OPENAI_API_KEY", "from-openai")
    assert resolve_api_key("S3FT_JUDGE_API_KEY") == "from-openai"
    monkeypatch.setenv("S3FT_JUDGE_API_KEY", "from-judge")
    assert resolve_api_key("S3FT_JUDGE_API_KEY") == "from-judge"


def test_the_cache_survives_a_process_killed_mid_batch(fake, tmp_path):
    """kill -9 while answers are being written: the cache stays readable, keeps what was
    committed, and the rerun sends only the rest."""
    cache = tmp_path / "cache.sqlite"
    prompts = [f"[[sleep:0.05]] row {i}" for i in range(40)]
    script = textwrap.dedent(f"""
        from pipeline.backends.base import SamplingSettings
        from pipeline.backends.openai_backend import OpenAIBackend
        backend = OpenAIBackend({fake.base_url!r}, "fake-model", cache_path={str(cache)!r},
                                max_concurrency=1, api_key="k")
        backend.generate([[{{"role": "user", "content": p}}] for p in {prompts!r}],
                         SamplingSettings(max_tokens=8))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT,
                             env={**os.environ, "PYTHONPATH": str(PROJECT)})
    try:
        deadline = time.monotonic() + 30
        stored = 0
        while stored < 5:
            assert child.poll() is None, "the child finished before it could be killed"
            assert time.monotonic() < deadline, "the child stored nothing in 30 s"
            time.sleep(0.02)
            if cache.exists():
                try:
                    with sqlite3.connect(cache) as db:
                        stored = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
                except sqlite3.OperationalError:
                    stored = 0  # table not created yet
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    with sqlite3.connect(cache) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    assert 5 <= kept < len(prompts)
    sent_before = fake.request_count
    rerun = backend_for(fake, tmp_path, max_concurrency=8)
    out = rerun.generate(ask(*prompts), SamplingSettings(max_tokens=8))
    assert [g.text for g in out] == [f"echo: {p}" for p in prompts]
    assert fake.request_count - sent_before == len(prompts) - kept
    assert rerun.counters["cache_hits"] == kept


def test_retry_after_headers_are_read_in_every_form():
    from email.utils import formatdate

    from pipeline.backends.openai_backend import _retry_after_seconds

    assert _retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert _retry_after_seconds({"retry-after": "2"}) == 2.0
    in_ten_seconds = _retry_after_seconds({"retry-after": formatdate(time.time() + 10, usegmt=True)})
    assert in_ten_seconds is not None and 8 <= in_ten_seconds <= 10
    assert _retry_after_seconds({}) is None
