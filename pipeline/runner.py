"""Wire the stages together: load → generate → judge → paraphrase → select → export."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml

import judges
from pipeline.backends.base import SamplingSettings
from pipeline.backends.vllm_backend import VllmBackend
from pipeline.config import RunConfig, stable_hash
from pipeline.device import resolve_dtype
from pipeline.export import build_train_table, write_train
from pipeline.generate import GenerateStage
from pipeline.judge import JudgeStage
from pipeline.load import load_rows, write_shards
from pipeline.model import cache_dir, resolve_model
from pipeline.paraphrase import ParaphraseStage
from pipeline.select import SelectStage
from pipeline.stage import Stage, StageResult, run_stage, stage_key
from pipeline.storage import RunLock, atomic_write_bytes, atomic_write_json
from pipeline.summary import print_summary, summarize
from pipeline.tasks import get_task

log = logging.getLogger(__name__)

LOAD_VERSION = "1"


def run(config: RunConfig) -> dict[str, Any]:
    started = time.perf_counter()
    task = get_task(config.task)
    frame, loaded = load_rows(task, config.data, config.limit)
    model = resolve_model(config.model)
    log.info("task %s: %d rows from %s; model %s", task.name, frame.height, loaded.source,
             model.path)

    backend = VllmBackend(
        model.path, model_name=model.spec, cache_root=cache_dir(), dtype=config.dtype,
        max_model_len=config.max_model_len, seed=config.seed, kv_cache_gib=config.kv_cache_gib,
        gpu_memory_utilization=config.gpu_memory_utilization,
    )
    judge = judges.get(task.judge)
    sampling = SamplingSettings(max_tokens=config.max_tokens, stop=task.stop)
    engine_settings = {"dtype": resolve_dtype(config.dtype), "max_model_len": config.max_model_len,
                       "seed": config.seed}
    stages: list[Stage] = [
        GenerateStage(task, backend, sampling, model.fingerprint, engine_settings),
        JudgeStage(judge, judge_settings={}),
        ParaphraseStage(task, backend, judge, sampling, config.paraphrase_all),
        SelectStage(),
    ]

    load_key = stable_hash({"task": task.name, "data": loaded.fingerprint,
                            "shard_size": config.shard_size, "version": LOAD_VERSION})
    keys = [load_key]
    for stage in stages:
        keys.append(stage_key(stage, keys[-1]))
    out_dir = Path(config.out or Path("runs") / f"{task.name}-{keys[-1][:8]}")

    with RunLock(out_dir):
        stage_names = ["load"] + [stage.name for stage in stages]
        _write_config(out_dir, config, model, loaded, dict(zip(stage_names, keys, strict=True)))
        stages_root = out_dir / "stages"
        shards = write_shards(frame, stages_root, load_key, config.shard_size)
        results: dict[str, StageResult] = {}
        upstream_key = load_key
        for stage in stages:
            result = run_stage(stage, shards, upstream_key, stages_root, fresh=config.fresh)
            results[stage.name] = result
            shards, upstream_key = result.shards, result.key
        table = build_train_table(shards, task.name)
        write_train(table, out_dir / "train.parquet")
        summary = summarize(table, task.name, results, time.perf_counter() - started,
                            engine_starts=backend.engine_starts)
        summary["out"] = str(out_dir)
        atomic_write_json(out_dir / "summary.json", summary)
    print_summary(summary)
    return summary


def _write_config(out_dir: Path, config: RunConfig, model: Any, loaded: Any,
                  keys: dict[str, str]) -> None:
    """The resolved configuration, enough to reproduce the run (``--config config.yaml``)."""
    options = {k: v for k, v in dataclasses.asdict(config).items() if k != "config"}
    resolved = {
        "model_path": model.path, "model_fingerprint": model.fingerprint,
        "data_source": loaded.source,
        "data_fingerprint": json.loads(json.dumps(loaded.fingerprint, default=str)),
        "dtype": resolve_dtype(config.dtype), "stage_keys": keys,
    }
    text = yaml.safe_dump(options, sort_keys=False)
    text += "# Resolved at run time (informational; ignored when read back with --config):\n"
    text += "\n".join("# " + line for line in yaml.safe_dump({"resolved": resolved}).splitlines())
    atomic_write_bytes(out_dir / "config.yaml", (text + "\n").encode())
