"""What every benchmark loader shares: the uniform item, the error, and reading the local files.

The loaders (:mod:`pipeline.evaluation.benchmark_data` for the paper's four benchmarks,
:mod:`pipeline.evaluation.small_model_benchmarks` for the ones a small model is above chance
on) read files under ``$S3FT_DATA_DIR`` and stop on a bad one with a
:class:`BenchmarkDataError` naming the file, the row and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.storage import read_json_objects


class BenchmarkDataError(UsageError):
    """A missing or malformed benchmark file; the message names the file, the row and the fix."""


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice item.

    ``labels`` marks every correct choice (1) — one-hot except TruthfulQA MC2, which has several
    true answers; ``gold`` is the first correct index. ``question`` is the question (MMLU, ARC,
    TruthfulQA) or the context lm-eval scores the endings after (HellaSwag, preprocessed like
    lm-eval; LAMBADA: the passage without its last word, whose only "choice" is that word).
    ``doc`` is the record in the Hub dataset's layout for lm-eval's task config.
    """

    benchmark: str
    id: str
    question: str
    choices: tuple[str, ...]
    gold: int
    labels: tuple[int, ...]
    subject: str | None = None
    doc: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise BenchmarkDataError(
            f"{what} not found at {path}. Set S3FT_DATA_DIR to the datasets folder that holds "
            f"one folder per benchmark (mmlu/, arc_challenge/, piqa/, ...; here: /work/shared/data)."
        )
    return path


def one_hot(index: int, size: int) -> tuple[int, ...]:
    return tuple(int(i == index) for i in range(size))


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line."""
    return read_json_objects(path, BenchmarkDataError)


def choices_with_key(path: Path, line_no: int, row: dict[str, Any], stem_key: str = "stem"
                     ) -> tuple[str, list[str], list[str], str]:
    """``(stem, texts, labels, answer key)`` of an AI2-layout row (ARC, OpenBookQA, CommonsenseQA):
    ``question{stem, choices[{text, label}]}, answerKey``; the key must be one of the labels."""
    where = f"{path}: line {line_no}"
    try:
        stem = row["question"][stem_key]
        texts = [choice["text"] for choice in row["question"]["choices"]]
        letters = [choice["label"] for choice in row["question"]["choices"]]
        key = row["answerKey"]
    except (KeyError, TypeError) as exc:
        raise BenchmarkDataError(f"{where}: missing field {exc} (expected the AI2 layout id, "
                                 f"question{{{stem_key}, choices[{{text,label}}]}}, answerKey)") from None
    if key not in letters:
        raise BenchmarkDataError(f"{where} ({row.get('id')}): answerKey {key!r} is not one of the "
                                 f"labels {letters}")
    return stem, texts, letters, key
