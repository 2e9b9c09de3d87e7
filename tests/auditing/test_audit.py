"""``s3ft audit``: the stratified sample, the label file, the estimate and where it goes
(summary.json, report.html, the card), the page's API, and the command's bad input."""

from __future__ import annotations

import json
import socket
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from starlette.testclient import TestClient

from pipeline.audit import main as audit_main
from pipeline.auditing import labels as store
from pipeline.auditing.estimate import kappa
from pipeline.auditing.sample import MIN_PER_STRATUM, AuditError, allocate, draw, read_rows, split_gold
from pipeline.auditing.server import TOKEN_HEADER, create_app
from pipeline.auditing.session import AuditSession
from pipeline.reporting.audit_section import audit_markdown
from pipeline.reporting.card import read_run, render_card
from pipeline.stats import wilson_interval
from tests.reporting.test_push import build_run_folder

TRAP = '<img src=x onerror="window.hacked=1"><script>window.hacked=2</script>'


def make_run(root: Path, gsm8k_rows: list[dict], rows: int = 36) -> Path:
    """A run folder from real GSM8K rows; one model target carries HTML that must stay text."""
    run = build_run_folder(root, gsm8k_rows, rows=rows, errors=False)
    frame = pl.read_parquet(run / "train.parquet")
    first_model = frame["source"].to_list().index("model")
    targets = frame["target"].to_list()
    targets[first_model] = TRAP + "\n" + targets[first_model]
    frame.with_columns(pl.Series("target", targets)).write_parquet(run / "train.parquet")
    return run


@pytest.fixture
def run(tmp_path, gsm8k_train) -> Path:
    return make_run(tmp_path, gsm8k_train)


# --- the sample --------------------------------------------------------------------------------


def test_allocation_gives_every_stratum_its_minimum_then_shares_by_size():
    assert allocate({"a": 100, "b": 5, "c": 1}, 20) == {"a": 16, "b": 3, "c": 1}
    assert sum(allocate({"a": 100, "b": 50, "c": 7}, 60).values()) == 60
    assert allocate({"a": 10, "b": 2}, 100) == {"a": 10, "b": 2}  # the whole dataset
    assert allocate({"a": 10, "b": 9, "c": 8}, 4) == {"a": 3, "b": 1, "c": 0}  # too small for all minimums


def test_gold_gets_at_most_its_share_while_other_targets_are_left():
    sizes = {"model · exact": 100, "paraphrase · proven": 100, "gold · gold": 500}
    assert split_gold(sizes, 60) == {"model · exact": 23, "paraphrase · proven": 22, "gold · gold": 15}
    # Fewer non-gold targets than the sample: all of them, and gold fills the rest.
    assert split_gold({"model · exact": 7, "paraphrase · proven": 20, "gold · gold": 204}, 60) == {
        "model · exact": 7, "paraphrase · proven": 20, "gold · gold": 33}
    assert split_gold({"gold · gold": 5}, 10) == {"gold · gold": 5}


def test_sample_is_stratified_reproducible_per_seed_and_kept(run):
    rows = read_rows(run)
    strata = Counter(r.stratum for r in rows)
    assert len(strata) >= 3 and {r.source for r in rows} == {"model", "paraphrase", "gold"}
    ids = draw(rows, 12, seed=1)
    assert ids == draw(rows, 12, seed=1) and ids != draw(rows, 12, seed=2)
    drawn = Counter(r.stratum for r in rows if r.id in ids)
    assert all(drawn[s] >= min(MIN_PER_STRATUM, n) for s, n in strata.items())
    session = AuditSession(run, size=12, seed=1)
    assert session.sample.ids == ids and session.sample.path.is_file()
    saved = json.loads(session.sample.path.read_text())
    assert saved["ids"] == ids and sum(s["drawn"] for s in saved["strata"].values()) == 12
    assert AuditSession(run, size=12, seed=1).sample.ids == ids  # read back, not drawn again


# --- labels and the estimate -------------------------------------------------------------------


