"""Tasks: the built-in ones and a user's own, all folders holding a ``task.yaml``.

``--task gsm8k`` names a built-in task (``prompts/gsm8k/task.yaml``); ``--task path/to/mytask``
(or ``.../task.yaml``) a user's. The file format is in :mod:`pipeline.taskfile` and the
README ("Your own task").

    python -m pipeline.tasks list
    python -m pipeline.tasks show gsm8k
    python -m pipeline.tasks check path/to/mytask [--data FILE] [--split train] [--limit N]

``check`` reads the task file, loads and validates the data and judges every row's gold
answer with the task's own judge, without starting an engine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from pipeline.errors import UsageError, report_errors
from pipeline.prompts import prompts_dir
from pipeline.taskfile import TASK_FILE, TaskFileError, TaskSpec, describe, read_task

__all__ = ["TaskFileError", "TaskSpec", "builtin_names", "get_task", "is_task", "load_task"]


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


def load_task(ref: str) -> TaskSpec:
    """The task ``ref`` names: a built-in's name, or a task folder or file."""
    path = _as_path(ref)
    if path is not None:
        return read_task(path)
    if ref in builtin_names():
        return read_task(prompts_dir() / ref)
    looks_like_path = "/" in ref or ref.endswith((".yaml", ".yml")) or Path(ref).exists()
    hint = (f"{ref} is not a task folder (a folder holding {TASK_FILE}) or a task file"
            if looks_like_path else f"{ref!r} is not a built-in task")
    raise UsageError(f"--task: {hint}; built-in tasks: {', '.join(builtin_names())}, or pass "
                     f"the path of a folder holding {TASK_FILE}")


#: The name older code and scripts use.
get_task = load_task


def check(task: TaskSpec, data: str | None, split: str, limit: int | None) -> int:
    """Load, validate and judge every row's gold; print what a run would use."""
    from pipeline.gold_check import check_gold
    from pipeline.load import load_rows

    judge = task.make_judge()
    frame, loaded = load_rows(task, data, limit, split, judge=judge)
    problems = check_gold(judge, frame.to_dicts())
    print(f"task {task.name} ({task.file}): {frame.height} rows of split {split!r} from "
          f"{loaded.source}")
    print(f"judge {task.judge_kind}: the gold of {frame.height - len(problems)} rows passes; "
          f"{len(problems)} fail and would be left out of a run")
    for rid, why in problems[:20]:
        print(f"  {rid}: {why}")
    if len(problems) > 20:
        print(f"  ... and {len(problems) - 20} more")
    return 0


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tasks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="Show tracebacks.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="The built-in tasks.")
    show = commands.add_parser("show", help="A task's settings and templates.")
    show.add_argument("task", help="A built-in task name or a task folder / task.yaml.")
    checking = commands.add_parser("check", help="Load the data and judge every gold answer.")
    checking.add_argument("task", help="A built-in task name or a task folder / task.yaml.")
    checking.add_argument("--data", help="Data to use instead of the task's (file, folder, Hub id).")
    checking.add_argument("--split", default="train", help="Split to check (default: train).")
    checking.add_argument("--limit", type=int, help="Check only the first N rows.")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in builtin_names():
            task = load_task(name)
            print(f"{name:8s} {task.judge_kind:13s} {task.description}")
        return 0
    task = load_task(args.task)
    if args.command == "show":
        print(yaml.safe_dump(describe(task), sort_keys=False).rstrip())
        for prompt in (task.answer_prompt, task.paraphrase_prompt):
            print(f"\n--- {prompt.path.name} ({prompt.version})\n{prompt.text.rstrip()}")
        return 0
    return check(task, args.data, args.split, args.limit)


def main(argv: list[str] | None = None) -> int:
    return report_errors(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
