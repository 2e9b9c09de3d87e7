"""The stage contract and the loop that runs a stage over shards, resumably.

A stage is a small unit with one job: it takes a shard of rows (a Polars frame carrying every
column so far) and returns the same rows with its own columns added. It declares the columns
it adds and the settings that change its output; the runner hashes those settings, chained
with the upstream stage's key, into the stage's folder name, so changing a setting reruns
that stage and the ones after it, and nothing before.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from pipeline.config import stable_hash
from pipeline.storage import StageDir

log = logging.getLogger(__name__)


class Stage:
    """Base of every stage. Subclasses set ``name``, ``version`` and ``columns`` and
    implement :meth:`settings` and :meth:`process`."""

    name: str
    #: Bump when the stage's code changes what it writes.
    version: str
    #: Columns this stage adds, with their types (written with this explicit schema).
    columns: dict[str, pl.DataType]
    #: Shards handed to :meth:`process` at once (e.g. one Ray job for a group of shards).
    shards_per_call: int = 1

    def settings(self) -> dict[str, Any]:
        """Everything besides the input rows that changes this stage's output."""
        raise NotImplementedError

    def prepare(self, upstream: list[Shard], record_dir: Path, fresh: bool) -> None:
        """Called once before any shard is processed, with every upstream shard (e.g. the
        judge proves an LLM judge on the run's own data). ``record_dir`` is where a stage
        keeps what it decided, so a rerun decides the same (unless ``fresh``). Default:
        nothing."""

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        """Return ``frame`` with this stage's columns added; count what happened in ``stats``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Shard:
    index: int
    path: Path
    digest: str  # identifies the rows in the shard (their ids), whatever stage wrote it


def ids_digest(frame: pl.DataFrame) -> str:
    return hashlib.sha256("\n".join(frame["id"].to_list()).encode()).hexdigest()[:16]


def append_error(frame: pl.DataFrame, stage: str, errors: list[str | None]) -> pl.DataFrame:
    """Add this stage's per-row errors to the ``error`` column (``stage: reason; ...``)."""
    previous = frame["error"].to_list() if "error" in frame.columns else [None] * frame.height
    merged = [
        "; ".join(p for p in (old, f"{stage}: {new}" if new else None) if p) or None
        for old, new in zip(previous, errors, strict=True)
    ]
    return frame.with_columns(pl.Series("error", merged, dtype=pl.String))


@dataclass
class StageResult:
    shards: list[Shard]
    key: str
    stats: Counter  # summed over every shard, finished now or earlier
    computed_shards: int
    reused_shards: int
    seconds_now: float


def stage_key(stage: Stage, upstream_key: str) -> str:
    return stable_hash({"upstream": upstream_key, "stage": stage.name,
                        "version": stage.version, "settings": stage.settings()})


def run_stage(stage: Stage, upstream: list[Shard], upstream_key: str, stages_root: Path,
              fresh: bool = False) -> StageResult:
    """Run ``stage`` on every shard not finished yet. A stage may take several shards per call
    (``shards_per_call``, e.g. one Ray job for a group of shards); each shard of a group is
    still written and marked complete on its own."""
    key = stage_key(stage, upstream_key)
    out = StageDir(stages_root / f"{stage.name}-{key}")
    totals: Counter = Counter()
    todo: list[Shard] = []
    for shard in upstream:
        marker = None if fresh else out.completed(shard.index, shard.digest)
        if marker is None:
            todo.append(shard)
        else:
            totals.update(marker["stats"])
    started = time.perf_counter()
    if todo:
        stage.prepare(upstream, out.root, fresh)
    group_size = max(1, int(stage.shards_per_call or 1))
    progress = tqdm(total=len(todo), desc=stage.name, unit="shard", disable=None)
    for start in range(0, len(todo), group_size):
        group = todo[start:start + group_size]
        frames = [pl.read_parquet(shard.path) for shard in group]
        stats: Counter = Counter()
        began = time.perf_counter()
        result = stage.process(pl.concat(frames, how="vertical_relaxed"), stats)
        result = result.with_columns([pl.col(name).cast(dtype) for name, dtype in stage.columns.items()])
        stats["seconds"] += time.perf_counter() - began
        offset = 0
        for position, (shard, frame) in enumerate(zip(group, frames, strict=True)):
            part = result.slice(offset, frame.height)
            offset += frame.height
            if part["id"].to_list() != frame["id"].to_list():
                raise RuntimeError(f"{stage.name} changed the rows of shard {shard.index}")
            # A group's counters are recorded once, on its first shard; the totals stay exact.
            shard_stats = Counter(stats) if position == 0 else Counter()
            shard_stats["rows"] = part.height
            marker = {"stage": stage.name, "key": key, "input_digest": shard.digest,
                      "rows": part.height, "stats": dict(shard_stats)}
            out.write(shard.index, part, marker)
            totals.update(marker["stats"])
            log.info("%s: shard %d done (%d rows)", stage.name, shard.index, part.height)
            progress.update()
    progress.close()
    shards = [Shard(shard.index, out.shard_path(shard.index), shard.digest) for shard in upstream]
    return StageResult(shards, key, totals, len(todo), len(upstream) - len(todo),
                       time.perf_counter() - started)
