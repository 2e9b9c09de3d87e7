"""Every model on every benchmark, into one ``results.json``: the scores, which general
benchmarks carry signal, and the paired differences (``python -m pipeline.evaluate`` and
``pipeline.compare`` both end here)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.evaluation.chance import signal_of
from pipeline.evaluation.config import AUTO
from pipeline.evaluation.general import CONTINUOUS
from pipeline.evaluation.models import ModelUnderTest
from pipeline.evaluation.paired import compare_pair, default_pairs
from pipeline.evaluation.scoring import evaluate_general, evaluate_in_domain, split_benchmarks
from pipeline.evaluation.signal import expand_auto, no_signal_warning, share_check_scores
from pipeline.storage import atomic_write_json, atomic_write_parquet

if TYPE_CHECKING:
    from pipeline.evaluation.config import EvaluateConfig

log = logging.getLogger(__name__)


def paired_comparisons(models: list[str], tasks: list[str], general: list[str], in_domain_items: Any,
                       general_items: Any, mean_over: list[str] | None = None) -> list[dict[str, Any]]:
    """Each model against the base, and S3FT against SFT, on the same items
    (:mod:`pipeline.evaluation.paired`); the general mean is over ``mean_over`` (default: all
    ``general``; :func:`evaluate_models` passes the benchmarks with signal)."""
    per_item: dict[str, dict[str, dict[str, float]]] = {m: {} for m in models}
    if in_domain_items is not None:
        for row in in_domain_items.iter_rows(named=True):
            per_item[row["model"]].setdefault(row["task"], {})[row["id"]] = float(bool(row["verdict"]))
    if general_items is not None:
        for row in general_items.iter_rows(named=True):
            per_item[row["model"]].setdefault(row["benchmark"], {})[row["id"]] = float(row["correct"])
    binary = [b for b in [*tasks, *general] if b not in CONTINUOUS]
    mean_over = general if mean_over is None else mean_over
    return [compare_pair(per_item, a, b, [*tasks, *general], binary, mean_over)
            for a, b in default_pairs(models)]


def evaluate_models(models: list[ModelUnderTest], benchmarks: str, settings: EvaluateConfig,
                    out: Path) -> dict[str, Any]:
    """Score every model on every benchmark; writes results.json and the item tables.

    ``auto`` among the benchmarks becomes those the first model's base reads above chance. The
    signal of every general benchmark is read on the base (``base`` if there is one, else the
    first model): a benchmark whose interval reaches chance is marked and left out of the
    general mean."""
    tasks, general = split_benchmarks(benchmarks, settings.trust_task_code)
    if AUTO in general:
        general = expand_auto(general, models[0].base, settings)
        share_check_scores(models[0].base, settings, models, out)
    in_domain, in_domain_items = evaluate_in_domain(models, tasks, settings, out) if tasks else ({}, None)
    general_results, general_items = (evaluate_general(models, general, settings, out)
                                      if general else ({}, None))
    names = [m.name for m in models]
    reference = "base" if "base" in names else names[0]
    signal = signal_of(general_results.get(reference, {}), general, reference)
    with_signal = [b for b in general if signal[b]["signal"]]
    warning = no_signal_warning(signal, models[0].base)
    if warning:
        log.warning(warning)
    results = {
        "order": names,  # results.json is written with sorted keys
        "models": {m.name: {"spec": m.spec, "base": m.base, "adapter": m.adapter} for m in models},
        "limit": settings.limit, "limit_general": settings.general_limit,
        "in_domain_tasks": tasks, "general_benchmarks": general,
        "signal": signal, "signal_benchmarks": with_signal, "signal_warning": warning,
        "scores": {m.name: {**in_domain.get(m.name, {}), **general_results.get(m.name, {})}
                   for m in models},
        "paired": paired_comparisons(names, tasks, general, in_domain_items, general_items, with_signal),
    }
    for name, items in (("items_in_domain", in_domain_items), ("items_general", general_items)):
        if items is not None:
            atomic_write_parquet(out / f"{name}.parquet", items)
    atomic_write_json(out / "results.json", results)
    return results
