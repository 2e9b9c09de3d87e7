"""``--benchmarks auto``: the general benchmarks on which the base model scores above chance.

Forgetting can only show on a benchmark the base model is above chance on (a 135M model reads
MMLU, TruthfulQA and ARC-Challenge at chance). ``auto`` scores the base model once on every
candidate, ``--signal-items`` items each, keeps those whose 95 % interval lies above chance
(:mod:`pipeline.evaluation.chance`) and caches the scores under ``$S3FT_CACHE_DIR/signal/``,
keyed by the model's weights, the scorer and the item count: a second run scores nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.backends.model import cache_dir, resolve_model
from pipeline.config import stable_hash
from pipeline.errors import UsageError
from pipeline.evaluation.chance import no_signal_text, signal_of
from pipeline.evaluation.config import AUTO
from pipeline.evaluation.models import ModelUnderTest
from pipeline.evaluation.scoring import evaluate_general, scorer_key
from pipeline.storage import atomic_write_json

if TYPE_CHECKING:
    from pipeline.evaluation.config import EvaluateConfig

log = logging.getLogger(__name__)

#: What ``auto`` tries: one TruthfulQA (MC1 and MC2 are the same questions).
CANDIDATES = ("mmlu", "truthfulqa_mc1", "arc_challenge", "hellaswag", "arc_easy", "piqa", "lambada_openai",
              "winogrande", "sciq", "boolq", "openbookqa", "commonsense_qa")
SIGNAL_FILE = "signal.json"


def signal_folder(fingerprint: str, settings: EvaluateConfig) -> Path:
    key = stable_hash({"model": fingerprint, "items": settings.signal_items, **scorer_key(settings)}, 16)
    return cache_dir() / "signal" / key


def pick_signal_benchmarks(base: str, settings: EvaluateConfig) -> list[str]:
    """The candidates ``base`` (a model spec) scores above chance on, scored once and cached."""
    fingerprint = resolve_model(base).fingerprint
    folder = signal_folder(fingerprint, settings)
    check = dataclasses.replace(settings, limit=None, limit_general=settings.signal_items)
    log.info("--benchmarks auto: scoring %s on %d candidates, %d items each (once; cached in %s)",
             base, len(CANDIDATES), settings.signal_items, folder)
    scores, _ = evaluate_general([ModelUnderTest("base", base, base)], list(CANDIDATES), check, folder)
    signal = signal_of(scores["base"], CANDIDATES, "base")
    atomic_write_json(folder / SIGNAL_FILE, {"model": base, "fingerprint": fingerprint,
                                             "items": settings.signal_items, "scorer": settings.scorer,
                                             "benchmarks": signal})
    picked = [b for b in CANDIDATES if signal[b]["signal"]]
    skipped = "; ".join(no_signal_text(signal))
    if not picked:
        raise UsageError(f"--benchmarks auto: {base} is at chance on every candidate ({skipped}); no "
                         f"general benchmark here can show forgetting for it: name some with --benchmarks")
    log.info("--benchmarks auto: %s (above chance); left out, at chance: %s", ", ".join(picked),
             skipped or "none")
    return picked


def share_check_scores(base: str, settings: EvaluateConfig, models: list[ModelUnderTest], out: Path) -> None:
    """Let each model that is the checked base itself reuse the check's saved scores: a saved
    score is found by a key of the weights, benchmark, item count and scorer, so only a table
    of the same size (``--limit-general`` = ``--signal-items``) finds them."""
    source = signal_folder(resolve_model(base).fingerprint, settings) / "base" / "general"
    for m in models:
        if m.adapter or m.base != base or not source.is_dir():
            continue
        target = out / m.name / "general"
        target.mkdir(parents=True, exist_ok=True)
        for path in source.iterdir():
            if not (target / path.name).exists():
                shutil.copy2(path, target / path.name)


def expand_auto(general: list[str], base: str, settings: EvaluateConfig) -> list[str]:
    """``general`` with ``auto`` replaced by the picked benchmarks not already named."""
    if AUTO not in general:
        return general
    picked = pick_signal_benchmarks(base, settings)
    out: list[str] = []
    for name in general:
        for benchmark in (picked if name == AUTO else [name]):
            if benchmark not in out:
                out.append(benchmark)
    return out


def cached_signal(base: str) -> dict[str, dict[str, Any]] | None:
    """What an earlier ``auto`` found for ``base`` (any scorer): per candidate, its score,
    chance and signal; None when no check ran for these weights."""
    try:
        fingerprint = resolve_model(base).fingerprint
    except (UsageError, OSError):  # an unresolvable base: nothing is known about it
        return None
    for path in sorted((cache_dir() / "signal").glob(f"*/{SIGNAL_FILE}")):
        record: dict[str, Any] = json.loads(path.read_text())
        if record.get("fingerprint") == fingerprint:
            return record["benchmarks"]
    return None


def known_signal(base: str) -> list[str] | None:
    """Benchmarks an earlier ``auto`` found ``base`` above chance on, if one ran."""
    cached = cached_signal(base)
    return None if cached is None else [b for b, s in cached.items() if s["signal"]]


def warn_early(general: list[str], base: str) -> None:
    """Before hours of training: say so when an earlier check found every named benchmark at chance."""
    cached = cached_signal(base)
    if not cached or not general or AUTO in general or any(b not in cached for b in general):
        return
    warning = no_signal_warning({b: cached[b] for b in general}, base)
    if warning:
        log.warning("%s (from an earlier --benchmarks auto check)", warning)


def no_signal_warning(signal: dict[str, dict[str, Any]], base: str) -> str | None:
    """One line when no general benchmark of a table has signal: the table cannot show forgetting."""
    if not signal or any(s["signal"] for s in signal.values()):
        return None
    known = known_signal(base)
    would = (f"benchmarks that would: {', '.join(known)}" if known
             else "--benchmarks auto finds the ones that would")
    return (f"no general benchmark here reads {base} above chance ({'; '.join(no_signal_text(signal))}), "
            f"so this table cannot show forgetting; {would}")
