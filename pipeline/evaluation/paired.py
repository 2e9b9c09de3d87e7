"""Paired comparisons: is model A better or worse than model B on the *same* items?

Two models scored on the same items differ far less from item to item than two independent
samples would, so a paired test separates differences that the two models' own 95 % intervals
cannot (the paper's claim is a gap of about two points). For each pair of models and each
benchmark:

- the difference in points, and its 95 % interval from a paired bootstrap (items resampled,
  both models' scores moving together);
- for right/wrong metrics, McNemar's exact test on the items the two disagree on (a two-sided
  binomial test of b vs c); TruthfulQA MC2 is a probability per item, so it gets the
  bootstrap only;
- over the general benchmarks, the mean difference (the paper's "average drop"), with a
  bootstrap that resamples items within each benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

BOOTSTRAP_ITERS = 10_000
SEED = 0


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value for paired right/wrong scores (1 = right)."""
    only_a = int(np.sum((a == 1) & (b == 0)))
    only_b = int(np.sum((a == 0) & (b == 1)))
    disagree = only_a + only_b
    if disagree == 0:
        return 1.0
    tail = sum(math.comb(disagree, i) for i in range(min(only_a, only_b) + 1)) / 2 ** disagree
    return min(1.0, 2 * tail)


def bootstrap_interval(differences: list[np.ndarray], iters: int = BOOTSTRAP_ITERS,
                       seed: int = SEED) -> tuple[float, float]:
    """95 % interval of the mean over groups of each group's mean per-item difference, with
    items resampled within each group (one group: one benchmark)."""
    rng = np.random.default_rng(seed)
    means = np.zeros(iters)
    for group in differences:
        picks = rng.integers(0, len(group), size=(iters, len(group)))
        means += group[picks].mean(axis=1)
    means /= len(differences)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _aligned(scores_a: dict[str, float], scores_b: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    shared = sorted(set(scores_a) & set(scores_b))
    return (np.array([scores_a[i] for i in shared], dtype=float),
            np.array([scores_b[i] for i in shared], dtype=float))


def compare_pair(per_item: dict[str, dict[str, dict[str, float]]], model_a: str, model_b: str,
                 benchmarks: Iterable[str], binary: Iterable[str], general: Iterable[str]
                 ) -> dict[str, Any]:
    """``per_item[model][benchmark][item id] = score`` -> model_a - model_b per benchmark, in
    points, and the mean over the ``general`` benchmarks."""
    binary, general = set(binary), list(general)
    out: dict[str, Any] = {"a": model_a, "b": model_b, "benchmarks": {}}
    general_differences = []
    for benchmark in benchmarks:
        a, b = _aligned(per_item.get(model_a, {}).get(benchmark, {}),
                        per_item.get(model_b, {}).get(benchmark, {}))
        if not len(a):
            continue
        low, high = bootstrap_interval([a - b])
        out["benchmarks"][benchmark] = {
            "n": len(a), "delta_pts": 100 * float(np.mean(a - b)),
            "ci95_pts": [100 * low, 100 * high],
            "a_only": int(np.sum(a > b)), "b_only": int(np.sum(a < b)),
            "mcnemar_p": mcnemar_p(a, b) if benchmark in binary else None,
        }
        if benchmark in general:
            general_differences.append(a - b)
    if general_differences:
        low, high = bootstrap_interval(general_differences)
        out["general_mean"] = {
            "benchmarks": len(general_differences),
            "delta_pts": 100 * float(np.mean([d.mean() for d in general_differences])),
            "ci95_pts": [100 * low, 100 * high]}
    return out


def default_pairs(models: list[str], baseline: str = "base") -> list[tuple[str, str]]:
    """Each model against the baseline, and S3FT against SFT when both are there."""
    pairs = [(m, baseline) for m in models if m != baseline and baseline in models]
    if "s3ft" in models and "sft" in models:
        pairs.append(("s3ft", "sft"))
    return pairs


def markdown(comparisons: list[dict[str, Any]]) -> str:
    """The paired table: one line per pair and benchmark, then the general mean."""
    lines = ["| A − B | benchmark | n | Δ pts [95 % paired bootstrap] | A only / B only right | "
             "McNemar p |", "|---|---|---|---|---|---|"]
    for c in comparisons:
        pair = f"{c['a']} − {c['b']}"
        for benchmark, d in c["benchmarks"].items():
            p = "–" if d["mcnemar_p"] is None else f"{d['mcnemar_p']:.3f}"
            lines.append(f"| {pair} | {benchmark} | {d['n']} | {d['delta_pts']:+.1f} "
                         f"[{d['ci95_pts'][0]:+.1f}, {d['ci95_pts'][1]:+.1f}] | "
                         f"{d['a_only']} / {d['b_only']} | {p} |")
        if "general_mean" in c:
            g = c["general_mean"]
            lines.append(f"| {pair} | **mean of {g['benchmarks']} general** | | "
                         f"**{g['delta_pts']:+.1f}** [{g['ci95_pts'][0]:+.1f}, "
                         f"{g['ci95_pts'][1]:+.1f}] | | |")
    return "\n".join(lines)
