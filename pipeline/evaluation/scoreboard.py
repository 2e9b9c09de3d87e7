"""The results table (Markdown + CSV) and bar chart of ``pipeline.evaluate`` / ``pipeline.compare``.

Scores are percentages with their 95% interval and sample size, so a reader sees at once when
two models' difference is within noise. With a baseline (``base`` in ``compare``) the last
column is the mean change over the general benchmarks in points, the paper's "average drop",
over the benchmarks with signal only: a benchmark the base reads at chance is marked
"(no signal)" and named under the table with its score and chance level.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from pipeline.evaluation.chance import no_signal_text
from pipeline.evaluation.drift import markdown as drift_markdown
from pipeline.evaluation.paired import markdown as paired_markdown


def _models(results: dict[str, Any]) -> list[str]:
    return list(results.get("order") or results["scores"])


def _benchmarks(results: dict[str, Any]) -> list[str]:
    return list(results["in_domain_tasks"]) + list(results["general_benchmarks"])


def signal_benchmarks(results: dict[str, Any]) -> list[str]:
    """The general benchmarks the general mean is over: those with signal (results written
    before the chance check: all of them)."""
    return list(results.get("signal_benchmarks", results["general_benchmarks"]))


def general_change(results: dict[str, Any], model: str, baseline: str) -> float | None:
    """Mean over the general benchmarks with signal of (model - baseline) accuracy, in points."""
    scores = results["scores"]
    deltas = [100 * (scores[model][b]["accuracy"] - scores[baseline][b]["accuracy"])
              for b in signal_benchmarks(results)
              if scores[model].get(b, {}).get("accuracy") is not None
              and scores[baseline].get(b, {}).get("accuracy") is not None]
    return sum(deltas) / len(deltas) if deltas else None


def _cell(score: dict[str, Any] | None) -> str:
    if not score or score.get("accuracy") is None:
        return "–"
    low, high = score["ci95"]
    undecided = f", {score['undecided']} undecided" if score.get("undecided") else ""
    return f"{100 * score['accuracy']:.1f} [{100 * low:.1f}, {100 * high:.1f}] (n={score['n']}{undecided})"


def _any_undecided(results: dict[str, Any]) -> bool:
    return any((scores.get(task) or {}).get("undecided") for scores in results["scores"].values()
               for task in results["in_domain_tasks"])


def _no_signal(results: dict[str, Any]) -> list[str]:
    return [b for b in results["general_benchmarks"] if b not in signal_benchmarks(results)]


def markdown_table(results: dict[str, Any], baseline: str | None) -> str:
    benchmarks = _benchmarks(results)
    with_delta = baseline is not None and baseline in results["scores"] and signal_benchmarks(results)
    no_signal = _no_signal(results)
    header = ["model", *(f"{b} (no signal)" if b in no_signal else b for b in benchmarks)]
    header += ["avg general Δ vs " + baseline + " (pts)"] if with_delta else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in _models(results):
        scores = results["scores"][model]
        row = [model, *(_cell(scores.get(b)) for b in benchmarks)]
        if with_delta:
            delta = general_change(results, model, baseline)
            row.append("–" if delta is None else f"{delta:+.1f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def csv_table(results: dict[str, Any], baseline: str | None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["model", "benchmark", "kind", "n", "accuracy", "ci95_low", "ci95_high",
                     "change_vs_baseline_pts", "chance", "signal", "undecided"])
    no_signal = _no_signal(results)
    for model in _models(results):
        scores = results["scores"][model]
        for benchmark in _benchmarks(results):
            score = scores.get(benchmark) or {}
            accuracy = score.get("accuracy")
            base = (results["scores"].get(baseline, {}).get(benchmark) or {}) if baseline else {}
            change = (100 * (accuracy - base["accuracy"])
                      if accuracy is not None and base.get("accuracy") is not None else None)
            low, high = score.get("ci95") or (None, None)
            kind = "in_domain" if benchmark in results["in_domain_tasks"] else "general"
            writer.writerow([model, benchmark, kind, score.get("n"), accuracy, low, high,
                             "" if change is None else round(change, 3), score.get("chance", ""),
                             "" if kind == "in_domain" else benchmark not in no_signal,
                             score.get("undecided", "")])
    return buffer.getvalue()


def limits_text(results: dict[str, Any]) -> str:
    """``limit 100``, or ``limit 300, general 1000`` when the general benchmarks have their own."""
    def size(limit: int | None) -> str:
        return "all" if limit is None else str(limit)

    general = results.get("limit_general", results["limit"])
    return f"limit {size(results['limit'])}" + (f", general {size(general)}" if general != results["limit"]
                                                 else "")


def signal_text(results: dict[str, Any]) -> str:
    """What the chance check found: which benchmarks are at chance, and what the mean is over."""
    if results.get("signal_warning"):
        return results["signal_warning"] + "."
    no_signal = _no_signal(results)
    if not no_signal:
        return ""
    lines = no_signal_text({b: results["signal"][b] for b in no_signal if b in results.get("signal", {})})
    with_signal = signal_benchmarks(results)
    return (f"No signal (the base model's 95 % interval reaches chance, so no drop can show): "
            f"{'; '.join(lines)}. The general means are over the {len(with_signal)} benchmarks with "
            f"signal: {', '.join(with_signal)}.")


def write_table(results: dict[str, Any], out: Path, baseline: str | None) -> str:
    """Write ``table.md`` and ``table.csv`` under ``out``; return the Markdown."""
    text = markdown_table(results, baseline)
    if signal_text(results):
        text += "\n\n" + signal_text(results)
    note = (f"\n\nAccuracy in %, [95% interval], n = items scored ({limits_text(results)}); "
            "in-domain = judged correct on the task's test split, greedy"
            + ("; undecided = answers no rule proved right or wrong and no trusted judge read, "
               "counted as not correct (the score is a lower bound)" if _any_undecided(results)
               else "") + ".\n")
    if results.get("paired"):
        text += ("\n\nPaired differences on the same items (A − B, points; a paired bootstrap "
                 "interval, and McNemar's exact test for right/wrong scores):\n\n"
                 + paired_markdown(results["paired"]))
    if results.get("drift"):
        text += "\n\n" + drift_markdown(results["drift"])
    (out / "table.md").write_text(text + note)
    (out / "table.csv").write_text(csv_table(results, baseline))
    return text


def plot_chart(results: dict[str, Any], path: Path) -> Path:
    """Grouped bars: one group per benchmark, one bar per model, 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benchmarks = _benchmarks(results)
    models = _models(results)
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(benchmarks)), 4.0))
    for i, model in enumerate(models):
        xs, heights, errors = [], [], [[], []]
        for j, benchmark in enumerate(benchmarks):
            score = results["scores"][model].get(benchmark) or {}
            if score.get("accuracy") is None:
                continue
            accuracy, (low, high) = 100 * score["accuracy"], score["ci95"]
            xs.append(j + (i - (len(models) - 1) / 2) * width)
            heights.append(accuracy)
            errors[0].append(max(0.0, accuracy - 100 * low))
            errors[1].append(max(0.0, 100 * high - accuracy))
        ax.bar(xs, heights, width, yerr=errors, capsize=2, label=model)
    ax.set_xticks(range(len(benchmarks)), benchmarks, rotation=15)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"in-domain and general benchmarks ({limits_text(results)}, 95% intervals)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