def test_estimate_per_rule_per_source_and_in_the_whole_dataset(run):
    session = AuditSession(run, size=36, seed=1)
    model_rows = [r for r in session.rows if r.source == "model"]
    gold_rows = [r for r in session.rows if r.source == "gold"]
    for row, label in zip(model_rows, ["right", "right", "wrong", "partial"], strict=False):
        session.add_label(row.id, label)
    session.add_label(gold_rows[0].id, "right")
    figures = json.loads((run / "summary.json").read_text())["audit"]
    model = figures["by_source"]["model"]
    labelled = min(4, len(model_rows))
    assert (model["labelled"], model["right"], model["rows"]) == (labelled, 2, len(model_rows))
    assert model["precision"] == pytest.approx(2 / labelled)
    assert model["ci95"] == pytest.approx(list(wilson_interval(2, labelled)))
    assert figures["non_gold"]["labelled"] == labelled  # gold labels do not count there
    expected_bad = len(model_rows) * (1 - 2 / labelled)  # the one model stratum's rate x its size
    assert figures["estimated_not_right"]["model"] == pytest.approx(expected_bad, abs=0.1)
    assert figures["estimated_not_right"]["unlabelled_rows"] == sum(
        1 for r in session.rows if r.source == "paraphrase")
    # A later label of the same row replaces the earlier one; nothing is rewritten on disk.
    session.add_label(model_rows[2].id, "right")
    assert session.write_summary()["by_source"]["model"]["right"] == 3
    assert len(store.read_labels(run)) == 6


def test_a_label_of_an_older_target_does_not_count(run):
    session = AuditSession(run, size=36, seed=1)
    row = next(r for r in session.rows if r.source == "model")
    session.add_label(row.id, "wrong")
    frame = pl.read_parquet(run / "train.parquet")
    changed = pl.when(pl.col("id") == row.id).then(pl.lit("a new target")).otherwise(pl.col("target"))
    frame.with_columns(changed.alias("target")).write_parquet(run / "train.parquet")
    rerun = AuditSession(run, size=36, seed=1)
    assert rerun.write_summary()["labelled"] == 0


def test_import_export_round_trip_and_bad_lines(run, tmp_path):
    session = AuditSession(run, size=36, seed=1)
    ids = [r.id for r in session.rows[:5]]
    source = tmp_path / "theirs.jsonl"
    source.write_text("".join(json.dumps({"id": i, "label": lab, "note": "n", "extra": 1}) + "\n"
                              for i, lab in zip(ids, ["right", "wrong", "partial", "right", "right"],
                                                strict=True)))
    assert session.import_file(source) == 5
    out = tmp_path / "out.jsonl"
    assert session.export_file(out) == 5
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["label"], r["auditor"]) for r in exported][:2] == [(ids[0], "right", "me"),
                                                                          (ids[1], "wrong", "me")]
    assert set(exported[0]) == set(store.KEYS)
    for text, message in [('{"id": "nope", "label": "right"}', "id 'nope' is not a row"),
                          (json.dumps({"id": ids[0], "label": "good"}), "label 'good': use one of"),
                          ("not json", "line 1 is not valid JSON"),
                          (json.dumps({"label": "right"}), "needs at least 'id' and 'label'")]:
        source.write_text(text + "\n")
        with pytest.raises(AuditError, match=message):
            session.import_file(source)
    assert len(store.read_labels(run)) == 5  # a bad file adds nothing


def test_two_auditors_agreement():
    assert kappa(["right", "wrong", "right", "partial"], ["right", "wrong", "right", "partial"]) == 1.0
    # 3 of 4 agree; expected agreement (2*2 + 1*2 + 1*0) / 16 = 0.375 → (0.75 - 0.375) / 0.625
    first, second = ["right", "right", "wrong", "partial"], ["right", "right", "wrong", "wrong"]
    assert kappa(first, second) == pytest.approx(0.6)


def test_agreement_appears_when_two_auditors_share_rows(run):
    first = AuditSession(run, size=36, seed=1, auditor="ana")
    second = AuditSession(run, size=36, seed=1, auditor="ben")
    for index, row_id in enumerate(first.sample.ids[:4]):
        first.add_label(row_id, "right")
        second.add_label(row_id, "right" if index else "wrong")
    figures = second.write_summary()
    assert figures["agreement"]["auditors"] == ["ana", "ben"]
    assert figures["agreement"]["rows"] == 4 and figures["agreement"]["agreed"] == 3


