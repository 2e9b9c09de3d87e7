"""Local loaders for the general benchmarks, read from the files under ``$S3FT_DATA_DIR`` (see
each folder's README.md): the paper's MMLU, TruthfulQA MC, ARC-Challenge and HellaSwag here, and
the registry of every benchmark (:data:`LOADERS`), with ARC-Easy and the ones in
:mod:`pipeline.evaluation.small_model_benchmarks`.

Every loader returns uniform :class:`MCItem` s (id, question/context text, choices, gold index,
subject) plus ``doc``: the same record in the field layout of the Hub dataset that
lm-evaluation-harness's own task config expects (``cais/mmlu``, ``truthfulqa/truthful_qa``
``multiple_choice``, ``allenai/ai2_arc``, ``Rowan/hellaswag``). The scorer (``pipeline.evaluation.general``)
feeds ``doc`` to lm-eval's unchanged task definitions, so prompts, choices and targets are lm-eval's
own; the uniform fields are for reports, tests and anyone scoring without lm-eval.

``--limit N`` semantics (:func:`select_items`): the first N items in file order, except MMLU,
whose items are taken round-robin over the 57 subjects (subjects in alphabetical order, each
subject's rows in file order), so a small limit samples every subject instead of only
``abstract_algebra``. Deterministic: the same N always gives the same items.

Nothing is downloaded. Bad files stop with :class:`BenchmarkDataError` naming the file, the row
and what to do.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from itertools import zip_longest
from pathlib import Path
from typing import Any

from pipeline.config import data_dir
from pipeline.evaluation import small_model_benchmarks as small
from pipeline.evaluation.benchmark_files import (
    BenchmarkDataError,
    MCItem,
    choices_with_key,
    one_hot,
    read_jsonl,
    require_file,
)

#: Files relative to ``$S3FT_DATA_DIR``.
MMLU_TEST_DIR = "mmlu/test"
MMLU_DEV_DIR = "mmlu/dev"
TRUTHFULQA_FILE = "truthfulqa/mc_task.json"
ARC_CHALLENGE_FILE = "arc_challenge/ARC-Challenge-Test.jsonl"
ARC_EASY_FILE = "arc_easy/ARC-Easy-Test.jsonl"
HELLASWAG_FILE = "hellaswag/hellaswag_val_sample1000.jsonl"

MMLU_HEADER = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
MMLU_LETTERS = ("A", "B", "C", "D")


# --- MMLU -------------------------------------------------------------------------------------


def mmlu_subject_files(split: str = "test", root: Path | None = None) -> dict[str, Path]:
    """``{subject: csv path}`` for ``split`` (``test`` or ``dev``), subjects sorted."""
    folder = require_file((root or data_dir()) / ("mmlu/" + split), f"MMLU {split} folder")
    files = sorted(folder.glob(f"*_{split}.csv"))
    if not files:
        raise BenchmarkDataError(f"{folder}: no *_{split}.csv files; expected one CSV per subject")
    return {path.name[: -len(f"_{split}.csv")]: path for path in files}


def _read_mmlu_csv(path: Path, subject: str) -> list[MCItem]:
    items = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != MMLU_HEADER:
            raise BenchmarkDataError(f"{path}: header is {header}, expected {MMLU_HEADER} (the "
                                     f"cais/mmlu-style CSVs described in mmlu/README.md)")
        for row_no, row in enumerate(reader):
            where = f"{path}: data row {row_no + 1} (line {reader.line_num})"
            if len(row) != len(MMLU_HEADER):
                raise BenchmarkDataError(f"{where} has {len(row)} fields, expected 6; fix the quoting")
            question, *choices, answer = row
            if answer not in ("0", "1", "2", "3"):
                raise BenchmarkDataError(f"{where}: answer {answer!r} is not a 0-3 choice index")
            gold = int(answer)
            items.append(MCItem(
                benchmark="mmlu", id=f"mmlu/{subject}/{row_no}", question=question,
                choices=tuple(choices), gold=gold, labels=one_hot(gold, 4), subject=subject,
                doc={"question": question, "subject": subject, "choices": list(choices), "answer": gold},
            ))
    if not items:
        raise BenchmarkDataError(f"{path}: no data rows")
    return items


def load_mmlu(split: str = "test", root: Path | None = None) -> list[MCItem]:
    """All MMLU items of ``split``, subjects alphabetical, rows in file order (14,042 for test)."""
    if split not in ("test", "dev"):
        raise BenchmarkDataError(f"MMLU split {split!r}: only 'test' and 'dev' exist locally")
    return [item for subject, path in mmlu_subject_files(split, root).items()
            for item in _read_mmlu_csv(path, subject)]


def round_robin_by_subject(items: list[MCItem]) -> list[MCItem]:
    """Interleave items over subjects (first item of every subject, then every second, ...)."""
    by_subject: dict[str, list[MCItem]] = {}
    for item in items:
        by_subject.setdefault(item.subject or "", []).append(item)
    rounds = zip_longest(*(by_subject[s] for s in sorted(by_subject)))
    return [item for round_ in rounds for item in round_ if item is not None]


# --- TruthfulQA -------------------------------------------------------------------------------


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # mc_task.json keys answers by their text: a repeated answer would silently drop one.
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        raise BenchmarkDataError(f"repeated JSON key(s) {repeated[:3]}: every answer must appear once")
    return dict(pairs)


def _targets(path: Path, index: int, entry: dict[str, Any], name: str) -> tuple[list[str], list[int]]:
    targets = entry.get(name)
    if not isinstance(targets, dict) or not targets:
        raise BenchmarkDataError(f"{path}: item {index}: '{name}' missing or empty")
    labels = list(targets.values())
    if any(label not in (0, 1) for label in labels) or 1 not in labels:
        raise BenchmarkDataError(f"{path}: item {index}: '{name}' labels must be 0/1 with at least one 1")
    return list(targets), labels


def load_truthfulqa(targets: str = "mc1", root: Path | None = None) -> list[MCItem]:
    """TruthfulQA multiple choice (817 items); ``targets`` picks the ``mc1`` or ``mc2`` answer set."""
    if targets not in ("mc1", "mc2"):
        raise BenchmarkDataError(f"TruthfulQA targets {targets!r}: use 'mc1' or 'mc2'")
    path = require_file((root or data_dir()) / TRUTHFULQA_FILE, "TruthfulQA mc_task.json")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (json.JSONDecodeError, BenchmarkDataError) as exc:
        raise BenchmarkDataError(f"{path}: {exc}") from None
    if not isinstance(entries, list):
        raise BenchmarkDataError(f"{path}: expected a JSON list of items")
    items = []
    for index, entry in enumerate(entries):
        question = entry.get("question") if isinstance(entry, dict) else None
        if not isinstance(question, str) or not question.strip():
            raise BenchmarkDataError(f"{path}: item {index}: 'question' missing or empty")
        mc1, mc1_labels = _targets(path, index, entry, "mc1_targets")
        mc2, mc2_labels = _targets(path, index, entry, "mc2_targets")
        if mc1_labels.count(1) != 1:
            raise BenchmarkDataError(f"{path}: item {index}: mc1_targets needs exactly one true answer")
        choices, labels = (mc1, mc1_labels) if targets == "mc1" else (mc2, mc2_labels)
        items.append(MCItem(
            benchmark=f"truthfulqa_{targets}", id=f"truthfulqa/{index}", question=question,
            choices=tuple(choices), gold=labels.index(1), labels=tuple(labels),
            doc={"question": question, "mc1_targets": {"choices": mc1, "labels": mc1_labels},
                 "mc2_targets": {"choices": mc2, "labels": mc2_labels}},
        ))
    return items


# --- ARC-Challenge ----------------------------------------------------------------------------


def load_arc(benchmark: str = "arc_challenge", root: Path | None = None) -> list[MCItem]:
    """ARC-Challenge test (1,172) or ARC-Easy test (2,376). Labels are A-E or 1-5; gold = the
    position of ``answerKey`` among them."""
    relative = {"arc_challenge": ARC_CHALLENGE_FILE, "arc_easy": ARC_EASY_FILE}[benchmark]
    path = require_file((root or data_dir()) / relative, f"{benchmark} test file")
    items = []
    for line_no, row in read_jsonl(path):
        stem, texts, letters, key = choices_with_key(path, line_no, row)
        if "id" not in row:
            raise BenchmarkDataError(f"{path}: line {line_no}: missing field 'id'")
        gold = letters.index(key)
        items.append(MCItem(
            benchmark=benchmark, id=row["id"], question=stem, choices=tuple(texts), gold=gold,
            labels=one_hot(gold, len(texts)),
            doc={"id": row["id"], "question": stem, "choices": {"text": texts, "label": letters},
                 "answerKey": key},
        ))
    return items


def load_arc_challenge(root: Path | None = None) -> list[MCItem]:
    return load_arc("arc_challenge", root)


# --- HellaSwag --------------------------------------------------------------------------------


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's ``tasks/hellaswag/utils.py::preprocess`` (WikiHow ``[title]``/``[step]`` artifacts)."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def load_hellaswag(root: Path | None = None) -> list[MCItem]:
    """The 1,000-item HellaSwag validation sample, context/endings preprocessed as lm-eval does."""
    path = require_file((root or data_dir()) / HELLASWAG_FILE, "HellaSwag sample file")
    items = []
    for line_no, row in read_jsonl(path):
        where = f"{path}: line {line_no}"
        try:
            activity, ctx_a, ctx_b = row["activity_label"], row["ctx_a"], row["ctx_b"]
            endings = row["endings"]
            label = int(row["label"])
            ind = row["ind"]
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchmarkDataError(f"{where}: bad or missing field ({exc}); expected the rowanz/hellaswag "
                                     f"layout ind, activity_label, ctx_a, ctx_b, endings, label") from None
        if not isinstance(endings, list) or not 0 <= label < len(endings):
            raise BenchmarkDataError(f"{where}: label {label} does not index the {len(endings)} endings")
        query = hellaswag_preprocess(activity + ": " + ctx_a + " " + ctx_b.capitalize())
        items.append(MCItem(
            benchmark="hellaswag", id=f"hellaswag/{ind}", question=query,
            choices=tuple(hellaswag_preprocess(e) for e in endings), gold=label,
            labels=one_hot(label, len(endings)),
            doc={"ind": ind, "activity_label": activity, "ctx_a": ctx_a, "ctx_b": ctx_b,
                 "ctx": row.get("ctx", ""), "endings": endings, "source_id": row.get("source_id", ""),
                 "split": row.get("split", ""), "split_type": row.get("split_type", ""), "label": str(label)},
        ))
    return items


# --- registry ---------------------------------------------------------------------------------

LOADERS: dict[str, Callable[[Path | None], list[MCItem]]] = {
    "mmlu": lambda root: load_mmlu("test", root),
    "truthfulqa_mc1": lambda root: load_truthfulqa("mc1", root),
    "truthfulqa_mc2": lambda root: load_truthfulqa("mc2", root),
    "arc_challenge": load_arc_challenge,
    "hellaswag": load_hellaswag,
    # Benchmarks a 135M model reads above chance (the four above mostly do not).
    "arc_easy": lambda root: load_arc("arc_easy", root),
    "piqa": small.load_piqa,
    "lambada_openai": small.load_lambada,
    "winogrande": small.load_winogrande,
    "sciq": small.load_sciq,
    "boolq": small.load_boolq,
    "openbookqa": small.load_openbookqa,
    "commonsense_qa": small.load_commonsense_qa,
}
#: Alternative spellings accepted by :func:`canonical_name`.
ALIASES = {"truthfulqa_mc": "truthfulqa_mc1", "truthfulqa": "truthfulqa_mc1", "arc": "arc_challenge",
           "lambada": "lambada_openai", "commonsenseqa": "commonsense_qa", "csqa": "commonsense_qa"}


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in LOADERS:
        raise BenchmarkDataError(f"unknown benchmark {name!r}; choose from {sorted(LOADERS)} "
                                 f"(aliases: {sorted(ALIASES)})")
    return key


def load_benchmark(name: str, root: Path | None = None) -> list[MCItem]:
    """All items of benchmark ``name`` (see :data:`LOADERS`), in file order."""
    return LOADERS[canonical_name(name)](root)


def select_items(items: list[MCItem], limit: int | None) -> list[MCItem]:
    """The ``--limit`` subset: first ``limit`` items; MMLU round-robin over subjects (see module doc)."""
    if limit is not None and limit < 0:
        raise BenchmarkDataError(f"--limit must be >= 0, got {limit}")
    if items and items[0].benchmark == "mmlu":
        items = round_robin_by_subject(items)
    return items if limit is None else items[:limit]
