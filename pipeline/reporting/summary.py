"""The run summary: training-mix shares, model accuracy, what admission rejected and why,
the LLM judge's calibration, errors, and cost per stage."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa

from pipeline.stage import StageResult
from pipeline.stages.select import SOURCES


def _stage_cost(result: StageResult, prefix: str | None) -> dict[str, Any]:
    stats = result.stats
    cost: dict[str, Any] = {
        "seconds": round(stats.get("seconds", 0.0), 2),
        "seconds_this_invocation": round(result.seconds_now, 2),
        "shards_computed": result.computed_shards,
        "shards_reused": result.reused_shards,
        "failed_rows": result.failed_rows,
        "retried_rows": result.retried_rows,
    }
    if prefix:
        tokens = int(stats.get(f"{prefix}_completion_tokens", 0))
        engine_seconds = stats.get(f"{prefix}_seconds", 0.0)
        cost.update(
            generated_tokens=tokens,
            prompt_tokens=int(stats.get(f"{prefix}_prompt_tokens", 0)),
            engine_seconds=round(engine_seconds, 2),
            tokens_per_s=round(tokens / engine_seconds, 1) if engine_seconds else None,
            truncated=int(stats.get(f"{prefix}_truncated", 0)),
            # The loop guard: rows it stopped, and the token budget they did not spend.
            loop_stopped=int(stats.get(f"{prefix}_loop_stopped", 0)),
            loop_tokens_saved=int(stats.get(f"{prefix}_loop_tokens_saved", 0)),
            errors=int(stats.get(f"{prefix}_errors", 0)),
        )
    # Distribution-shift scoring, done in part by the generate stage: texts and time.
    # scoring_errors: calls whose texts the shift stage had to score itself after all.
    for key in ("scored_texts", "texts_scored_by_generate", "scoring_seconds", "scoring_errors"):
        name = f"{prefix}_{key}" if prefix else key
        if name in stats:
            cost[key] = round(stats[name], 2) if key.endswith("seconds") else int(stats[name])
    return cost


EXAMPLE_CHARS = 300


def admission_counts(columns: dict[str, list[Any]], prefix: str) -> dict[str, dict[str, Any]]:
    """Rows per admission rule (most frequent first), each with its first row as an example."""
    rules = columns[f"{prefix}admission_rule"]
    texts = columns["paraphrase" if prefix else "candidate"]
    out: dict[str, dict[str, Any]] = {}
    for rule, count in Counter(r for r in rules if r is not None).most_common():
        first = rules.index(rule)
        text = texts[first] or ""
        out[rule] = {"count": count, "example": {
            "id": columns["id"][first],
            "text": text[:EXAMPLE_CHARS] + ("…" if len(text) > EXAMPLE_CHARS else ""),
            "reason": columns[f"{prefix}admission_reason"][first]}}
    return out


def judge_rule_examples(columns: dict[str, list[Any]], prefix: str) -> dict[str, dict[str, Any]]:
    """Rows per judge rule of the model's answers (``prefix`` ""), or of the paraphrases
    (``"paraphrase_"``), each with its first row's id and reason: a rule that only shows up
    as "wrong" in the admission table (``differs_from_reference``) has its example here."""
    rules = columns[f"{prefix}judge_rule"]
    out: dict[str, dict[str, Any]] = {}
    for rule, count in Counter(r for r in rules if r is not None).most_common():
        first = rules.index(rule)
        reason = columns[f"{prefix}judge_reason"][first] or ""
        out[rule] = {"count": count, "example": {"id": columns["id"][first],
                                                 "reason": reason[:EXAMPLE_CHARS]}}
    return out


def target_evidence(columns: dict[str, list[Any]]) -> dict[str, dict[str, int]]:
    """The non-gold targets counted by the judge rule that proved them right, per source: how
    much of the dataset rests on an exact alias, a proven alias match, a trusted LLM judge,
    the tests passing, ... (gold targets rest on the dataset itself)."""
    rules = {"model": columns["judge_rule"], "paraphrase": columns["paraphrase_judge_rule"]}
    return {source: dict(Counter(str(rule) for rule, picked in zip(
        rules[source], columns["source"], strict=True) if picked == source).most_common())
        for source in ("model", "paraphrase")}


def sampling_summary(admit: StageResult | None) -> dict[str, Any] | None:
    """pass@1, pass@k and admitted@k of a run with ``--samples`` > 1 (None otherwise)."""
    stats = admit.stats if admit else {}
    rows = int(stats.get("rows_sampled", 0))
    if not rows:
        return None

    def pct(key: str) -> float:
        return round(100 * stats.get(key, 0) / rows, 1)

    return {"rows": rows, "pass_at_1_pct": pct("first_sample_correct"),
            "pass_at_k_pct": pct("any_sample_correct"),
            "admitted_at_k_pct": pct("rows_with_an_admitted_sample")}


def _mean_per_token(pairs: list[tuple[float | None, int | None]]) -> dict[str, Any]:
    scored = [(m, t) for m, t in pairs if m is not None and t]
    tokens = sum(t for _, t in scored)
    return {"rows": len(scored), "tokens": tokens,
            "mean_logprob": round(sum(m * t for m, t in scored) / tokens, 4) if tokens else None}


def shift_summary(columns: dict[str, list[Any]]) -> dict[str, Any] | None:
    """The base model's mean log-prob per token of the targets, per source and for the whole
    mix, next to the gold of every row (what plain SFT trains on). None: not measured."""
    if not any(v is not None for v in columns.get("target_logprob", [])):
        return None
    target = list(zip(columns["target_logprob"], columns["target_scored_tokens"], strict=True))
    gold = list(zip(columns["gold_logprob"], columns["gold_scored_tokens"], strict=True))
    by_source = {source: _mean_per_token([t for t, s in zip(target, columns["source"], strict=True)
                                          if s == source]) for source in SOURCES}
    mix, sft = _mean_per_token(target), _mean_per_token(gold)
    return {"by_source": by_source, "s3ft_mix": mix, "sft_all_gold": sft,
            # How much likelier, per token, the mix is than all-gold (nats; > 0: closer to
            # the model's own distribution).
            "mix_minus_gold": (round(mix["mean_logprob"] - sft["mean_logprob"], 4)
                               if mix["mean_logprob"] is not None and sft["mean_logprob"] is not None
                               else None)}


def summarize(table: pa.Table, task: str, stages: dict[str, StageResult],
              wall_seconds: float, engine_starts: int,
              judge_calibration: dict[str, Any] | None = None,
              paper_shares: dict[str, float] | None = None) -> dict[str, Any]:
    rows = table.num_rows
    columns = table.to_pydict()
    counts = Counter(columns["source"])
    paraphrased = [v for v in columns["paraphrase_admitted"] if v is not None]
    untrusted = sum(rule == "judge_untrusted" for rule in columns["judge_rule"])
    errors = Counter(
        part.split(":", 1)[0] for e in columns["error"] if e for part in e.split("; ")
    )
    prefixes = {"generate": "generate", "paraphrase": "paraphrase"}
    return {
        "task": task,
        "rows": rows,
        "sources": {s: {"count": counts.get(s, 0),
                        "share_pct": round(100 * counts.get(s, 0) / rows, 1) if rows else 0.0}
                    for s in SOURCES},
        # The task file's card.paper_shares: for the built-ins, Table 3 of Gupta et al.
        # (2025), Mistral-7B-Instruct-v0.2.
        "paper_shares_pct": paper_shares,
        # Verdicts of an untrusted LLM judge are never "correct": this is the trusted share.
        "model_accuracy_pct": round(100 * sum(bool(v) for v in columns["verdict"]) / rows, 1)
        if rows else 0.0,
        "rows_without_trusted_verdict": untrusted,
        # --samples k: pass@1 (the first sample), pass@k (any sample correct), admitted@k.
        "samples": sampling_summary(stages.get("admit")),
        # The base model's mean log-prob per token of the targets (pipeline/stages/shift.py).
        "distribution_shift": shift_summary(columns),
        "model_admitted_pct": round(100 * sum(bool(v) for v in columns["admitted"]) / rows, 1)
        if rows else 0.0,
        # What each non-gold target rests on: the judge rule that proved it right.
        "target_evidence": target_evidence(columns),
        "admission": {"model": admission_counts(columns, ""),
                      "paraphrase": admission_counts(columns, "paraphrase_")},
        "paraphrase_copies": sum(r == "copy_of_gold" for r in columns["paraphrase_admission_rule"]),
        "judge_calibration": judge_calibration,
        "paraphrase": {"attempted": len(paraphrased), "passed": sum(paraphrased),
                       "pass_rate_pct": round(100 * sum(paraphrased) / len(paraphrased), 1)
                       if paraphrased else None},
        "judge_rules": dict(Counter(columns["judge_rule"]).most_common()),
        "judge_rule_examples": {"model": judge_rule_examples(columns, ""),
                                "paraphrase": judge_rule_examples(columns, "paraphrase_")},
        "rows_with_errors": sum(1 for e in columns["error"] if e),
        # model or server texts holding lone surrogates, stored with U+FFFD instead
        "texts_repaired": sum(int(r.stats.get("texts_repaired", 0)) for r in stages.values()),
        "errors_by_stage": dict(errors),
        "stages": {name: _stage_cost(result, prefixes.get(name)) for name, result in stages.items()},
        "engine_starts": engine_starts,
        "wall_seconds": round(wall_seconds, 2),
    }


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    mix = Table(title=f"S3FT training mix — {summary['task']} ({summary['rows']} rows)")
    mix.add_column("target source")
    mix.add_column("rows", justify="right")
    mix.add_column("share %", justify="right")
    mix.add_column("paper %", justify="right")
    paper = summary["paper_shares_pct"] or {}
    for source, info in summary["sources"].items():
        mix.add_row(source, str(info["count"]), f"{info['share_pct']:.1f}",
                    f"{paper[source]:.1f}" if source in paper else "-")
    console.print(mix)
    costs = Table(title="Stages")
    for column in ("stage", "seconds", "shards computed/reused", "generated tok", "tok/s"):
        costs.add_column(column, justify="left" if column == "stage" else "right")
    for name, cost in summary["stages"].items():
        costs.add_row(name, f"{cost['seconds']:.1f}",
                      f"{cost['shards_computed']}/{cost['shards_reused']}",
                      str(cost.get("generated_tokens", "")),
                      str(cost.get("tokens_per_s") or ""))
    console.print(costs)
    looped = {name: summary["stages"].get(name, {}) for name in ("generate", "paraphrase")}
    if any(cost.get("loop_stopped") for cost in looped.values()):
        console.print(
            f"loop guard: stopped {looped['generate'].get('loop_stopped', 0)} answers and "
            f"{looped['paraphrase'].get('loop_stopped', 0)} paraphrases that repeated themselves "
            f"(finish_reason 'repetition'; up to "
            f"{sum(c.get('loop_tokens_saved', 0) for c in looped.values()):,} tokens not spent)")
    admission = Table(title="Admission: why a text was or was not a target")
    for column in ("text", "rule", "rows", "example reason"):
        admission.add_column(column, justify="right" if column == "rows" else "left")
    for kind, rules in summary.get("admission", {}).items():
        for rule, info in rules.items():
            admission.add_row(kind, rule, str(info["count"]),
                              str(info["example"]["reason"] or "")[:70])
    console.print(admission)
    evidence = summary.get("target_evidence") or {}
    if any(evidence.values()):
        console.print("non-gold targets proved by: " + "  |  ".join(
            f"{source}: " + ", ".join(f"{rule} {n}" for rule, n in rules.items())
            for source, rules in evidence.items() if rules))
    left_out = (summary.get("gold_check") or {}).get("left_out") or {}
    if left_out:
        console.print(f"gold check: {len(left_out)} rows left out, their gold fails the task's "
                      f"judge (listed in summary.json under gold_check): "
                      + ", ".join(list(left_out)[:5]) + (" ..." if len(left_out) > 5 else ""))
    calibration = summary.get("judge_calibration")
    if calibration:
        console.print(calibration["description"])
    sampled = summary.get("samples")
    if sampled:
        console.print(f"samples: pass@1 {sampled['pass_at_1_pct']:.1f}%  |  pass@k "
                      f"{sampled['pass_at_k_pct']:.1f}%  |  rows with an admitted sample "
                      f"{sampled['admitted_at_k_pct']:.1f}%")
    shift = summary.get("distribution_shift")
    if shift:
        sources = "  ".join(f"{s} {v['mean_logprob']:.3f}" for s, v in shift["by_source"].items()
                            if v["mean_logprob"] is not None)
        console.print(f"base model's mean log-prob per target token: S3FT mix "
                      f"{shift['s3ft_mix']['mean_logprob']:.3f} vs all gold (SFT) "
                      f"{shift['sft_all_gold']['mean_logprob']:.3f}  |  {sources}")
    para = summary["paraphrase"]
    console.print(
        f"model accuracy on the training set (trusted verdicts): "
        f"{summary['model_accuracy_pct']:.1f}%  |  own answers admitted: "
        f"{summary['model_admitted_pct']:.1f}%  |  paraphrases admitted: "
        f"{para['passed']}/{para['attempted']} ({summary['paraphrase_copies']} copies of the gold)"
        f"  |  rows with errors: {summary['rows_with_errors']}  |  wall: "
        f"{summary['wall_seconds']:.1f}s"
    )
