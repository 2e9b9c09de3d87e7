"""Crash-safe storage for stage output, in the datatrove manner.

A stage writes shard ``i`` of its output as ``shard-0000i.parquet`` under a temporary name,
renames it into place (atomic on POSIX), then writes ``shard-0000i.done.json`` with the
shard's stats. Only a shard with both files, whose marker matches the current input, counts
as complete; anything else is recomputed. A killed run therefore loses at most the shards
in flight, and never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl


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


def atomic_write_parquet(path: Path, frame: pl.DataFrame) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frame.write_parquet(tmp)
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
        """The shard's marker if the shard is complete for this input, else None."""
        marker, shard = self.marker_path(index), self.shard_path(index)
        if not (marker.is_file() and shard.is_file()):
            return None
        try:
            info = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return info if info.get("input_digest") == input_digest else None

    def write(self, index: int, frame: pl.DataFrame, marker: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # Order matters: the marker goes last, so it exists only for a fully written shard.
        self.marker_path(index).unlink(missing_ok=True)
        atomic_write_parquet(self.shard_path(index), frame)
        atomic_write_json(self.marker_path(index), marker)

    def read(self, index: int) -> pl.DataFrame:
        return pl.read_parquet(self.shard_path(index))


class RunLockedError(RuntimeError):
    pass


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
