"""Load stage: resolve the data source, validate every row, give each a stable id.

Source resolution, in order: ``--data PATH`` → ``$S3FT_DATA_DIR/<task file>`` (default: the
project's ``data/`` folder) → the task's Hub dataset through ``datasets``. Bad input stops
the run with an error that names the file, the row and what to do; nothing is dropped
silently.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import UsageError
from pipeline.stage import Shard, ids_digest
from pipeline.storage import StageDir
from pipeline.tasks import TaskSpec

PROJECT_DIR = Path(__file__).resolve().parents[1]
SUPPORTED = (".jsonl", ".jsonl.gz", ".json", ".parquet", ".csv")


class DataError(UsageError):
    """Bad or missing input: the message says what and where, and how to fix it."""


@dataclass(frozen=True)
class LoadedData:
    rows: list[dict[str, Any]]
    source: str  # human-readable description
    fingerprint: dict[str, Any]  # changes whenever the data may have changed


def data_dir() -> Path:
    return Path(os.environ.get("S3FT_DATA_DIR") or PROJECT_DIR / "data")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    rows = []
    line_no = 0
    with opener(path, "rb") as handle:
        for line_no, raw in enumerate(_lines(handle, path), start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: line {line_no} is not UTF-8 text (byte "
                                f"{raw[exc.start:exc.start + 1]!r} at column {exc.start + 1}); "
                                f"re-encode the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {line_no} is not valid JSON ({exc.msg}); fix or "
                                f"remove that line") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {line_no} is not a JSON object")
            row["_line"] = line_no
            rows.append(row)
    return rows


def _lines(handle: Any, path: Path):
    """The file's lines; a truncated or corrupt .gz names the file instead of crashing."""
    try:
        yield from handle
    except (EOFError, OSError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: the compressed file is truncated or corrupt ({exc}); "
                        f"download or copy it again") from None


def read_file(path: Path) -> list[dict[str, Any]]:
    """Rows of a local file; ``_line`` records where each row came from for error messages."""
    name = path.name.lower()
    if not name.endswith(SUPPORTED):
        raise DataError(f"--data {path}: unsupported file type; use one of {', '.join(SUPPORTED)}")
    if not path.is_file():
        raise DataError(f"--data {path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _read_jsonl(path)
    if name.endswith(".json"):
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON at line {exc.lineno} ({exc.msg})") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text (at byte {exc.start}); re-encode the file "
                            f"as UTF-8") from None
        if isinstance(loaded, dict) and "data" in loaded:
            loaded = loaded["data"]
        if not isinstance(loaded, list):
            raise DataError(f"{path}: expected a JSON list of objects (or {{'data': [...]}})")
        return [{**row, "_line": i} for i, row in enumerate(loaded, start=1)]
    try:
        frame = pl.read_parquet(path) if name.endswith(".parquet") else pl.read_csv(path)
    except Exception as exc:  # Polars raises several kinds for a damaged file
        kind = "Parquet" if name.endswith(".parquet") else "CSV"
        raise DataError(f"{path}: not a readable {kind} file ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]})") from None
    # CSV line numbers count the header, so row i sits on line i + 1.
    offset = 1 if name.endswith(".csv") else 0
    return [{**row, "_line": i + offset} for i, row in enumerate(frame.to_dicts(), start=1)]


