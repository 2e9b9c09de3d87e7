"""Paired comparisons on the same items: McNemar's exact test and the paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.evaluation.general import wilson_interval
from pipeline.evaluation.paired import (
    bootstrap_interval,
    compare_pair,
    default_pairs,
    markdown,
    mcnemar_p,
)


def test_mcnemar_counts_only_the_items_the_two_disagree_on():
    # 10 items only A gets right, 2 only B: p = 2 * P(X <= 2), X ~ Bin(12, 1/2).
    a = np.array([1] * 10 + [0] * 2 + [1] * 50 + [0] * 38)
    b = np.array([0] * 10 + [1] * 2 + [1] * 50 + [0] * 38)
    assert mcnemar_p(a, b) == pytest.approx(2 * (1 + 12 + 66) / 2 ** 12)
    assert mcnemar_p(a, a) == 1.0
    assert mcnemar_p(b, a) == mcnemar_p(a, b)


def test_a_paired_interval_separates_what_the_two_intervals_cannot():
    """Two models that agree on 290 of 300 items, and A is right on all 10 others: their
    own 95 % intervals overlap, the paired interval and McNemar do not hesitate."""
    rng = np.random.default_rng(1)
    shared = (rng.random(300) < 0.5).astype(float)
    a, b = shared.copy(), shared.copy()
    disagree = np.flatnonzero(shared == 0)[:10]
    a[disagree] = 1.0
    low_a, _ = wilson_interval(a.sum(), 300)
    _, high_b = wilson_interval(b.sum(), 300)
    assert low_a < high_b  # the separate intervals overlap
    low, high = bootstrap_interval([a - b])
    assert 0 < low <= high and mcnemar_p(a, b) < 0.01
    assert math.isclose(np.mean(a - b), 10 / 300)


def test_pairs_are_aligned_by_item_id_and_the_general_mean_resamples_within_benchmarks():
    ids = [f"q{i}" for i in range(40)]
    per_item = {
        "base": {"mmlu": {i: 1.0 for i in ids[:20]} | {i: 0.0 for i in ids[20:]},
                 "truthfulqa_mc2": {i: 0.5 for i in ids}, "gsm8k": {"x": 0.0}},
        # The same items in another order, one missing: only shared ids are compared.
        "sft": {"mmlu": {i: 1.0 for i in reversed(ids[:18])} | {i: 0.0 for i in ids[18:39]},
                "truthfulqa_mc2": {i: 0.4 for i in ids}, "gsm8k": {"x": 1.0}},
    }
    out = compare_pair(per_item, "sft", "base", ["gsm8k", "mmlu", "truthfulqa_mc2"],
                       binary=["gsm8k", "mmlu"], general=["mmlu", "truthfulqa_mc2"])
    mmlu = out["benchmarks"]["mmlu"]
    assert (mmlu["n"], mmlu["a_only"], mmlu["b_only"]) == (39, 0, 2)
    assert mmlu["delta_pts"] == pytest.approx(-200 / 39)
    assert out["benchmarks"]["truthfulqa_mc2"]["mcnemar_p"] is None  # a probability, not 0/1
    assert out["benchmarks"]["gsm8k"]["delta_pts"] == 100.0
    general = out["general_mean"]
    assert general["benchmarks"] == 2
    assert general["delta_pts"] == pytest.approx((-200 / 39 - 10) / 2)
    assert general["ci95_pts"][0] <= general["delta_pts"] <= general["ci95_pts"][1]
    text = markdown([out])
    assert "| sft − base | mmlu | 39 | -5.1 [" in text and "mean of 2 general" in text


def test_default_pairs():
    assert default_pairs(["base", "sft", "s3ft"]) == [("sft", "base"), ("s3ft", "base"),
                                                      ("s3ft", "sft")]
    assert default_pairs(["base", "sft"]) == [("sft", "base")]
    assert default_pairs(["sft", "s3ft"]) == [("s3ft", "sft")]
