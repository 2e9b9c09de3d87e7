"""Shared fixtures. Datasets come from ``S3FT_DATA_DIR`` (``make test`` sets it to
``../shared/data`` here); nothing is downloaded: the Hub is switched off for every test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

PROJECT = Path(__file__).resolve().parents[1]


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
def mbpp_run(tmp_path_factory) -> dict:
    """One real MBPP curation run: 16 rows of the train split, real engine, real sandbox."""
    out = tmp_path_factory.mktemp("runs") / "mbpp-16"
    result = run_cli("--task", "mbpp", "--limit", "16", "--out", str(out))
    assert result.returncode == 0, result.stderr[-4000:]
    return {"out": out, "result": result, "summary": json.loads((out / "summary.json").read_text())}
