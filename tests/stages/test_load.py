"""The load stage: formats, ids, --limit, source resolution and clear errors for bad input."""

import json
import subprocess
import sys

import polars as pl
import pytest

from pipeline.stages.load import DataError, load_rows
from pipeline.storage import file_digest
from pipeline.tasks import load_task
from tests.conftest import PROJECT

GSM8K = load_task("gsm8k")
ROWS = [
    {"question": "What is 2 + 3?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"},
    {"question": "What is 10 - 4?", "answer": "10 - 4 = 6\n#### 6"},
    {"question": "What is 3 * 3?", "answer": "#### 9"},
]


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize("suffix", ["jsonl", "json", "parquet", "csv"])
def test_every_supported_format_loads_the_same_rows(tmp_path, suffix):
    path = tmp_path / f"train.{suffix}"
    if suffix == "jsonl":
        write_jsonl(path, ROWS)
    elif suffix == "json":
        path.write_text(json.dumps(ROWS))
    elif suffix == "parquet":
        pl.DataFrame(ROWS).write_parquet(path)
    else:
        pl.DataFrame(ROWS).write_csv(path)
    frame, loaded = load_rows(GSM8K, str(path), limit=None)
    assert frame["question"].to_list() == [r["question"] for r in ROWS]
    assert loaded.fingerprint == {"sha256": file_digest(path)}
    # The SFT target has GSM8K's calculator annotations removed, the final line kept.
    assert frame["gold"][0] == "2 + 3 = 5\n#### 5"


def test_ids_are_stable_and_limit_takes_the_first_rows(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", ROWS)
    full, _ = load_rows(GSM8K, str(path), limit=None)
    first_two, _ = load_rows(GSM8K, str(path), limit=2)
    reordered, _ = load_rows(GSM8K, str(write_jsonl(tmp_path / "b.jsonl", ROWS[::-1])), None)
    assert first_two["id"].to_list() == full["id"].to_list()[:2]
    assert sorted(reordered["id"].to_list()) == sorted(full["id"].to_list())
    assert full["id"].n_unique() == 3


def test_duplicate_rows_are_kept_with_distinct_ids(tmp_path):
    frame, _ = load_rows(GSM8K, str(write_jsonl(tmp_path / "d.jsonl", [ROWS[0]] * 3)), None)
    assert frame.height == 3
    assert frame["id"].n_unique() == 3


def test_data_dir_is_used_when_no_data_flag(tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    write_jsonl(tmp_path / "gsm8k" / "train.jsonl", ROWS)
    monkeypatch.setenv("S3FT_DATA_DIR", str(tmp_path))
    frame, loaded = load_rows(GSM8K, None, limit=None)
    assert frame.height == 3
    assert loaded.source == str(tmp_path / "gsm8k" / "train.jsonl")


def test_a_relative_data_dir_is_read_from_the_working_directory(tmp_path, monkeypatch):
    """`S3FT_DATA_DIR=../shared/data python -m ...`: relative to where the user typed it, not
    to the task file's folder (which once made the README's own commands fail)."""
    (tmp_path / "datasets" / "gsm8k").mkdir(parents=True)
    write_jsonl(tmp_path / "datasets" / "gsm8k" / "train.jsonl", ROWS)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("S3FT_DATA_DIR", "../datasets")
    frame, loaded = load_rows(GSM8K, None, limit=None)
    assert frame.height == 3
    assert loaded.source == str(tmp_path / "work" / ".." / "datasets" / "gsm8k" / "train.jsonl")


def test_nothing_found_offline_lists_every_place_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("S3FT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as error:
        load_rows(GSM8K, None, limit=None)
    message = str(error.value)
    assert str(tmp_path / "gsm8k" / "train.jsonl") in message
    assert "openai/gsm8k" in message
    assert "--data" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("", "empty"),
        ('{"question": "q", "answer": "#### 1"}\n{"question": "q2", "answer": \n', "line 2"),
        ('{"question": "q", "answer": "#### 1"}\n{"answer": "#### 2"}\n', "line 2 is missing question"),
        ('{"question": "q", "answer": ""}\n', "line 1 is missing answer"),
        ('[1, 2]\n', "line 1 is not a JSON object"),
    ],
)
def test_bad_input_names_file_and_row(tmp_path, content, expected):
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError) as error:
        load_rows(GSM8K, str(path), limit=None)
    assert expected in str(error.value)
    assert str(path) in str(error.value)


def test_unsupported_extension_and_bad_limit(tmp_path):
    with pytest.raises(DataError, match="unsupported file type"):
        load_rows(GSM8K, str(tmp_path / "train.txt"), limit=None)
    with pytest.raises(DataError, match="--limit 0"):
        load_rows(GSM8K, str(write_jsonl(tmp_path / "a.jsonl", ROWS)), limit=0)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.run", *args], cwd=PROJECT,
                          capture_output=True, text=True, timeout=120)


def test_cli_reports_bad_input_without_a_traceback(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q2"}\n')
    result = cli("--task", "gsm8k", "--data", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "line 2 is missing answer" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_unknown_task_lists_the_known_ones(tmp_path):
    result = cli("--task", "nope", "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "--task: 'nope' is not a built-in task" in result.stderr
    assert "built-in tasks: gsm8k, mbpp, nq" in result.stderr


def test_duplicate_source_ids_are_an_error_naming_the_rows(tmp_path):
    """Two rows with one id from the task's id_field: which one is meant cannot be guessed,
    and renaming one used to clash with a real id (``x, x, x-1`` became ``x, x-1, x-1``)."""
    mbpp = load_task("mbpp")
    row = {"task_id": 700, "text": "t", "code": "def f():\n    return 1", "test_list": ["assert f() == 1"]}
    path = write_jsonl(tmp_path / "m.jsonl", [row, {**row, "task_id": 701}, row])
    with pytest.raises(DataError, match=r"lines 1 and 3 have the same 'task_id' 700; ids must be unique"):
        load_rows(mbpp, str(path), None)


def test_renamed_duplicates_never_take_another_rows_id(monkeypatch):
    from pipeline.stages import load

    monkeypatch.setattr(load, "row_id", lambda task, row: row["question"])
    rows = [{"question": q, "_line": i} for i, q in enumerate(["x", "x", "x-1", "x"], start=1)]
    ids = load.unique_row_ids(GSM8K, rows, "rows.jsonl")
    assert ids == ["x", "x-2", "x-1", "x-3"] and len(set(ids)) == 4
