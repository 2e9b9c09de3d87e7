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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.config import data_dir
from pipeline.errors import UsageError
from pipeline.stage import Shard, ids_digest
from pipeline.storage import StageDir, file_digest
from pipeline.tasks import TaskSpec
from pipeline.tasks.taskfile import data_path

SUPPORTED = (".jsonl", ".jsonl.gz", ".json", ".parquet", ".csv")


class DataError(UsageError):
    """Bad or missing input: the message says what and where, and how to fix it."""


@dataclass(frozen=True)
class LoadedData:
    rows: list[dict[str, Any]]
    source: str  # human-readable description
    fingerprint: dict[str, Any]  # changes whenever the data may have changed


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
    # The bytes, not the path or mtime: a copy, a fresh checkout or a volume mounted again
    # gives the same file a new mtime, and a run on it must still resume. Reading it once
    # more costs little next to parsing it.
    return {"sha256": file_digest(path)}


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _from_datasets(dataset: Any, split: str, where: str) -> Any:
    """One split of what ``datasets`` loaded (a DatasetDict holds several)."""
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise DataError(f"{where}: no split {split!r} (it has {', '.join(sorted(dataset))}); "
                            f"pass --split")
        return dataset[split]
    return dataset


def _dataset_rows(dataset: Any) -> list[dict[str, Any]]:
    return [{**row, "_line": i} for i, row in enumerate(dataset, start=1)]


def load_hub(repo_id: str, config: str | None, split: str) -> LoadedData:
    """A Hub dataset (or a folder of data files) through ``datasets.load_dataset``."""
    import datasets

    dataset = datasets.load_dataset(repo_id, config, split=split)
    revision = getattr(dataset.info, "version", None)
    fingerprint = {"hub": repo_id, "config": config, "split": split,
                   "revision": str(revision), "fingerprint": dataset._fingerprint}
    return LoadedData(_dataset_rows(dataset), f"hub:{repo_id}/{config or 'default'}/{split}",
                      fingerprint)


def _is_saved_dataset(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("dataset_dict.json", "state.json"))


def read_data(task: TaskSpec, ref: str, split: str) -> LoadedData:
    """``--data``: a local file, a dataset saved with ``save_to_disk``, a folder of data
    files, or a Hub dataset id (both through ``datasets``)."""
    path = Path(ref).expanduser()
    if path.is_file() or path.name.lower().endswith(SUPPORTED):
        return LoadedData(read_file(path), str(path), _file_fingerprint(path))
    if path.is_dir():
        if _is_saved_dataset(path):
            import datasets

            dataset = _from_datasets(datasets.load_from_disk(str(path)), split, f"--data {path}")
            fingerprint = {"saved_dataset": str(path.resolve()), "split": split,
                           "fingerprint": dataset._fingerprint}
            return LoadedData(_dataset_rows(dataset), f"{path} (saved dataset, {split})", fingerprint)
        return _hub_or_error(str(path), None, split, f"--data {path}")
    if _HUB_ID.fullmatch(ref):
        hub = task.data.get("hub") or {}
        config = hub.get("config") if hub.get("id") == ref else None
        return _hub_or_error(ref, config, split, f"--data {ref} (a Hub dataset id)")
    if path.suffix:
        return LoadedData(read_file(path), str(path), {})  # names the unsupported type
    raise DataError(f"--data {path}: no such file or folder, and not a Hub dataset id "
                    f"(owner/name); use a file ({', '.join(SUPPORTED)}), a saved dataset folder "
                    f"or a Hub id")


def _hub_or_error(repo_id: str, config: str | None, split: str, where: str) -> LoadedData:
    try:
        return load_hub(repo_id, config, split)
    except DataError:
        raise
    except Exception as exc:  # offline, unknown repo, no such split: one message
        raise DataError(f"{where}: datasets could not load it ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:300]})") from None


def _task_file(task: TaskSpec, split: str) -> str | None:
    files = task.data.get("split")
    if isinstance(files, dict) and "by" not in files:
        return files.get(split)
    return task.data.get("path")


