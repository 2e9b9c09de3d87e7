"""Natural Questions (NQ-open, gold-passage "oracle" file) helpers: fields, ids, split, gold.

The data is ``nq/nq-open-oracle.jsonl.gz`` under ``$S3FT_DATA_DIR`` (2,655 rows: ``question``,
``answers`` (aliases), ``ctxs`` (one gold Wikipedia passage), ``nq_annotated_gold``). It has
no train/test split, so one is defined here, fixed for good:

* id: ``nq-`` + the first 16 hex digits of sha256(question). Questions are unique in the file,
  so ids are too, and an id does not depend on the row's position or on other fields.
* split: sha256(``"s3ft-nq-split-v1:" + id``) read as a number in [0, 1); the first 20% of
  that range is ``test``, the rest ``train``. The salt is the "seed": changing it would move
  rows between splits, which must never happen silently (a test pins the split sizes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Literal

from judges.nq_rows import NqRowError, aliases
from judges.nq_rows import where as _where

#: Relative to ``$S3FT_DATA_DIR``.
NQ_FILE = "nq/nq-open-oracle.jsonl.gz"
TEST_SHARE = 0.2
_SPLIT_SALT = "s3ft-nq-split-v1:"

Split = Literal["train", "test"]


def nq_row_id(row: Mapping[str, Any]) -> str:
    """``nq-<sha256(question)[:16]>``: stable across files, orders and extra fields."""
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise NqRowError(f"{_where(row)}: 'question' is missing or empty")
    return "nq-" + hashlib.sha256(question.encode("utf-8")).hexdigest()[:16]


def split_of(row_id: str) -> Split:
    """``test`` for the ids whose salted hash falls in the first 20% of the hash space."""
    digest = hashlib.sha256((_SPLIT_SALT + row_id).encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    return "test" if position < TEST_SHARE else "train"


def passage(row: Mapping[str, Any]) -> str:
    """Title and text of the row's gold passage (``ctxs[0]``), title on its own line."""
    ctxs = row.get("ctxs")
    first = ctxs[0] if isinstance(ctxs, list | tuple) and ctxs else None
    if not isinstance(first, Mapping):
        raise NqRowError(f"{_where(row)}: 'ctxs' holds no passage; the NQ task needs the gold "
                         f"passage in ctxs[0] (use nq-open-oracle.jsonl.gz)")
    title = str(first.get("title") or "").strip()
    text = str(first.get("text") or "").strip()
    if not text:
        raise NqRowError(f"{_where(row)}: ctxs[0] has an empty 'text'")
    return f"{title}\n{text}" if title else text


def nq_row_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """What the templates and the judge need: ``passage``, ``question``, ``answers``."""
    return {"passage": passage(row), "question": str(row["question"]).strip(),
            "answers": aliases(row)}


def gold_response(row: Mapping[str, Any]) -> str:
    """The SFT target: the first answer alias, without the stray trailing comma or semicolon
    some aliases carry (``"Super Bowl LII,"``)."""
    return aliases(row)[0].rstrip(",;").strip()


def prepare_row(row: dict[str, Any]) -> dict[str, Any]:
    """A load-time hook: the source row unchanged, plus ``passage`` (for the templates) and
    ``nq_id`` (sha256 of the question, 16 hex digits: with ``id_field="nq_id"`` the loader's
    id becomes :func:`nq_row_id`). Raises :class:`NqRowError` for a row without a passage or
    an answer alias, naming the row."""
    aliases(row)  # fail at load time, not in the judge
    return {**row, "passage": passage(row), "nq_id": nq_row_id(row)[len("nq-"):]}
