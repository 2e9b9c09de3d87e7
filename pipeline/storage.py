"""Crash-safe storage for stage output, in the datatrove manner.

A stage writes shard ``i`` of its output as ``shard-0000i.parquet`` under a temporary name,
renames it into place (atomic on POSIX), then writes ``shard-0000i.done.json`` with the
shard's stats and the digest of its bytes. Only a shard with both files, whose marker
matches the current input and whose bytes match the marker, counts as complete; anything
else (a truncated or overwritten shard included) is recomputed. A killed run therefore loses
at most the shards in flight, and never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import S3ftError

log = logging.getLogger(__name__)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, streamed (a GGUF or a data file may be large)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (16 hex digits): a shard's identity for the stages after it."""
    return file_sha256(path)[:16]


def atomic_write_parquet(path: Path, frame: pl.DataFrame) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        frame.write_parquet(tmp)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:  # Polars reports a full disk as its own error, without the path
        tmp.unlink(missing_ok=True)
        if shutil.disk_usage(path.parent).free < 16 << 20:
            raise OSError(errno.ENOSPC, "No space left on device", str(path.parent)) from exc
        raise
    os.replace(tmp, path)


@dataclass(frozen=True)
class StageDir:
    """The output folder of one stage for one configuration key."""

    root: Path

    def shard_path(self, index: int) -> Path:
        return self.root / f"shard-{index:05d}.parquet"

    def marker_path(self, index: int) -> Path:
        return self.root / f"shard-{index:05d}.done.json"

    def completed(self, index: int, input_digest: str) -> dict[str, Any] | None:
        """The shard's marker if the shard was written for this input and still reads back
        as written (its bytes match the digest in the marker), else None. A damaged shard
        (truncated, overwritten, unreadable marker) is logged with its path, so it is
        recomputed rather than read."""
        marker, shard = self.marker_path(index), self.shard_path(index)
        if not (marker.is_file() and shard.is_file()):
            return None
        try:
            info = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s: unreadable completion marker; recomputing the shard", marker)
            return None
        if not isinstance(info, dict) or info.get("input_digest") != input_digest:
            return None
        expected = info.get("output_digest")
        if expected is None:  # written by an older version: accept it if it reads back
            try:
                pl.read_parquet_schema(shard)
            except Exception as exc:
                log.warning("%s does not read back (%s); recomputing it", shard, exc)
                return None
            info["output_digest"] = file_digest(shard)
        elif file_digest(shard) != expected:
            log.warning("%s is damaged (its content does not match its completion marker); "
                        "recomputing it", shard)
            return None
        return info

    def write(self, index: int, frame: pl.DataFrame, marker: dict[str, Any]) -> str:
        """Write the shard, then its marker (with the shard's content digest); return the
        digest."""
        self.root.mkdir(parents=True, exist_ok=True)
        # Order matters: the marker goes last, so it exists only for a fully written shard.
        self.marker_path(index).unlink(missing_ok=True)
        atomic_write_parquet(self.shard_path(index), frame)
        digest = file_digest(self.shard_path(index))
        atomic_write_json(self.marker_path(index), {**marker, "output_digest": digest})
        return digest

    def read(self, index: int) -> pl.DataFrame:
        return pl.read_parquet(self.shard_path(index))


class RunLockedError(S3ftError):
    """Another process holds the run folder (exit 3: wait for it, or choose another --out)."""

    exit_code = 3


class RunLock:
    """An exclusive lock on a run folder, so two runs never interleave writes.

    ``flock`` is released by the kernel when the holder dies (even by SIGKILL), so a stale
    lock file never blocks a rerun.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / "run.lock"
        self._handle = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunLockedError(
                f"another run (pid {holder}) is using {self.path.parent}; wait for it to finish "
                f"or pass a different --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def read_json_objects(path: Path, error: type[Exception]) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of every non-blank line of a JSON-lines file; a line that is
    not a JSON object raises ``error`` naming the file and the line."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path}: line {line_no} is not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise error(f"{path}: line {line_no} is not a JSON object")
            rows.append((line_no, row))
    return rows
