"""A task is a folder of data: ``task.yaml`` beside its Jinja prompt templates.

The built-in tasks (``prompts/gsm8k``, ``prompts/mbpp``, ``prompts/nq``) are folders of the
same kind. :func:`read_task` parses and checks a task file *before* any data is read or any
engine starts, and every error names the file, the key and what to do. The keys:

- ``name``, ``description``;
- ``data``: ``path`` (one file or folder for every split) and/or ``split`` (files per split,
  or a rule: ``{by: id_range | hash | column, ...}``), ``hub`` (``{id, config}``, read
  through ``datasets.load_dataset`` when no local file is there);
- ``id_field``; ``fields`` (template variable -> source column); ``types`` (variable ->
  ``str | int | list``); ``prepare`` (a ``module:function`` adding derived variables);
- ``prompts`` (``answer``, ``paraphrase``, optional ``system`` and ``fewshot``), ``gold``;
- ``judge`` (``kind`` plus the kind's options, see :mod:`judges`);
- ``generation`` (``max_tokens``, ``stop``, ``keep_stop``: the stop strings that belong to
  the target format, kept at the end of an answer, where every other stop string is cut
  off; and the answers' sampling defaults: ``samples``,
  ``pick``, ``temperature``, ``top_p``, ``top_k``, ``min_p``, ``repetition_penalty``, which
  the command line and ``--config`` override); ``card`` (licence, origin, the paper's shares).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import yaml

import judges
from judges.templates import ChatPrompt, PromptTemplate, gold_environment, render_sandboxed
from judges.user_code import UserCodeError, callable_digest, load_callable
from pipeline import progress
from pipeline.config import data_dir
from pipeline.errors import UsageError
from pipeline.sampling import DEFAULTS as SAMPLING_DEFAULTS
from pipeline.sampling import TYPES as SAMPLING_TYPES
from pipeline.sampling import problem as sampling_problem

TASK_FILE = "task.yaml"
TOP_KEYS = {"name", "description", "data", "id_field", "fields", "types", "prepare", "prompts",
            "gold", "judge", "generation", "card"}
DATA_KEYS = {"path", "split", "hub"}
PROMPT_KEYS = {"answer", "paraphrase", "system", "fewshot"}
GENERATION_KEYS = {"max_tokens", "stop", "keep_stop", *SAMPLING_DEFAULTS}
CARD_KEYS = {"license", "license_text", "origin", "task_categories", "paper_shares"}
SPLIT_RULES = {"id_range": {"by", "field", "ranges"}, "hash": {"by", "salt", "shares"},
               "column": {"by", "column"}}
TYPES = {"str": str, "int": int, "list": list}
#: Options each judge kind takes (beyond ``kind``); see :mod:`judges` for what they mean.
JUDGE_OPTIONS: dict[str, set[str]] = {
    "math": {"gold_answer", "require_final_line", "admit_unproven_wording", "prove_own_answers"},
    "alias": {"llm"},
    "exact": {"gold_answer"},
    "regex": {"gold_answer", "pattern", "flags", "group"},
    "choice": {"gold_answer", "labels", "choices"},
    "python_tests": {"timeout_s", "memory_mb", "challenge_tests"},
    "module": {"path", "callable"},
    "llm": {"prompt", "gold_answer"},
}
#: Variables a judge kind reads from every row (map your columns to them under ``fields``).
JUDGE_NEEDS = {"alias": ("answers",), "python_tests": ("code", "test_list")}
DEFAULT_MAX_TOKENS = 384


class TaskFileError(UsageError):
    """A task file that cannot be used; the message names the file, the key and the fix."""


class UntrustedCodeError(UsageError):
    """A task folder names Python of its own and the user has not said they trust it."""


@dataclass(frozen=True)
class TaskSpec:
    """A parsed, checked task file: everything the pipeline needs to know about a task."""

    name: str
    file: Path
    description: str
    data: dict[str, Any]
    id_field: str | None
    fields: dict[str, str]
    types: dict[str, type]
    prepare: str | None
    prepare_adds: tuple[str, ...]
    answer_prompt: ChatPrompt
    paraphrase_prompt: ChatPrompt
    gold: str
    judge_kind: str
    judge_options: dict[str, Any]
    max_tokens: int
    stop: tuple[str, ...]
    card: dict[str, Any] = field(default_factory=dict)
    #: The answers' sampling settings the task file gives (``generation.samples``, ...).
    sampling: dict[str, Any] = field(default_factory=dict)
    #: Stop strings that belong to the target format (MBPP's ``[DONE]``): kept at the end of
    #: an answer. Every other stop string (NQ's blank line) is cut off before it is judged.
    keep_stop: tuple[str, ...] = ()
    #: The task folder's Python (``prepare.callable``, a ``module`` judge) may run: a
    #: built-in task, or one the user trusts (``--trust-task-code``). Otherwise it is never
    #: imported, and a run that needs it is refused.
    trusted: bool = False

    @property
    def dropped_stops(self) -> tuple[str, ...]:
        """The stop strings removed from the end of every generated text."""
        return tuple(s for s in self.stop if s not in self.keep_stop)

    @property
    def folder(self) -> Path:
        return self.file.parent

    @property
    def required_fields(self) -> tuple[str, ...]:
        """The template variables every row must have (non-empty)."""
        return tuple(self.fields)

    @property
    def split_rule(self) -> dict[str, Any] | None:
        split = self.data.get("split")
        return split if isinstance(split, dict) and "by" in split else None

    @property
    def splits(self) -> list[str]:
        split = self.data.get("split")
        if isinstance(split, dict) and "by" not in split:
            return sorted(split)
        rule = self.split_rule
        if rule is None:
            return ["train"]
        if rule["by"] == "id_range":
            return sorted(rule["ranges"])
        if rule["by"] == "hash":
            return sorted(rule["shares"])
        return []  # a column rule: whatever the column holds

    @property
    def llm_judge(self) -> bool:
        return self.judge_kind == "llm" or (self.judge_kind == "alias"
                                            and bool(self.judge_options.get("llm")))

    @cached_property
    def gold_template(self) -> jinja2.Template:
        return gold_environment().from_string(self.gold)

    def gold_text(self, row: dict[str, Any]) -> str:
        return render_sandboxed(self.gold_template, f"{self.file}: key 'gold'", **row)

    @cached_property
    def _rule_judge(self) -> Any:
        return self.make_judge()

    def gold_response(self, row: dict[str, Any]) -> str:
        """The SFT target of ``row`` (a source row with the task's variables): the ``gold``
        template, written in the task's target format by its judge."""
        return self._rule_judge.format_gold(self.gold_text(row), row)

    def prepare_row(self) -> Any:
        if not self.prepare:
            return None
        self.check_trust()
        return load_callable(self.prepare, self.folder, f"{self.file}: key 'prepare.callable'")

    def check_trust(self) -> None:
        """Refuse a task whose Python would have to run untrusted (as ``datasets`` asks for
        ``trust_remote_code``: a task folder downloaded from anywhere is code). Called before
        any work, and again where the code would load."""
        code = [("prepare.callable", self.prepare)] if self.prepare else []
        if self.judge_kind == "module":
            code.append(("judge.path", str(self.judge_options.get("path"))))
        if code and not self.trusted:
            key, spec = code[0]
            raise UntrustedCodeError(
                f"{self.file}: key {key!r} names Python code ({spec!r}); s3ft runs a task "
                "folder's code only when you trust it: read it, then pass --trust-task-code "
                "(or trust_task_code: true in --config)")

    def load_settings(self) -> dict[str, Any]:
        """What the load stage's output depends on (part of its key): editing a prompt or
        the judge leaves the loaded rows alone."""
        prepare = self.prepare and callable_digest(self.prepare, self.folder)
        return {"name": self.name, "data": self.data, "id_field": self.id_field,
                "fields": self.fields, "types": sorted(self.types), "prepare": prepare,
                "gold": self.gold}

    def make_judge(self, **runtime: Any) -> Any:
        """The task's judge; ``runtime`` carries the LLM judge's backend and limits."""
        if self.judge_kind == "module":
            self.check_trust()
        judge = judges.build(self.judge_kind, self.judge_options, self.folder, **runtime)
        judge.on_progress = progress.advance  # a slow judge (MBPP's sandbox) moves the bar
        return judge


class _StrictLoader(yaml.SafeLoader):
    """YAML as a task file may use it: a key given twice is an error (not "the last one
    wins"), and anchors and aliases are refused (a 1.4 KB "billion laughs" file expanded
    until memory ran out)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) "
                                 "are not allowed in a task file; write the value out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        keys = [self.construct_object(key, deep=True) for key, _ in node.value]
        repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
        if repeated:
            raise yaml.YAMLError(f"line {node.start_mark.line + 1}: key {repeated[0]!r} is given "
                                 "twice; keep one")
        return super().construct_mapping(node, deep)


def _check_callable(spec: str, file: Path, key: str, trusted: bool) -> None:
    """A trusted task's callable loads now, not when the first row reaches it; an untrusted
    task's is only checked for its shape (a file inside the folder), never imported."""
    target = spec.rsplit(":", 1)[0]
    if ":" in spec and target.endswith(".py") and not Path(target).is_absolute():
        _inside(file.parent, target, file, key)
    if not trusted:
        if ":" not in spec:
            raise TaskFileError(f"{file}: key {key!r}: {spec!r} must read 'module:function' or "
                                "'file.py:function'")
        if target.endswith(".py") and not (file.parent / target).is_file():
            raise TaskFileError(f"{file}: key {key!r}: {file.parent / target} does not exist; "
                                "put the file beside task.yaml")
        return
    try:
        load_callable(spec, file.parent, f"{file}: key {key!r}")
    except UserCodeError as exc:
        raise TaskFileError(str(exc)) from None


def _expect(value: Any, kind: type | tuple[type, ...], file: Path, key: str, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise TaskFileError(f"{file}: key {key!r} must be {what}, not {type(value).__name__} "
                            f"({str(value)[:60]!r})")
    return value


def _only(mapping: Any, allowed: set[str], file: Path, key: str) -> None:
    """``mapping`` is a mapping (not a string, whose letters would read as keys) holding only
    ``allowed`` keys."""
    _expect(mapping, dict, file, key or "(the whole file)", "a mapping of keys to values")
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        where = f"under {key!r}" if key else "at the top level"
        raise TaskFileError(f"{file}: unknown key {unknown[0]!r} {where}; allowed keys: "
                            f"{', '.join(sorted(allowed))}")


def _inside(folder: Path, relative: str, file: Path, key: str) -> Path:
    """``folder / relative``, refused unless it resolves inside the task folder (symlinks
    followed): a template is sent to the model and stored in every row, so a path such as
    ``../../etc/passwd`` would publish a file of the user's machine."""
    path = folder / relative
    if not path.resolve().is_relative_to(folder.resolve()):
        raise TaskFileError(f"{file}: key {key!r}: {relative!r} resolves outside the task folder "
                            f"({path.resolve()}); put the template inside {folder}")
    return path


def _variables(source: str, file: Path, key: str) -> set[str]:
    try:
        parsed = gold_environment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TaskFileError(f"{file}: key {key!r}: template error at line {exc.lineno}: "
                            f"{exc.message}") from None
    return set(jinja2.meta.find_undeclared_variables(parsed))


def _prompt(folder: Path, file: Path, prompts: dict[str, Any], name: str,
            provided: set[str]) -> ChatPrompt:
    key = f"prompts.{name}"
    relative = _expect(prompts.get(name), str, file, key, f"the file name of the {name} template")
    path = _inside(folder, relative, file, key)
    if not path.is_file():
        raise TaskFileError(f"{file}: key {key!r}: {path} does not exist; put the template "
                            f"beside task.yaml")
    system = None
    if prompts.get("system") is not None:
        system_path = _inside(folder, _expect(prompts["system"], str, file, "prompts.system",
                                              "a file name"), file, "prompts.system")
        if not system_path.is_file():
            raise TaskFileError(f"{file}: key 'prompts.system': {system_path} does not exist")
        system = PromptTemplate(system_path)
    shots = prompts.get("fewshot") or []
    _expect(shots, list, file, "prompts.fewshot", "a list of {user, assistant} turns")
    for i, shot in enumerate(shots):
        if not (isinstance(shot, dict) and set(shot) == {"user", "assistant"}
                and all(isinstance(v, str) for v in shot.values())):
            raise TaskFileError(f"{file}: key 'prompts.fewshot[{i}]' must be {{user: <text>, "
                                f"assistant: <text>}}")
    prompt = ChatPrompt(PromptTemplate(path), system,
                        tuple((s["user"], s["assistant"]) for s in shots))
    for part in prompt.templates():
        missing = sorted(_variables(part.text, file, key) - provided)
        if missing:
            raise TaskFileError(
                f"{file}: template {part.path.name} uses {{{{ {missing[0]} }}}}, which no field "
                f"provides; add '{missing[0]}: <column>' under 'fields' (provided: "
                f"{', '.join(sorted(provided))})")
    return prompt


def _data(data: Any, file: Path) -> dict[str, Any]:
    data = _expect(data, dict, file, "data", "a mapping (path, split or hub)")
    _only(data, DATA_KEYS, file, "data")
    if not ({"path", "hub"} & set(data)) and not isinstance(data.get("split"), dict):
        raise TaskFileError(f"{file}: key 'data' needs 'path' (a file or folder), 'split' "
                            f"(files per split) or 'hub' ({{id: owner/name}})")
    if "path" in data:
        _expect(data["path"], str, file, "data.path", "a file or folder path")
    if "hub" in data:
        hub = _expect(data["hub"], dict, file, "data.hub", "{id: owner/name, config: ...}")
        _only(hub, {"id", "config"}, file, "data.hub")
        _expect(hub.get("id"), str, file, "data.hub.id", "a Hub dataset id (owner/name)")
    split = data.get("split")
    if split is None:
        return data
    _expect(split, dict, file, "data.split", "files per split or a rule {by: ...}")
    if "by" not in split:
        for name, path in split.items():
            _expect(path, str, file, f"data.split.{name}", "a file path")
        return data
    rule = SPLIT_RULES.get(split["by"]) if isinstance(split["by"], str) else None
    if rule is None:
        raise TaskFileError(f"{file}: key 'data.split.by': {split['by']!r} is not a split rule; "
                            f"use one of {', '.join(SPLIT_RULES)}")
    _only(split, rule, file, "data.split")
    missing = sorted(rule - set(split))
    if missing:
        raise TaskFileError(f"{file}: key 'data.split' (by {split['by']}) needs {missing[0]!r}")
    if split["by"] == "hash":
        shares = _expect(split["shares"], dict, file, "data.split.shares", "{split: share}")
        for name, share in shares.items():
            _expect(share, (int, float), file, f"data.split.shares.{name}", "a share from 0 to 1")
        if abs(sum(shares.values()) - 1) > 1e-9:
            raise TaskFileError(f"{file}: key 'data.split.shares' must add up to 1")
    if split["by"] == "id_range":
        ranges = _expect(split["ranges"], dict, file, "data.split.ranges",
                         "{split: [first id, last id or null]}")
        for name, bounds in ranges.items():
            ok = isinstance(bounds, list) and len(bounds) == 2 and all(
                b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in bounds)
            if not ok:
                raise TaskFileError(f"{file}: key 'data.split.ranges.{name}' must be [first id, "
                                    f"last id or null], not {bounds!r}")
    return data


def _judge(judge: Any, file: Path, provided: set[str],
           trusted: bool) -> tuple[str, dict[str, Any]]:
    judge = _expect(judge, dict, file, "judge", "a mapping with a 'kind'")
    kind = judge.get("kind")
    if kind not in JUDGE_OPTIONS:
        raise TaskFileError(f"{file}: key 'judge.kind': {kind!r} is not a judge kind; use one "
                            f"of {', '.join(JUDGE_OPTIONS)}")
    options = {k: v for k, v in judge.items() if k != "kind"}
    _only(options, JUDGE_OPTIONS[kind], file, "judge")
    for needed in JUDGE_NEEDS.get(kind, ()):
        if needed not in provided:
            raise TaskFileError(f"{file}: judge kind {kind!r} reads the variable {needed!r}; "
                                f"add '{needed}: <column>' under 'fields'")
    if "gold_answer" in options:
        gold_answer = _expect(options["gold_answer"], str, file, "judge.gold_answer", "a template")
        missing = sorted(_variables(gold_answer, file, "judge.gold_answer") - provided)
        if missing:
            raise TaskFileError(f"{file}: key 'judge.gold_answer' uses {{{{ {missing[0]} }}}}, "
                                f"which no field provides")
    if kind == "regex":
        pattern = _expect(options.get("pattern"), str, file, "judge.pattern", "a regular expression")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise TaskFileError(f"{file}: key 'judge.pattern': not a valid regex ({exc})") from None
        flags = options.get("flags") or []
        for flag in flags.split() if isinstance(flags, str) else _expect(
                flags, list, file, "judge.flags", "a list of IGNORECASE, MULTILINE, DOTALL"):
            if str(flag).upper() not in ("IGNORECASE", "MULTILINE", "DOTALL"):
                raise TaskFileError(f"{file}: key 'judge.flags': {flag!r} is not one of "
                                    "IGNORECASE, MULTILINE, DOTALL")
        if options.get("group") is not None:
            _expect(options["group"], int, file, "judge.group", "a whole number (a regex group)")
    for key in ("require_final_line", "admit_unproven_wording", "prove_own_answers"):
        if kind == "math" and key in options:
            _expect(options[key], bool, file, f"judge.{key}", "true or false")
    if kind == "module":
        path = _expect(options.get("path"), str, file, "judge.path", "a Python file beside task.yaml")
        options.setdefault("callable", "judge")
        _check_callable(f"{path}:{options['callable']}", file, "judge.path", trusted)
    if kind == "alias" and options.get("llm"):
        llm = _expect(options["llm"], dict, file, "judge.llm", "{prompt: judge.jinja}")
        _only(llm, {"prompt"}, file, "judge.llm")
        if not _inside(file.parent, str(llm.get("prompt")), file, "judge.llm.prompt").is_file():
            raise TaskFileError(f"{file}: key 'judge.llm.prompt': {llm.get('prompt')!r} is not a "
                                f"template file beside task.yaml")
    if kind == "llm" and not _inside(file.parent, str(options.get("prompt")), file,
                                     "judge.prompt").is_file():
        raise TaskFileError(f"{file}: key 'judge.prompt': {options.get('prompt')!r} is not a "
                            f"template file beside task.yaml (the LLM judge's prompt)")
    return kind, options


def read_task(path: Path, trusted: bool = False) -> TaskSpec:
    """Parse and check a task file (``path`` is the file or its folder). ``trusted``: its
    Python may be imported (:attr:`TaskSpec.trusted`)."""
    file = path / TASK_FILE if path.is_dir() else path
    if not file.is_file():
        raise TaskFileError(f"--task {path}: no {TASK_FILE} there; a task is a folder holding "
                            f"{TASK_FILE} (see docs/tasks.md, 'Your own task')")
    try:
        raw = yaml.load(file.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise TaskFileError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from None
    raw = _expect(raw, dict, file, "(top level)", "a mapping of keys")
    _only(raw, TOP_KEYS, file, "")
    for key in ("name", "data", "fields", "prompts", "gold", "judge"):
        if key not in raw:
            raise TaskFileError(f"{file}: key {key!r} is missing (see docs/tasks.md, 'Your own task')")
    name = _expect(raw["name"], str, file, "name", "a name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise TaskFileError(f"{file}: key 'name': {name!r} must be letters, digits, '_', '.', '-'")
    fields = _expect(raw["fields"], dict, file, "fields", "{variable: source column}")
    for var, column in fields.items():
        _expect(column, str, file, f"fields.{var}", "a source column name")
    types = {}
    for var, type_name in _expect(raw.get("types") or {}, dict, file, "types",
                                  "{variable: str, int or list}").items():
        if type_name not in TYPES:
            raise TaskFileError(f"{file}: key 'types.{var}': use one of {', '.join(TYPES)}")
        types[var] = TYPES[type_name]
    prepare = raw.get("prepare") or {}
    _only(prepare, {"callable", "adds"}, file, "prepare")
    adds = tuple(_expect(prepare.get("adds") or [], list, file, "prepare.adds",
                         "a list of the variables it adds"))
    if prepare:
        _check_callable(_expect(prepare.get("callable"), str, file, "prepare.callable",
                                "'module:function'"), file, "prepare.callable", trusted)
    provided = set(fields) | set(adds)
    unknown_types = sorted(set(types) - provided)
    if unknown_types:
        raise TaskFileError(f"{file}: key 'types.{unknown_types[0]}': no such variable; name one "
                            f"of 'fields' ({', '.join(sorted(provided))})")
    prompts = _expect(raw["prompts"], dict, file, "prompts", "{answer: ..., paraphrase: ...}")
    _only(prompts, PROMPT_KEYS, file, "prompts")
    answer = _prompt(file.parent, file, prompts, "answer", provided)
    paraphrase = _prompt(file.parent, file, prompts, "paraphrase", provided | {"gold"})
    gold = _expect(raw["gold"], str, file, "gold", "a template, e.g. \"{{ answer }}\"")
    missing = sorted(_variables(gold, file, "gold") - provided)
    if missing:
        raise TaskFileError(f"{file}: key 'gold' uses {{{{ {missing[0]} }}}}, which no field "
                            f"provides; add '{missing[0]}: <column>' under 'fields'")
    kind, options = _judge(raw["judge"], file, provided, trusted)
    generation = raw.get("generation") or {}
    _only(generation, GENERATION_KEYS, file, "generation")
    max_tokens = _expect(generation.get("max_tokens", DEFAULT_MAX_TOKENS), int, file,
                         "generation.max_tokens", "a whole number")
    if max_tokens < 1:
        raise TaskFileError(f"{file}: key 'generation.max_tokens' {max_tokens}: must be at least 1")
    stop = _expect(generation.get("stop", []), list, file, "generation.stop", "a list of strings")
    keep_stop = _expect(generation.get("keep_stop", []), list, file, "generation.keep_stop",
                        "a list of strings, each one of generation.stop")
    stray = [s for s in keep_stop if s not in stop]
    if stray:
        raise TaskFileError(f"{file}: key 'generation.keep_stop' {stray[0]!r} is not one of "
                            f"generation.stop {stop!r}; add it there or remove it here")
    sampling = _sampling(generation, file)
    card = _expect(raw.get("card") or {}, dict, file, "card", "a mapping")
    _only(card, CARD_KEYS, file, "card")
    for source, share in _expect(card.get("paper_shares") or {}, dict, file, "card.paper_shares",
                                 "{model: %, paraphrase: %, gold: %}").items():
        _expect(share, (int, float), file, f"card.paper_shares.{source}", "a percentage")
    description = _expect(raw.get("description") or "", str, file, "description", "a sentence")
    id_field = raw.get("id_field")
    if id_field is not None:
        _expect(id_field, str, file, "id_field", "a column name")
    return TaskSpec(name=name, file=file.resolve(), description=description,
                    data=_data(raw["data"], file), id_field=id_field, fields=dict(fields),
                    types=types, prepare=prepare.get("callable"), prepare_adds=adds,
                    answer_prompt=answer, paraphrase_prompt=paraphrase, gold=gold,
                    judge_kind=kind, judge_options=options, max_tokens=max_tokens,
                    stop=tuple(str(s) for s in stop), card=dict(card), sampling=sampling,
                    keep_stop=tuple(str(s) for s in keep_stop), trusted=trusted)


def _sampling(generation: dict[str, Any], file: Path) -> dict[str, Any]:
    """The sampling settings of ``generation``, each of the right type and range."""
    out = {}
    for key in SAMPLING_DEFAULTS:
        if generation.get(key) is None:
            continue
        kind = SAMPLING_TYPES[key]
        value = _expect(generation[key], kind, file, f"generation.{key}",
                        {(int,): "a whole number", (str,): "a string"}.get(kind, "a number"))
        what = sampling_problem(key, value)
        if what:
            raise TaskFileError(f"{file}: key 'generation.{key}' {value!r}: {what}")
        out[key] = value
    return out


def data_path(task: TaskSpec, path: str) -> Path:
    """A data path of the task file: ``$S3FT_DATA_DIR`` expanded (default: the project's
    ``data/``), ``~`` expanded, relative to the task's folder."""
    expanded = re.sub(r"\$\{?S3FT_DATA_DIR\}?", lambda _: str(data_dir()), path)
    resolved = Path(os.path.expanduser(os.path.expandvars(expanded)))
    return resolved if resolved.is_absolute() else task.folder / resolved


def describe(task: TaskSpec) -> dict[str, Any]:
    """What ``pipeline.tasks show`` prints and the summary records."""
    return json.loads(json.dumps({
        "name": task.name, "file": str(task.file), "description": task.description,
        "data": task.data, "splits": task.splits, "fields": task.fields,
        "judge": {"kind": task.judge_kind, **task.judge_options},
        "generation": {"max_tokens": task.max_tokens, "stop": list(task.stop),
                       "keep_stop": list(task.keep_stop), **task.sampling},
        "prompts": {"answer": task.answer_prompt.version,
                    "paraphrase": task.paraphrase_prompt.version},
        "card": task.card,
    }, default=str))
