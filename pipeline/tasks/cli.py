"""``python -m pipeline.tasks list|show|check``: the tasks a run can use.

    python -m pipeline.tasks list
    python -m pipeline.tasks show gsm8k
    python -m pipeline.tasks check path/to/mytask [--data FILE] [--split train] [--limit N]

``check`` reads the task file, loads and validates the data and judges every row's gold
answer with the task's own judge, without starting an engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from pipeline.config import parse_config
from pipeline.errors import UsageError
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


@dataclass
class TasksConfig:
    """What to do with which task."""

    command: str = field(metadata={
        "positional": True, "choices": ["list", "show", "check"],
        "help": "list: the built-in tasks; show: a task's settings and templates; check: load "
                "the data and judge every gold answer."})
    task: str | None = field(default=None, metadata={
        "positional": True, "help": "A built-in task name or a task folder / task.yaml "
                                    "(show, check)."})
    data: str | None = field(default=None, metadata={
        "help": "Data to use instead of the task's: a file, a folder or a Hub id (check)."})
    split: str = field(default="train", metadata={"help": "Split to check (check)."})
    limit: int | None = field(default=None, metadata={"help": "Check only the first N rows (check)."})
    trust_task_code: bool = field(default=False, metadata={
        "help": "Run the task folder's own Python (check): a `prepare` callable, a `module` "
                "judge. `show` never runs it."})
    debug: bool = field(default=False, metadata={"help": "Show tracebacks instead of one-line errors."})

    def __post_init__(self) -> None:
        if self.command != "list" and not self.task:
            raise UsageError(f"{self.command} needs a task: a built-in name ({', '.join(builtin_names())}) "
                             f"or a task folder")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit {self.limit}: must be a positive number of rows")


def main(argv: list[str] | None = None) -> int:
    args = parse_config(TasksConfig, argv, description=__doc__.split("\n\n")[0],
                        prog="python -m pipeline.tasks")
    if args.command == "list":
        for name in builtin_names():
            task = load_task(name)
            print(f"{name:8s} {task.judge_kind:13s} {task.description}")
        return 0
    task = load_task(args.task, trust_code=args.trust_task_code and args.command == "check")
    if args.command == "show":
        print(yaml.safe_dump(describe(task), sort_keys=False).rstrip())
        for prompt in (task.answer_prompt, task.paraphrase_prompt):
            print(f"\n--- {prompt.path.name} ({prompt.version})\n{prompt.text.rstrip()}")
        return 0
    task.check_trust()
    return check(task, args.data, args.split, args.limit)