def resolve_source(task: TaskSpec, data: str | None, split: str = "train") -> LoadedData:
    if task.splits and split not in task.splits:
        raise DataError(f"--split {split!r}: task {task.name!r} has splits {', '.join(task.splits)}")
    if data:
        return read_data(task, data, split)
    tried = ["--data (not given)"]
    local = _task_file(task, split)
    if local:
        path = data_path(task, local)
        if path.is_file() or path.is_dir():
            return read_data(task, str(path), split)
        tried.append(f"{path} (not found; S3FT_DATA_DIR={data_dir()})")
    hub = task.data.get("hub")
    if hub:
        try:
            return load_hub(hub["id"], hub.get("config"), split)
        except Exception as exc:  # offline, unknown repo, auth: all end in the same advice
            tried.append(f"Hub dataset {hub['id']} ({type(exc).__name__}: {exc})")
    raise DataError(
        f"no data found for task {task.name!r}. Tried, in order:\n  - " + "\n  - ".join(tried)
        + f"\nPass a local file with --data PATH, or set S3FT_DATA_DIR to a folder holding "
        f"{local or 'the data'} (task file: {task.file})."
    )


def row_id(task: TaskSpec, row: dict[str, Any]) -> str:
    if task.id_field and row.get(task.id_field) is not None:
        return f"{task.name}-{row[task.id_field]}"
    # No id in the source: hash what defines the example, so the id survives reordering.
    material = json.dumps({k: row[k] for k in task.required_fields}, sort_keys=True, default=str)
    return f"{task.name}-{hashlib.sha256(material.encode()).hexdigest()[:16]}"


def unique_row_ids(task: TaskSpec, rows: list[dict[str, Any]], source: str) -> list[str]:
    """Each row's id, unique. Two rows with the same id from the task's ``id_field`` are an
    error naming the id and both lines (which one is meant cannot be guessed). Rows without a
    source id that hash alike are the same example twice: kept (never silently dropped) with a
    suffix no other row's id has (``x, x, x-1`` must not become ``x, x-1, x-1``)."""
    ids = [row_id(task, row) for row in rows]
    if task.id_field:
        first_line: dict[str, Any] = {}
        for rid, row in zip(ids, rows, strict=True):
            if row.get(task.id_field) is None:
                continue
            if rid in first_line:
                raise DataError(f"{source}: rows at lines {first_line[rid]} and {row['_line']} have "
                                f"the same {task.id_field!r} {row[task.id_field]!r}; ids must be "
                                f"unique: fix or drop one of them")
            first_line[rid] = row["_line"]
    taken, unique = set(ids), []
    used: set[str] = set()
    for rid in ids:
        if rid in used:
            suffix = 1
            while f"{rid}-{suffix}" in taken:
                suffix += 1
            rid = f"{rid}-{suffix}"
            taken.add(rid)
        used.add(rid)
        unique.append(rid)
    return unique


def _type_name(value: Any) -> str:
    return {str: "a string", int: "a whole number", list: "a list"}.get(type(value), type(value).__name__)


