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

from pipeline.config import stable_hash
from pipeline.errors import RunFailed, S3ftError
from pipeline.progress import Progress
from pipeline.storage import StageDir
from pipeline.text import safe_text

log = logging.getLogger(__name__)


class Stage:
    """Base of every stage. Subclasses set ``name``, ``version``, ``columns`` and ``reads``
    and implement :meth:`settings` and :meth:`process`."""

    name: str
    #: Bump when the stage's code changes what it writes.
    version: str
    #: Columns this stage adds, with their types (written with this explicit schema).
    columns: dict[str, pl.DataType]
    #: Columns this stage reads: the loaded rows' or an earlier stage's (:func:`check_chain`).
    reads: tuple[str, ...] = ()
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


class StageChainError(S3ftError):
    """A stage reads a column that nothing before it adds (a stage missing or out of order)."""


def check_chain(stages: list[Stage], given: list[str]) -> None:
    """Refuse a chain in which a stage reads a column that neither the loaded rows (``given``)
    nor a stage before it adds: found when the run is planned, not at row time after an
    engine has started."""
    available = set(given)
    for stage in stages:
        missing = [column for column in stage.reads if column not in available]
        if missing:
            earlier = ", ".join(s.name for s in stages[:stages.index(stage)]) or "none"
            raise StageChainError(
                f"stage {stage.name!r} reads the column {missing[0]!r}, which neither the loaded "
                f"rows nor a stage before it adds (stages before it: {earlier}); put the stage "
                f"that adds it first")
        available |= set(stage.columns)


@dataclass(frozen=True)
class Shard:
    index: int
    path: Path
    #: identifies the shard's content: the ids of a loaded shard, the bytes of a stage's
    #: output shard (so a shard rewritten upstream, e.g. by a retry, is recomputed downstream)
    digest: str


def ids_digest(frame: pl.DataFrame) -> str:
    return hashlib.sha256("\n".join(frame["id"].to_list()).encode()).hexdigest()[:16]


def append_error(frame: pl.DataFrame, stage: str, errors: list[str | None]) -> pl.DataFrame:
    """Add this stage's per-row errors to the ``error`` column (``stage: reason; ...``)."""
    previous = frame["error"].to_list() if "error" in frame.columns else [None] * frame.height
    merged = [
        safe_text("; ".join(p for p in (old, f"{stage}: {new}" if new else None) if p) or None)
        for old, new in zip(previous, errors, strict=True)
    ]
    return frame.with_columns(pl.Series("error", merged, dtype=pl.String))


#: Row errors that a retry cannot fix (the input is the problem): counted against the failure
#: budget like any other, but not retried by a rerun.
PERMANENT_ERRORS = ("prompt_too_long", "http_400", "http_413", "http_422")


@dataclass
class StageResult:
    shards: list[Shard]
    key: str
    stats: Counter  # summed over every shard, finished now or earlier
    computed_shards: int
    reused_shards: int
    seconds_now: float
    failed_rows: int = 0  # rows whose error this stage recorded (after any retry)
    retried_rows: int = 0  # failed rows of an earlier attempt retried now


def stage_key(stage: Stage, upstream_key: str) -> str:
    return stable_hash({"upstream": upstream_key, "stage": stage.name,
                        "version": stage.version, "settings": stage.settings()})


def _new_failures(stage: str, before: pl.DataFrame, after: pl.DataFrame) -> tuple[list[str], list[str]]:
    """(ids to retry, ids failed for good) among rows whose error this stage added."""
    if "error" not in after.columns:
        return [], []
    old = before["error"].to_list() if "error" in before.columns else [None] * before.height
    retry, permanent = [], []
    for row_id, previous, now in zip(after["id"], old, after["error"], strict=True):
        if now is None or now == previous:
            continue
        added = now[len(previous) + 2:] if previous else now
        reason = added.removeprefix(f"{stage}: ")
        (permanent if reason.startswith(PERMANENT_ERRORS) else retry).append(row_id)
    return retry, permanent


def _merge(kept: pl.DataFrame, redone: pl.DataFrame, order: list[str]) -> pl.DataFrame:
    """The rows of an earlier attempt that succeeded, and the redone ones, in ``order``."""
    position = {row_id: i for i, row_id in enumerate(order)}
    merged = pl.concat([kept, redone.select(kept.columns)], how="vertical_relaxed")
    return (merged.with_columns(pl.col("id").replace_strict(position, return_dtype=pl.Int64)
                                .alias("_position"))
            .sort("_position").drop("_position"))


