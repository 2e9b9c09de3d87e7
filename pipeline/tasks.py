"""Task presets: where a task's data lives, which fields it needs, how its gold answer reads.

Adding a task means adding one :class:`TaskSpec` here, a judge under ``judges/`` and its
prompt templates under ``prompts/<task>/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import UsageError
from pipeline.prompts import PromptTemplate, template


@dataclass(frozen=True)
class HubSource:
    repo_id: str
    config: str | None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    judge: str
    #: Default data file per split, relative to ``$S3FT_DATA_DIR``.
    local_files: dict[str, str]
    hub: HubSource | None
    #: Fields every source row must have (non-empty).
    required_fields: tuple[str, ...]
    #: The source's own id field, if it has one; otherwise ids hash the prompt.
    id_field: str | None
    #: The gold response written the way a model answer should read (the SFT target).
    gold_response: Callable[[Mapping[str, Any]], str]
    #: Strings that end a generation early (saves tokens the judge never reads).
    stop: tuple[str, ...] = field(default=())
    #: For sources that hold every split in one file: the split a row belongs to.
    split_of: Callable[[Mapping[str, Any]], str] | None = None
    #: Checks run on the gold data before curation (e.g. MBPP references must pass their own
    #: tests): takes the judge and the rows, returns ``(row id, problem)`` for each bad row.
    preflight: Callable[[Any, list[dict[str, Any]]], list[tuple[str, str]]] | None = None
    #: Adds derived fields to each source row at load time (e.g. NQ's ``passage``).
    prepare_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    #: The judge asks a model for what its heuristic cannot decide (NQ).
    llm_judge: bool = False
    #: Types the source fields must have (checked at load time, naming the row).
    field_types: dict[str, type] = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        return sorted(self.local_files)

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


def _mbpp_split(row: Mapping[str, Any]) -> str:
    # The split of the MBPP paper (google-research mbpp/README.md), by task id.
    task_id = int(row["task_id"])
    if task_id <= 10:
        return "prompt"
    if task_id <= 510:
        return "test"
    return "validation" if task_id <= 600 else "train"


def _mbpp_gold(row: Mapping[str, Any]) -> str:
    from judges.mbpp import gold_response

    return gold_response(row)


def _mbpp_preflight(judge: Any, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    # Also calibrates the judge's per-task time limits (4x each reference's runtime).
    from judges.mbpp import check_references

    ids = {row["task_id"]: row["id"] for row in rows}
    return [(ids[task_id], f"reference solution fails its own tests: {verdict.rule} "
             f"{verdict.reason}") for task_id, verdict in check_references(rows, judge)]


def _nq_split(row: Mapping[str, Any]) -> str:
    from pipeline.nq_data import split_of

    return split_of(f"nq-{row['nq_id']}")


def _nq_gold(row: Mapping[str, Any]) -> str:
    from pipeline.nq_data import gold_response

    return gold_response(row)


def _nq_prepare(row: dict[str, Any]) -> dict[str, Any]:
    from pipeline.nq_data import prepare_row

    return prepare_row(row)


TASKS: dict[str, TaskSpec] = {
    "gsm8k": TaskSpec(
        name="gsm8k",
        judge="gsm8k",
        local_files={"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
        hub=HubSource("openai/gsm8k", "main"),
        required_fields=("question", "answer"),
        id_field=None,
        gold_response=_gsm8k_gold,
        field_types={"question": str, "answer": str},
    ),
    "mbpp": TaskSpec(
        name="mbpp",
        judge="mbpp",
        local_files={split: "mbpp/mbpp.jsonl" for split in ("prompt", "test", "validation", "train")},
        hub=HubSource("google-research-datasets/mbpp", "full"),
        required_fields=("task_id", "text", "code", "test_list"),
        id_field="task_id",
        gold_response=_mbpp_gold,
        field_types={"task_id": int, "text": str, "code": str, "test_list": list},
        # The prompt asks for code between [BEGIN] and [DONE]; nothing after [DONE] is read.
        stop=("[DONE]",),
        split_of=_mbpp_split,
        preflight=_mbpp_preflight,
    ),
    # NQ-open with the gold passage (nq-open-oracle). The file has no train/test split: a
    # fixed, salted hash of each question puts 20% of rows in "test" (pipeline/nq_data.py).
    # No Hub copy of this oracle file is known, so it is read from S3FT_DATA_DIR or --data.
    "nq": TaskSpec(
        name="nq",
        judge="nq",
        local_files={"train": "nq/nq-open-oracle.jsonl.gz", "test": "nq/nq-open-oracle.jsonl.gz"},
        hub=None,
        required_fields=("question", "answers", "ctxs"),
        id_field="nq_id",
        gold_response=_nq_gold,
        field_types={"question": str},
        stop=("\n\n",),
        split_of=_nq_split,
        prepare_row=_nq_prepare,
        llm_judge=True,
    ),
}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise UsageError(
            f"--task {name!r} is unknown; available tasks: {', '.join(sorted(TASKS))}"
        ) from None
