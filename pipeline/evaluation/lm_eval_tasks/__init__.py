"""lm-evaluation-harness task objects for the general benchmarks, on the LOCAL data files.

Rather than copying lm-eval's prompt strings, each task is lm-eval's own installed YAML
(``lm_eval/tasks/mmlu/default/mmlu_<subject>.yaml``, ``truthfulqa/truthfulqa_mc1.yaml``, ...:
:data:`BUILTIN_YAML`), loaded with its includes and ``!function`` hooks (HellaSwag's
``process_docs``, TruthfulQA's ``process_results_mc2``, WinoGrande's partial-sentence choices),
with only the data source replaced: ``custom_dataset`` returns the records from
:mod:`pipeline.evaluation.benchmark_data` in the Hub dataset's layout, under the split the YAML
evaluates. doc_to_text / doc_to_choice / doc_to_target / description / metrics stay lm-eval's,
so the scores are lm-eval's scores (``tests/evaluation/test_mc_eval.py`` checks the fields
against the installed YAMLs).

Why not ``TaskManager``: it indexes every one of lm-eval's ~10k task files (38 s here) and
resolves names to Hub datasets; building ``ConfigurableTask`` from a dict needs neither.

MMLU is one task per subject, as in lm-eval (the subject's description differs, and 5-shot
examples come from that subject's dev rows with lm-eval's ``first_n`` sampler).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.evaluation.benchmark_data import MCItem, load_mmlu

#: Key added to every document so logged samples can be joined back to items.
ID_FIELD = "s3ft_id"
#: Prefix of our task names: keeps them apart from lm-eval's registry names.
TASK_PREFIX = "s3ft_"

#: benchmark → (lm-eval YAML relative to ``lm_eval/tasks``, the split that YAML evaluates).
BUILTIN_YAML: dict[str, tuple[str, str]] = {
    "truthfulqa_mc1": ("truthfulqa/truthfulqa_mc1.yaml", "validation"),
    "truthfulqa_mc2": ("truthfulqa/truthfulqa_mc2.yaml", "validation"),
    "arc_challenge": ("arc/arc_challenge.yaml", "test"),
    "hellaswag": ("hellaswag/hellaswag.yaml", "validation"),
    "arc_easy": ("arc/arc_easy.yaml", "test"),
    "piqa": ("piqa/piqa.yaml", "validation"),
    "lambada_openai": ("lambada/lambada_openai.yaml", "test"),
    "winogrande": ("winogrande/default.yaml", "validation"),
    "sciq": ("sciq/sciq.yaml", "test"),
    "boolq": ("super_glue/boolq/default.yaml", "validation"),
    "openbookqa": ("openbookqa/openbookqa.yaml", "test"),
    "commonsense_qa": ("commonsense_qa/default.yaml", "validation"),
}
MMLU_YAML = "mmlu/default/mmlu_{subject}.yaml"

#: Config keys that point at the Hub (or at lm-eval's own groups); replaced or dropped.
_DATA_KEYS = ("dataset_path", "dataset_name", "dataset_kwargs", "training_split", "validation_split",
              "test_split", "fewshot_split", "tag", "group")


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def load_builtin_config(relative_yaml: str) -> dict[str, Any]:
    """lm-eval's own task config (includes merged, ``!function`` resolved)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    path = lm_eval_tasks_dir() / relative_yaml
    if not path.is_file():
        raise FileNotFoundError(f"lm-eval task file {path} not found: is lm-eval==0.4.13 installed?")
    return load_yaml(path)


def _dataset_factory(splits: dict[str, list[MCItem]]) -> Callable[..., Any]:
    """``custom_dataset`` hook: lm-eval calls it with the task metadata as keyword arguments."""

    def build(**_metadata: Any) -> Any:
        import datasets

        return datasets.DatasetDict({
            split: datasets.Dataset.from_list([{**item.doc, ID_FIELD: item.id} for item in items])
            for split, items in splits.items()
        })

    return build


def _local_config(builtin: dict[str, Any], task: str, eval_split: str, splits: dict[str, list[MCItem]],
                  fewshot_split: str | None, num_fewshot: int) -> dict[str, Any]:
    config = {key: value for key, value in copy.deepcopy(builtin).items() if key not in _DATA_KEYS}
    config.update(task=task, custom_dataset=_dataset_factory(splits), num_fewshot=num_fewshot,
                  **{f"{eval_split}_split": eval_split})
    if fewshot_split:
        config["fewshot_split"] = fewshot_split
    return config


def task_configs(benchmark: str, items: list[MCItem], num_fewshot: int = 0,
                 root: Path | None = None) -> dict[str, tuple[dict[str, Any], list[MCItem]]]:
    """``{task name: (config dict, that task's eval items in doc order)}`` for ``items``.

    ``items`` must all belong to ``benchmark``; MMLU items are grouped into one task per subject
    present. ``num_fewshot`` > 0 is available for MMLU only (its dev split is local).
    """
    if benchmark == "mmlu":
        by_subject: dict[str, list[MCItem]] = {}
        for item in items:
            by_subject.setdefault(item.subject or "", []).append(item)
        dev: dict[str, list[MCItem]] = {}
        if num_fewshot:
            for item in load_mmlu("dev", root):
                dev.setdefault(item.subject or "", []).append(item)
        out = {}
        for subject, subject_items in sorted(by_subject.items()):
            builtin = load_builtin_config(MMLU_YAML.format(subject=subject))
            splits = {"test": subject_items} | ({"dev": dev[subject]} if num_fewshot else {})
            name = f"{TASK_PREFIX}mmlu_{subject}"
            out[name] = (_local_config(builtin, name, "test", splits, "dev" if num_fewshot else None,
                                       num_fewshot), subject_items)
        return out
    if benchmark not in BUILTIN_YAML:
        raise ValueError(f"no lm-eval task for benchmark {benchmark!r}; known: mmlu, {sorted(BUILTIN_YAML)}")
    if num_fewshot:
        raise ValueError(f"{benchmark}: few-shot needs the benchmark's train split, which is not in "
                         f"S3FT_DATA_DIR; use num_fewshot=0 (lm-eval's default for this task)")
    relative_yaml, eval_split = BUILTIN_YAML[benchmark]
    name = f"{TASK_PREFIX}{benchmark}"
    config = _local_config(load_builtin_config(relative_yaml), name, eval_split, {eval_split: items}, None, 0)
    return {name: (config, items)}


def build_tasks(configs: dict[str, tuple[dict[str, Any], list[MCItem]]],
                fewshot_seed: int = 1234) -> dict[str, Any]:
    """``ConfigurableTask`` objects (this loads the datasets through ``custom_dataset``)."""
    from lm_eval.api.task import ConfigurableTask

    tasks = {}
    for name, (config, _items) in configs.items():
        task = ConfigurableTask(config=config)
        task.set_fewshot_seed(seed=fewshot_seed)  # as simple_evaluate does (lm-eval's default seed)
        tasks[name] = task
    return tasks
