"""The audit's figures (``summary.json`` ``audit``, written by ``s3ft audit``) in the report
(a table and a chart) and in the dataset card (Markdown). Nothing here when no label exists."""

from __future__ import annotations

import base64
import html
import io
from typing import Any


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _interval(ci: list[float] | None) -> str:
    return "–" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _groups(audit: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [*audit["by_source"].items(), ("non-gold", audit["non_gold"]), ("all targets", audit["all"])]


def _rows(audit: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, name, figures) for each group and each deciding rule."""
    return ([("source", name, g) for name, g in _groups(audit)]
            + [("rule", name, g) for name, g in audit["by_rule"].items()])


def has_labels(summary: dict[str, Any]) -> bool:
    audit = summary.get("audit")
    return bool(audit and audit.get("labelled"))


def chart_png(audit: dict[str, Any]) -> bytes:
    """Precision per source (and non-gold) with its 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(name, g) for name, g in _groups(audit) if g["labelled"]]
    fig, ax = plt.subplots(figsize=(6.5, 0.5 + 0.45 * len(groups)))
    for y, (name, g) in enumerate(groups):
        low, high, value = 100 * g["ci95"][0], 100 * g["ci95"][1], 100 * g["precision"]
        ax.barh(y, value, color="#4E79A7" if name != "non-gold" else "#F28E2B")
        ax.errorbar(value, y, xerr=[[value - low], [high - value]], color="#222", capsize=3)
    ax.set_yticks(range(len(groups)), [f"{name} (n={g['labelled']})" for name, g in groups])
    ax.set_xlim(0, 100)
    ax.set_xlabel("targets labelled right (%), 95 % interval")
    ax.invert_yaxis()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def judge_lines(summary: dict[str, Any]) -> list[str]:
    """The LLM judge against people, beside its automatic calibration (plain text lines)."""
    judged = (summary.get("audit") or {}).get("judge_vs_people")
    if not judged:
        return []
    lines = [f"The LLM judge against people on {judged['labelled']} texts it ruled on: it called "
             f"{judged['judge_right_people_right']} right that people call right, "
             f"{judged['judge_right_people_not']} right that people do not, "
             f"{judged['judge_wrong_people_right']} wrong that people call right, and "
             f"{judged['judge_wrong_people_not']} wrong that people do not; true-positive rate "
             f"{_pct(judged['true_positive_rate'])}, true-negative rate "
             f"{_pct(judged['true_negative_rate'])}."]
    calibration = summary.get("judge_calibration") or {}
    if calibration.get("description"):
        lines.append(f"Its automatic calibration: {calibration['description']}")
    return lines


def audit_html(summary: dict[str, Any]) -> str:
    if not has_labels(summary):
        return ""
    audit = summary["audit"]
    esc = html.escape
    body = "".join(
        f"<tr><td>{esc(kind)}</td><td><code>{esc(name)}</code></td><td>{g['rows']}</td><td>{g['labelled']}</td>"
        f"<td>{g['right']} / {g['partial']} / {g['wrong']}</td><td>{_pct(g['precision'])}</td>"
        f"<td>{_interval(g['ci95'])}</td></tr>" for kind, name, g in _rows(audit))
    chart = base64.b64encode(chart_png(audit)).decode() if audit["all"]["labelled"] else ""
    bad = audit["estimated_not_right"]
    agreement = audit.get("agreement")
    kappa = "" if not agreement else (
        f"<p>Two auditors ({esc(' and '.join(agreement['auditors']))}) on {agreement['rows']} rows: "
        f"agreed on {agreement['agreed']}, Cohen's kappa {agreement['kappa']:.2f}.</p>")
    return (f"<h2 id='audit'>Audit: targets labelled by hand</h2>"
            f"<p>{audit['labelled']} rows labelled ({audit['labelled_in_sample']} of the "
            f"{audit['sample_size']}-row sample, seed {audit.get('seed')}; auditors: "
            f"{esc(', '.join(audit['auditors']))}). Estimated targets not right in the whole dataset: "
            f"{bad['total']:g} (model {bad.get('model', 0):g}, paraphrase {bad.get('paraphrase', 0):g}, "
            f"gold {bad.get('gold', 0):g}); {bad['unlabelled_rows']} rows are in strata with no label.</p>"
            f"{kappa}" + "".join(f"<p>{esc(line)}</p>" for line in judge_lines(summary))
            + (f"<img alt='audit precision' src='data:image/png;base64,{chart}'>" if chart else "")
            + "<table class='ex' id='audit-table'><tr><th>by</th><th>name</th><th>rows</th><th>labelled</th>"
              "<th>right / partial / wrong</th><th>precision</th><th>95 % interval</th></tr>"
            f"{body}</table>")


def audit_markdown(summary: dict[str, Any]) -> str:
    if not has_labels(summary):
        return ""
    audit = summary["audit"]
    lines = ["## Audit: targets labelled by hand", "",
             f"{audit['labelled']} rows labelled by {', '.join(audit['auditors'])} (a stratified random "
             f"sample, `s3ft audit`, seed {audit.get('seed')}). Precision = the share labelled right, with "
             f"its 95 % interval.", "",
             "| targets | rows | labelled | right / partial / wrong | precision | 95 % interval |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {g['rows']} | {g['labelled']} | {g['right']} / {g['partial']} / {g['wrong']} | "
              f"{_pct(g['precision'])} | {_interval(g['ci95'])} |" for name, g in _groups(audit)]
    bad = audit["estimated_not_right"]
    lines += ["", f"Estimated targets not right in the whole dataset: {bad['total']:g} "
                  f"({bad['unlabelled_rows']} rows in strata without a label are not counted)."]
    lines += ["", *judge_lines(summary)] if judge_lines(summary) else []
    if audit.get("agreement"):
        a = audit["agreement"]
        lines.append(f"Two auditors agreed on {a['agreed']} of {a['rows']} rows (Cohen's kappa "
                     f"{a['kappa']:.2f}).")
    return "\n".join(lines) + "\n"
