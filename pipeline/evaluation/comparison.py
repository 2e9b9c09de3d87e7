"""The paper's table: curate, train one adapter per mode, score the base and every adapter.

Curation and training each run in a child process of their own (:mod:`pipeline.child`),
calling the same functions as ``python -m pipeline.run`` and ``pipeline.train``
(:func:`pipeline.curate.run`, :func:`pipeline.training.trainer.train_from_config`) with config
objects, not argument lists: a child frees the engine's or the trainer's memory when it ends.
Every step reuses finished work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.child import in_child
from pipeline.config import EngineOptions, RunConfig, SamplingOptions, WorkOptions, stable_hash
from pipeline.curate import run
from pipeline.evaluation.config import EvaluateConfig
from pipeline.evaluation.drift import DriftSettings, drift_prompts, measure_drift
from pipeline.evaluation.models import model_under_test
from pipeline.evaluation.results import evaluate_models
from pipeline.evaluation.scoreboard import plot_chart, write_table
from pipeline.evaluation.scoring import hf_dtype, split_benchmarks
from pipeline.evaluation.signal import warn_early
from pipeline.storage import atomic_write_json
from pipeline.tasks import load_task
from pipeline.training.trainer import train_from_config, trained_folder_name, training_options

if TYPE_CHECKING:
    from pipeline.evaluation.config import CompareConfig

log = logging.getLogger(__name__)


def engine_and_work(settings: Any) -> dict[str, Any]:
    """The engine and work option groups of ``settings``, for the configs compare builds:
    curation and scoring run with the same model, dtype, lengths and shards."""
    names = {f.name for group in (EngineOptions, WorkOptions) for f in dataclasses.fields(group)}
    return {name: getattr(settings, name) for name in sorted(names - {"config"})}


def sampling_of(settings: Any) -> dict[str, Any]:
    """How the curation answers (``--samples``, ``--temperature``, ...): the sampling group."""
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(SamplingOptions)}


def settings_key(settings: Any) -> str:
    """The compare's folder key: its settings, less those that do not change results, and
    less sampling options left at their defaults (a compare from before they were options
    keeps its folder)."""
    defaults = {f.name: f.default for f in dataclasses.fields(SamplingOptions)}
    return stable_hash({k: v for k, v in vars(settings).items()
                        if k not in ("fresh", "log_level", "progress", "debug", "config")
                        and not (k in defaults and v == defaults[k])})


def _curate(config: Any) -> None:
    run(config)


def curate(settings: CompareConfig, run_out: Path) -> Path:
    """The task's training set, curated the S3FT way (reused when finished)."""
    config = RunConfig(task=settings.task, trust_task_code=settings.trust_task_code,
                       out=str(run_out), limit=settings.limit_train,
                       paraphrase_all=settings.paraphrase_all, **engine_and_work(settings),
                       **sampling_of(settings))
    log.info("curation: %s into %s", settings.task, run_out)
    in_child("curation", _curate, config, log_level=settings.log_level)
    return run_out / "train.parquet"


def training_folder(settings: CompareConfig, mode: str, out: Path) -> Path:
    """``<out>/train/<mode>-lora``, or ``<mode>-full`` when the training config sets
    ``lora: false``: the folder says what it holds."""
    return out / "train" / trained_folder_name(mode, settings.train_config)


def train_mode(settings: CompareConfig, data: Path, mode: str, out: Path) -> Path:
    """One adapter (or fully fine-tuned model) per mode; reused while the training data and
    config are unchanged."""
    config_text = Path(settings.train_config).read_text() if settings.train_config else ""
    stamp = {"mode": mode, "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
             "train_config": config_text}
    stamp_path = out / "compare-stamp.json"
    saved = (out / "adapter_config.json").is_file() or (out / "config.json").is_file()
    if (not settings.fresh and saved and stamp_path.is_file()
            and json.loads(stamp_path.read_text()) == stamp):
        log.info("%s: reusing the trained model in %s", mode, out)
        return out
    log.info("training (%s): %s into %s", mode, data, out)
    in_child(f"training ({mode})", train_from_config, str(data), mode, str(out),
             settings.train_config, log_level=settings.log_level)
    stamp_path.write_text(json.dumps(stamp, indent=2))
    return out


def compare(settings: CompareConfig) -> dict[str, Any]:
    # Fail on a bad task, untrusted task code or a bad benchmark name before any work.
    load_task(settings.task, trust_code=settings.trust_task_code).check_trust()
    training_options(settings.train_config)  # ... or a bad training config
    drift_prompts(settings.drift_prompts)  # ... or missing benchmark files for the drift prompts
    modes = [m.strip() for m in settings.modes.split(",") if m.strip()]
    benchmarks = f"{settings.task},{settings.benchmarks}" if settings.benchmarks else settings.task
    warn_early(split_benchmarks(benchmarks, settings.trust_task_code)[1], settings.model)
    key = settings_key(settings)
    out = Path(settings.out or Path("runs") / f"compare-{settings.task}-{key[:8]}")
    out.mkdir(parents=True, exist_ok=True)

    timings: dict[str, float] = {}  # this invocation's wall time per step (reused steps: ~0)

    def timed(step: str, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = work()
        timings[step] = round(time.perf_counter() - started, 1)
        return result

    data = timed("curation", lambda: curate(settings, Path(settings.run_out or out / "curation")))
    adapters = {mode: timed(f"training ({mode})", lambda mode=mode: train_mode(
        settings, data, mode, training_folder(settings, mode, out))) for mode in modes}
    models = [model_under_test(settings.model, "base")]
    models += [model_under_test(str(path), mode) for mode, path in adapters.items()]
    evaluation = EvaluateConfig(limit=settings.limit_eval, limit_general=settings.limit_general,
                                scorer=settings.scorer, signal_items=settings.signal_items, **{
        **engine_and_work(settings), "max_tokens": settings.eval_max_tokens or settings.max_tokens})
    results = timed("scoring", lambda: evaluate_models(models, benchmarks, evaluation, out))
    results["drift"] = timed("drift", lambda: measure_drift(
        models, DriftSettings(settings.drift_prompts, settings.drift_max_tokens,
                              hf_dtype(settings.dtype)), out, fresh=settings.fresh))
    atomic_write_json(out / "results.json", results)
    # Apart from results.json, which a rerun that reuses every step must leave unchanged.
    atomic_write_json(out / "timings.json", {  # a list: the steps in the order they ran
        "steps": [{"step": step, "seconds": seconds} for step, seconds in timings.items()],
        "total_seconds": round(sum(timings.values()), 1)})
    print(write_table(results, out, baseline="base"))
    plot_chart(results, out / "chart.png")
    print("wall time per step (this invocation; a reused step takes ~0): "
          + ", ".join(f"{step} {seconds / 60:.1f} min" for step, seconds in timings.items()))
    print(f"table, chart, per-item results and timings.json in {out}")
    return results
