"""Drift (:mod:`pipeline.evaluation.drift`) with the real embedded model: an adapter that
changes nothing drifts 0, a perturbed one drifts, a fully fine-tuned model holding the same
weights drifts as far, and the per-token figures line up with the base model's own greedy
answers."""

from __future__ import annotations

import pytest

from pipeline.backends.model import DEFAULT_MODEL, resolve_model
from pipeline.evaluation.drift import (
    PROMPT_SOURCES,
    DriftSettings,
    drift_prompts,
    markdown,
    measure_drift,
    paired_kl,
)
from pipeline.evaluation.models import model_under_test
from tests.evaluation.adapters import fully_tuned_copy, perturbed_adapter


def test_prompts_interleave_the_sources_deterministically():
    prompts = drift_prompts(7)
    assert [p[0].split("/")[0] for p in prompts] == [*PROMPT_SOURCES, *PROMPT_SOURCES, PROMPT_SOURCES[0]]
    assert len({p[0] for p in prompts}) == 7 and all(p[1].strip() for p in prompts)
    assert drift_prompts(7) == prompts and drift_prompts(0) == []


def test_paired_kl_is_per_prompt():
    a = [{"id": "x", "kl_per_token": 0.3}, {"id": "y", "kl_per_token": 0.1}]
    b = [{"id": "y", "kl_per_token": 0.2}, {"id": "x", "kl_per_token": 0.1}]
    paired = paired_kl(a, b)
    assert paired["prompts"] == 2 and paired["a_larger"] == 1
    assert paired["kl_difference"] == pytest.approx(0.05)


@pytest.mark.slow
def test_identity_adapter_drifts_zero_and_a_perturbed_one_drifts(tmp_path):
    base = resolve_model(DEFAULT_MODEL)
    perturbed_path = perturbed_adapter(tmp_path / "s3ft", base.path, 0.05)
    full = model_under_test(fully_tuned_copy(tmp_path / "full", perturbed_path, base.path), "full")
    assert (full.adapter, full.trained_from) == (None, base.path)
    models = [model_under_test(DEFAULT_MODEL, "base"),
              model_under_test(perturbed_adapter(tmp_path / "sft", base.path, 0.0), "sft"),
              model_under_test(perturbed_path, "s3ft"), full]
    settings = DriftSettings(prompts=6, max_tokens=24)
    drift = measure_drift(models, settings, tmp_path / "out")
    identity, perturbed = drift["adapters"]["sft"], drift["adapters"]["s3ft"]
    # The same weights, merged into a whole model, drift as far as the adapter does.
    assert drift["adapters"]["full"]["kl_per_token"] == pytest.approx(perturbed["kl_per_token"], rel=1e-3)
    assert drift["adapters"]["full"]["delta_logprob"] == pytest.approx(perturbed["delta_logprob"], rel=1e-3)
    assert identity["prompts"] == perturbed["prompts"] == 6 and identity["tokens"] == perturbed["tokens"]
    assert abs(identity["kl_per_token"]) < 1e-6 and abs(identity["delta_logprob"]) < 1e-5
    assert perturbed["kl_per_token"] > 1e-3 and perturbed["kl_ci95"][0] > 0
    # The base answered greedily, so its own answers are likelier under it than under a
    # perturbed copy of it.
    assert perturbed["delta_logprob"] < 0
    assert drift["s3ft_vs_sft"]["kl_difference"] == pytest.approx(perturbed["kl_per_token"], abs=1e-6)
    assert "| s3ft |" in markdown(drift) and "S3FT − SFT" in markdown(drift)

    # Every answer token is the base's argmax at its position (the forward pass lines up with
    # what generation saw), and answers end on the end-of-turn token or at the limit.
    import polars as pl

    answers = pl.read_parquet(next((tmp_path / "out" / "drift").glob("base-answers-*.parquet")))
    assert answers.height == 6 and all(1 <= len(a) <= 24 for a in answers["answer_ids"])
    rows = pl.read_parquet(next((tmp_path / "out" / "sft").glob("drift-*.parquet")))
    assert rows.height == 6 and rows["base_argmax_share"].min() >= 0.9
    assert rows["base_argmax_share"].mean() >= 0.98
    for row in rows.to_dicts():
        assert row["base_logprob"] == pytest.approx(row["adapter_logprob"], abs=1e-5)

    # A rerun reuses every saved row.
    assert measure_drift(models, settings, tmp_path / "out") == drift
