"""Shared fixtures. Datasets come from ``S3FT_DATA_DIR`` (``make test`` sets it to
``../shared/data`` here); nothing is downloaded: the Hub is switched off for every test."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from pipeline.backends.device import ENGINE_START_LOG

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

PROJECT = Path(__file__).resolve().parents[1]


# -- time made visible: engine starts per test ------------------------------------------------
# Every engine start (in this process, a CLI child or a Ray job) appends a line to one file;
# each test's share is the lines added while it (and the fixtures it set up) ran.

_ENGINE_STARTS: Counter[str] = Counter()


def _engine_log_lines() -> int:
    try:
        with open(os.environ[ENGINE_START_LOG], encoding="utf-8") as log:
            return sum(1 for _ in log)
    except (KeyError, OSError):
        return 0


def pytest_configure(config):
    if ENGINE_START_LOG not in os.environ:
        handle, path = tempfile.mkstemp(prefix="s3ft-engine-starts-", suffix=".log")
        os.close(handle)
        os.environ[ENGINE_START_LOG] = path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    before = _engine_log_lines()
    yield
    started = _engine_log_lines() - before
    if started:
        _ENGINE_STARTS[item.nodeid] += started


def pytest_terminal_summary(terminalreporter):
    by_file = Counter()
    for nodeid, count in _ENGINE_STARTS.items():
        by_file[nodeid.split("::")[0]] += count
    total = sum(by_file.values())
    terminalreporter.write_sep("=", f"engine starts: {total}")
    for path, count in by_file.most_common():
        terminalreporter.write_line(f"{count:3d}  {path}")


#: Sweeps over every gold solution or reference: a fixed random sample in the first tier
#: (``make test``), every row in the second (``make test-all``). A sweep is about a rule's
#: correctness on real rows; a regression on one row in 15 still shows in a sample of 500.
def sweep_params(sample: int) -> list:
    return [pytest.param(sample, id=f"sample{sample}"),
            pytest.param(None, id="every", marks=pytest.mark.heavy)]


SWEEP = sweep_params(500)


def sweep(rows: list, size: int | None, seed: int = 0) -> list:
    """``rows`` whole (``size`` None), else a fixed random sample of ``size`` in their order."""
    if size is None or size >= len(rows):
        return rows
    import random

    chosen = sorted(random.Random(seed).sample(range(len(rows)), size))
    return [rows[i] for i in chosen]


def gsm8k_admitting_paraphrases(folder: Path, prove_own_answers: bool = True) -> str:
    """The built-in GSM8K task, but admitting paraphrases whose calculations are proven
    (``judge.admit_unproven_wording: true``; by default their words keep them out): for the
    tests of what happens to admitted paraphrases downstream (sources, summary, report,
    card, audit). ``prove_own_answers=False``: own answers admitted on their number, for a
    test whose rows' golds the calculation proof cannot read. Returns the task folder to
    pass as ``--task``."""
    task = folder / "task.yaml"
    if task.is_file():
        return str(folder)
    shutil.copytree(PROJECT / "prompts" / "gsm8k", folder)
    text = task.read_text()
    assert "  kind: math" in text
    options = "  admit_unproven_wording: true" + ("" if prove_own_answers else
                                                   "\n  prove_own_answers: false")
    task.write_text(text.replace("  kind: math", "  kind: math\n" + options, 1))
    return str(folder)


def data_dir() -> Path:
    root = Path(os.environ.get("S3FT_DATA_DIR") or PROJECT / "data")
    if not (root / "gsm8k" / "train.jsonl").is_file():
        pytest.fail(f"GSM8K data not found under {root}: set S3FT_DATA_DIR to the datasets "
                    f"folder (here: ../shared/data)")
    return root


@pytest.fixture(scope="session")
def gsm8k_train() -> list[dict]:
    with (data_dir() / "gsm8k" / "train.jsonl").open() as handle:
        return [json.loads(line) for line in handle]


#: The shared GSM8K run's options. float32: several tests compare runs for identical output, and
#: in bfloat16 (--dtype auto on CPUs with AVX512-BF16/AMX) greedy answers change with the batch
#: they were decoded in, which a resumed or Ray run does not always share with an uninterrupted one.
GSM8K_ARGS = ("--task", "gsm8k", "--limit", "16", "--shard-size", "8", "--dtype", "float32")


#: Export columns holding float log-probs from a prefill: the last bits of a float32 sum depend
#: on how the engine batched the requests (another process, another replica), so two runs that
#: agree on every text may differ there by rounding.
SCORE_COLUMNS = ("target_logprob", "gold_logprob")


def export_differences(actual: Path, reference: Path, tolerance: float = 1e-4) -> list[str]:
    """What differs between two ``train.parquet`` files: column names (every column exactly,
    the score columns within ``tolerance`` and null in the same rows). Empty when the same."""
    import polars as pl

    left, right = pl.read_parquet(actual), pl.read_parquet(reference)
    if left.columns != right.columns or left.height != right.height:
        return [f"shape/columns {left.shape} {left.columns} != {right.shape} {right.columns}"]
    differences = []
    for column in left.columns:
        a, b = left[column], right[column]
        if column in SCORE_COLUMNS:
            same_nulls = a.is_null().equals(b.is_null())
            close = same_nulls and bool(((a - b).abs().fill_null(0) <= tolerance).all())
            if not close:
                differences.append(f"{column}: {a.to_list()} != {b.to_list()}")
        elif not a.equals(b):
            rows = [i for i, (x, y) in enumerate(zip(a.to_list(), b.to_list(), strict=True)) if x != y]
            differences.append(f"{column} (rows {rows})")
    return differences


def run_cli(*args: str, timeout: float = 1500, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m pipeline.run`` as a user would, from the project folder."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.run", *args], cwd=PROJECT, capture_output=True,
        text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


@contextlib.contextmanager
def captured_output(env: dict | None = None):
    """What a command prints, caught in this interpreter: stdout and stderr with the log lines
    at the CLI's default level (INFO), and ``env`` set for the block only."""
    from pipeline.config import LOG_FORMAT

    stdout, stderr = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    saved_env, saved_level = dict(os.environ), root.level
    os.environ.update(env or {})
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            yield stdout, stderr
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        os.environ.clear()
        os.environ.update(saved_env)


