"""The dataset card (``README.md``) of a curated run, written from the run's own files.

Everything on the card is read from the run folder (``train.parquet``, ``summary.json``,
``config.yaml``) and the prompt templates, so the card describes the data that is uploaded,
not the code as it is today. :func:`read_run` is shared with the run report.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from judges.templates import PromptTemplate, prompts_dir
from pipeline.errors import UsageError
from pipeline.reporting.audit_section import audit_markdown
from pipeline.stages.select import SOURCES
from pipeline.tasks import builtin_names, load_task

#: The card's Markdown body (values escaped by ``render_card`` before they reach it).
_CARD_TEMPLATE = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent), undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True, autoescape=False).get_template("card.md.jinja")

# The Hub's size buckets (upper bounds, exclusive).
_SIZE_BUCKETS = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                 (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]
DATA_FILE = "data/train-00000-of-00001.parquet"

# Columns the card and the report read; an older or foreign train.parquet without them is
# refused with a message instead of failing half-way through.
REQUIRED_COLUMNS = ("id", "prompt", "completion", "source", "target", "gold", "candidate", "verdict",
                    "judge_rule", "admitted", "admission_rule", "paraphrase", "paraphrase_verdict",
                    "paraphrase_judge_rule", "paraphrase_admitted", "paraphrase_admission_rule",
                    "completion_tokens", "paraphrase_tokens", "error", "model", "prompt_version",
                    "paraphrase_prompt_version")

COLUMN_DOCS: dict[str, str] = {
    "id": "stable row id (the source's id, or a hash of the prompt fields)",
    "task": "task preset",
    "prompt": "the user turn (conversational form, TRL `prompt`)",
    "completion": "the assistant turn holding `target` (TRL `completion`)",
    "source": "where `target` comes from: `model`, `paraphrase` or `gold`",
    "target": "the S3FT training target",
    "gold": "the dataset's reference answer",
    "candidate": "the base model's own answer (greedy; with `--samples`, the picked sample, else the first)",
    "verdict": "the judge's verdict on `candidate`",
    "judge_rule": "the judge rule that decided `verdict`",
    "judge_reason": "why the judge decided so",
    "admitted": "`candidate` may be the target (judged correct, not cut off, right format)",
    "admission_rule": "`admitted`, or the rule that kept `candidate` out (`truncated`, `wrong`, ...)",
    "admission_reason": "what the admission rule saw",
    "paraphrase_judge_reason": "why the judge decided so about `paraphrase`",
    "paraphrase_admitted": "`paraphrase` may be the target",
    "paraphrase_admission_rule": "`admitted`, or the rule that kept `paraphrase` out (`copy_of_gold`, ...)",
    "paraphrase_admission_reason": "what the admission rule saw",
    "paraphrase_finish_reason": "why generation of `paraphrase` stopped",
    "paraphrase": "the model's rewrite of `gold` (null if not paraphrased)",
    "paraphrase_verdict": "the judge's verdict on `paraphrase`",
    "paraphrase_judge_rule": "the judge rule that decided `paraphrase_verdict`",
    "finish_reason": ("why generation of `candidate` stopped (`stop`; `length`: the token limit; "
                      "`repetition`: the loop guard)"),
    "prompt_tokens": "prompt length in tokens",
    "completion_tokens": "`candidate` length in tokens",
    "paraphrase_tokens": "`paraphrase` length in tokens",
    "error": "stage errors for this row, if any (the row then falls back to gold)",
    "model": "the model that answered and paraphrased",
    "prompt_version": "answer template as `<task>/<file>@<content hash>`",
    "paraphrase_prompt_version": "paraphrase template as `<task>/<file>@<content hash>`",
    "samples": "answers sampled for this prompt (`--samples`; 1: one greedy answer)",
    "correct_samples": "how many of them the judge found correct",
    "picked_sample": "which sample is `candidate` and was admitted (0-based; null: none admitted)",
    "sampling": "the sampling settings, as JSON (n, temperature, top_p, ..., seed, pick)",
    "target_logprob": "the base model's mean log-prob per token of `target` (null: not measured)",
    "target_scored_tokens": "tokens of `target` that were scored",
    "gold_logprob": "the base model's mean log-prob per token of `gold`",
    "gold_scored_tokens": "tokens of `gold` that were scored",
}


@dataclass
class RunFiles:
    """A finished run folder, read once."""

    run_dir: Path
    table: pa.Table
    summary: dict[str, Any]
    options: dict[str, Any]  # the options block of config.yaml
    resolved: dict[str, Any]  # run.json: what the run resolved (fingerprints, stage keys)
    config_text: str

    @property
    def task(self) -> str:
        return str(self.summary.get("task") or self.options.get("task") or "unknown")

    def column(self, name: str) -> list[Any]:
        return self.table.column(name).to_pylist()


def read_run(run_dir: Path | str) -> RunFiles:
    """Read a run folder; a missing or malformed file stops with a message naming it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"--run {run_dir}: no such folder (pass the --out folder of a finished "
                         f"`python -m pipeline.run`)")
    paths = {name: run_dir / name
             for name in ("train.parquet", "summary.json", "config.yaml", "run.json")}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise UsageError(f"--run {run_dir}: {', '.join(missing)} missing; is the run finished? "
                         f"Rerun the same `python -m pipeline.run` command to complete it.")
    try:
        table = pq.read_table(paths["train.parquet"])
    except (pa.ArrowInvalid, OSError) as exc:
        raise UsageError(f"{paths['train.parquet']}: not a readable Parquet file ({exc})") from None
    absent = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if absent:
        raise UsageError(f"{paths['train.parquet']}: column(s) {', '.join(absent)} missing; export "
                         f"the run again with this version of `python -m pipeline.run`")
    summary = _json_object(paths["summary.json"])
    resolved = _json_object(paths["run.json"])
    config_text = paths["config.yaml"].read_text()
    return RunFiles(run_dir, table, summary, parse_config_yaml(config_text, paths["config.yaml"]),
                    resolved, config_text)


