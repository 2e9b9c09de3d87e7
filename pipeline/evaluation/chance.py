"""Chance levels, and which benchmarks read a model above chance.

A benchmark on which the base model scores at chance cannot show that fine-tuning cost it
anything: a drop from chance is noise. So every general score carries its chance level, and a
benchmark whose base-model interval reaches chance is marked "no signal" and left out of the
general mean (the paper's "average drop").

Chance is what a model that knows nothing gets:

- uniform over the choices: the mean over items of (true choices / choices), 1/n for one-hot;
- or, where every item offers the same choices (BoolQ's no/yes, MMLU's and CommonsenseQA's
  letters), the share of the most common gold answer when that is higher: a model can always
  answer "yes" (62 % on BoolQ), but it cannot always pick "the second sentence" of PIQA;
- 0 for open-vocabulary prediction (LAMBADA's last word).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

#: Benchmarks scored by the log-likelihood of one open-vocabulary target.
OPEN_VOCABULARY = {"lambada_openai"}
#: Benchmarks whose task offers the same choice strings on every item (lm-eval's
#: ``doc_to_choice`` is a constant list), so "always the same answer" is a strategy.
SAME_CHOICES = {"boolq", "mmlu", "commonsense_qa"}


def chance_level(benchmark: str, labels: Sequence[Sequence[int]]) -> float | None:
    """The chance accuracy on these items (``labels``: per item, 1 for each true choice).
    None for no items."""
    if not labels:
        return None
    if benchmark in OPEN_VOCABULARY:
        return 0.0
    uniform = sum(sum(item) / len(item) for item in labels) / len(labels)
    if benchmark in SAME_CHOICES:
        golds = Counter(list(item).index(1) for item in labels)
        return max(uniform, golds.most_common(1)[0][1] / len(labels))
    return uniform


def above_chance(score: dict[str, Any]) -> bool | None:
    """Whether a score's 95 % interval lies wholly above its chance level (None: not scored,
    or scored before chance levels were recorded)."""
    if score.get("ci95") is None or score.get("chance") is None:
        return None
    return score["ci95"][0] > score["chance"]


def signal_of(scores: dict[str, dict[str, Any]], general: Sequence[str], reference: str
              ) -> dict[str, dict[str, Any]]:
    """Per general benchmark: the reference model's accuracy, interval and chance, and whether it
    carries signal. A benchmark the reference was not scored on keeps signal (nothing to judge)."""
    out = {}
    for benchmark in general:
        score = scores.get(benchmark) or {}
        verdict = above_chance(score)
        out[benchmark] = {"read_on": reference, "accuracy": score.get("accuracy"),
                          "ci95": score.get("ci95"), "chance": score.get("chance"),
                          "signal": verdict is not False}
    return out


def no_signal_text(signal: dict[str, dict[str, Any]]) -> list[str]:
    """One line per benchmark without signal: the reference's score against chance."""
    lines = []
    for benchmark, s in signal.items():
        if s["signal"]:
            continue
        low, high = s["ci95"]
        lines.append(f"{benchmark}: {s['read_on']} {100 * s['accuracy']:.1f} % [{100 * low:.1f}, "
                     f"{100 * high:.1f}], chance {100 * s['chance']:.1f} %")
    return lines
