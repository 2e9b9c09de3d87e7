"""Task folders written in a temporary directory from the real data (no engine needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import data_dir


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path, limit: int) -> list[dict[str, Any]]:
    rows = []
    with open(path) as handle:
        for line in handle:
            rows.append(json.loads(line))
            if len(rows) == limit:
                break
    return rows


def write_task(folder: Path, task: dict[str, Any], templates: dict[str, str],
               extra: dict[str, str] | None = None) -> Path:
    """``folder/task.yaml`` plus its templates (and any other files, e.g. a judge module)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.yaml").write_text(yaml.safe_dump(task, sort_keys=False))
    for name, text in {**templates, **(extra or {})}.items():
        (folder / name).write_text(text)
    return folder


def edit_task(folder: Path, **changes: Any) -> None:
    """Replace top-level keys of ``folder/task.yaml``."""
    data = yaml.safe_load((folder / "task.yaml").read_text())
    data.update(changes)
    (folder / "task.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def gsm8k_numbers(rows: int) -> list[dict[str, Any]]:
    """GSM8K test problems as a user's file: other column names, answers as plain numbers."""
    out = []
    for row in read_jsonl(data_dir() / "gsm8k" / "test.jsonl", rows):
        number = re.search(r"####\s*(.+)$", row["answer"]).group(1).replace(",", "").strip()
        out.append({"problem": row["question"], "result": number})
    return out


def numeric_task(root: Path, rows: int = 8) -> Path:
    """A numeric-answer task with its own column names (``problem``, ``result``)."""
    write_jsonl(root / "data" / "train.jsonl", gsm8k_numbers(rows))
    return write_task(root, {
        "name": "numbers",
        "data": {"path": "data/train.jsonl"},
        "fields": {"question": "problem", "answer": "result"},
        "prompts": {"answer": "answer.jinja", "paraphrase": "paraphrase.jinja"},
        "gold": "The answer is {{ answer }}.\n#### {{ answer }}",
        "judge": {"kind": "math", "gold_answer": "{{ answer }}"},
        "generation": {"max_tokens": 160},
    }, {
        "answer.jinja": "Solve the problem step by step. End with a line '#### <number>'.\n\n"
                        "Problem: {{ question }}",
        "paraphrase.jinja": "Problem: {{ question }}\nCorrect answer: {{ gold }}\nExplain in your "
                            "own words why this is the answer, and end with '#### {{ answer }}'.",
    })


def arc_rows(rows: int) -> list[dict[str, Any]]:
    out = []
    for row in read_jsonl(data_dir() / "arc_challenge" / "ARC-Challenge-Test.jsonl", rows):
        out.append({"stem": row["question"]["stem"], "key": row["answerKey"],
                    "options": [c["text"] for c in row["question"]["choices"]],
                    "labels": "".join(c["label"] for c in row["question"]["choices"])})
    return [r for r in out if r["labels"] == "ABCD"]


def choice_task(root: Path, rows: int = 8, bad_gold: bool = False) -> Path:
    """A multiple-choice task (ARC-Challenge); ``bad_gold`` adds a row whose key is 'Z'."""
    data = arc_rows(rows)
    if bad_gold:
        data.append({**data[0], "stem": data[0]["stem"] + " (copy)", "key": "Z"})
    write_jsonl(root / "data.jsonl", data)
    return write_task(root, {
        "name": "arc",
        "data": {"path": "data.jsonl"},
        "fields": {"question": "stem", "choices": "options", "answer": "key"},
        "types": {"choices": "list"},
        "prompts": {"answer": "answer.jinja", "paraphrase": "paraphrase.jinja"},
        "gold": "The answer is {{ answer }}.",
        "judge": {"kind": "choice", "gold_answer": "{{ answer }}", "choices": "choices"},
        "generation": {"max_tokens": 48, "stop": ["\n\n"]},
    }, {
        "answer.jinja": "{{ question }}\n{% for c in choices %}{{ 'ABCD'[loop.index0] }}. {{ c }}\n"
                        "{% endfor %}Answer with the letter of the correct option.",
        "paraphrase.jinja": "{{ question }}\nThe correct option is {{ gold }} Say which option "
                            "is correct, in your own words.",
    })


def nq_closed_book_rows(rows: int) -> list[dict[str, Any]]:
    return [{"q": r["question"], "aliases": r["answer"]}
            for r in read_jsonl(data_dir() / "nq" / "NQ-open.dev.jsonl", rows)]


def alias_task(root: Path, rows: int = 8) -> Path:
    """A short-answer task with an alias list and no passages (NQ-open dev, closed book)."""
    write_jsonl(root / "qa.jsonl", nq_closed_book_rows(rows))
    return write_task(root, {
        "name": "closedqa",
        "data": {"path": "qa.jsonl"},
        "fields": {"question": "q", "answers": "aliases"},
        "prompts": {"answer": "answer.jinja", "paraphrase": "paraphrase.jinja"},
        "gold": "{{ answers | first }}",
        "judge": {"kind": "alias"},
        "generation": {"max_tokens": 32, "stop": ["\n\n"]},
    }, {
        "answer.jinja": "Answer the question in a few words.\nQuestion: {{ question }}",
        "paraphrase.jinja": "Question: {{ question }}\nCorrect answer: {{ gold }}\nRestate the "
                            "answer as a short sentence.",
    })


def regex_task(root: Path, rows: int = 8) -> Path:
    """A regex-judged task: the answer is read from 'Answer: <number>'."""
    write_jsonl(root / "rows.jsonl", gsm8k_numbers(rows))
    return write_task(root, {
        "name": "regexmath",
        "data": {"path": "rows.jsonl"},
        "fields": {"question": "problem", "answer": "result"},
        "prompts": {"answer": "answer.jinja", "paraphrase": "paraphrase.jinja"},
        "gold": "Answer: {{ answer }}",
        "judge": {"kind": "regex", "pattern": r"Answer:\s*\$?(-?[\d,.]+)", "flags": ["IGNORECASE"],
                  "gold_answer": "{{ answer }}"},
        "generation": {"max_tokens": 128},
    }, {
        "answer.jinja": "Solve the problem. End with a line 'Answer: <number>'.\n\n{{ question }}",
        "paraphrase.jinja": "{{ question }}\nThe solution ends with: {{ gold }}\nWrite a short "
                            "solution that ends with that line.",
    })


JUDGE_MODULE = '''\
"""A user's own judge: the response must contain the gold answer's first word."""


def judge(response, row):
    return row["answer"].split()[0].lower() in response.lower()
'''


def module_task(root: Path, rows: int = 8) -> Path:
    """A task judged by the user's own Python function (``my_judge.py``)."""
    data = [{"q": r["q"], "answer": r["aliases"][0]} for r in nq_closed_book_rows(rows)]
    write_jsonl(root / "qa.jsonl", data)
    return write_task(root, {
        "name": "ownjudge",
        "data": {"path": "qa.jsonl"},
        "fields": {"question": "q", "answer": "answer"},
        "prompts": {"answer": "answer.jinja", "paraphrase": "paraphrase.jinja"},
        "gold": "{{ answer }}",
        "judge": {"kind": "module", "path": "my_judge.py", "callable": "judge"},
        "generation": {"max_tokens": 32, "stop": ["\n\n"]},
    }, {
        "answer.jinja": "Answer in a few words.\nQuestion: {{ question }}",
        "paraphrase.jinja": "Question: {{ question }}\nAnswer: {{ gold }}\nRestate the answer.",
    }, {"my_judge.py": JUDGE_MODULE})