def _json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected the JSON object pipeline.run writes")
    return data


def parse_config_yaml(text: str, path: Path) -> dict[str, Any]:
    """The options of ``config.yaml``."""
    try:
        options = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(options, dict):
        raise UsageError(f"{path}: expected a mapping of option: value")
    return options


def size_category(rows: int) -> str:
    for bound, label in _SIZE_BUCKETS:
        if rows < bound:
            return label
    return "n>10M"


def _fence(text: str, lang: str = "") -> str:
    """A fenced code block that survives backticks inside ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _cell(value: Any) -> str:
    """Text for a Markdown table cell. Row text is model output or data anyone wrote: its
    HTML is escaped, so a viewer shows ``<img onerror=...>`` as text instead of running it
    (the Hub sanitises a card's HTML, other Markdown viewers may not)."""
    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\n", " ")


def _pct(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


def _decoding(run: RunFiles) -> str:
    """How answers were decoded: one greedy answer, or k samples and the pick rule."""
    sampling = run.resolved.get("sampling") or {}
    n = sampling.get("n", 1)
    if n <= 1 and not sampling.get("temperature"):
        return "greedy decoding (one answer per prompt)"
    recorded = run.column("sampling")[0] if run.table.num_rows and "sampling" in \
        run.table.column_names else None
    pick = json.loads(recorded).get("pick", "?") if recorded else "?"
    settings = ", ".join(f"`{k}` {sampling[k]}" for k in ("temperature", "top_p", "top_k", "min_p",
                                                           "repetition_penalty", "seed")
                         if k in sampling)
    sampled = (run.summary.get("samples") or {})
    rates = (f"; pass@1 {sampled['pass_at_1_pct']:.1f} %, pass@{n} {sampled['pass_at_k_pct']:.1f} %"
             if sampled else "")
    return (f"{n} sampled answers per prompt ({settings}); the target is the `{pick}` admitted "
            f"sample{rates}")


def _shift_line(summary: dict[str, Any]) -> str:
    """How likely the base model finds these targets, against plain SFT's all-gold set."""
    shift = summary.get("distribution_shift")
    if not shift:
        return "The base model's log-probability of the targets was not measured for this set."
    sources = ", ".join(f"{source} {v['mean_logprob']:.3f} ({v['rows']} rows)"
                        for source, v in shift["by_source"].items() if v["mean_logprob"] is not None)
    return (f"Distance from the base model's own distribution (its mean log-probability per "
            f"target token, higher is closer): this mix {shift['s3ft_mix']['mean_logprob']:.3f}, "
            f"every row's gold as plain SFT would train on {shift['sft_all_gold']['mean_logprob']:.3f}"
            f"; by source: {sources}.")


def _loop_guard_line(run: RunFiles) -> str:
    """What the loop guard did (docs/loop-guard.md), from run.json and the stage costs."""
    if "sampling" not in run.resolved:
        return "loop guard: not recorded (a run from before it existed)"
    guard = run.resolved["sampling"].get("loop_guard")
    if not guard:
        return "loop guard: off (generations ran to `max_tokens`)"
    stages = run.summary.get("stages") or {}
    stopped = {name: (stages.get(name) or {}).get("loop_stopped", 0) for name in ("generate", "paraphrase")}
    return (f"loop guard: on (a generation whose last {guard['repeats']} periods repeated the one "
            f"before, ≥ {100 * guard['similarity']:.0f} % alike, was stopped: `finish_reason` "
            f"`repetition`, never a target): {stopped['generate']} answers and "
            f"{stopped['paraphrase']} paraphrases stopped")


def _template_section(run: RunFiles) -> str:
    """Template versions recorded in the rows, with the text of the files that match them."""
    used = Counter(v for name in ("prompt_version", "paraphrase_prompt_version")
                   for v in run.column(name) if v)
    folder = task_folder(run)
    files = sorted(folder.glob("*.jinja")) if folder.is_dir() else []
    current = {PromptTemplate(path).version: path for path in files}
    lines = ["| template version | rows |", "| --- | ---: |"]
    lines += [f"| `{_cell(version)}` | {count} |" for version, count in sorted(used.items())]
    for version in sorted(used):
        path = current.get(version)
        if path is None:
            lines.append(f"\n`{version}`: the template file has changed since this run; its text "
                         f"is not included.")
            continue
        lines.append(f"\n**`{path.name}`** (`{version}`):\n\n{_fence(path.read_text(), 'jinja')}")
    # Templates the rows do not record (e.g. an LLM judge's prompt): today's text, marked so.
    for version, path in sorted(current.items()):
        if version not in used:
            lines.append(f"\n**`{path.name}`** (`{version}`, not recorded in the rows; the file as it "
                         f"is at push time):\n\n{_fence(path.read_text(), 'jinja')}")
    return "\n".join(lines)


def _judge_section(run: RunFiles) -> str:
    judge = run.resolved.get("judge") if isinstance(run.resolved.get("judge"), dict) else None
    lines = []
    if judge:  # recorded by runners that write the judge stage's settings into config.yaml
        lines.append(f"- judge: `{judge.get('judge')}` version `{judge.get('judge_version')}`, "
                     f"settings `{judge.get('judge_settings') or {}}`")
    else:
        lines.append(f"- judge: `{_judge_name(run)}` (the task's judge; its version and settings "
                     f"are part of the judge stage key "
                     f"`{(run.resolved.get('stage_keys') or {}).get('judge', '?')}`)")
    for key, value in sorted(run.options.items()):
        if key.startswith("judge") or key == "paraphrase_all":
            lines.append(f"- `{key}`: `{value}`")
    para = run.summary.get("paraphrase") or {}
    if para:
        lines.append(f"- paraphrases passing the judge: {para.get('passed')}/{para.get('attempted')}")
    answers = Counter(zip(run.column("judge_rule"), run.column("verdict"), strict=True))
    paraphrases = Counter((rule, ok) for rule, ok, text in zip(
        run.column("paraphrase_judge_rule"), run.column("paraphrase_verdict"), run.column("paraphrase"),
        strict=True) if text is not None)
    lines += ["", "Judge outcomes by the rule that decided them (correct / wrong):", "",
              "| rule | model answers | paraphrases |", "| --- | ---: | ---: |"]
    for rule in sorted({r for r, _ in answers} | {r for r, _ in paraphrases}, key=str):
        cells = [f"{c[(rule, True)]} / {c[(rule, False)] + c[(rule, None)]}" if any(
            r == rule for r, _ in c) else "-" for c in (answers, paraphrases)]
        lines.append(f"| `{_cell(rule)}` | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def admission_section(summary: dict[str, Any]) -> str:
    """What was admitted as a target and what was not, by rule, with an example reason; and
    the LLM judge's calibration (shared by the card; the report renders the same data)."""
    lines = ["A text is a training target only when the pipeline knows it is right: judged "
             "correct (by a judge that proved itself, for an LLM judge), not cut off at the "
             "token limit, not a copy of the gold (paraphrases), and in the task's target format "
             "(see the project's docs/admission.md).", "",
             "| text | rule | rows | example reason |", "| --- | --- | ---: | --- |"]
    for kind, rules in (summary.get("admission") or {}).items():
        for rule, info in rules.items():
            reason = str((info.get("example") or {}).get("reason") or "")[:120]
            lines.append(f"| {kind} | `{_cell(rule)}` | {info.get('count')} | {_cell(reason)} |")
    evidence = summary.get("target_evidence") or {}
    if any(evidence.values()):
        lines += ["", "What the non-gold targets rest on (the judge rule that proved each right):",
                  "", "| target | proved by | rows |", "| --- | --- | ---: |"]
        lines += [f"| {source} | `{_cell(rule)}` | {count} |"
                  for source, rules in evidence.items() for rule, count in rules.items()]
    lines.append("")
    lines.append(f"- paraphrases that copied the gold: {summary.get('paraphrase_copies', '?')}")
    calibration = summary.get("judge_calibration")
    if calibration:
        lines.append(f"- LLM judge calibration: {_cell(calibration.get('description'))}")
    untrusted = summary.get("rows_without_trusted_verdict")
    if untrusted:
        lines.append(f"- rows the alias rules could not decide and the LLM judge was not trusted to: "
                     f"{untrusted} (not admitted as the model's answer)")
    return "\n".join(lines)


def _judge_name(run: RunFiles) -> str:
    judge = (run.resolved.get("task") or {}).get("judge") or {}
    return str(judge.get("kind") or run.task)


def task_card(run: RunFiles) -> dict[str, Any]:
    """The task file's ``card`` block, as the run recorded it (a run made before tasks
    were files: today's built-in task of that name)."""
    card = run.summary.get("task_card")
    if card is None:
        card = load_task(run.task).card if run.task in builtin_names() else {}
    return dict(card)


def task_folder(run: RunFiles) -> Path:
    recorded = run.summary.get("task_file")
    return Path(recorded).parent if recorded else prompts_dir() / run.task


def card_metadata(run: RunFiles) -> dict[str, Any]:
    license_id = task_card(run).get("license") or "other"
    return {
        "language": ["en"],
        "license": license_id,
        "size_categories": [size_category(run.table.num_rows)],
        "task_categories": task_card(run).get("task_categories") or ["text-generation"],
        "pretty_name": f"S3FT {run.task} training set ({run.options.get('model', 'unknown model')})",
        "tags": ["s3ft", "self-training", "synthetic", "trl", run.task],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": "train", "path": DATA_FILE}]}],
    }


def render_card(run: RunFiles, repo_id: str) -> str:
    """The README.md text: YAML metadata, then the Markdown of ``card.md.jinja``. Row and
    option text is escaped here (``_cell``); the template only places it."""
    from huggingface_hub import DatasetCardData

    summary, rows = run.summary, run.table.num_rows
    meta = card_metadata(run)
    paper = summary.get("paper_shares_pct") or {}
    sources = summary.get("sources") or {}
    mix = [(source, (sources.get(source) or {}).get("count"),
            _pct((sources.get(source) or {}).get("share_pct")), _pct(paper.get(source)))
           for source in [*SOURCES, *sorted(set(sources) - set(SOURCES))]]
    resolved, options = run.resolved, run.options
    body = _CARD_TEMPLATE.render(
        pretty_name=meta["pretty_name"], task=run.task, rows=rows,
        model=_cell(options.get("model", "?")),
        model_accuracy=_pct(summary.get("model_accuracy_pct")),
        model_admitted=_pct(summary.get("model_admitted_pct")),
        rows_with_errors=summary.get("rows_with_errors", "?"),
        license_text=task_card(run).get("license_text") or "see the source dataset",
        mix=mix, shift_line=_shift_line(summary), admission=admission_section(summary),
        audit=audit_markdown(summary),
        origin=task_card(run).get("origin") or "see the data source below",
        data_source=_cell(resolved.get("data_source", options.get("data"))),
        limit=options.get("limit"),
        gold_left_out=(summary.get("gold_check") or {}).get("rows_left_out", "not recorded"),
        fingerprint=_cell(resolved.get("model_fingerprint", "?")), decoding=_decoding(run),
        max_tokens=options.get("max_tokens", "?"), max_model_len=options.get("max_model_len", "?"),
        dtype=resolved.get("dtype", options.get("dtype", "?")), loop_guard=_loop_guard_line(run),
        templates=_template_section(run), judge=_judge_section(run),
        columns=[(name, _cell(COLUMN_DOCS.get(name, ""))) for name in run.table.column_names],
        repo_id=repo_id, safe_name=repo_id.replace("/", "--"), data_file=DATA_FILE,
        config=_fence(run.config_text, "yaml"))
    return f"---\n{DatasetCardData(**meta).to_yaml()}\n---\n{body.lstrip()}"
