"""Curate one task: plan the run, then load → generate → judge → admit → paraphrase →
judge_paraphrase → admit_paraphrase → select → export → ``train.parquet`` (the stages are in
:mod:`pipeline.stages`, their contract and loop in :mod:`pipeline.stage`)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from judges import Judge
from judges.calibration import Calibration
from pipeline.backends.base import Backend, SamplingSettings
from pipeline.backends.device import engine_kwargs, resolve_dtype
from pipeline.backends.loop_guard import LoopGuard
from pipeline.backends.model import ResolvedModel, cache_dir, resolve_model
from pipeline.backends.openai_backend import OpenAIBackend
from pipeline.backends.ray_backend import RayBackend, import_ray
from pipeline.backends.vllm_backend import VllmBackend
from pipeline.config import RunConfig, stable_hash
from pipeline.errors import UsageError
from pipeline.reporting.report import write_report
from pipeline.reporting.summary import print_summary, summarize
from pipeline.sampling import AnswerSampling
from pipeline.sampling import resolve as resolve_sampling
from pipeline.stage import Shard, Stage, StageResult, check_chain, run_stage, stage_key
from pipeline.stages.admission import AdmitStage
from pipeline.stages.export import ExportStage, build_train_table, write_train
from pipeline.stages.generate import GenerateStage
from pipeline.stages.gold_check import check_gold, refuse_if_mostly_failing
from pipeline.stages.judge import CALIBRATION_FILE, JudgeStage
from pipeline.stages.load import LoadedData, load_rows, write_shards
from pipeline.stages.paraphrase import ParaphraseStage
from pipeline.stages.select import SelectStage
from pipeline.stages.shift import ShiftStage
from pipeline.storage import RunLock, atomic_write_bytes, atomic_write_json
from pipeline.tasks import load_task
from pipeline.tasks.taskfile import TaskSpec, describe

log = logging.getLogger(__name__)

LOAD_VERSION = "2"  # 2: MBPP gold in the one target format
#: What the run resolved from its options, as data (read by the card and the report).
RUN_FILE = "run.json"


@dataclass
class Plan:
    """Everything a run will do, decided before any work starts (no engine is started)."""

    config: RunConfig
    task: TaskSpec
    frame: pl.DataFrame
    loaded: LoadedData
    model: ResolvedModel
    backend: Backend
    judge: Judge
    stages: list[Stage]
    keys: dict[str, str]  # stage name -> key, "load" first
    out_dir: Path


def plan(config: RunConfig, served: tuple[ResolvedModel, Backend, dict[str, Any]] | None = None,
         judge_chat: Backend | None = None) -> Plan:
    """Decide a run. ``served`` (model, backend, engine settings) replaces the backend the
    config names, and ``judge_chat`` the LLM judge's model: evaluation shares one engine
    between several models this way."""
    task = load_task(config.task, trust_code=config.trust_task_code)
    task.check_trust()
    chosen = resolve_sampling(config.sampling_given(), task.sampling, str(task.file))
    # An engine starts on first use only.
    model, backend, engine = served or _backend(config, seeded_sampling=chosen.temperature > 0)
    # Paraphrases are one greedy rewrite each; answers are greedy too unless --samples asks
    # for several (then sampled with the run's settings, each prompt with its own seed).
    paraphrasing = SamplingSettings(max_tokens=config.max_tokens or task.max_tokens, stop=task.stop,
                                    loop_guard=_loop_guard(config))
    answering = _answer_sampling(config, chosen, paraphrasing, backend)
    judge = _judge(config, task, judge_chat or backend)
    frame, loaded = load_rows(task, config.data, config.limit, config.split, judge=judge)
    answers_judge = JudgeStage(judge, samples=chosen.samples)
    paraphrase_judge = JudgeStage(judge, paraphrase=True)
    stages: list[Stage] = [
        # The shift stage's gold and own-answer scores are taken where the engine still holds
        # their prompts: right after generating (an engine that cannot: the shift stage). Not
        # part of the stage's key: a run resumed on Ray or without them reuses the answers.
        GenerateStage(task, backend, answering, model.fingerprint, engine,
                      score_texts=config.measure_shift and backend.scores_completions
                      and backend.scores_after_generation),
        answers_judge,
        AdmitStage(judge, samples=chosen.samples, pick=chosen.pick),
        ParaphraseStage(task, backend, paraphrasing, config.paraphrase_all),
        paraphrase_judge,
        AdmitStage(judge, paraphrase=True),
        SelectStage(judge),
        ShiftStage(backend, model.fingerprint, enabled=config.measure_shift),
        ExportStage(task.name, sampling=sampling_record(answering, chosen.pick)),
    ]
    check_chain(stages, frame.columns)
    # --limit is not part of any key: shards are fixed windows, so a different limit reuses
    # every full shard it shares with an earlier run (see pipeline/stages/load.py: write_shards).
    keys = {"load": stable_hash({"task": task.load_settings(), "data": loaded.fingerprint,
                                 "split": config.split,
                                 "shard_size": config.shard_size, "version": LOAD_VERSION})}
    upstream = keys["load"]
    for stage in stages:
        upstream = keys[stage.name] = stage_key(stage, upstream)
    paraphrase_judge.calibration_stage_dir = f"{answers_judge.name}-{keys[answers_judge.name]}"
    out_dir = Path(config.out or Path("runs") / f"{task.name}-{upstream[:8]}")
    return Plan(config, task, frame, loaded, model, backend, judge, stages, keys, out_dir)


def sampling_record(sampling: SamplingSettings, pick: str) -> dict[str, Any]:
    """How answers were sampled, as each exported row and the card record it."""
    record = {name: getattr(sampling, name) for name in (
        "n", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed", "max_tokens")}
    return {**record, "pick": pick if sampling.n > 1 else None,
            "loop_guard": sampling.loop_guard is not None}


def _answer_sampling(config: RunConfig, chosen: AnswerSampling, greedy: SamplingSettings,
                     backend: Backend) -> SamplingSettings:
    """How answers are generated: ``greedy`` with the run's resolved sampling settings."""
    if chosen.samples > 1 and not backend.samples_per_prompt:
        raise UsageError(f"--samples {chosen.samples} ({chosen.origin['samples']}): this backend "
                         f"({type(backend).__name__}) answers one sample per prompt; use the "
                         f"in-process engine (the default --backend vllm --engine local) to "
                         f"sample several")
    return dataclasses.replace(
        greedy, n=chosen.samples, temperature=chosen.temperature, top_p=chosen.top_p,
        top_k=chosen.top_k, min_p=chosen.min_p, repetition_penalty=chosen.repetition_penalty,
        seed=config.seed if chosen.temperature > 0 else None)


