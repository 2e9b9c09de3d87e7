"""Sharing a run on the Hub: the prepared folder, the dataset card, and the real upload path
against a local stand-in for the Hub's HTTP API (127.0.0.1 only).

The run folder is built from real GSM8K rows with the project's own pieces (prompt template,
GSM8K judge, S3FT selection, TRAIN_SCHEMA, summarize), in the shape ``pipeline.run`` writes.
``build_run_folder`` is shared with tests/reporting/test_report.py.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml

from judges.base import Verdict
from judges.gsm8k import Gsm8kJudge
from pipeline.backends.base import SamplingSettings
from pipeline.backends.loop_guard import LoopGuard
from pipeline.config import RunConfig
from pipeline.errors import UsageError
from pipeline.reporting.card import DATA_FILE, _fence, read_run, render_card
from pipeline.reporting.hub import PUSHED_FILES, push_run
from pipeline.reporting.summary import summarize
from pipeline.stage import StageResult
from pipeline.stages.admission import admit
from pipeline.stages.export import TRAIN_SCHEMA, write_train
from pipeline.stages.select import SelectStage
from pipeline.tasks import load_task

PROJECT = Path(__file__).resolve().parents[2]
HTML_TRAP = "<script>alert('x')</script> & <b>bold</b>"


def _last_number_changed(gold: str) -> str:
    """The gold solution with its final answer off by one (a wrong but well-formed answer)."""
    head, _, number = gold.rpartition("#### ")
    return f"{head}#### {int(number.replace(',', '')) + 1}"


def build_run_folder(root: Path, gsm8k_rows: list[dict], rows: int = 12, errors: bool = True) -> Path:
    """A finished run folder (train.parquet, summary.json, config.yaml) from real GSM8K rows.

    Rows cycle through what a real run produces: the model right; wrong with a passing
    paraphrase; wrong with a failing paraphrase (gold); and, with ``errors``, a generation
    error. One model answer carries HTML to check escaping downstream.
    """
    task = load_task("gsm8k")
    # Admitting paraphrases whose calculations are proven (the built-in default keeps them
    # out, words unproven), and own answers on their number (row 8's gold is algebra the
    # calculation proof cannot read), so that the folder has all three sources.
    judge = Gsm8kJudge(admit_unproven_wording=True, prove_own_answers=False)
    answer, paraphrase = task.answer_prompt, task.paraphrase_prompt
    records: list[dict[str, Any]] = []
    for index, source_row in enumerate(gsm8k_rows[:rows]):
        gold = task.gold_response(source_row)
        kind = index % 4 if errors else index % 3
        candidate: str | None
        if kind == 0:
            candidate = "Let me think.\n" + gold
        elif kind == 3:
            candidate = None  # generation failed for this row
        else:
            candidate = _last_number_changed(gold) + ("\n" + HTML_TRAP if index == 1 else "")
        # A prompt too long to answer is too long to paraphrase too: such rows fall back to gold.
        if kind in (0, 3):
            para_text = None
        elif kind == 1:
            para_text = "Let us work this out carefully, one step at a time, as follows:\n" + "".join(
                f"{first} indeed {rest}\n" if rest else f"{first}\n"
                for first, _, rest in (line.partition(" ") for line in gold.splitlines()[:-1])
            ) + gold.splitlines()[-1]  # the gold's steps reworded (its lines verbatim: a copy)
        else:
            para_text = _last_number_changed(gold)
        verdict = judge.judge(candidate, source_row) if candidate is not None else None
        para_verdict = judge.judge_paraphrase(para_text, source_row) if para_text is not None else None
        admission = admit(judge, candidate, "stop", verdict or Verdict(False, "no_response"),
                          source_row, gold, paraphrase=False)
        para_admission = admit(judge, para_text, "stop", para_verdict, source_row, gold,
                               paraphrase=True) if para_verdict else None
        records.append({
            "id": f"gsm8k-test-{index:04d}",
            "prompt": answer.messages(question=source_row["question"]),
            "gold": gold,
            "candidate": candidate,
            "verdict": verdict.correct if verdict else False,
            "judge_rule": verdict.rule if verdict else "no_response",
            "judge_extracted": verdict.extracted if verdict else None,
            "judge_reason": verdict.reason if verdict else "generation failed",
            "admitted": admission.admitted,
            "admission_rule": admission.rule,
            "admission_reason": admission.reason,
            "paraphrase": para_text,
            "paraphrase_verdict": para_verdict.correct if para_verdict else None,
            "paraphrase_judge_rule": para_verdict.rule if para_verdict else None,
            "paraphrase_judge_extracted": para_verdict.extracted if para_verdict else None,
            "paraphrase_judge_reason": para_verdict.reason if para_verdict else None,
            "paraphrase_admitted": para_admission.admitted if para_admission else None,
            "paraphrase_admission_rule": para_admission.rule if para_admission else None,
            "paraphrase_admission_reason": para_admission.reason if para_admission else None,
            "paraphrase_finish_reason": "stop" if para_text is not None else None,
            "finish_reason": "stop" if candidate is not None else None,
            "prompt_tokens": len(source_row["question"].split()),
            "completion_tokens": len(candidate.split()) if candidate else None,
            "paraphrase_tokens": len(para_text.split()) if para_text else None,
            "error": "generate: prompt_too_long" if candidate is None else None,
            "model": "embedded:smollm2-135m-instruct",
            "prompt_version": answer.version,
            "paraphrase_prompt_version": paraphrase.version,
        })
    # Typed from TRAIN_SCHEMA, so that an empty run (rows=0) still has every column.
    schema = pl.from_arrow(TRAIN_SCHEMA.empty_table()).drop("task", "completion", "source", "target").schema
    schema = {**schema, "judge_extracted": pl.String, "paraphrase_judge_extracted": pl.String}
    frame = SelectStage(judge).process(pl.DataFrame(records, schema=schema), Counter())
    frame = frame.with_columns(
        pl.lit("gsm8k").alias("task"),
        pl.concat_list(pl.struct(pl.lit("assistant").alias("role"),
                                 pl.col("target").alias("content"))).alias("completion"),
    )
    table = frame.select(TRAIN_SCHEMA.names).to_arrow().cast(TRAIN_SCHEMA)
    out = root / "run"
    out.mkdir(parents=True)
    write_train(table, out / "train.parquet")

    def stage(seconds: float, prefix: str | None = None, tokens: int = 0) -> StageResult:
        stats: Counter = Counter(seconds=seconds)
        if prefix:
            stats.update({f"{prefix}_completion_tokens": tokens, f"{prefix}_prompt_tokens": 4 * tokens,
                          f"{prefix}_seconds": seconds * 0.95, f"{prefix}_loop_stopped": tokens // 300,
                          f"{prefix}_loop_tokens_saved": 100 * (tokens // 300)})
        return StageResult([], "k", stats, 2, 0, seconds)

    stages = {"generate": stage(40.0, "generate", 900), "judge": stage(0.2),
              "paraphrase": stage(12.5, "paraphrase", 300), "select": stage(0.01)}
    summary = summarize(table, "gsm8k", stages, wall_seconds=55.3, engine_starts=1,
                        paper_shares=load_task("gsm8k").card["paper_shares"])
    summary["out"] = str(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    # config.yaml and run.json as pipeline/curate.py writes them: the options, and what the run
    # resolved from them.
    config = RunConfig(limit=rows or None, out=str(out), shard_size=8)
    options = {k: v for k, v in dataclasses.asdict(config).items() if k != "config"}
    resolved = {"data_source": "/data/gsm8k/train.jsonl", "dtype": "float32",
                "model_fingerprint": "gguf-sha256:b179c9523d0e", "model_path": "/models/smollm2",
                "stage_keys": {"load": "aaa", "generate": "bbb", "judge": "ccc"},
                "sampling": SamplingSettings(loop_guard=LoopGuard()).as_dict()}
    (out / "config.yaml").write_text(yaml.safe_dump(options, sort_keys=False))
    (out / "run.json").write_text(json.dumps(resolved, indent=2))
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, gsm8k_train) -> Path:
    return build_run_folder(tmp_path_factory.mktemp("push"), gsm8k_train)


@pytest.fixture(scope="module")
def dry_run(run_dir, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("dry") / "folder"
    done = _push_cli("--run", str(run_dir), "--repo-id", "alice/s3ft-gsm8k", "--dry-run", str(out))
    return out, done


def _push_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.push", *args], cwd=PROJECT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_dry_run_writes_exactly_the_pushed_files(run_dir, dry_run):
    folder, done = dry_run
    assert done.returncode == 0, done.stderr
    assert _files(folder) == set(PUSHED_FILES)
    assert (folder / DATA_FILE).read_bytes() == (run_dir / "train.parquet").read_bytes()
    for name in ("config.yaml", "run.json", "summary.json"):
        assert (folder / name).read_bytes() == (run_dir / name).read_bytes()
    assert str(folder) in done.stdout


def test_card_metadata_parses_with_huggingface_hub(dry_run):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(dry_run[0] / "README.md")
    assert card.data.license == load_task("gsm8k").card["license"] == "mit"
    assert card.data.task_categories == ["text-generation"]
    assert card.data.size_categories == ["n<1K"]
    assert card.data.configs == [{"config_name": "default",
                                  "data_files": [{"split": "train", "path": DATA_FILE}]}]
    assert "s3ft" in card.data.tags


def test_card_content_comes_from_the_run(run_dir, dry_run):
    text = (dry_run[0] / "README.md").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    table = pq.read_table(run_dir / "train.parquet")
    assert f"| rows | {table.num_rows} |" in text
    assert f"{summary['model_accuracy_pct']:.1f} %" in text
    for source, info in summary["sources"].items():  # the run's shares next to the paper's
        assert (f"| {source} | {info['count']} | {info['share_pct']:.1f} | "
                f"{summary['paper_shares_pct'][source]:.1f} |") in text
    assert "/data/gsm8k/train.jsonl" in text  # run.json's resolved data_source
    assert "embedded:smollm2-135m-instruct" in text and "gguf-sha256:b179c9523d0e" in text
    template = load_task("gsm8k").answer_prompt
    assert template.version in text and template.text.strip() in text
    assert load_task("gsm8k").paraphrase_prompt.version in text
    assert 'load_dataset("alice/s3ft-gsm8k", split="train")' in text
    assert "python -m pipeline.train --data data/alice--s3ft-gsm8k/" + DATA_FILE + " --mode s3ft" in text
    assert (run_dir / "config.yaml").read_text().strip() in text
    assert ("loop guard: on (a generation whose last 8 periods repeated the one before, ≥ 90 %"
            " alike, was stopped") in text
    assert "3 answers and 1 paraphrases stopped" in text
    outcomes = Counter(zip(table.column("judge_rule").to_pylist(), table.column("verdict").to_pylist(),
                           strict=True))
    # The right model answers are the worked gold after a first line: admitted as targets.
    right = outcomes[("strict:hash", True)]
    assert right > 0
    assert f"| model | `admitted` | {right} |" in text
    admission = summary["admission"]
    assert admission["model"]["admitted"]["count"] == right
    for kind, rules in admission.items():
        for rule, info in rules.items():
            assert f"| {kind} | `{rule}` | {info['count']} |" in text
    assert summary["paraphrase_copies"] > 0  # a last-number-changed gold is a copy
    assert f"paraphrases that copied the gold: {summary['paraphrase_copies']}" in text
    # What each non-gold target rests on: the judge rule that proved it, per source.
    sources = table.column("source").to_pylist()
    for source, column in (("model", "judge_rule"), ("paraphrase", "paraphrase_judge_rule")):
        proved = Counter(r for r, s in zip(table.column(column).to_pylist(), sources, strict=True)
                         if s == source)
        assert summary["target_evidence"][source] == dict(proved) and proved
        for rule, count in proved.items():
            assert f"| {source} | `{rule}` | {count} |" in text


def test_card_renders_as_markdown(dry_run):
    from markdown_it import MarkdownIt

    text = (dry_run[0] / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    assert yaml.safe_load(front)["license"] == "mit"
    page = MarkdownIt("commonmark").enable("table").render(body)
    assert page.count("<table>") >= 6  # overview, mix, admission, templates, judge, columns
    assert "<h1>" in page and page.count("<h2>") >= 8
    blocks = re.findall(r'<code class="language-(\w+)">', page)
    assert blocks.count("jinja") == 2 and "yaml" in blocks and "python" in blocks
    # No stray fence: the Markdown after the last code block is still Markdown.
    assert page.rstrip().endswith("</p>") and "<h2>Citation</h2>" in page


def test_fence_survives_backticks_in_templates():
    text = "Answer in a block:\n```python\ncode\n```"
    block = _fence(text, "jinja")
    assert block.startswith("````jinja\n") and block.endswith("\n````")


def test_dry_run_folder_loads_with_datasets(run_dir, dry_run, tmp_path):
    from datasets import load_dataset

    loaded = load_dataset(str(dry_run[0]), split="train", cache_dir=str(tmp_path / "cache"))
    table = pq.read_table(run_dir / "train.parquet")
    assert loaded.num_rows == table.num_rows
    assert loaded.column_names == TRAIN_SCHEMA.names
    assert loaded["id"] == table.column("id").to_pylist()
    assert loaded[0]["completion"] == [{"role": "assistant", "content": table.column("target")[0].as_py()}]


def test_bad_input_is_refused_with_a_clear_message(run_dir, tmp_path):
    with pytest.raises(UsageError, match="expected <user or org>/<name>"):
        push_run(run_dir, "no-slash", dry_run_dir=tmp_path / "a")
    with pytest.raises(UsageError, match=r"'a/b\.\.c': the Hub refuses it"):
        push_run(run_dir, "a/b..c", dry_run_dir=tmp_path / "b")  # a card for an id nobody accepts
    assert not (tmp_path / "b").exists()
    with pytest.raises(UsageError, match="no such folder"):
        push_run(tmp_path / "missing", "alice/x", dry_run_dir=tmp_path / "a")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "train.parquet").write_bytes((run_dir / "train.parquet").read_bytes())
    with pytest.raises(UsageError, match="summary.json, config.yaml, run.json missing"):
        push_run(partial, "alice/x", dry_run_dir=tmp_path / "a")
    cluttered = tmp_path / "cluttered"
    cluttered.mkdir()
    (cluttered / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"holds other files \(notes.txt\)"):
        push_run(run_dir, "alice/x", dry_run_dir=cluttered)
    # HF_HUB_OFFLINE=1 (set for every test): a real push stops before any request.
    with pytest.raises(UsageError, match="HF_HUB_OFFLINE is set"):
        push_run(run_dir, "alice/x")


def test_push_without_token_explains_how_to_log_in(run_dir, tmp_path):
    env = {"HF_HUB_OFFLINE": "0", "HF_TOKEN": "", "HF_HOME": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9"}
    done = _push_cli("--run", str(run_dir), "--repo-id", "alice/x", env=env)
    assert done.returncode == 2  # a UsageError: the fix is a setting (HF_TOKEN)
    assert "no Hugging Face token: set HF_TOKEN or run `hf auth login`" in done.stderr


class _HubStandIn(BaseHTTPRequestHandler):
    """The Hub API calls an upload of small files makes: create the repo, validate the card's
    metadata, ask how to upload each file (answered "regular": content inline in the commit),
    commit. Large files would go to LFS/Xet storage instead, which this stand-in does not do."""

    requests: list[dict[str, Any]] = []
    committed: dict[str, bytes] = {}

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _reply(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        record = {"path": self.path, "auth": self.headers.get("Authorization"), "body": raw}
        type(self).requests.append(record)
        host = f"http://{self.headers['Host']}"
        if self.path == "/api/validate-yaml":  # the README's metadata, checked before upload
            self._reply({"errors": [], "warnings": []})
        elif self.path == "/api/repos/create":
            payload = json.loads(raw)
            self._reply({"url": f"{host}/datasets/{payload['organization']}/{payload['name']}"})
        elif "/preupload/" in self.path:
            files = json.loads(raw)["files"]
            self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                   for f in files]})
        elif "/commit/" in self.path:
            for line in raw.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    type(self).committed[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            repo = self.path.split("/api/datasets/", 1)[1].split("/commit/", 1)[0]
            self._reply({"commitUrl": f"{host}/datasets/{repo}/commit/{'1' * 40}", "commitOid": "1" * 40,
                         "pullRequestUrl": None})
        else:
            self.send_error(404, f"stand-in has no {self.path}")


@pytest.fixture
def hub_standin():
    _HubStandIn.requests, _HubStandIn.committed = [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _HubStandIn
    server.shutdown()
    server.server_close()


def test_push_uploads_the_prepared_folder_through_the_hub_api(run_dir, dry_run, hub_standin, tmp_path):
    endpoint, hub = hub_standin
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": endpoint, "HF_TOKEN": "hf_standin_token",
           "HF_HOME": str(tmp_path), "HF_HUB_DISABLE_TELEMETRY": "1", "NO_PROXY": "127.0.0.1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    done = _push_cli("--run", str(run_dir), "--repo-id", "alice/s3ft-gsm8k", "--private", env=env)
    assert done.returncode == 0, done.stderr
    assert f"pushed {run_dir} to {endpoint}/datasets/alice/s3ft-gsm8k" in done.stdout
    paths = [r["path"].split("?")[0] for r in hub.requests]
    assert paths[0] == "/api/repos/create"
    assert sorted(paths[1:]) == ["/api/datasets/alice/s3ft-gsm8k/commit/main",
                                 "/api/datasets/alice/s3ft-gsm8k/preupload/main", "/api/validate-yaml"]
    assert paths[-1].endswith("/commit/main")
    validated = json.loads(next(r["body"] for r in hub.requests if r["path"] == "/api/validate-yaml"))
    assert validated == {"content": (dry_run[0] / "README.md").read_text(), "repoType": "dataset"}
    assert all(r["auth"] == "Bearer hf_standin_token" for r in hub.requests)
    created = json.loads(hub.requests[0]["body"])
    assert created["type"] == "dataset" and created["visibility"] == "private"
    # The commit holds exactly the dry-run folder, byte for byte.
    folder = dry_run[0]
    assert set(hub.committed) == set(PUSHED_FILES)
    for name, content in hub.committed.items():
        assert content == (folder / name).read_bytes(), name


def test_card_for_a_run_without_paper_figures(run_dir, tmp_path):
    """An unknown task (no paper shares, no licence on record) still gets a valid card."""
    run = read_run(run_dir)
    run.summary = {**run.summary, "task": "mytask", "paper_shares_pct": None}
    text = render_card(run, "alice/mine")
    from huggingface_hub import DatasetCard

    assert DatasetCard(text).data.license == "other"
    assert "| model | " in text and "| - |" in text


def test_row_text_in_the_card_is_shown_as_text_not_html():
    """A gold answer or model output holding HTML lands in the card's example-reason cells:
    escaped, so a Markdown viewer shows it instead of running it."""
    from pipeline.reporting.card import admission_section

    reason = 'gold "<img src=x onerror=alert(1)>" | <script>alert(2)</script>'
    summary = {"admission": {"model": {"wrong": {"count": 1, "example": {"reason": reason}}}}}
    text = admission_section(summary)
    assert "<img" not in text and "<script>" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "\\| &lt;script&gt;" in text
