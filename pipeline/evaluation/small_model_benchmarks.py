"""Loaders for the benchmarks a small model reads above chance: PIQA, LAMBADA (OpenAI),
WinoGrande, SciQ, BoolQ, OpenBookQA and CommonsenseQA (ARC-Easy shares ARC-Challenge's loader in
:mod:`pipeline.evaluation.benchmark_data`).

Each returns :class:`MCItem` s whose ``doc`` is the record in the layout of the Hub dataset
lm-evaluation-harness's task reads (``baber/piqa``, ``EleutherAI/lambada_openai``,
``allenai/winogrande``, ``allenai/sciq``, ``aps/super_glue`` ``boolq``, ``allenai/openbookqa``
``main``, ``tau/commonsense_qa``), so lm-eval's own prompts, choices and targets apply. The files
and their layouts are described in each folder's README.md under ``$S3FT_DATA_DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import data_dir
from pipeline.evaluation.benchmark_files import (
    BenchmarkDataError,
    MCItem,
    choices_with_key,
    one_hot,
    read_jsonl,
    require_file,
)

PIQA_FILE, PIQA_LABELS = "piqa/valid.jsonl", "piqa/valid-labels.lst"
LAMBADA_FILE = "lambada_openai/lambada_test.jsonl"
WINOGRANDE_FILE = "winogrande/dev.converted.jsonl"
SCIQ_FILE = "sciq/test.json"
BOOLQ_FILE = "boolq/val.jsonl"
OPENBOOKQA_FILE = "openbookqa/test.jsonl"
COMMONSENSEQA_FILE = "commonsenseqa/dev_rand_split.jsonl"


def _fields(where: str, row: dict, names: tuple[str, ...], layout: str) -> list:
    missing = [name for name in names if name not in row]
    if missing:
        raise BenchmarkDataError(f"{where}: missing field(s) {missing}; expected the "
                                 f"{layout} layout ({', '.join(names)})")
    return [row[name] for name in names]


def load_piqa(root: Path | None = None) -> list[MCItem]:
    """PIQA validation (1,838): two solutions per goal, labels in a line-aligned file."""
    root = root or data_dir()
    path = require_file(root / PIQA_FILE, "PIQA valid.jsonl")
    labels_path = require_file(root / PIQA_LABELS, "PIQA valid-labels.lst")
    rows = read_jsonl(path)
    labels = labels_path.read_text(encoding="utf-8").split()
    if len(labels) != len(rows):
        raise BenchmarkDataError(f"{labels_path}: {len(labels)} labels for the {len(rows)} rows of "
                                 f"{path}; the two files must be line-aligned")
    items = []
    for index, ((line_no, row), label) in enumerate(zip(rows, labels, strict=True)):
        goal, sol1, sol2 = _fields(f"{path}: line {line_no}", row, ("goal", "sol1", "sol2"), "PIQA")
        if label not in ("0", "1"):
            raise BenchmarkDataError(f"{labels_path}: line {index + 1}: label {label!r} is not 0 or 1")
        gold = int(label)
        items.append(MCItem(benchmark="piqa", id=f"piqa/{index}", question=goal, choices=(sol1, sol2),
                            gold=gold, labels=one_hot(gold, 2),
                            doc={"goal": goal, "sol1": sol1, "sol2": sol2, "label": gold}))
    return items


def load_lambada(root: Path | None = None) -> list[MCItem]:
    """LAMBADA, OpenAI's version (5,153): predict a passage's last word. The one "choice" is
    that word; lm-eval counts an item right when it is the model's greedy continuation."""
    path = require_file((root or data_dir()) / LAMBADA_FILE, "LAMBADA lambada_test.jsonl")
    items = []
    for index, (line_no, row) in enumerate(read_jsonl(path)):
        (text,) = _fields(f"{path}: line {line_no}", row, ("text",), "LAMBADA")
        words = text.split(" ") if isinstance(text, str) else []
        if len(words) < 2 or not words[-1]:
            raise BenchmarkDataError(f"{path}: line {line_no}: 'text' needs a context and a last word "
                                     f"separated by a space")
        # lm-eval's split: context = all but the last space-separated word, target = " " + it.
        items.append(MCItem(benchmark="lambada_openai", id=f"lambada/{index}", question=" ".join(words[:-1]),
                            choices=(" " + words[-1],), gold=0, labels=(1,), doc={"text": text}))
    return items


