"""Training input: which column each mode trains on, and the checked rows of ``train.parquet``.

Every training mode is a column choice on the same ``train.parquet`` (see
``pipeline/stages/export.py``), so the S3FT run and its SFT / SDFT baselines differ only in
their targets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.backends.model import DEFAULT_MODEL, resolve_model
from pipeline.errors import UsageError

log = logging.getLogger(__name__)

#: Where each mode reads its training text (the other columns every mode needs: ``prompt``).
MODES: dict[str, str] = {
    "s3ft": "target column: the S3FT selection (model answer / paraphrase / gold)",
    "sft": "gold column for every row",
    "sdft": "paraphrase column where paraphrase_admitted is true, gold otherwise",
}
MODE_COLUMNS: dict[str, tuple[str, ...]] = {
    "s3ft": ("target",),
    "sft": ("gold",),
    "sdft": ("paraphrase", "paraphrase_admitted", "gold"),
}


class TrainInputError(UsageError):
    """Bad training input (file, column, row or flag); the message says which and what to do."""


def read_train_table(path: str | Path, mode: str) -> Any:
    """Read and check ``train.parquet``: it exists, has rows and the columns ``mode`` needs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if mode not in MODES:
        raise TrainInputError(f"--mode {mode!r}: unknown mode; choose one of {', '.join(MODES)}")
    path = Path(path)
    if not path.is_file():
        raise TrainInputError(f"--data {path}: no such file (expected runs/<run>/train.parquet "
                              f"from `python -m pipeline.run`)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise TrainInputError(f"--data {path}: not a readable Parquet file ({exc})") from exc
    needed = ("prompt", *MODE_COLUMNS[mode])
    missing = [name for name in needed if name not in table.column_names]
    if missing:
        hint = (" (rerun curation; the SDFT baseline needs the paraphrase stage)"
                if mode == "sdft" else "")
        raise TrainInputError(
            f"--data {path}: --mode {mode} needs column(s) {', '.join(missing)}, which the file lacks "
            f"(it has: {', '.join(table.column_names)}){hint}"
        )
    if table.num_rows == 0:
        raise TrainInputError(f"--data {path}: the file has no rows; nothing to train on")
    return table


def chosen_text(row: Mapping[str, Any], mode: str) -> str | None:
    """The training target of one row under ``mode`` (see :data:`MODES`)."""
    if mode == "s3ft":
        return row["target"]
    if mode == "sft":
        return row["gold"]
    if mode == "sdft":
        return row["paraphrase"] if row["paraphrase_admitted"] else row["gold"]
    raise TrainInputError(f"--mode {mode!r}: unknown mode; choose one of {', '.join(MODES)}")


def build_examples(path: str | Path, mode: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Conversational prompt/completion rows for TRL: ``prompt`` = the exported messages,
    ``completion`` = one assistant message with the mode's target."""
    table = read_train_table(path, mode)
    if limit is not None:
        if limit < 1:
            raise TrainInputError(f"--limit {limit}: must be at least 1")
        table = table.slice(0, limit)
    columns = ["prompt", *MODE_COLUMNS[mode]] + (["id"] if "id" in table.column_names else [])
    examples = []
    for index, row in enumerate(table.select(columns).to_pylist()):
        where = f"--data {path}: row {index}" + (f" (id {row['id']})" if row.get("id") else "")
        prompt = row["prompt"]
        if not prompt or not all(isinstance(m, dict) and m.get("role") and m.get("content") is not None
                                 for m in prompt):
            raise TrainInputError(f"{where}: `prompt` must be a non-empty list of {{role, content}} messages")
        text = chosen_text(row, mode)
        if not text:
            column = ("paraphrase" if mode == "sdft" and row["paraphrase_admitted"]
                      else MODE_COLUMNS[mode][-1])
            raise TrainInputError(f"{where}: --mode {mode} trains on `{column}`, which is empty here")
        examples.append({
            "prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
            "completion": [{"role": "assistant", "content": text}],
        })
    return examples


def model_from_data(path: str | Path) -> str | None:
    """The single model spec recorded in the data's ``model`` column, if any."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if "model" not in pq.read_schema(path).names:
        return None
    table = pq.read_table(path, columns=["model"])
    specs = [s for s in pc.unique(table["model"]).to_pylist() if s]
    if len(specs) > 1:
        raise TrainInputError(f"--data {path}: rows come from several models ({', '.join(specs)}); "
                              f"pass --model to pick the one to fine-tune")
    return specs[0] if specs else None


def resolve_training_model(spec: str | None, data: str | Path) -> str:
    """A loadable model path: ``--model``, else the data's model if it resolves, else the default.

    S3FT targets are the base model's own answers, so training a different model than the one
    in the data is warned about loudly.
    """
    if spec:
        return resolve_model(spec).path
    recorded = model_from_data(data)
    if recorded:
        try:
            path = resolve_model(recorded).path
            if Path(path).is_dir() or _hub_model_available(path):
                return path
            reason = "it is a Hub id that is neither cached nor downloadable (HF_HUB_OFFLINE)"
        except (UsageError, OSError) as exc:
            reason = str(exc)
        log.warning("the data was generated by %s, which does not resolve here (%s); training %s instead. "
                    "S3FT targets are that model's own answers: pass --model to train the right one.",
                    recorded, reason, DEFAULT_MODEL)
    return resolve_model(DEFAULT_MODEL).path


def _hub_model_available(repo_id: str) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes"):
        return True
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


