"""``python -m pipeline.tasks list|show|check``: the tasks a run can use.

    python -m pipeline.tasks list
    python -m pipeline.tasks show gsm8k
    python -m pipeline.tasks check path/to/mytask [--data FILE] [--split train] [--limit N]

``check`` reads the task file, loads and validates the data and judges every row's gold
answer with the task's own judge, without starting an engine.
"""

from __future__ import annotations

import argparse

import yaml

from pipeline.tasks import builtin_names, load_task
from pipeline.tasks.taskfile import TaskSpec, describe


def check(task: TaskSpec, data: str | None, split: str, limit: int | None) -> int:
    """Load, validate and judge every row's gold; print what a run would use."""
    from pipeline.stages.gold_check import check_gold
    from pipeline.stages.load import load_rows

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


def main(argv: list[str] | None = None) -> int:
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

