"""``report.html`` for a run: what it produced, at a glance, in one self-contained page.

``write_report(run_dir)`` draws five charts (six with ``--samples``) with matplotlib (Agg, no
display needed), writes them as ``report_*.png`` beside ``report.html`` and inlines the same
PNGs into the page as base64, so the page can be mailed or attached on its own. The charts:
the training mix next to the paper's, judge outcomes by rule, answer lengths by source, stage
cost, the base model's log-prob of the targets, and with samples, rows by their number of correct samples.
``python -m pipeline.reporting.report --run runs/<run>`` rewrites it for an existing run.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.reporting.audit_section import audit_html
from pipeline.reporting.card import RunFiles, read_run
from pipeline.stages.select import SOURCES

COLORS = {"model": "#4C78A8", "paraphrase": "#F58518", "gold": "#54A24B"}
CORRECT, WRONG = "#59A14F", "#E15759"
EXAMPLES_PER_SOURCE = 2
EXAMPLE_CHARS = 700


# ---------------------------------------------------------------- charts

def _figure(width: float, height: float):
    # A bare Figure (no pyplot): no global state, no GUI backend, safe inside a long run.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777")
    ax.set_xticks([])
    ax.set_yticks([])


def chart_shares(run: RunFiles) -> bytes:
    sources = run.summary.get("sources") or {}
    paper = run.summary.get("paper_shares_pct") or {}
    fig = _figure(5.4, 3.4)
    ax = fig.add_subplot()
    width = 0.38
    for index, source in enumerate(SOURCES):
        share = float((sources.get(source) or {}).get("share_pct") or 0.0)
        ax.bar(index - width / 2, share, width, color=COLORS[source])
        ax.annotate(f"{share:.1f}%", (index - width / 2, share), ha="center", va="bottom", fontsize=9)
        if source in paper:
            ax.bar(index + width / 2, paper[source], width, color="white", edgecolor=COLORS[source],
                   hatch="//")
            ax.annotate(f"{paper[source]:.1f}%", (index + width / 2, paper[source]), ha="center",
                        va="bottom", fontsize=9, color="#555")
    ax.set_xticks(range(len(SOURCES)), [f"{s}\n({(sources.get(s) or {}).get('count', 0)} rows)"
                                        for s in SOURCES])
    ax.set_ylabel("share of rows (%)")
    ax.set_ylim(0, 110)
    from matplotlib.patches import Patch

    handles = [Patch(color="#888", label="this run")]
    if paper:
        handles.append(Patch(facecolor="white", edgecolor="#888", hatch="//",
                             label="paper (Mistral-7B, Table 3)"))
    ax.legend(handles=handles, loc="upper right", frameon=False)
    ax.set_title("Training mix: where each target comes from")
    return _png(fig)


def _rule_counts(rules: list[Any], verdicts: list[Any]) -> list[tuple[str, int, int]]:
    counts = Counter((str(r), bool(v)) for r, v in zip(rules, verdicts, strict=True))
    names = sorted({r for r, _ in counts}, key=lambda r: -(counts[(r, True)] + counts[(r, False)]))
    return [(r, counts[(r, True)], counts[(r, False)]) for r in names]


def chart_judge(run: RunFiles) -> bytes:
    paraphrased = [i for i, p in enumerate(run.column("paraphrase")) if p is not None]
    panels = [
        ("model answers", _rule_counts(run.column("judge_rule"), run.column("verdict"))),
        ("paraphrases", _rule_counts([run.column("paraphrase_judge_rule")[i] for i in paraphrased],
                                     [run.column("paraphrase_verdict")[i] for i in paraphrased])),
    ]
    height = 1.4 + 0.32 * max(len(rows) for _, rows in panels)
    fig = _figure(10.8, max(2.6, height))
    for position, (title, rows) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 2, position)
        ax.set_title(f"Judge outcomes by rule: {title}")
        if not rows:
            _no_data(ax, f"no {title}")
            continue
        names = [r for r, _, _ in rows][::-1]
        correct = [c for _, c, _ in rows][::-1]
        wrong = [w for _, _, w in rows][::-1]
        ax.barh(names, correct, color=CORRECT, label="correct")
        ax.barh(names, wrong, left=correct, color=WRONG, label="wrong")
        for y, (c, w) in enumerate(zip(correct, wrong, strict=True)):
            ax.annotate(f"{c} / {w}", (c + w, y), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=8)
        ax.set_xlabel("rows")
        ax.set_xlim(0, max(c + w for c, w in zip(correct, wrong, strict=True)) * 1.25 + 0.5)
        ax.legend(loc="lower right", frameon=False, fontsize=8)
    return _png(fig)


def chart_lengths(run: RunFiles) -> bytes:
    fig = _figure(10.8, 3.4)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    sources = run.column("source")
    targets = run.column("target")
    by_source = {s: [len(t) for t, src in zip(targets, sources, strict=True) if src == s and t]
                 for s in SOURCES}
    present = [s for s in SOURCES if by_source[s]][::-1]  # first source on top
    left.set_title("Target length by source (characters)")
    if present:
        boxes = left.boxplot([by_source[s] for s in present], orientation="horizontal",
                             tick_labels=[f"{s} ({len(by_source[s])})" for s in present],
                             patch_artist=True, widths=0.5, showfliers=False,
                             medianprops={"color": "#222"})
        for patch, source in zip(boxes["boxes"], present, strict=True):
            patch.set_facecolor(COLORS[source])
            patch.set_alpha(0.35)
        for y, source in enumerate(present, start=1):  # every row as a dot: runs are often small
            left.scatter(by_source[source], [y] * len(by_source[source]), s=10, color=COLORS[source],
                         zorder=3)
        left.set_xlabel("characters")
    else:
        _no_data(left)
    right.set_title("Generated tokens per row")
    series = [("model answer", [t for t in run.column("completion_tokens") if t is not None],
               COLORS["model"]),
              ("paraphrase", [t for t, p in zip(run.column("paraphrase_tokens"), run.column("paraphrase"),
                                                strict=True) if t is not None and p is not None],
               COLORS["paraphrase"])]
    if any(values for _, values, _ in series):
        top = max(max(values) for _, values, _ in series if values)
        max_tokens = run.options.get("max_tokens")
        if isinstance(max_tokens, int):
            top = max(top, max_tokens)
            right.axvline(max_tokens, color="#333", linestyle="--", linewidth=1,
                          label=f"max_tokens {max_tokens}")
        bins = [top * i / 24 for i in range(25)]
        for label, values, color in series:
            if values:
                right.hist(values, bins=bins, color=color, alpha=0.6, label=f"{label} ({len(values)})")
        right.set_xlabel("tokens")
        right.set_ylabel("rows")
        right.legend(frameon=False, fontsize=8)
    else:
        _no_data(right)
    return _png(fig)


def is_sampled(run: RunFiles) -> bool:
    """Whether the run sampled several answers per prompt (``--samples`` > 1)."""
    return "samples" in run.table.column_names and any((k or 1) > 1 for k in run.column("samples"))


def chart_samples(run: RunFiles) -> bytes:
    """Rows by how many of their k samples were correct, with pass@1 and pass@k."""
    k = max(k or 1 for k in run.column("samples"))
    correct = Counter(run.column("correct_samples"))
    fig = _figure(5.4, 3.4)
    ax = fig.add_subplot()
    ax.bar(range(k + 1), [correct[i] for i in range(k + 1)], color=COLORS["model"])
    for i in range(k + 1):
        ax.annotate(str(correct[i]), (i, correct[i]), ha="center", va="bottom", fontsize=8)
    rates = run.summary.get("samples") or {}
    ax.set_title(f"Correct samples per row (k = {k}): pass@1 {rates.get('pass_at_1_pct', '?')} %, "
                 f"pass@{k} {rates.get('pass_at_k_pct', '?')} %", fontsize=9)
    ax.set_xticks(range(k + 1))
    ax.set_xlabel("correct samples of the row")
    ax.set_ylabel("rows")
    return _png(fig)


def chart_shift(run: RunFiles) -> bytes:
    """The base model's mean log-prob per token of the targets: by source, the mix, all gold."""
    shift = run.summary.get("distribution_shift")
    fig = _figure(5.4, 3.4)
    ax = fig.add_subplot()
    ax.set_title("Base model's mean log-prob per target token (higher: closer)", fontsize=9)
    if not shift:
        _no_data(ax, "not measured")
        return _png(fig)
    bars = [(f"{s} ({v['rows']})", v["mean_logprob"], COLORS[s])
            for s, v in shift["by_source"].items() if v["mean_logprob"] is not None]
    bars += [("S3FT mix", shift["s3ft_mix"]["mean_logprob"], "#333"),
             ("all gold (SFT)", shift["sft_all_gold"]["mean_logprob"], "#999")]
    names = [b[0] for b in bars][::-1]
    values = [b[1] for b in bars][::-1]
    ax.barh(names, values, color=[b[2] for b in bars][::-1])
    for y, value in enumerate(values):
        ax.annotate(f"{value:.3f}", (value, y), xytext=(3, 0), textcoords="offset points",
                    ha="left", va="center", fontsize=8, color="white")  # inside the (negative) bar
    ax.set_xlabel("nats per token")
    return _png(fig)