def run_stage(stage: Stage, upstream: list[Shard], upstream_key: str, stages_root: Path,
              fresh: bool = False, max_error_rate: float = 1.0) -> StageResult:
    """Run ``stage`` on every shard not finished yet, and retry the failed rows of shards an
    earlier attempt left with errors (their good rows are kept as they are).

    A stage may take several shards per call (``shards_per_call``, e.g. one Ray job for a
    group of shards); each shard of a group is still written and marked complete on its own.
    Failure budget: a shard whose every row failed stops the run at once, and so does a
    stage whose failed rows exceed ``max_error_rate`` of all rows; both raise
    :class:`pipeline.errors.RunFailed` after the finished shards are written."""
    key = stage_key(stage, upstream_key)
    out = StageDir(stages_root / f"{stage.name}-{key}")
    totals: Counter = Counter()
    digests: dict[int, str] = {}
    failed: dict[int, int] = {}  # shard index -> rows failed (retryable or not)
    todo: list[tuple[Shard, dict[str, Any] | None]] = []
    for shard in upstream:
        marker = None if fresh else out.completed(shard.index, shard.digest)
        if marker is None:
            todo.append((shard, None))
        elif marker.get("failed_ids"):
            todo.append((shard, marker))  # retry exactly the rows that failed
        else:
            totals.update(marker["stats"])
            digests[shard.index] = marker["output_digest"]
            failed[shard.index] = int(marker.get("failed_permanently", 0))
    retried = sum(len(marker["failed_ids"]) for _, marker in todo if marker)
    if retried:
        log.info("%s: retrying %d rows that failed in an earlier attempt; their shards' other "
                 "rows are kept", stage.name, retried)
    started = time.perf_counter()
    if todo:
        stage.prepare(upstream, out.root, fresh)
    group_size = max(1, int(stage.shards_per_call or 1))
    rows_todo = sum(len(marker["failed_ids"]) if marker else _rows(shard) for shard, marker in todo)
    total_rows = sum(_rows(shard) for shard in upstream)
    log.info("%s: %s rows in %d shard%s, %d done earlier, %d to go%s", stage.name,
             f"{total_rows:,}", len(upstream), "s" if len(upstream) != 1 else "",
             len(upstream) - len(todo), len(todo),
             f" ({rows_todo:,} rows, {retried:,} of them retried)" if retried else "")
    rows_done = tokens_done = 0
    with Progress(stage.name, rows_todo) as meter:
        for start in range(0, len(todo), group_size):
            group = todo[start:start + group_size]
            inputs = [pl.read_parquet(shard.path) for shard, _ in group]
            work = [frame.filter(pl.col("id").is_in(marker["failed_ids"])) if marker else frame
                    for frame, (_, marker) in zip(inputs, group, strict=True)]
            stats: Counter = Counter()
            began = time.perf_counter()
            result = stage.process(pl.concat(work, how="vertical_relaxed"), stats)
            result = result.with_columns([pl.col(name).cast(dtype) for name, dtype in stage.columns.items()])
            stats["seconds"] += time.perf_counter() - began
            offset = 0
            for position, ((shard, old), frame, part_in) in enumerate(zip(group, inputs, work, strict=True)):
                part = result.slice(offset, part_in.height)
                offset += part_in.height
                if part["id"].to_list() != part_in["id"].to_list():
                    raise RuntimeError(f"{stage.name} changed the rows of shard {shard.index}")
                retry_ids, permanent_ids = _new_failures(stage.name, part_in, part)
                # A group's counters are recorded once, on its first shard; the totals stay exact.
                shard_stats = Counter(stats) if position == 0 else Counter()
                if old is not None:  # a retry: keep the rows that had succeeded
                    part = _merge(out.read(shard.index).filter(~pl.col("id").is_in(old["failed_ids"])),
                                  part, frame["id"].to_list())
                    shard_stats.update(old["stats"])
                shard_stats["rows"] = part.height
                permanent = len(permanent_ids) + (int(old.get("failed_permanently", 0)) if old else 0)
                marker = {"stage": stage.name, "key": key, "input_digest": shard.digest,
                          "rows": part.height, "stats": dict(shard_stats), "failed_ids": retry_ids,
                          "failed_permanently": permanent}
                digests[shard.index] = out.write(shard.index, part, marker)
                totals.update(marker["stats"])
                failed[shard.index] = len(retry_ids) + permanent
                log.info("%s: shard %d done (%d rows%s)", stage.name, shard.index, part.height,
                         f", {failed[shard.index]} failed" if failed[shard.index] else "")
                rows_done += part_in.height
                tokens_done += _tokens(stats) if position == 0 else 0
                meter.reach(rows_done, tokens_done)
                meter.log_now()
                if part.height and failed[shard.index] == part.height:
                    raise _budget_error(stage.name, out, shard.index, failed, upstream,
                                        f"every row of shard {shard.index} failed")
    rows = totals.get("rows", 0)
    failed_rows = sum(failed.values())
    if rows and failed_rows > max_error_rate * rows:
        raise _budget_error(stage.name, out, None, failed, upstream,
                            f"{failed_rows} of {rows} rows failed, more than --max-error-rate "
                            f"{max_error_rate:g}")
    shards = [Shard(shard.index, out.shard_path(shard.index), digests[shard.index])
              for shard in upstream]
    return StageResult(shards, key, totals, len(todo), len(upstream) - len(todo),
                       time.perf_counter() - started, failed_rows, retried)


def _rows(shard: Shard) -> int:
    return int(pl.scan_parquet(shard.path).select(pl.len()).collect().item())


def _tokens(stats: Counter) -> int:
    return int(sum(v for k, v in stats.items() if k.endswith("_completion_tokens")))


def first_error(out: StageDir, index: int) -> str:
    """The first row error this stage recorded in shard ``index`` (for the stop message)."""
    frame = out.read(index)
    errors = [e for e in frame["error"].to_list() if e] if "error" in frame.columns else []
    return errors[0][:300] if errors else "(no error text)"


def _budget_error(stage: str, out: StageDir, index: int | None, failed: dict[int, int],
                  upstream: list[Shard], what: str) -> Exception:
    where = index if index is not None else next(i for i, n in failed.items() if n)
    done = sum(1 for s in upstream if s.index in failed)
    return RunFailed(
        f"{stage}: {what}; first error: {first_error(out, where)}. The run stopped instead of "
        f"writing a dataset from failures; {done} finished shard(s) are kept under {out.root}. "
        f"Fix the cause (a server down or misnamed, a wrong flag) and rerun the same command: "
        f"only the failed rows are retried.")