def _loop_guard(config: RunConfig) -> LoopGuard | None:
    """The loop guard, where the backend can apply it: the in-process and Ray engines load the
    processor; an OpenAI-compatible server decides its own decoding, so there is none."""
    if not config.loop_guard:
        return None
    if config.backend == "openai":
        log.info("loop guard: not applied with --backend openai (the server generates to the "
                 "limit; cut-off answers are still never admitted)")
        return None
    return LoopGuard()


def engine_settings(dtype: str, max_model_len: int, seed: int) -> dict[str, Any]:
    """The vLLM engine settings that change answers: part of the generate stage's key for a
    curation run and for evaluation alike, so both find each other's shards."""
    return {"dtype": resolve_dtype(dtype), "max_model_len": max_model_len, "seed": seed}


def _backend(config: RunConfig, seeded_sampling: bool = False
             ) -> tuple[ResolvedModel, Backend, dict[str, Any]]:
    """The generation backend, the model it serves, and the engine settings that change
    outputs (part of the generate stage's key). ``seeded_sampling``: it will sample with
    per-prompt seeds (``--samples`` > 1 or a temperature above 0)."""
    if config.backend == "openai":
        if not config.base_url:
            raise UsageError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1) "
                             "and --model set to the served model name")

        # The server's identity (address and served name) is part of the generate stage's
        # key and of the request cache's: another server's answers are not this one's.
        identity = f"openai:{config.model}@{config.base_url.rstrip('/')}"
        backend = OpenAIBackend(
            config.base_url, config.model, api_key_env=config.api_key_env,
            max_concurrency=config.max_concurrency, timeout=config.request_timeout,
            max_retries=config.max_retries, cache_namespace=identity,
        )
        served = ResolvedModel(spec=config.model, path=config.base_url, fingerprint=identity)
        return served, backend, {"backend": "openai"}
    # --backend and --engine hold known values: OpenAIOptions/RayOptions.check refused others.
    model = resolve_model(config.model)
    # Where the engine runs does not change what it answers: both engines share stage keys.
    settings = engine_settings(config.dtype, config.max_model_len, config.seed)
    if config.engine == "ray":
        import_ray()  # a missing extra is reported before any engine starts
        kwargs = engine_kwargs(model.path, dtype=config.dtype, max_model_len=config.max_model_len,
                               seed=config.seed, gpu_memory_utilization=config.gpu_memory_utilization)
        ray_backend = RayBackend(model.path, model.spec, engine_kwargs=kwargs, address=config.ray_address,
                                 replicas=config.replicas, tensor_parallel_size=config.tensor_parallel_size,
                                 shards_per_call=config.shards_per_job, kv_cache_gib=config.kv_cache_gib,
                                 cache_root=cache_dir())
        return model, ray_backend, settings
    backend = VllmBackend(
        model.path, model_name=model.spec, cache_root=cache_dir(), dtype=config.dtype,
        max_model_len=config.max_model_len, seed=config.seed, kv_cache_gib=config.kv_cache_gib,
        gpu_memory_utilization=config.gpu_memory_utilization, seeded_sampling=seeded_sampling,
    )
    return model, backend, settings