def chart_stages(run: RunFiles) -> bytes:
    stages = run.summary.get("stages") or {}
    fig = _figure(5.4, 3.4)
    ax = fig.add_subplot()
    ax.set_title(f"Stage wall time (run total {run.summary.get('wall_seconds', '?')} s)")
    if not stages:
        _no_data(ax)
        return _png(fig)
    names = list(stages)[::-1]
    seconds = [float(stages[n].get("seconds") or 0.0) for n in names]
    ax.barh(names, seconds, color="#9C755F")
    for y, name in enumerate(names):
        cost = stages[name]
        label = f"{seconds[y]:.1f} s"
        if cost.get("tokens_per_s"):
            label += f"  ·  {cost['tokens_per_s']} tok/s  ·  {cost.get('generated_tokens', 0)} tok"
        ax.annotate(label, (seconds[y], y), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=8)
    ax.set_xlim(0, max(seconds) * 2.4 + 0.1)  # room for the labels
    ax.set_xlabel("seconds")
    return _png(fig)


# file name -> (alt text, drawing function, spans the page width)
CHARTS = {
    "report_shares.png": ("Training mix", chart_shares, False),
    "report_stages.png": ("Stage cost", chart_stages, False),
    "report_judge.png": ("Judge outcomes", chart_judge, True),
    "report_lengths.png": ("Lengths", chart_lengths, True),
    "report_shift.png": ("Distribution shift", chart_shift, False),
}
#: Drawn only for a run with ``--samples`` > 1.
SAMPLE_CHARTS = {"report_samples.png": ("Correct samples per row", chart_samples, False)}