def load_winogrande(root: Path | None = None) -> list[MCItem]:
    """WinoGrande dev (1,267; winogrande_xl validation): which option fills the blank ``_``."""
    path = require_file((root or data_dir()) / WINOGRANDE_FILE, "WinoGrande dev.converted.jsonl")
    items = []
    for index, (line_no, row) in enumerate(read_jsonl(path)):
        sentence, option1, option2, answer = _fields(
            f"{path}: line {line_no}", row, ("sentence", "option1", "option2", "answer"), "WinoGrande")
        if answer not in ("1", "2") or sentence.count("_") != 1:
            raise BenchmarkDataError(f"{path}: line {line_no}: needs answer '1' or '2' (got {answer!r}) "
                                     f"and exactly one '_' blank in the sentence")
        gold = int(answer) - 1
        items.append(MCItem(benchmark="winogrande", id=f"winogrande/{index}", question=sentence,
                            choices=(option1, option2), gold=gold, labels=one_hot(gold, 2),
                            doc={"sentence": sentence, "option1": option1, "option2": option2,
                                 "answer": answer}))
    return items


def load_sciq(root: Path | None = None) -> list[MCItem]:
    """SciQ test (1,000): lm-eval puts the correct answer last, after the three distractors."""
    path = require_file((root or data_dir()) / SCIQ_FILE, "SciQ test.json")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BenchmarkDataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(rows, list):
        raise BenchmarkDataError(f"{path}: expected a JSON list of questions")
    names = ("question", "distractor1", "distractor2", "distractor3", "correct_answer", "support")
    items = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BenchmarkDataError(f"{path}: item {index} is not a JSON object")
        question, d1, d2, d3, correct, support = _fields(f"{path}: item {index}", row, names, "SciQ")
        items.append(MCItem(benchmark="sciq", id=f"sciq/{index}", question=question,
                            choices=(d1, d2, d3, correct), gold=3, labels=(0, 0, 0, 1),
                            doc=dict(zip(names, (question, d1, d2, d3, correct, support), strict=True))))
    return items


def load_boolq(root: Path | None = None) -> list[MCItem]:
    """BoolQ dev (3,270; SuperGLUE's val): a yes/no question about a passage."""
    path = require_file((root or data_dir()) / BOOLQ_FILE, "BoolQ val.jsonl")
    items = []
    for line_no, row in read_jsonl(path):
        question, passage, idx, label = _fields(
            f"{path}: line {line_no}", row, ("question", "passage", "idx", "label"), "SuperGLUE BoolQ")
        # The SuperGLUE file writes the label as a string; Google's original as a JSON boolean.
        truth = {True: 1, False: 0, "true": 1, "false": 0}.get(label) if isinstance(label, bool | str) \
            else None
        if truth is None:
            raise BenchmarkDataError(f"{path}: line {line_no}: label {label!r} is not true or false")
        gold = truth  # lm-eval's choices are ["no", "yes"]
        items.append(MCItem(benchmark="boolq", id=f"boolq/{idx}", question=question, choices=("no", "yes"),
                            gold=gold, labels=one_hot(gold, 2),
                            doc={"question": question, "passage": passage, "idx": idx, "label": gold}))
    return items


def load_openbookqa(root: Path | None = None) -> list[MCItem]:
    """OpenBookQA test (500, Main): four choices, no open-book fact in the prompt (as lm-eval)."""
    path = require_file((root or data_dir()) / OPENBOOKQA_FILE, "OpenBookQA test.jsonl")
    items = []
    for line_no, row in read_jsonl(path):
        stem, texts, letters, key = choices_with_key(path, line_no, row)
        gold = letters.index(key)
        items.append(MCItem(benchmark="openbookqa", id=f"openbookqa/{row.get('id', line_no)}", question=stem,
                            choices=tuple(texts), gold=gold, labels=one_hot(gold, len(texts)),
                            doc={"id": row.get("id", ""), "question_stem": stem,
                                 "choices": {"text": texts, "label": letters}, "answerKey": key}))
    return items


def load_commonsense_qa(root: Path | None = None) -> list[MCItem]:
    """CommonsenseQA dev (1,221, random split): five choices, answered by letter (lm-eval's prompt
    lists them A-E)."""
    path = require_file((root or data_dir()) / COMMONSENSEQA_FILE, "CommonsenseQA dev_rand_split.jsonl")
    items = []
    for line_no, row in read_jsonl(path):
        stem, texts, letters, key = choices_with_key(path, line_no, row)
        if letters != ["A", "B", "C", "D", "E"]:
            raise BenchmarkDataError(f"{path}: line {line_no}: choices are labelled {letters}; lm-eval's "
                                     f"prompt expects exactly A-E")
        gold = letters.index(key)
        items.append(MCItem(
            benchmark="commonsense_qa", id=f"commonsense_qa/{row.get('id', line_no)}", question=stem,
            choices=tuple(texts), gold=gold, labels=one_hot(gold, 5),
            doc={"id": row.get("id", ""), "question": stem,
                 "question_concept": row["question"].get("question_concept", ""),
                 "choices": {"label": letters, "text": texts}, "answerKey": key}))
    return items