def test_an_llm_judges_verdicts_are_set_against_people(run):
    """Rows an LLM judge decided: the texts it ruled on join the sample, and their labels give
    its true-positive and true-negative rates (they are not targets: the target figures ignore them)."""
    frame = pl.read_parquet(run / "train.parquet")
    with_answer = frame.filter(pl.col("candidate").is_not_null())["id"].to_list()
    said_right, said_wrong = set(with_answer[:6]), set(with_answer[6:12])
    rule = (pl.when(pl.col("id").is_in(list(said_right))).then(pl.lit("llm:correct"))
            .when(pl.col("id").is_in(list(said_wrong))).then(pl.lit("llm:incorrect"))
            .otherwise(pl.col("judge_rule")))
    frame.with_columns(rule.alias("judge_rule")).write_parquet(run / "train.parquet")
    session = AuditSession(run, size=10, seed=1)
    judged = [i for i in session.sample.ids if session.by_id[i].source == "judged"]
    assert len(judged) == 12 and len(session.sample.ids) == 22  # 10 targets + every judged text
    assert {i.split("#")[0] for i in judged} == said_right | said_wrong
    row = session.by_id[judged[0]]
    assert row.target == frame.filter(pl.col("id") == judged[0].split("#")[0])["candidate"][0]
    # People: right on every text the judge called right but one; right on two it called wrong.
    people_right = sorted(i for i in judged if i.split("#")[0] in said_right)[1:]
    people_right += sorted(i for i in judged if i.split("#")[0] in said_wrong)[:2]
    for row_id in judged:
        session.add_label(row_id, "right" if row_id in people_right else "wrong")
    figures = session.publish()
    verdicts = figures["judge_vs_people"]
    assert (verdicts["judge_right_people_right"], verdicts["judge_right_people_not"],
            verdicts["judge_wrong_people_right"], verdicts["judge_wrong_people_not"]) == (5, 1, 2, 4)
    assert verdicts["true_positive_rate"] == pytest.approx(5 / 7)
    assert verdicts["true_negative_rate"] == pytest.approx(4 / 5)
    assert figures["all"]["labelled"] == 0  # no target was labelled
    assert "The LLM judge against people on 12 texts" in (run / "report.html").read_text()


# --- where the figures go ----------------------------------------------------------------------


def test_report_and_card_show_the_audit_and_row_text_stays_text(run):
    session = AuditSession(run, size=36, seed=1)
    for row_id in session.sample.ids[:8]:
        session.add_label(row_id, "right")
    figures = session.publish()
    page = (run / "report.html").read_text()
    assert "<h2 id='audit'>Audit: targets labelled by hand</h2>" in page and "id='audit-table'" in page
    assert TRAP not in page  # escaped wherever a target is shown
    g = figures["non_gold"]
    card = render_card(read_run(run), "user/nq-audited")  # what the next push uploads
    assert "## Audit: targets labelled by hand" in card
    assert f"| non-gold | {g['rows']} | {g['labelled']} |" in card
    assert audit_markdown({}) == ""  # no labels, no section


def test_the_api_needs_the_page_token_and_refuses_rows_outside_the_sample(run):
    session = AuditSession(run, size=10, seed=1)
    client = TestClient(create_app(session, token="t0k"))
    page = client.get("/")
    assert 'content="t0k"' in page.text and "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/api/state").status_code == 403
    state = client.get("/api/state", headers={TOKEN_HEADER: "t0k"}).json()
    assert [r["id"] for r in state["rows"]] == session.sample.ids
    first = state["rows"][0]["id"]
    assert client.post("/api/label", json={"id": first, "label": "right"}).status_code == 403
    ok = client.post("/api/label", json={"id": first, "label": "right"}, headers={TOKEN_HEADER: "t0k"})
    assert ok.status_code == 200 and ok.json()["figures"]["labelled"] == 1
    outside = next(r.id for r in session.rows if r.id not in session.sample.ids)
    bad = client.post("/api/label", json={"id": outside, "label": "right"}, headers={TOKEN_HEADER: "t0k"})
    assert bad.status_code == 400 and "not in this audit's sample" in bad.json()["error"]
    assert client.post("/api/label", json={"id": first, "label": "maybe"},
                       headers={TOKEN_HEADER: "t0k"}).status_code == 400


# --- the command ------------------------------------------------------------------------------


def test_command_imports_exports_and_refuses_a_folder_without_train_parquet(run, tmp_path, capsys):
    from pipeline.errors import report_errors

    assert report_errors(audit_main, [str(tmp_path / "empty")]) == 2
    assert "no train.parquet here" in capsys.readouterr().err
    assert report_errors(audit_main, []) == 2
    assert "name the run folder to audit" in capsys.readouterr().err
    with socket.socket() as taken:  # the page's port in use: one line, not uvicorn's traceback
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert report_errors(audit_main, [str(run), "--no-browser", "--port", port]) == 2
    assert f"error: --port {port} on 127.0.0.1: cannot listen there" in capsys.readouterr().err
    rows = read_rows(run)
    labels = tmp_path / "l.jsonl"
    labels.write_text("".join(json.dumps({"id": r.id, "label": "right", "auditor": "bot"}) + "\n"
                              for r in rows if r.source == "model"))
    assert audit_main([str(run), "--import", str(labels), "--export", str(tmp_path / "e.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "imported" in out and "non-gold targets right: 100.0 %" in out
    exported = (tmp_path / "e.jsonl").read_text()
    assert exported.count('"auditor": "bot"') == sum(r.source == "model" for r in rows)
