"""A failure is never a dataset: bad inputs get one clear line, outages stop the run, failed
rows are retried, damaged shards are recomputed.

Every CLI case runs ``pipeline.run``'s ``main`` as a user's command does (generation through a
stand-in OpenAI-compatible server on 127.0.0.1, so no engine starts) and checks the exit code,
that the message names the right thing, that no traceback is printed, and that no finished
work is lost. The cases run in this interpreter (``run_in_process``: the same ``main`` and
error handling, an interpreter start saved per case); a few run as real processes, to show
that what a user's shell sees (exit code, one line, no traceback) is the same.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from pipeline.errors import RunFailed
from pipeline.stage import Shard, Stage, append_error, run_stage
from pipeline.text import safe_text
from tests.conftest import run_cli, run_in_process
from tests.fake_openai_server import FakeOpenAIServer

ROWS = [{"question": f"Tom has {n} apples and buys {n} more. How many now?",
         "answer": f"{n} + {n} = {2 * n}\n#### {2 * n}"} for n in range(1, 7)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(hang_seconds=5) as fake:
        yield fake


@pytest.fixture
def data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "rows.jsonl", ROWS)


def openai_args(server: FakeOpenAIServer, data: Path, out: Path, *extra: str) -> list[str]:
    return ["--task", "gsm8k", "--data", str(data), "--backend", "openai", "--base-url",
            server.base_url, "--model", server.served_model, "--out", str(out),
            "--max-retries", "1", "--request-timeout", "2", *extra]


def assert_clear(result, code: int, *names: str) -> None:
    """Exit ``code``, one ``error:`` line naming every one of ``names``, no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines, result.stderr[-2000:]
    for name in names:
        assert name in result.stderr, (name, result.stderr[-2000:])


# -- bad input files ---------------------------------------------------------------------------