def map_fields(task: TaskSpec, rows: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """Each row with the task's template variables (``fields``: variable -> source column)
    added; a column the data lacks names the task file's key and the columns it has."""
    if not rows:
        raise DataError(f"{source}: no rows found")
    columns = set().union(*(row.keys() for row in rows)) - {"_line"}
    for var, column in task.fields.items():
        if column not in columns:
            raise DataError(f"{source}: no column {column!r} (task file {task.file}, key "
                            f"'fields.{var}'); the data has {', '.join(sorted(columns))}: map "
                            f"'{var}' to one of them")
    id_field = task.id_field
    if id_field and id_field not in columns | set(task.fields) | set(task.prepare_adds):
        raise DataError(f"{source}: no column {id_field!r} (task file {task.file}, key "
                        f"'id_field'); name one of {', '.join(sorted(columns))}, or remove the "
                        f"key to give rows ids that hash their fields")
    if all(var == column for var, column in task.fields.items()):
        return rows
    return [{**row, **{var: row.get(column) for var, column in task.fields.items()}}
            for row in rows]


def validate(task: TaskSpec, rows: list[dict[str, Any]], source: str) -> None:
    if not rows:
        raise DataError(f"{source}: no rows found")
    for row in rows:
        missing = [f for f in task.required_fields if row.get(f) in (None, "")]
        if missing:
            columns = [task.fields[f] for f in missing]
            named = ", ".join(columns) if columns == missing else \
                ", ".join(f"{c} (for {f})" for f, c in zip(missing, columns, strict=True))
            raise DataError(
                f"{source}: row at line {row['_line']} is missing {named} "
                f"(task {task.name!r} needs {', '.join(task.fields.values())}); fix or remove it"
            )
        for name, wanted in task.types.items():
            value = row.get(name)
            ok = isinstance(value, wanted) and not isinstance(value, bool)
            if ok and wanted is list:
                ok = all(isinstance(item, str) for item in value)
            if not ok and value is not None:
                what = "a list of strings" if wanted is list else _type_name(wanted())
                raise DataError(f"{source}: row at line {row['_line']}: {name!r} must be {what}, "
                                f"not {_type_name(value)} ({str(value)[:60]!r}); fix the row")


def split_of(task: TaskSpec, row: dict[str, Any], rid: str) -> str | None:
    """The split a row belongs to under the task's split rule (None: in no split)."""
    rule = task.split_rule
    if rule is None:
        return None
    if rule["by"] == "column":
        return str(row.get(rule["column"]))
    if rule["by"] == "id_range":
        value = _range_id(row, rule["field"])
        for name, (low, high) in rule["ranges"].items():
            if (low is None or value >= low) and (high is None or value <= high):
                return name
        return None
    digest = hashlib.sha256((str(rule["salt"]) + rid).encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    edge = 0.0
    for name, share in rule["shares"].items():
        edge += share
        if position < edge:
            return name
    return list(rule["shares"])[-1]


def _range_id(row: dict[str, Any], field: str) -> int:
    """The whole number an ``id_range`` split reads (ints, or text such as "0042")."""
    value = row.get(field)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise ValueError(f"row at line {row.get('_line', '?')}: field {field!r} is {shown}, "
                     f"but an id_range split needs a whole number there")


def _keep_split(task: TaskSpec, rows: list[dict[str, Any]], split: str,
                source: str) -> list[dict[str, Any]]:
    if task.split_rule is None:
        return rows
    try:
        kept = [row for row in rows if split_of(task, row, row_id(task, row)) == split]
    except ValueError as exc:
        raise DataError(f"{source}: {exc} (task file {task.file}, key 'data.split'); fix the "
                        f"row, or split by 'hash' or 'column' instead") from None
    if not kept:
        rule = {k: v for k, v in task.split_rule.items()}
        raise DataError(f"{source}: no rows of split {split!r} among its {len(rows)} rows under "
                        f"the task's split rule {rule} (task file {task.file}, key 'data.split'); "
                        f"use another --split, or a task file whose split rule fits the data")
    return kept


def load_rows(task: TaskSpec, data: str | None, limit: int | None, split: str = "train",
              judge: Any = None) -> tuple[pl.DataFrame, LoadedData]:
    """Validated rows of ``split`` with ``id`` and ``gold`` columns, in source order, first
    ``limit`` only. ``judge`` writes the gold in the task's target format (default: the
    task's own judge, without an LLM)."""
    if limit is not None and limit < 1:
        raise DataError(f"--limit {limit}: must be a positive number of rows")
    loaded = resolve_source(task, data, split)
    rows = map_fields(task, loaded.rows, loaded.source)
    validate(task, rows, loaded.source)
    prepare = task.prepare_row()
    if prepare is not None:
        try:
            rows = [prepare(row) for row in rows]
        except ValueError as exc:
            raise DataError(f"{loaded.source}: {exc}") from None
    rows = _keep_split(task, rows, split, loaded.source)
    rows = rows[:limit] if limit else rows
    records = []
    for row, rid in zip(rows, unique_row_ids(task, rows, loaded.source), strict=True):
        fields = {k: v for k, v in row.items() if k != "_line"}
        if "id" in fields:  # keep the source's own id column next to ours
            fields["source_id"] = fields.pop("id")
        try:
            gold = task.gold_response(row) if judge is None else \
                judge.format_gold(task.gold_text(row), row)
        except Exception as exc:  # a template that does not fit this row
            raise DataError(f"{loaded.source}: row at line {row['_line']}: the task's 'gold' "
                            f"template fails ({type(exc).__name__}: {exc}); fix the row or the "
                            f"template in {task.file}") from None
        records.append({**fields, "id": rid, "gold": gold})
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
