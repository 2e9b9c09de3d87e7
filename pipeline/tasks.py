"""Task presets: where a task's data lives, which fields it needs, how its gold answer reads.

Adding a task means adding one :class:`TaskSpec` here, a judge under ``judges/`` and its
prompt templates under ``prompts/<task>/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.prompts import PromptTemplate, template


@dataclass(frozen=True)
class HubSource:
    repo_id: str
    config: str | None
    split: str


@dataclass(frozen=True)
class TaskSpec:
    name: str
    judge: str
    #: Default data file, relative to ``$S3FT_DATA_DIR``.
    local_file: str
    hub: HubSource
    #: Fields every source row must have (non-empty).
    required_fields: tuple[str, ...]
    #: The source's own id field, if it has one; otherwise ids hash the prompt.
    id_field: str | None
    #: The gold response written the way a model answer should read (the SFT target).
    gold_response: Callable[[Mapping[str, Any]], str]
    #: Strings that end a generation early (saves tokens the judge never reads).
    stop: tuple[str, ...] = field(default=())

    @property
    def answer_prompt(self) -> PromptTemplate:
        return template(self.name, "answer")

    @property
    def paraphrase_prompt(self) -> PromptTemplate:
        return template(self.name, "paraphrase")


def _gsm8k_gold(row: Mapping[str, Any]) -> str:
    # GSM8K solutions carry calculator annotations like "<<48/2=24>>"; a model never writes
    # them, so they are removed from the training target. The "#### N" line stays.
    return re.sub(r"<<[^<>]*>>", "", str(row["answer"])).strip()


TASKS: dict[str, TaskSpec] = {
    "gsm8k": TaskSpec(
        name="gsm8k",
        judge="gsm8k",
        local_file="gsm8k/train.jsonl",
        hub=HubSource("openai/gsm8k", "main", "train"),
        required_fields=("question", "answer"),
        id_field=None,
        gold_response=_gsm8k_gold,
    ),
}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise SystemExit(
            f"--task {name!r} is unknown; available tasks: {', '.join(sorted(TASKS))}"
        ) from None
