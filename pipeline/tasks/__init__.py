"""Tasks: the built-in ones and a user's own, all folders holding a ``task.yaml``.

``--task gsm8k`` names a built-in task (``prompts/gsm8k/task.yaml``); ``--task path/to/mytask``
(or ``.../task.yaml``) a user's. The file format is in :mod:`pipeline.tasks.taskfile` and the
docs/tasks.md ("Your own task").

The package: :mod:`~pipeline.tasks.taskfile` (the ``task.yaml`` format),
:mod:`~judges.templates` (Jinja chat prompts), :mod:`~judges.user_code` (a
task's own Python), :mod:`~pipeline.tasks.nq_data` (NQ-open rows) and
:mod:`~pipeline.tasks.cli` (``python -m pipeline.tasks list|show|check``).
"""

from __future__ import annotations

from pathlib import Path

from judges.templates import prompts_dir
from pipeline.errors import UsageError
from pipeline.tasks.taskfile import TASK_FILE, TaskFileError, TaskSpec, read_task

__all__ = ["TaskFileError", "TaskSpec", "builtin_names", "is_task", "load_task"]


def builtin_names() -> list[str]:
    """The built-in tasks: folders of ``prompts/`` that hold a task file."""
    root = prompts_dir()
    return sorted(p.parent.name for p in root.glob(f"*/{TASK_FILE}")) if root.is_dir() else []


def is_task(ref: str) -> bool:
    """``ref`` names a built-in task or a task folder/file on disk."""
    return ref in builtin_names() or _as_path(ref) is not None


def _as_path(ref: str) -> Path | None:
    path = Path(ref).expanduser()
    if path.is_dir() and (path / TASK_FILE).is_file():
        return path
    return path if path.is_file() and path.suffix in (".yaml", ".yml") else None


def load_task(ref: str, trust_code: bool = False) -> TaskSpec:
    """The task ``ref`` names: a built-in's name, or a task folder or file. A built-in task's
    Python ships with s3ft and is trusted; a folder's runs only with ``trust_code``
    (``--trust-task-code``): never for ``tasks list`` or ``show``."""
    path = _as_path(ref)
    if path is not None:
        builtin = prompts_dir().resolve() in path.resolve().parents
        return read_task(path, trusted=trust_code or builtin)
    if ref in builtin_names():
        return read_task(prompts_dir() / ref, trusted=True)
    looks_like_path = "/" in ref or ref.endswith((".yaml", ".yml")) or Path(ref).exists()
    hint = (f"{ref} is not a task folder (a folder holding {TASK_FILE}) or a task file"
            if looks_like_path else f"{ref!r} is not a built-in task")
    raise UsageError(f"--task: {hint}; built-in tasks: {', '.join(builtin_names())}, or pass "
                     f"the path of a folder holding {TASK_FILE}")
