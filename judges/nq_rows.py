"""Reading an NQ-style row as a judge needs it: its gold answer aliases. The row format (an
``answers`` list, or one string) is the task's; the pipeline's NQ helpers
(``pipeline.tasks.nq_data``) build on these."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class NqRowError(ValueError):
    """A row that cannot be used; the message names the row and what is wrong."""


def where(row: Mapping[str, Any]) -> str:
    line = row.get("_line")
    return f"row at line {line}" if line is not None else f"row {str(row.get('question'))[:60]!r}"


def aliases(row: Mapping[str, Any]) -> list[str]:
    """The gold answer aliases of a row (a bare string counts as one alias)."""
    answers = row.get("answers")
    if isinstance(answers, str):
        answers = [answers]
    cleaned = [a.strip() for a in (answers or []) if isinstance(a, str) and a.strip()]
    if not cleaned:
        raise NqRowError(f"{where(row)}: 'answers' has no non-empty answer alias; NQ rows need "
                         f"at least one (fix or remove the row)")
    return cleaned