def run_in_process(*args: str, env: dict | None = None, module: str = "pipeline.run"
                   ) -> subprocess.CompletedProcess:
    """``python -m <module> ARGS`` in this interpreter: the same ``main`` and error handling
    (``report_errors``), its output captured. For the many error-message cases, where starting
    an interpreter (and importing its libraries) costs far more than the check; a few real
    subprocess checks (``run_cli``) stay beside them."""
    from pipeline.errors import report_errors

    main = importlib.import_module(module).main
    with captured_output(env) as (stdout, stderr):
        try:
            code = report_errors(main, list(args))
        except SystemExit as exit_:  # argparse refuses a flag this way
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess([module, *args], code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="session")
def engine():
    """The session's shared engine: the embedded model in float32, in this process, set up for
    seeded sampling too (so --samples runs can use it). Tests about what the pipeline does
    with an engine's answers use it; only tests about starting, killing or serving an engine
    start their own."""
    from pipeline.config import RunConfig
    from pipeline.curate import _backend

    served = _backend(RunConfig(dtype="float32"), seeded_sampling=True)
    yield served
    served[1].close()


def curate_in_process(engine, env: dict | None = None, **options) -> tuple[dict, str]:
    """``pipeline.curate.run`` on the shared engine (float32): the summary and the log."""
    from pipeline.config import RunConfig
    from pipeline.curate import run

    with captured_output(env) as (_, stderr):
        summary = run(RunConfig(dtype="float32", **options), served=engine)
    return summary, stderr.getvalue()


@pytest.fixture(scope="session")
def gsm8k_run(tmp_path_factory) -> dict:
    """One real curation run (real engine, real model, 16 real GSM8K rows), shared by the
    tests that check its output, then the same command again to check reuse."""
    out = tmp_path_factory.mktemp("runs") / "gsm8k-16"
    args = (*GSM8K_ARGS, "--out", str(out))
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-4000:]
    summary_first = json.loads((out / "summary.json").read_text())
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr[-4000:]
    return {"out": out, "first": first, "second": second, "summary_first": summary_first,
            "summary_second": json.loads((out / "summary.json").read_text())}


@pytest.fixture(scope="session")
def mbpp_run(engine, tmp_path_factory) -> dict:
    """One real MBPP curation run: 16 rows of the train split, the shared engine, the real
    sandbox."""
    out = tmp_path_factory.mktemp("runs") / "mbpp-16"
    summary, log = curate_in_process(engine, task="mbpp", limit=16, out=str(out))
    return {"out": out, "log": log, "summary": summary}