def charts_of(run: RunFiles) -> dict[str, tuple[str, Any, bool]]:
    return {**CHARTS, **(SAMPLE_CHARTS if is_sampled(run) else {})}


# ---------------------------------------------------------------- page

def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _clip(text: str | None) -> str:
    if text is None:
        return ""
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + " …"


def _prompt_text(messages: Any) -> str:
    if not messages:
        return ""
    return str(messages[-1].get("content", "")) if isinstance(messages[-1], dict) else str(messages)


def _headline(run: RunFiles) -> str:
    s = run.summary
    sources = s.get("sources") or {}
    paper = s.get("paper_shares_pct") or {}
    left_out = (s.get("gold_check") or {}).get("rows_left_out")
    note = f"task {run.task}" + ("" if left_out is None else
                                 f" · {left_out} left out: gold fails the task's judge")
    tiles = [("rows", f"{run.table.num_rows}", note)]
    for source in SOURCES:
        info = sources.get(source) or {}
        note = f"paper {paper[source]:.1f}%" if source in paper else "no paper figure"
        tiles.append((f"{source}", f"{float(info.get('share_pct') or 0):.1f}%",
                      f"{info.get('count', 0)} rows · {note}"))
    para = s.get("paraphrase") or {}
    tiles.append(("model accuracy", f"{float(s.get('model_accuracy_pct') or 0):.1f}%",
                  f"trusted verdicts · admitted {float(s.get('model_admitted_pct') or 0):.1f}% · "
                  f"paraphrases admitted {para.get('passed', 0)}/{para.get('attempted', 0)}"))
    errors = s.get("rows_with_errors", 0)
    by_stage = ", ".join(f"{k} {v}" for k, v in (s.get("errors_by_stage") or {}).items()) or "none"
    tiles.append(("rows with errors", f"{errors}", f"by stage: {by_stage}"))
    cells = "".join(f'<div class="tile{" bad" if name == "rows with errors" and errors else ""}">'
                    f'<div class="k">{_esc(name)}</div><div class="v">{_esc(value)}</div>'
                    f'<div class="n">{_esc(note)}</div></div>' for name, value, note in tiles)
    return f'<div class="tiles">{cells}</div>'