def _gz_truncated(path: Path) -> None:
    blob = gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS * 50).encode())
    path.write_bytes(blob[: len(blob) // 2])


BAD_FILES = [
    ("missing", "rows.jsonl", None, "no such file"),
    ("wrong suffix", "rows.txt", "x", "unsupported file type"),
    ("empty", "rows.jsonl", "", "the file is empty"),
    ("invalid json line", "rows.jsonl", '{"question": "q", "answer": "#### 1"}\n{"question": \n',
     "line 2 is not valid JSON"),
    ("not an object", "rows.jsonl", "[1, 2]\n", "line 1 is not a JSON object"),
    ("missing field", "rows.jsonl", '{"question": "q"}\n', "no column 'answer' (task file"),
    ("answer is a number", "rows.jsonl", '{"question": "q", "answer": 12}\n',
     "'answer' must be a string"),
    ("question is a list", "rows.jsonl", '{"question": ["q"], "answer": "#### 1"}\n',
     "'question' must be a string"),
    ("not utf-8", "rows.jsonl", b'{"question": "q", "answer": "#### 1"}\n{"question": "caf\xe9", '
     b'"answer": "#### 2"}\n', "line 2 is not UTF-8"),
    ("corrupt parquet", "rows.parquet", b"PAR1 this is not parquet", "not a readable Parquet"),
    ("truncated gz", "rows.jsonl.gz", _gz_truncated, "truncated or corrupt"),
    ("json not a list", "rows.json", '{"rows": 1}', "expected a JSON list"),
]


@pytest.mark.parametrize("name, filename, content, expected", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_input_file_is_named(tmp_path, name, filename, content, expected):
    path = tmp_path / filename
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    result = run_in_process("--task", "gsm8k", "--data", str(path), "--out", str(tmp_path / "out"))
    assert_clear(result, 2, str(path), expected)
    assert not (tmp_path / "out" / "train.parquet").exists()


def test_a_real_process_prints_the_same_one_line(tmp_path):
    """What a user's shell sees: the exit code and the one line of the in-process cases."""
    name, filename, content, expected = BAD_FILES[3]  # invalid JSON on line 2
    path = tmp_path / filename
    path.write_text(content)
    args = ("--task", "gsm8k", "--data", str(path), "--out", str(tmp_path / "out"))
    real, in_process = run_cli(*args, timeout=120), run_in_process(*args)
    assert_clear(real, 2, str(path), expected)
    errors = [[line for line in r.stderr.splitlines() if line.startswith("error:")]
              for r in (real, in_process)]
    assert errors[0] == errors[1] and len(errors[0]) == 1


def test_mbpp_test_list_as_a_string_is_named(tmp_path):
    row = {"task_id": 601, "text": "t", "code": "def f(): pass", "test_list": "assert f() is None"}
    path = write_jsonl(tmp_path / "mbpp.jsonl", [row])
    result = run_in_process("--task", "mbpp", "--data", str(path), "--out", str(tmp_path / "out"))
    assert_clear(result, 2, "line 1", "'test_list' must be a list of strings")


# -- bad flags and config files ---------------------------------------------------------------

BAD_FLAGS = [
    (["--max-concurrency", "0"], "--max-concurrency 0"),
    (["--limit", "0"], "--limit 0"),
    (["--shard-size", "0"], "--shard-size 0"),
    (["--max-error-rate", "2"], "--max-error-rate 2.0"),
    (["--max-tokens", "512", "--max-model-len", "256"], "--max-model-len 256"),
    (["--backend", "tgi"], "--backend 'tgi'"),
    (["--engine", "slurm"], "--engine 'slurm'"),
    (["--dtype", "int3"], "--dtype 'int3'"),
    (["--train", "dpo"], "--train 'dpo'"),
    (["--backend", "openai", "--base-url", "127.0.0.1:8000/v1"], "must start with http://"),
    (["--backend", "openai"], "--backend openai needs --base-url"),
    (["--task", "gsm9k"], "'gsm9k' is not a built-in task"),
    (["--split", "dev"], "--split 'dev'"),
    (["--judge-min-tnr", "1.5"], "--judge-min-tnr 1.5"),
    (["--temperature", "inf"], "--temperature inf: must be a finite number >= 0"),
    (["--repetition-penalty", "inf"], "--repetition-penalty inf: must be a finite number above 0"),
    (["--seed", "-1"], "--seed -1: must be a whole number from 0 to 4294967295"),
    (["--seed", str(2**70)], f"--seed {2**70}: must be a whole number"),
    (["--samples", "100000"], "--samples 100000: must be from 1 to 64"),
]


@pytest.mark.parametrize("flags, expected", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_a_bad_flag_is_named(tmp_path, data, flags, expected):
    result = run_in_process("--task", "gsm8k", "--data", str(data), "--out", str(tmp_path / "out"),
                     *flags)
    assert_clear(result, 2, expected)


def test_a_flag_of_the_wrong_type_is_refused_by_the_parser(tmp_path, data):
    result = run_cli("--data", str(data), "--limit", "ten", timeout=60)  # a real process
    assert result.returncode == 2 and "--limit" in result.stderr and "Traceback" not in result.stderr


BAD_CONFIGS = [
    ("limit: ten\n", "limit: 'ten' is not a whole number"),
    ("max_tokens: [1, 2]\n", "max_tokens"),
    ("limit: 5\n  bad: [\n", "not valid YAML"),
    ("- limit: 5\n", "expected a mapping"),
    ("max_tokenz: 64\n", "unknown option(s) max_tokenz"),
    ("paraphrase_all: maybe\n", "paraphrase_all: 'maybe' is not true or false"),
]


@pytest.mark.parametrize("text, expected", BAD_CONFIGS, ids=[c[1][:20] for c in BAD_CONFIGS])
def test_a_bad_config_file_is_named(tmp_path, data, text, expected):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    result = run_in_process("--data", str(data), "--config", str(config))
    assert_clear(result, 2, str(config), expected)


def test_a_missing_config_file_is_named(tmp_path, data):
    result = run_in_process("--data", str(data), "--config", str(tmp_path / "nope.yaml"))
    assert_clear(result, 2, "nope.yaml", "no such file")


# -- models and output folders ----------------------------------------------------------------

def test_a_missing_gguf_is_named(tmp_path, data):
    result = run_in_process("--data", str(data), "--model", str(tmp_path / "m.gguf"))
    assert_clear(result, 2, "m.gguf", "no such .gguf file")


def test_a_model_folder_without_config_json_is_named(tmp_path, data):
    (tmp_path / "model").mkdir()
    result = run_in_process("--data", str(data), "--model", str(tmp_path / "model"))
    assert_clear(result, 2, "config.json")


@pytest.mark.parametrize("spec", ["./models/smollm-typo", "models/deeper/typo", "~/no-such-model"])
def test_a_mistyped_model_path_is_never_sent_to_the_hub(tmp_path, data, spec):
    result = run_in_process("--data", str(data), "--model", spec, "--out", str(tmp_path / "o"))
    assert_clear(result, 2, spec, "no such file or folder")
    assert "starting the vLLM engine" not in result.stderr


def test_an_unknown_embedded_model_is_named(tmp_path, data):
    result = run_in_process("--data", str(data), "--model", "embedded:smollm2-135m", "--out",
                     str(tmp_path / "o"))
    assert_clear(result, 2, "embedded:smollm2-135m", "no such embedded model",
                 "embedded:smollm2-135m-instruct")


def test_out_that_is_a_file_is_named(tmp_path, data, server):
    out = tmp_path / "taken"
    out.write_text("not a folder")
    result = run_in_process(*openai_args(server, data, out))
    assert_clear(result, 2, str(out), "a file is in the way")
    assert out.read_text() == "not a folder"


def test_out_on_a_read_only_file_system_is_named(data, server):
    out = Path("/proc/s3ft-run")  # procfs refuses new folders, even to root
    result = run_in_process(*openai_args(server, data, out))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "error:" in result.stderr and "/proc/s3ft-run" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--data", str(tmp_path / "missing.jsonl"), "--debug", timeout=60)
    assert result.returncode != 0 and "Traceback" in result.stderr


# -- outages: the run stops, finished work stays, a rerun retries what failed ----------------

OUTAGES = [
    ("500 on every request", "[[fail:500]]", "http_500"),
    ("garbage body", "[[garbage]]", "not JSON"),
    ("null content", "[[null]]", "not text"),
    ("truncated body", "[[truncated]]", "not JSON"),
    ("slower than the timeout", "[[hang]]", "timeout"),
    ("429 on every request", "[[fail:429]]", "http_429"),
]


@pytest.mark.parametrize("name, directive, expected", OUTAGES, ids=[o[0] for o in OUTAGES])
def test_an_outage_stops_the_run_instead_of_making_a_gold_dataset(tmp_path, server, name,
                                                                  directive, expected):
    rows = [{**r, "question": f"{r['question']} {directive}"} for r in ROWS]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "out"
    # One case as a real process (exit 1 as a shell sees it), the others in this interpreter.
    run = run_cli if directive == OUTAGES[0][1] else run_in_process
    result = run(*openai_args(server, data, out), env={"S3FT_CACHE_DIR": str(tmp_path / "cache")})
    assert_clear(result, 1, "generate: every row of shard 0 failed", expected,
                 "rerun the same command")
    assert not (out / "train.parquet").exists()  # no dataset made of failures
    markers = list((out / "stages").glob("generate-*/shard-00000.done.json"))
    assert len(markers) == 1 and len(json.loads(markers[0].read_text())["failed_ids"]) == 6


def test_nothing_listening_stops_the_run(tmp_path, data):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "out"
    result = run_in_process("--task", "gsm8k", "--data", str(data), "--backend", "openai", "--base-url",
                     f"http://127.0.0.1:{port}/v1", "--model", "m", "--out", str(out),
                     "--max-retries", "1",
                     env={"S3FT_CACHE_DIR": str(tmp_path / "cache")})
    assert_clear(result, 1, "generate: every row of shard 0 failed", "connection_error")
    assert not (out / "train.parquet").exists()


def test_after_an_outage_a_rerun_retries_exactly_the_failed_rows(tmp_path):
    """Two shards of 3: the first is answered, then the server goes down for the second; the
    rerun with the server back sends one request per failed row and keeps the first shard."""
    data = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    out = tmp_path / "out"
    env = {"S3FT_CACHE_DIR": str(tmp_path / "cache")}
    with FakeOpenAIServer() as server:
        args = openai_args(server, data, out, "--shard-size", "3", "--limit", "3")
        assert run_in_process(*args, env=env).returncode == 0  # shard 0 done
        first = pl.read_parquet(next((out / "stages").glob("generate-*/shard-00000.parquet")))
        server.fail_all = 500
        args = openai_args(server, data, out, "--shard-size", "3")
        down = run_in_process(*args, env=env)
        assert_clear(down, 1, "every row of shard 1 failed", "http_500")
        server.fail_all = None
        before = server.request_count
        back = run_in_process(*args, env=env)
        assert back.returncode == 0, back.stderr[-2000:]
        generate_requests = [b for b in server.bodies[before:]
                             if "Rewrite the solution" not in b["messages"][-1]["content"]]
    assert len(generate_requests) == 3  # exactly the 3 failed rows, not the 6
    assert "retrying 3 rows that failed" in back.stderr
    train = pl.read_parquet(out / "train.parquet")
    assert train.height == 6 and train["error"].null_count() == 6
    kept = pl.read_parquet(next((out / "stages").glob("generate-*/shard-00000.parquet")))
    assert kept.equals(first)  # the good shard, untouched
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["generate"]["retried_rows"] == 3
    assert summary["stages"]["generate"]["failed_rows"] == 0


def test_the_server_address_is_part_of_the_generate_key(tmp_path, data):
    out = tmp_path / "out"
    with FakeOpenAIServer() as one, FakeOpenAIServer() as two:
        assert run_in_process(*openai_args(one, data, out),
                       env={"S3FT_CACHE_DIR": str(tmp_path / "c")}).returncode == 0
        assert run_in_process(*openai_args(two, data, out),
                       env={"S3FT_CACHE_DIR": str(tmp_path / "c")}).returncode == 0
        assert two.request_count > 0  # another server: asked again, not served from cache
    assert len(list((out / "stages").glob("generate-*"))) == 2


def test_a_dead_llm_judge_stops_the_run(tmp_path):
    nq = {"question": "who wrote hamlet", "answers": ["William Shakespeare"],
          "ctxs": [{"title": "Hamlet", "text": "Hamlet is a tragedy by William Shakespeare."}]}
    rows = [{**nq, "question": f"{nq['question']} {i}"} for i in range(4)]
    data = write_jsonl(tmp_path / "nq.jsonl", rows)
    with FakeOpenAIServer() as gen, FakeOpenAIServer(served_model="judge") as judge:
        judge.fail_all = 503
        result = run_in_process("--task", "nq", "--split", "train", "--data", str(data), "--backend",
                         "openai", "--base-url", gen.base_url, "--model", gen.served_model,
                         "--judge-base-url", judge.base_url, "--judge-model", "judge",
                         "--max-retries", "1", "--out", str(tmp_path / "out"),
                         env={"S3FT_CACHE_DIR": str(tmp_path / "cache")})
    if "no rows of split 'train'" in result.stderr:  # all four hashed into "test"
        pytest.skip("rows fell in the test split")
    assert_clear(result, 1, "LLM judge 'judge' gave no reply", "--judge-base-url")
    assert not (tmp_path / "out" / "train.parquet").exists()


def test_a_lone_surrogate_from_the_server_is_stored_safely(tmp_path, server):
    rows = [{**r, "question": f"{r['question']} [[surrogate]]"} for r in ROWS[:2]]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "out"
    result = run_in_process(*openai_args(server, data, out),
                     env={"S3FT_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-2000:]
    train = pl.read_parquet(out / "train.parquet")
    assert all("caf\ufffd" in c for c in train["candidate"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["texts_repaired"] >= 2


# -- damaged shards ----------------------------------------------------------------------------

def test_a_truncated_shard_is_named_and_recomputed(tmp_path, data, server):
    out = tmp_path / "out"
    env = {"S3FT_CACHE_DIR": str(tmp_path / "cache")}
    assert run_in_process(*openai_args(server, data, out), env=env).returncode == 0
    expected = pl.read_parquet(out / "train.parquet")
    shard = next((out / "stages").glob("judge-*/shard-00000.parquet"))
    shard.write_bytes(shard.read_bytes()[:100])
    again = run_in_process(*openai_args(server, data, out), env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{shard} is damaged" in again.stderr
    assert pl.read_parquet(out / "train.parquet").equals(expected)


def test_an_unreadable_marker_is_recomputed(tmp_path, data, server):
    out = tmp_path / "out"
    env = {"S3FT_CACHE_DIR": str(tmp_path / "cache")}
    assert run_in_process(*openai_args(server, data, out), env=env).returncode == 0
    marker = next((out / "stages").glob("select-*/shard-00000.done.json"))
    marker.write_text("{not json")
    again = run_in_process(*openai_args(server, data, out), env=env)
    assert again.returncode == 0 and "unreadable completion marker" in again.stderr


# -- the stage loop itself (no server, no engine) --------------------------------------------

class Flaky(Stage):
    """Fails the rows whose x is in ``failing``; records what it was asked to process."""

    name = "flaky"
    version = "1"
    columns = {"y": pl.Int64}

    def __init__(self, failing: set[int], permanent: set[int] = frozenset()):
        self.failing, self.permanent = failing, permanent
        self.seen: list[list[int]] = []

    def settings(self) -> dict:
        return {}

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        xs = frame["x"].to_list()
        self.seen.append(xs)
        errors = ["prompt_too_long: x" if x in self.permanent else
                  "http_500: down" if x in self.failing else None for x in xs]
        frame = frame.with_columns(pl.Series("y", [None if e else 2 * x for x, e in
                                                   zip(xs, errors, strict=True)], dtype=pl.Int64))
        return append_error(frame, self.name, errors)


def shards_of(tmp_path: Path, sizes: list[int]) -> list[Shard]:
    shards, start = [], 0
    for index, size in enumerate(sizes):
        path = tmp_path / f"in-{index}.parquet"
        pl.DataFrame({"id": [f"r{i}" for i in range(start, start + size)],
                      "x": list(range(start, start + size))}).write_parquet(path)
        shards.append(Shard(index, path, f"ids-{index}"))
        start += size
    return shards


def test_failed_rows_are_retried_and_good_rows_kept(tmp_path):
    shards = shards_of(tmp_path, [4, 4])
    first = run_stage(Flaky({1, 5}), shards, "up", tmp_path / "s", max_error_rate=0.5)
    assert first.failed_rows == 2
    good = pl.read_parquet(first.shards[0].path).filter(pl.col("x") != 1)
    again = Flaky(set())
    second = run_stage(again, shards, "up", tmp_path / "s", max_error_rate=0.5)
    assert again.seen == [[1], [5]]  # only the failed rows, shard by shard
    assert (second.failed_rows, second.retried_rows) == (0, 2)
    redone = pl.read_parquet(second.shards[0].path)
    assert redone["x"].to_list() == [0, 1, 2, 3] and redone["y"].to_list() == [0, 2, 4, 6]
    assert redone.filter(pl.col("x") != 1).equals(good)
    assert second.shards[0].digest != first.shards[0].digest  # downstream will recompute
    third = Flaky(set())
    assert run_stage(third, shards, "up", tmp_path / "s").computed_shards == 0 and third.seen == []


def test_permanent_failures_count_but_are_not_retried(tmp_path):
    shards = shards_of(tmp_path, [4])
    run_stage(Flaky(set(), permanent={2}), shards, "up", tmp_path / "s", max_error_rate=0.5)
    again = Flaky(set())
    result = run_stage(again, shards, "up", tmp_path / "s", max_error_rate=0.5)
    assert again.seen == [] and result.failed_rows == 1
    with pytest.raises(RunFailed, match="1 of 4 rows failed, more than --max-error-rate 0.1"):
        run_stage(Flaky(set()), shards, "up", tmp_path / "s", max_error_rate=0.1)


def test_the_failure_budget_stops_the_stage_and_keeps_its_shards(tmp_path):
    shards = shards_of(tmp_path, [10, 10])
    with pytest.raises(RunFailed) as stopped:
        run_stage(Flaky({0, 1}), shards, "up", tmp_path / "s", max_error_rate=0.05)
    message = str(stopped.value)
    assert "2 of 20 rows failed" in message and "flaky: http_500: down" in message
    assert len(list((tmp_path / "s").glob("flaky-*/shard-*.done.json"))) == 2  # both kept
    with pytest.raises(RunFailed, match="every row of shard 0 failed"):
        run_stage(Flaky(set(range(10))), shards, "up", tmp_path / "t")
    assert not list((tmp_path / "t").glob("flaky-*/shard-00001.*"))  # stopped at once


def test_safe_text_replaces_lone_surrogates_only():
    assert safe_text("caf\udc80 ok \ud83d") == "caf\ufffd ok \ufffd"
    assert safe_text("café 😀") == "café 😀" and safe_text(None) is None
    frame = append_error(pl.DataFrame({"id": ["a"]}), "judge", ["bad \udc80 byte"])
    assert frame["error"].to_list() == ["judge: bad \ufffd byte"]


def test_the_request_cache_stores_a_surrogate_answer(tmp_path):
    from pipeline.backends.request_cache import RequestCache

    cache = RequestCache(tmp_path / "c.sqlite")
    cache.put("k", {"messages": ["\udc80"]}, {"text": "caf\udc80"})
    assert cache.get("k") == {"text": "caf\ufffd"}


def test_a_judge_reason_with_a_surrogate_is_stored(tmp_path):
    from judges import Verdict
    from pipeline.stages.judge import verdict_columns

    columns = verdict_columns([Verdict(False, "error", "x = '\udc80'", "Error: \udc80")], "")
    assert pl.DataFrame(columns)["judge_reason"].to_list() == ["Error: \ufffd"]


def test_os_errors_become_one_line():
    import errno

    from pipeline.errors import describe_os_error

    assert "no space left" in describe_os_error(OSError(errno.ENOSPC, "No space", "/data/run"))
    assert "/data/run" in describe_os_error(OSError(errno.ENOSPC, "No space", "/data/run"))
    assert "read-only" in describe_os_error(OSError(errno.EROFS, "Read-only", "/ro"))
    assert os.strerror(errno.EIO) in describe_os_error(OSError(errno.EIO, os.strerror(errno.EIO)))


@pytest.fixture
def tiny_disk(tmp_path):
    """A 300 KiB file system (a tmpfs mount; needs root, as CI and this project's machines have)."""
    import subprocess

    point = tmp_path / "tiny"
    point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(point)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode()[:200]}")
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_full_disk_says_so_and_names_the_folder(tiny_disk, server, gsm8k_train, tmp_path):
    data = write_jsonl(tmp_path / "rows.jsonl", gsm8k_train[:300])
    out = tiny_disk / "run"
    result = run_in_process(*openai_args(server, data, out),
                     env={"S3FT_CACHE_DIR": str(tmp_path / "cache")})
    assert_clear(result, 1, "no space left on the device", str(out))
    assert not (out / "train.parquet").exists()
