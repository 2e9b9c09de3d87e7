"""Gold check: every row's gold answer must pass the task's own judge before curation.

A task whose gold fails its judge cannot tell a right answer from a wrong one (a math task
whose answers the judge cannot read, an MBPP reference that fails its own asserts): such
rows are listed and left out of the run, never curated into gold targets. More than
``MAX_FAILING_SHARE`` of the rows failing means the task file is wrong, and the run stops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.errors import UsageError
from pipeline.progress import Progress

MAX_FAILING_SHARE = 0.5


def check_gold(judge: Any, rows: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(row id, why)`` for each row whose gold fails ``judge`` (no engine is started)."""
    with Progress("gold check", len(rows), "rows") as progress:
        problems = judge.check_gold(list(rows))
        progress.reach(len(rows))  # rule judges are instant and do not report as they go
    return [(str(rid), str(why)) for rid, why in problems]


def refuse_if_mostly_failing(task_name: str, task_file: str, rows: int,
                             problems: list[tuple[str, str]]) -> None:
    if rows and len(problems) > MAX_FAILING_SHARE * rows:
        examples = "; ".join(f"{rid}: {why}" for rid, why in problems[:3])
        raise UsageError(
            f"task {task_name!r}: the gold answer of {len(problems)} of {rows} rows fails the "
            f"task's own judge (e.g. {examples}). The task file ({task_file}) does not fit the "
            f"data: check 'gold' and the judge's 'gold_answer' with "
            f"`python -m pipeline.tasks check {task_file}`")