def _facts(run: RunFiles) -> str:
    rows = [("model", run.options.get("model")),
            ("data", run.resolved.get("data_source", run.options.get("data"))),
            ("limit", run.options.get("limit")),
            ("dtype", run.resolved.get("dtype", run.options.get("dtype"))),
            ("max_tokens / max_model_len",
             f"{run.options.get('max_tokens')} / {run.options.get('max_model_len')}"),
            ("paraphrase_all", run.options.get("paraphrase_all")),
            ("engine starts", run.summary.get("engine_starts")),
            ("wall time", f"{run.summary.get('wall_seconds', '?')} s"),
            ("prompt templates", ", ".join(sorted({v for c in ("prompt_version", "paraphrase_prompt_version")
                                                   for v in run.column(c) if v})))]
    rows += [(k, v) for k, v in sorted(run.options.items()) if k.startswith("judge")]
    return "<table class='facts'>" + "".join(
        f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows) + "</table>"


def _examples(run: RunFiles) -> str:
    records = run.table.select(["id", "prompt", "source", "target", "candidate", "judge_rule", "paraphrase",
                                "paraphrase_judge_rule", "error"]).to_pylist()
    parts = []
    for source in SOURCES:
        picked = [r for r in records if r["source"] == source][:EXAMPLES_PER_SOURCE]
        if not picked:
            continue
        body = []
        for r in picked:
            candidate = ("" if source == "model" else
                         f"<div class='lbl'>model answer (judged {_esc(r['judge_rule'])}: wrong)</div>"
                         f"<pre class='alt'>{_esc(_clip(r['candidate']))}</pre>")
            if source == "gold" and r["paraphrase"] is not None:
                candidate += (f"<div class='lbl'>paraphrase (judged {_esc(r['paraphrase_judge_rule'])}: "
                              f"wrong)</div><pre class='alt'>{_esc(_clip(r['paraphrase']))}</pre>")
            error = f"<div class='err'>error: {_esc(r['error'])}</div>" if r["error"] else ""
            body.append(f"<tr><td class='id'>{_esc(r['id'])}</td>"
                        f"<td><pre>{_esc(_clip(_prompt_text(r['prompt'])))}</pre></td>"
                        f"<td><div class='lbl'>target</div><pre class='tgt'>{_esc(_clip(r['target']))}</pre>"
                        f"{candidate}{error}</td></tr>")
        parts.append(f"<h3><span class='dot' style='background:{COLORS[source]}'></span>{source}</h3>"
                     f"<table class='ex'><tr><th>id</th><th>prompt</th><th>training target</th></tr>"
                     f"{''.join(body)}</table>")
    return "".join(parts) or "<p>No rows.</p>"


def _admission(run: RunFiles) -> str:
    """Admission by rule (model answers and paraphrases) and the LLM judge's calibration."""
    s = run.summary
    rows = "".join(
        f"<tr><td>{_esc(kind)}</td><td><code>{_esc(rule)}</code></td><td>{info.get('count')}</td>"
        f"<td class='id'>{_esc((info.get('example') or {}).get('id'))}</td>"
        f"<td><pre>{_esc(_clip((info.get('example') or {}).get('reason')))}</pre></td></tr>"
        for kind, rules in (s.get("admission") or {}).items() for rule, info in rules.items())
    calibration = s.get("judge_calibration")
    note = (f"<p class='{'' if calibration.get('trusted') else 'err'}'>"
            f"{_esc(calibration.get('description'))}</p>") if calibration else ""
    evidence = "".join(f"<tr><td>{_esc(source)}</td><td><code>{_esc(rule)}</code></td>"
                       f"<td>{count}</td></tr>"
                       for source, rules in (s.get("target_evidence") or {}).items()
                       for rule, count in rules.items())
    return (f"<h2>Admission: what became a target, and why not</h2>{note}"
            f"<h3>What the non-gold targets rest on</h3><p>The judge rule that proved each "
            f"model or paraphrase target right (gold targets rest on the dataset).</p>"
            f"<table class='ex' id='evidence'><tr><th>target</th><th>proved by</th><th>rows</th>"
            f"</tr>{evidence or '<tr><td colspan=3>no non-gold targets</td></tr>'}</table>"
            f"<h3>Admission by rule</h3>"
            f"<p>Paraphrases that copied the gold: {_esc(s.get('paraphrase_copies', 0))}</p>"
            f"<table class='ex'><tr><th>text</th><th>rule</th><th>rows</th><th>example row</th>"
            f"<th>its reason</th></tr>{rows}</table>")