def _file_fingerprint(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _load_hub(task: TaskSpec, split: str) -> LoadedData:
    import datasets

    hub = task.hub
    if hub is None:
        raise FileNotFoundError(f"task {task.name!r} has no Hub dataset")
    dataset = datasets.load_dataset(hub.repo_id, hub.config, split=split)
    revision = getattr(dataset.info, "version", None)
    rows = [{**row, "_line": i} for i, row in enumerate(dataset, start=1)]
    fingerprint = {"hub": hub.repo_id, "config": hub.config, "split": split,
                   "revision": str(revision), "fingerprint": dataset._fingerprint}
    return LoadedData(rows, f"hub:{hub.repo_id}/{hub.config}/{split}", fingerprint)


def resolve_source(task: TaskSpec, data: str | None, split: str = "train") -> LoadedData:
    if split not in task.local_files:
        raise DataError(f"--split {split!r}: task {task.name!r} has splits {', '.join(task.splits)}")
    if data:
        path = Path(data).expanduser()
        return LoadedData(read_file(path), str(path), _file_fingerprint(path))
    local = data_dir() / task.local_files[split]
    if local.is_file():
        return LoadedData(read_file(local), str(local), _file_fingerprint(local))
    tried = ["--data (not given)", f"{local} (not found; S3FT_DATA_DIR={data_dir()})"]
    try:
        return _load_hub(task, split)
    except Exception as exc:  # offline, unknown repo, auth: all end in the same advice
        where = task.hub.repo_id if task.hub else "(none)"
        tried.append(f"Hub dataset {where} ({type(exc).__name__}: {exc})")
    raise DataError(
        f"no data found for task {task.name!r}. Tried, in order:\n  - " + "\n  - ".join(tried)
        + f"\nPass a local file with --data PATH, or set S3FT_DATA_DIR to a folder holding "
        f"{task.local_files[split]}."
    )


def row_id(task: TaskSpec, row: dict[str, Any]) -> str:
    if task.id_field and row.get(task.id_field) is not None:
        return f"{task.name}-{row[task.id_field]}"
    # No id in the source: hash what defines the example, so the id survives reordering.
    material = json.dumps({k: row[k] for k in task.required_fields}, sort_keys=True, default=str)
    return f"{task.name}-{hashlib.sha256(material.encode()).hexdigest()[:16]}"


def _type_name(value: Any) -> str:
    return {str: "a string", int: "a whole number", list: "a list"}.get(type(value), type(value).__name__)


def validate(task: TaskSpec, rows: list[dict[str, Any]], source: str) -> None:
    if not rows:
        raise DataError(f"{source}: no rows found")
    for row in rows:
        missing = [f for f in task.required_fields if row.get(f) in (None, "")]
        if missing:
            raise DataError(
                f"{source}: row at line {row['_line']} is missing {', '.join(missing)} "
                f"(task {task.name!r} needs {', '.join(task.required_fields)}); fix or remove it"
            )
        for name, wanted in task.field_types.items():
            value = row.get(name)
            ok = isinstance(value, wanted) and not isinstance(value, bool)
            if ok and wanted is list:
                ok = all(isinstance(item, str) for item in value)
            if not ok and value is not None:
                what = "a list of strings" if wanted is list else _type_name(wanted())
                raise DataError(f"{source}: row at line {row['_line']}: {name!r} must be {what}, "
                                f"not {_type_name(value)} ({str(value)[:60]!r}); fix the row")


def load_rows(task: TaskSpec, data: str | None, limit: int | None,
              split: str = "train") -> tuple[pl.DataFrame, LoadedData]:
    """Validated rows of ``split`` with ``id`` and ``gold`` columns, in source order, first
    ``limit`` only."""
    if limit is not None and limit < 1:
        raise DataError(f"--limit {limit}: must be a positive number of rows")
    loaded = resolve_source(task, data, split)
    rows = loaded.rows
    validate(task, rows, loaded.source)
    if task.prepare_row is not None:
        try:
            rows = [task.prepare_row(row) for row in rows]
        except ValueError as exc:
            raise DataError(f"{loaded.source}: {exc}") from None
    if task.split_of is not None:  # one file holds every split: keep the asked one
        rows = [row for row in rows if task.split_of(row) == split]
        if not rows:
            raise DataError(f"{loaded.source}: no rows of split {split!r}")
    rows = rows[:limit] if limit else rows
    records = []
    seen: dict[str, int] = {}
    for row in rows:
        rid = row_id(task, row)
        if rid in seen:
            # Duplicate prompts are kept (never silently dropped) but need distinct ids.
            seen[rid] += 1
            rid = f"{rid}-{seen[rid]}"
        else:
            seen[rid] = 0
        fields = {k: v for k, v in row.items() if k != "_line"}
        if "id" in fields:  # keep the source's own id column next to ours
            fields["source_id"] = fields.pop("id")
        records.append({**fields, "id": rid, "gold": task.gold_response(row)})
    return pl.DataFrame(records, infer_schema_length=None), loaded


def write_shards(frame: pl.DataFrame, stages_root: Path, key: str,
                 shard_size: int) -> list[Shard]:
    """Cut the loaded rows into fixed windows of ``shard_size`` rows and store them.

    Windows are fixed positions in source order, so a different ``--limit`` changes only
    the last, partial window: every full shard before it keeps its digest and is reused.
    """
    if shard_size < 1:
        raise DataError(f"--shard-size {shard_size}: must be at least 1")
    out = StageDir(stages_root / f"load-{key}")
    shards = []
    for index, start in enumerate(range(0, frame.height, shard_size)):
        part = frame.slice(start, shard_size)
        digest = ids_digest(part)
        if out.completed(index, digest) is None:
            out.write(index, part, {"stage": "load", "key": key, "input_digest": digest,
                                    "rows": part.height, "stats": {"rows": part.height}})
        shards.append(Shard(index, out.shard_path(index), digest))
    return shards
