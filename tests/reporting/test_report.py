"""The run report: a self-contained report.html with its charts, for a run folder built from
real GSM8K rows (see build_run_folder in tests/reporting/test_push.py)."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.reporting.report import CHARTS, write_report
from tests.reporting.test_push import HTML_TRAP, build_run_folder

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory, gsm8k_train) -> tuple[Path, str]:
    run_dir = build_run_folder(tmp_path_factory.mktemp("report"), gsm8k_train, rows=16)
    page = write_report(run_dir)
    return run_dir, page.read_text(encoding="utf-8")


def test_report_and_charts_are_written_beside_the_run(report):
    from PIL import Image

    run_dir, _ = report
    assert (run_dir / "report.html").is_file()
    for name in CHARTS:
        data = (run_dir / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        width, height = Image.open(io.BytesIO(data)).size
        assert width >= 500 and height >= 250, (name, width, height)


def test_report_is_self_contained_with_the_charts_inlined(report):
    run_dir, page = report
    # Nothing is fetched: every src/href is inline data (no http, no relative file).
    references = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)""", page, flags=re.IGNORECASE)
    assert references and all(ref.startswith("data:image/png;base64,") for ref in references)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    inlined = [base64.b64decode(ref.split(",", 1)[1]) for ref in references]
    assert inlined == [(run_dir / name).read_bytes() for name in CHARTS]


def test_headline_shows_rows_shares_accuracy_and_errors(report):
    run_dir, page = report
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f'<div class="v">{summary["rows"]}</div>' in page
    for source, info in summary["sources"].items():
        assert f'<div class="v">{info["share_pct"]:.1f}%</div>' in page
        assert f"paper {summary['paper_shares_pct'][source]:.1f}%" in page
    assert f'<div class="v">{summary["model_accuracy_pct"]:.1f}%</div>' in page
    assert summary["rows_with_errors"] > 0
    assert f'<div class="v">{summary["rows_with_errors"]}</div>' in page and 'class="tile bad"' in page
    assert "generate: prompt_too_long" in page  # the rows with errors are listed


def test_examples_per_source_are_escaped(report):
    run_dir, page = report
    table = pq.read_table(run_dir / "train.parquet")
    for source in set(table.column("source").to_pylist()):
        assert f"</span>{source}</h3>" in page
    # The first row of each source is shown with its training target.
    rows = table.to_pylist()
    for source in ("model", "paraphrase", "gold"):
        first = next(r for r in rows if r["source"] == source)
        assert html.escape(first["target"][:200]) in page
    # Model text is data, never markup.
    assert HTML_TRAP not in page and "<script" not in page
    assert html.escape(HTML_TRAP) in page


def test_report_for_an_empty_run_of_an_unknown_task(tmp_path, gsm8k_train):
    """No rows, no paper figures, no stages: the page still renders with empty charts."""
    run_dir = build_run_folder(tmp_path, gsm8k_train, rows=0, errors=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.update(task="mytask", paper_shares_pct=None, stages={})
    (run_dir / "summary.json").write_text(json.dumps(summary))
    page = write_report(run_dir).read_text()
    assert page.count("data:image/png;base64,") == len(CHARTS)
    assert "No rows." in page and "no paper figure" in page


def test_rows_left_out_by_the_gold_check_are_shown(tmp_path, gsm8k_train):
    import json

    run_dir = build_run_folder(tmp_path, gsm8k_train, rows=4)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["gold_check"] = {"rows_left_out": 2, "left_out": {"gsm8k-a": "x", "gsm8k-b": "y"}}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    page = write_report(run_dir).read_text(encoding="utf-8")
    assert "2 left out: gold fails the task&#x27;s judge" in page  # html-escaped


def test_the_report_says_what_each_non_gold_target_rests_on(report):
    run_dir, page = report
    evidence = json.loads((run_dir / "summary.json").read_text())["target_evidence"]
    assert evidence["model"] and evidence["paraphrase"]  # the fixture has both
    table = page.split("id='evidence'", 1)[1].split("</table>", 1)[0]
    for source, rules in evidence.items():
        for rule, count in rules.items():
            assert f"<td>{source}</td><td><code>{rule}</code></td><td>{count}</td>" in table