def _error_rows(run: RunFiles) -> str:
    errors = [(i, e) for i, e in zip(run.column("id"), run.column("error"), strict=True) if e]
    if not errors:
        return ""
    items = "".join(f"<tr><td class='id'>{_esc(i)}</td><td><pre>{_esc(_clip(e))}</pre></td></tr>"
                    for i, e in errors[:10])
    more = f"<p>… and {len(errors) - 10} more (column <code>error</code>).</p>" if len(errors) > 10 else ""
    return f"<h2>Rows with errors</h2><table class='ex'>{items}</table>{more}"


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 6px} .sub{color:#666;margin-bottom:14px}
.tiles{display:grid;grid-template-columns:repeat(6,1fr);gap:8px}
.tile{border:1px solid #ddd;border-radius:6px;padding:8px 10px;background:#fafafa}
.tile.bad{border-color:#E15759;background:#fff3f3}
.k{color:#666;font-size:12px} .v{font-size:22px;font-weight:600} .n{color:#777;font-size:11px}
.facts{border-collapse:collapse;margin-top:12px;font-size:13px}
.facts th{text-align:left;color:#666;font-weight:normal;padding:1px 14px 1px 0}
.facts td{font-family:monospace}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:8px;align-items:start}
.charts img{max-width:100%;display:block} .charts img.wide{grid-column:1 / span 2}
table.ex{border-collapse:collapse;width:100%;table-layout:fixed}
.ex td,.ex th{border:1px solid #ddd;padding:6px;vertical-align:top;text-align:left}
.ex th{background:#f3f3f3} .ex td.id{width:150px;font-family:monospace;font-size:11px;word-break:break-all}
.ex th:first-child{width:150px}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font-size:12px;font-family:ui-monospace,monospace}
.lbl{color:#666;font-size:11px;margin:6px 0 2px}
pre.tgt{background:#eef6ec;padding:4px} pre.alt{background:#f7f1f1;padding:4px;color:#444}
.err{color:#b00;font-size:12px;margin-top:4px}
.dot{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:6px}
"""


def render_html(run: RunFiles, images: dict[str, bytes]) -> str:
    charts = charts_of(run)
    figures = "".join(
        f"<img alt='{_esc(charts[name][0])}' class='{'wide' if charts[name][2] else 'half'}' "
        f"src='data:image/png;base64,"
        f"{base64.b64encode(data).decode()}'>" for name, data in images.items())
    title = f"S3FT run report: {run.task}, {run.run_dir.name}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{_esc(title)}</h1>
<div class="sub">{_esc(run.run_dir)}</div>
{_headline(run)}
{_facts(run)}
{_admission(run)}
{audit_html(run.summary)}
<h2>Charts</h2>
<div class="charts">{figures}</div>
{_error_rows(run)}
<h2>Examples by target source</h2>
{_examples(run)}
</body></html>
"""


def write_report(run_dir: Path | str) -> Path:
    """Write ``report.html`` and its ``report_*.png`` charts into ``run_dir``; return the page."""
    run = read_run(run_dir)
    images = {name: draw(run) for name, (_, draw, _) in charts_of(run).items()}
    for name, data in images.items():
        (run.run_dir / name).write_bytes(data)
    page = run.run_dir / "report.html"
    page.write_text(render_html(run, images), encoding="utf-8")
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="A finished run folder (the --out of pipeline.run).")
    args = parser.parse_args(argv)
    print(f"wrote {write_report(args.run)}")
    return 0


if __name__ == "__main__":
    from pipeline.errors import report_errors

    sys.exit(report_errors(main))
