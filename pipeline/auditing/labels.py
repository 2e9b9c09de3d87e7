"""Audit labels: one JSON object a line in ``<run>/audit/labels.jsonl``, appended as they are
given and never rewritten, so nothing labelled is lost to a crash or a second auditor.

A label is ``{"id", "label", "note", "auditor", "time", "target_sha"}``; ``label`` is
``right``, ``partial`` or ``wrong``. The latest label of an (id, auditor) pair counts.
``target_sha`` ties a label to the text labelled: a rerun that changed a row's target leaves
its old label out of the estimate. ``--import`` reads the same format (other keys are kept
out; a record without ``target_sha`` is taken to be about the current target), ``--export``
writes the labels that count.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pipeline.auditing.sample import AUDIT_DIR, AuditError, AuditRow
from pipeline.storage import read_json_objects

LABELS = ("right", "partial", "wrong")
LABELS_FILE = "labels.jsonl"
KEYS = ("id", "label", "note", "auditor", "time", "target_sha")


def labels_path(run_dir: Path) -> Path:
    return run_dir / AUDIT_DIR / LABELS_FILE


def make_label(row: AuditRow, label: str, note: str = "", auditor: str = "me",
               when: str | None = None) -> dict[str, Any]:
    if label not in LABELS:
        raise AuditError(f"label {label!r} for row {row.id}: use one of {', '.join(LABELS)}")
    return {"id": row.id, "label": label, "note": note or "", "auditor": auditor or "me",
            "time": when or time.strftime("%Y-%m-%dT%H:%M:%S%z"), "target_sha": row.target_sha}


def append(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Append and flush: a label given is on disk before the page hears back."""
    path = labels_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps({k: record[k] for k in KEYS}, ensure_ascii=False) + "\n")
        handle.flush()


def read_labels(run_dir: Path) -> list[dict[str, Any]]:
    path = labels_path(run_dir)
    return [record for _, record in read_json_objects(path, AuditError)] if path.is_file() else []


def current(labels: list[dict[str, Any]], rows: dict[str, AuditRow]) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(id, auditor): latest label}`` over rows that still have the labelled target."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for record in labels:
        row = rows.get(record["id"])
        if row is not None and record.get("target_sha", row.target_sha) == row.target_sha:
            out[record["id"], record["auditor"]] = record
    return out


def import_labels(run_dir: Path, source: Path, rows: dict[str, AuditRow], auditor: str) -> int:
    """Append the labels of ``source`` (validated whole first: a bad line adds nothing)."""
    if not source.is_file():
        raise AuditError(f"--import {source}: no such file")
    records = []
    for line_no, record in read_json_objects(source, AuditError):
        where = f"{source}: line {line_no}"
        if "id" not in record or "label" not in record:
            raise AuditError(f"{where}: needs at least 'id' and 'label' (right, partial or wrong)")
        row = rows.get(str(record["id"]))
        if row is None:
            raise AuditError(f"{where}: id {record['id']!r} is not a row of {run_dir / 'train.parquet'}")
        if record["label"] not in LABELS:
            raise AuditError(f"{where}: label {record['label']!r}: use one of {', '.join(LABELS)}")
        label = make_label(row, record["label"], str(record.get("note") or ""),
                           str(record.get("auditor") or auditor), record.get("time"))
        label["target_sha"] = record.get("target_sha") or row.target_sha
        records.append(label)
    append(run_dir, records)
    return len(records)


def export_labels(run_dir: Path, target: Path, rows: dict[str, AuditRow]) -> int:
    """Write the labels that count (latest per id and auditor, current targets) to ``target``."""
    kept = current(read_labels(run_dir), rows)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept.values()),
                      encoding="utf-8")
    return len(kept)