def _judge(config: RunConfig, task: TaskSpec, backend: Backend) -> Judge:
    """The task's judge; an LLM judge asks --judge-base-url, else the generation model."""
    if not task.llm_judge:
        return task.make_judge()
    chat = backend
    if config.judge_base_url:
        if not config.judge_model:
            raise UsageError("--judge-base-url needs --judge-model (the served judge model name)")
        chat = OpenAIBackend(config.judge_base_url, config.judge_model,
                             api_key_env=config.judge_api_key_env,
                             max_concurrency=config.max_concurrency,
                             timeout=config.request_timeout, max_retries=config.max_retries,
                             cache_namespace=f"openai:{config.judge_model}@"
                                             f"{config.judge_base_url.rstrip('/')}")
    return task.make_judge(chat=chat, max_tokens=config.judge_max_tokens,
                           min_tpr=config.judge_min_tpr, min_tnr=config.judge_min_tnr)


def execute(p: Plan, until: str | None = None) -> tuple[list[Shard], dict[str, StageResult]]:
    """Run the planned stages in order (all of them, or up to and including ``until``),
    reusing finished shards. The caller holds the run lock."""
    stages_root = p.out_dir / "stages"
    shards = write_shards(p.frame, stages_root, p.keys["load"], p.config.shard_size)
    results: dict[str, StageResult] = {}
    upstream_key = p.keys["load"]
    for stage in p.stages:
        result = run_stage(stage, shards, upstream_key, stages_root, fresh=p.config.fresh,
                           max_error_rate=p.config.max_error_rate)
        results[stage.name] = result
        shards, upstream_key = result.shards, result.key
        if stage.name == until:
            break
    return shards, results


def run(config: RunConfig, served: tuple[ResolvedModel, Backend, dict[str, Any]] | None = None
        ) -> dict[str, Any]:
    """Curate one task end to end. With ``served`` (model, backend, engine settings) the run
    uses that backend and leaves it open: the caller owns it (several runs, one engine)."""
    started = time.perf_counter()
    p = plan(config, served=served)
    if p.out_dir.exists() and not p.out_dir.is_dir():
        raise UsageError(f"--out {p.out_dir}: a file is in the way; pass a folder path")
    log.info("task %s: %d rows from %s; model %s; output %s", p.task.name, p.frame.height,
             p.loaded.source, p.model.path, p.out_dir)
    with RunLock(p.out_dir):
        _write_config(p)
        problems = _gold_check(p, p.out_dir / "stages")
        try:
            shards, results = execute(p)
        finally:
            # Free the engine's memory before export, report or training (not a caller's).
            _close(p, keep=p.backend if served is not None else None)
        table = build_train_table(shards)
        write_train(table, p.out_dir / "train.parquet")
        summary = summarize(table, p.task.name, results, time.perf_counter() - started,
                            paper_shares=p.task.card.get("paper_shares"),
                            engine_starts=p.backend.engine_starts,
                            judge_calibration=_calibration_record(p))
        for name, backend in (("backend_counters", p.backend),
                              ("judge_backend_counters", p.judge.chat)):
            if backend is not None and backend.counters is not None:
                summary[name] = dict(backend.counters)
        usage = p.judge.usage
        if usage:
            summary["judge_usage_this_invocation"] = dict(usage)
        summary["judge_settings"] = p.judge.settings()
        summary["out"] = str(p.out_dir)
        summary["task_file"] = str(p.task.file)
        summary["task_card"] = p.task.card
        summary["gold_check"] = {"rows_left_out": len(problems), "left_out": dict(problems)}
        atomic_write_json(p.out_dir / "summary.json", summary)
        _write_report(p.out_dir)
    print_summary(summary)
    return summary


