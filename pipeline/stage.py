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
from typing import Any, Protocol

import polars as pl
from tqdm.auto import tqdm

from pipeline.config import stable_hash
from pipeline.storage import StageDir

log = logging.getLogger(__name__)


class Stage(Protocol):
    name: str
    #: Bump when the stage's code changes what it writes.
    version: str
    #: Columns this stage adds, with their types (written with this explicit schema).
    columns: dict[str, pl.DataType]

    def settings(self) -> dict[str, Any]:
        """Everything besides the input rows that changes this stage's output."""
        ...

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        """Return ``frame`` with this stage's columns added; count what happened in ``stats``."""
        ...


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
    key = stage_key(stage, upstream_key)
    out = StageDir(stages_root / f"{stage.name}-{key}")
    shards: list[Shard] = []
    totals: Counter = Counter()
    computed = reused = 0
    started = time.perf_counter()
    for shard in tqdm(upstream, desc=stage.name, unit="shard", disable=None):
        marker = None if fresh else out.completed(shard.index, shard.digest)
        if marker is None:
            stats: Counter = Counter()
            began = time.perf_counter()
            result = stage.process(pl.read_parquet(shard.path), stats)
            result = result.with_columns(
                [pl.col(name).cast(dtype) for name, dtype in stage.columns.items()]
            )
            stats["seconds"] += time.perf_counter() - began
            stats["rows"] += result.height
            marker = {"stage": stage.name, "key": key, "input_digest": shard.digest,
                      "rows": result.height, "stats": dict(stats)}
            out.write(shard.index, result, marker)
            computed += 1
            log.info("%s: shard %d done (%d rows)", stage.name, shard.index, result.height)
        else:
            reused += 1
        totals.update(marker["stats"])
        shards.append(Shard(shard.index, out.shard_path(shard.index), shard.digest))
    return StageResult(shards, key, totals, computed, reused, time.perf_counter() - started)
