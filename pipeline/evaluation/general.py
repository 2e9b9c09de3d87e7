"""General-benchmark evaluation (MMLU, TruthfulQA MC1/MC2, ARC-Challenge, HellaSwag, and the
benchmarks a small model reads above chance: ARC-Easy, PIQA, LAMBADA, WinoGrande, SciQ, BoolQ,
OpenBookQA, CommonsenseQA) with lm-evaluation-harness's log-likelihood method, on the local data files.

Engine: lm-eval 0.4.13 (``lm_eval.models.huggingface.HFLM``, CPU, float32) running lm-eval's own
task definitions (:mod:`pipeline.evaluation.lm_eval_tasks`); only the data source is ours
(:mod:`pipeline.evaluation.benchmark_data`). For every item and choice lm-eval scores
``log P(target_delimiter + choice | prompt)``, the summed token log-probs of the continuation;
``acc`` = the argmax is gold, ``acc_norm`` = the argmax of log-prob / ``len(choice)`` (characters)
is gold; TruthfulQA MC2 = the normalised probability mass on the true answers; LAMBADA ``acc`` =
the passage's last word is the model's greedy continuation.

Primary metric per benchmark (:data:`PRIMARY_METRIC`; what the S3FT paper, the Open LLM
Leaderboard v1 and small-model papers read): ``acc_norm`` for ARC, HellaSwag, PIQA, SciQ and
OpenBookQA, ``acc`` for the rest. 95% intervals: Wilson score for the 0/1 metrics; for MC2
(a mean of fractions) a normal interval on the mean, clipped to [0, 1]. Every score carries its
chance level (:mod:`pipeline.evaluation.chance`).

Models: a model folder, a PEFT adapter folder (``adapter_config.json``: the base named there,
or ``base_model=``, plus the adapter), ``embedded:...``/``.gguf`` specs via
:func:`pipeline.backends.model.resolve_model`, a loaded transformers/PEFT model (pass ``tokenizer=``),
or any ``lm_eval.api.model.LM``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.backends.model import resolve_model
from pipeline.evaluation.benchmark_data import MCItem, canonical_name, load_benchmark, select_items
from pipeline.evaluation.chance import above_chance, chance_level
from pipeline.evaluation.lm_eval_tasks import ID_FIELD, build_tasks, task_configs
from pipeline.progress import Progress, score_text
from pipeline.stats import mean_interval, wilson_interval

log = logging.getLogger(__name__)

#: benchmark → the metric reported as ``accuracy``.
PRIMARY_METRIC = {"mmlu": "acc", "truthfulqa_mc1": "acc", "truthfulqa_mc2": "acc",
                  "arc_challenge": "acc_norm", "hellaswag": "acc_norm",
                  # as the Open LLM Leaderboard / Pythia / SmolLM tables read them
                  "arc_easy": "acc_norm", "piqa": "acc_norm", "lambada_openai": "acc",
                  "winogrande": "acc", "sciq": "acc_norm", "boolq": "acc", "openbookqa": "acc_norm",
                  "commonsense_qa": "acc"}
#: Benchmarks whose per-item primary score is a fraction, not 0/1.
CONTINUOUS = {"truthfulqa_mc2"}
# --- model ------------------------------------------------------------------------------------


def hflm_source(model: str | Path, base_model: str | None = None) -> dict[str, Any]:
    """HFLM keyword arguments for a model spec: folder, PEFT adapter folder, or embedded/GGUF spec."""
    path = Path(model)
    if not path.exists():
        if str(model).startswith("embedded:") or str(model).endswith(".gguf"):
            return {"pretrained": str(resolve_model(str(model)).path)}
        raise FileNotFoundError(f"model {model}: no such folder. Pass a model folder, a PEFT adapter "
                                f"folder (with adapter_config.json) or an embedded:/.gguf model spec")
    adapter_config = path / "adapter_config.json"
    if not adapter_config.is_file():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: neither config.json (model folder) nor adapter_config.json "
                                    f"(PEFT adapter folder) found")
        return {"pretrained": str(path)}
    base = base_model or json.loads(adapter_config.read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{adapter_config} names no base_model_name_or_path; pass base_model=<model folder>")
    if not Path(base).exists() and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise FileNotFoundError(f"{adapter_config}: base model {base!r} is not a local folder and the Hub "
                                f"is offline; pass base_model=<local model folder>")
    # The adapter folder usually holds the tokenizer the model was trained with; else the base's.
    tokenizer = str(path) if (path / "tokenizer_config.json").is_file() else str(base)
    return {"pretrained": str(base), "peft": str(path), "tokenizer": tokenizer}


def make_lm(model: Any, *, base_model: str | None = None, tokenizer: Any = None, batch_size: int = 16,
            dtype: str = "float32", device: str = "cpu") -> Any:
    """An lm-eval ``LM`` for ``model`` (see module doc for what ``model`` may be)."""
    from lm_eval.api.model import LM

    if isinstance(model, LM):
        return model
    from lm_eval.models.huggingface import HFLM  # imports transformers' generation stack: only when needed

    if isinstance(model, str | Path):
        return HFLM(**hflm_source(model, base_model), device=device, dtype=dtype, batch_size=batch_size)
    if tokenizer is None:
        raise ValueError("a loaded model needs its tokenizer: score_benchmarks(model, ..., tokenizer=tok)")
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


# --- scoring ----------------------------------------------------------------------------------


class _DropCustomDatasetNotice(logging.Filter):
    # lm-eval warns once per task that custom_dataset takes --metadata kwargs: 57 lines for MMLU.
    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # first maximum, like numpy


def _lm_eval_gold(task: Any, doc: dict[str, Any]) -> int:
    """The gold choice index as lm-eval's ``process_results`` resolves it: WinoGrande-style
    tasks (one context per choice) name it in ``doc_to_text``; a target that is a choice's text
    or letter (CommonsenseQA's "A".."E") is that choice's position."""
    gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
    if isinstance(gold, str):
        choices = task.doc_to_choice(doc)
        gold = choices.index(gold) if gold in choices else -1
    return int(gold)


def _item_record(benchmark: str, task: Any, item: MCItem, sample: dict[str, Any]) -> dict[str, Any]:
    """One item's results from lm-eval's logged sample; gold cross-checked against lm-eval's target."""
    lls = [float(resp[0]) for resp in sample["filtered_resps"]]
    continuations = [args[1] for args in sample["arguments"]]
    metric = PRIMARY_METRIC[benchmark]
    if task.OUTPUT_TYPE == "loglikelihood":  # LAMBADA: right when the target is the greedy continuation
        if continuations != list(item.choices):
            raise RuntimeError(f"{item.id}: lm-eval's target {continuations} != loader's {item.choices}")
        right = float(sample["acc"])
        return {"benchmark": benchmark, "id": item.id, "subject": item.subject, "task": task.config.task,
                "gold": 0, "labels": [1], "predicted": 0 if right else None, "correct": right,
                "acc": right, "acc_norm": None, "loglikelihoods": lls,
                "choice_chars": [len(c) for c in continuations], "context": sample["arguments"][0][0],
                "continuations": continuations}
    # acc_norm's divisor: len() of the task's choice strings (MMLU: the letters), as lm-eval does.
    chars = [len(choice) for choice in task.doc_to_choice(sample["doc"])]
    if benchmark not in CONTINUOUS and _lm_eval_gold(task, sample["doc"]) != item.gold:
        raise RuntimeError(f"{item.id}: lm-eval's target {sample['target']} != loader gold {item.gold}; "
                           f"the local data does not match the task's doc_to_target")
    norm_scores = [ll / n for ll, n in zip(lls, chars, strict=True)]
    return {
        "benchmark": benchmark, "id": item.id, "subject": item.subject, "task": task.config.task,
        "gold": item.gold, "labels": list(item.labels),
        "predicted": _argmax(norm_scores if metric == "acc_norm" else lls),
        "correct": float(sample[metric]),
        "acc": float(sample["acc"]), "acc_norm": float(sample["acc_norm"]) if "acc_norm" in sample else None,
        "loglikelihoods": lls, "choice_chars": chars,
        "context": sample["arguments"][0][0], "continuations": continuations,
    }


def _run_lm_eval(lm: Any, benchmark: str, items: list[MCItem], num_fewshot: int,
                 data_root: Path | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from lm_eval.evaluator import evaluate

    configs = task_configs(benchmark, items, num_fewshot=num_fewshot, root=data_root)
    tasks = build_tasks(configs)
    out = evaluate(lm=lm, task_dict={"tasks": tasks, "groups": {}}, bootstrap_iters=0, log_samples=True)
    records = []
    for name, (_config, task_items) in configs.items():
        by_id = {item.id: item for item in task_items}
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        if len(samples) != len(task_items):
            raise RuntimeError(f"{name}: lm-eval returned {len(samples)} samples for {len(task_items)} items")
        records += [_item_record(benchmark, tasks[name], by_id[s["doc"][ID_FIELD]], s) for s in samples]
    return records, out["results"]


def summarise(benchmark: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """n, primary-metric accuracy, its 95% interval, the chance level and whether the interval
    is above it (:mod:`pipeline.evaluation.chance`), and every metric's mean."""
    n = len(records)
    summary: dict[str, Any] = {"benchmark": benchmark, "metric": PRIMARY_METRIC[benchmark], "n": n,
                               "accuracy": None, "ci95": None, "chance": None, "above_chance": None,
                               "metrics": {}}
    if not n:
        return summary
    correct = [r["correct"] for r in records]
    summary["accuracy"] = sum(correct) / n
    interval = mean_interval(correct) if benchmark in CONTINUOUS else wilson_interval(sum(correct), n)
    summary["ci95"] = list(interval)
    summary["chance"] = chance_level(benchmark, [r["labels"] for r in records])
    summary["above_chance"] = above_chance(summary)
    for metric in ("acc", "acc_norm"):
        values = [r[metric] for r in records if r[metric] is not None]
        if values:
            summary["metrics"][metric] = sum(values) / len(values)
    return summary


#: Log-likelihood requests scored between two progress updates.
PROGRESS_CHUNK = 256


def _count_loglikelihoods(lm: Any) -> None:
    """Score lm-eval's requests in chunks so the step reports progress (choices scored,
    ETA) on long benchmarks; the results are the same, request for request."""
    original = lm.loglikelihood

    def counted(requests: list, *args: Any, **kwargs: Any) -> list:
        results: list = []
        with Progress("lm-eval log-likelihoods", len(requests), "choices") as meter:
            for start in range(0, len(requests), PROGRESS_CHUNK):
                chunk = requests[start:start + PROGRESS_CHUNK]
                results += original(chunk, *args, **kwargs)
                meter.update(len(chunk))
        return results

    lm.loglikelihood = counted


def score_benchmarks(model: Any, benchmarks: Iterable[str], limit: int | None = None, *,
                     num_fewshot: int = 0, base_model: str | None = None, tokenizer: Any = None,
                     batch_size: int = 16, threads: int | None = None, data_root: Path | None = None,
                     dtype: str = "float32", device: str = "cpu") -> dict[str, dict[str, Any]]:
    """Score ``model`` on ``benchmarks`` (names or aliases, e.g. ``truthfulqa_mc``) with lm-eval.

    ``limit``: the first N items per benchmark (MMLU: round-robin over subjects, see
    :func:`pipeline.evaluation.benchmark_data.select_items`). ``num_fewshot``: 0 (default; lm-eval's default
    for these tasks) or, for MMLU only, k dev examples of the same subject (lm-eval uses 5).
    ``threads``: torch CPU threads for the run (restored afterwards); on a busy machine 1 is
    often faster than 2.

    Returns ``{benchmark: {benchmark, metric, n, accuracy, ci95, metrics, engine, num_fewshot,
    seconds, items_per_s, lm_eval_results, items}}``; ``items`` is one dict per item (id, gold, predicted,
    correct, per-choice log-likelihoods, ...), see :func:`items_frame` to save them as Parquet.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded at run time
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    names = [canonical_name(b) for b in benchmarks]
    if len(set(names)) != len(names):
        raise ValueError(f"benchmark listed twice: {list(benchmarks)}")
    selections = {name: select_items(load_benchmark(name, data_root), limit) for name in names}
    if num_fewshot and set(names) - {"mmlu"}:
        log.warning("num_fewshot=%d applies to MMLU only (the others' train splits are not local); "
                    "%s run 0-shot", num_fewshot, sorted(set(names) - {"mmlu"}))
    previous_threads = torch.get_num_threads()
    task_logger = logging.getLogger("lm_eval.api.task")
    notice_filter = _DropCustomDatasetNotice()
    task_logger.addFilter(notice_filter)
    try:
        if threads:
            torch.set_num_threads(threads)
        lm = make_lm(model, base_model=base_model, tokenizer=tokenizer, batch_size=batch_size,
                     dtype=dtype, device=device) if any(selections.values()) else None
        results = {}
        if lm is not None:
            _count_loglikelihoods(lm)
        for name, items in selections.items():
            started = time.perf_counter()
            records, lm_eval_results = (_run_lm_eval(lm, name, items, num_fewshot if name == "mmlu" else 0,
                                                     data_root) if items else ([], {}))
            seconds = time.perf_counter() - started
            results[name] = {**summarise(name, records), "engine": f"lm-eval {_lm_eval_version()}",
                             "num_fewshot": num_fewshot if name == "mmlu" else 0,
                             "seconds": round(seconds, 2),
                             "items_per_s": round(len(records) / seconds, 3) if records else None,
                             "lm_eval_results": lm_eval_results, "items": records}
            log.info("%s: %s = %s (95%% interval) in %.1fs", name, results[name]["metric"],
                     score_text(results[name]["accuracy"], results[name]["ci95"], len(records)),
                     seconds)
        return results
    finally:
        torch.set_num_threads(previous_threads)
        task_logger.removeFilter(notice_filter)


def items_frame(results: dict[str, dict[str, Any]]) -> Any:
    """All benchmarks' per-item results as one polars DataFrame (``.write_parquet(path)``)."""
    import polars as pl

    rows = [record for result in results.values() for record in result["items"]]
    schema = {"benchmark": pl.String, "id": pl.String, "subject": pl.String, "task": pl.String,
              "gold": pl.Int64, "labels": pl.List(pl.Int64), "predicted": pl.Int64, "correct": pl.Float64,
              "acc": pl.Float64, "acc_norm": pl.Float64, "loglikelihoods": pl.List(pl.Float64),
              "choice_chars": pl.List(pl.Int64), "context": pl.String, "continuations": pl.List(pl.String)}
    return pl.DataFrame(rows, schema=schema)


def summary_table(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The results without the per-item lists (for summary.json / printing)."""
    return {name: {k: v for k, v in result.items() if k != "items"} for name, result in results.items()}