def _calibration_record(p: Plan) -> dict[str, Any] | None:
    """The LLM judge's calibration as the judge stage saved it (None for rule judges)."""
    record = p.out_dir / "stages" / f"judge-{p.keys['judge']}" / CALIBRATION_FILE
    if not record.is_file():
        return None
    data = json.loads(record.read_text())
    return {**data, "description": Calibration.from_dict(data).describe()}


def _close(p: Plan, keep: Backend | None = None) -> None:
    """Close the generation backend and a separate judge backend (each once), except
    ``keep``."""
    backends = [p.backend, p.judge.chat]
    for backend in {id(b): b for b in backends if b is not None and b is not keep}.values():
        backend.close()


def _write_report(out_dir: Path) -> None:
    try:
        write_report(out_dir)
    except Exception as exc:  # a chart failing must not fail a finished curation
        log.warning("report.html not written: %s", exc)


def gold_check_key(p: Plan) -> str:
    """What the gold check's record depends on: the rows (the load key) and the judge that
    read them (a judge fix or new judge options must check the golds again)."""
    return stable_hash({"load": p.keys["load"], "judge": p.judge.name,
                        "judge_version": p.judge.version, "judge_settings": p.judge.settings()})


def _gold_check(p: Plan, stages_root: Path) -> list[tuple[str, str]]:
    """Judge every row's gold with the task's judge, once per data and judge; rows whose
    gold fails are listed (log and summary) and left out of the run (``p.frame``)."""
    record = stages_root / f"gold-check-{gold_check_key(p)}.json"
    ids = p.frame["id"].to_list()
    problems = None
    if record.is_file() and not p.config.fresh:
        known = json.loads(record.read_text())
        if set(ids) <= set(known["checked"]):
            problems = [(rid, why) for rid, why in known["problems"] if rid in set(ids)]
    if problems is None:
        problems = check_gold(p.judge, p.frame.to_dicts())
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(record, {"checked": ids, "problems": problems})
    refuse_if_mostly_failing(p.task.name, str(p.task.file), p.frame.height, problems)
    for rid, why in problems:
        log.warning("gold check: %s left out: %s", rid, why)
    if problems:
        p.frame = p.frame.filter(~pl.col("id").is_in([rid for rid, _ in problems]))
    return problems


def _write_config(p: Plan) -> None:
    """``config.yaml``: the options, enough to reproduce the run (``--config config.yaml``);
    ``run.json``: what the run resolved from them (model and data fingerprints, stage keys,
    the task file, the judge's settings)."""
    options = {k: v for k, v in dataclasses.asdict(p.config).items() if k != "config"}
    resolved = {
        "model_path": p.model.path, "model_fingerprint": p.model.fingerprint,
        "data_source": p.loaded.source,
        "data_fingerprint": json.loads(json.dumps(p.loaded.fingerprint, default=str)),
        "dtype": resolve_dtype(p.config.dtype), "stage_keys": p.keys,
        "task": describe(p.task),
        "judge": next(s for s in p.stages if s.name == "judge").settings(),
        # How answers were sampled (loop guard included), as the generate stage's key has it.
        "sampling": next(s for s in p.stages if s.name == "generate").settings()["sampling"],
    }
    atomic_write_bytes(p.out_dir / "config.yaml", yaml.safe_dump(options, sort_keys=False).encode())
    atomic_write_json(p.out_dir / RUN_FILE, resolved)
