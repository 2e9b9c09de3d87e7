"""A task folder may come from anyone: its templates render in Jinja's sandbox, and the
template files it names stay inside it (issue #38, items 1 and 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from judges.templates import PromptTemplate, UnsafeTemplateError
from pipeline.cli import main as s3ft
from pipeline.stages.load import DataError, load_rows
from pipeline.tasks import load_task
from pipeline.tasks.taskfile import TaskFileError, read_task
from tests.tasks.tasks_helpers import alias_task, edit_task, numeric_task


def hostile(marker: Path) -> list[str]:
    """Templates that reach Python's internals to create ``marker`` (run nothing: refused)."""
    return [
        # the chain from the issue: a Jinja global's function, its module's globals, os
        "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}",
        # every class of the interpreter, through a string's type
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        # a row value's class hierarchy
        "{{ question.__class__.__base__.__subclasses__() }}",
    ]


@pytest.mark.parametrize("index", range(3))
def test_a_hostile_gold_template_is_one_clear_error_and_runs_nothing(tmp_path, capsys, index):
    marker = tmp_path / "ran"
    folder = numeric_task(tmp_path / "t", rows=2)
    edit_task(folder, gold=hostile(marker)[index] + "\n#### {{ answer }}")
    task = load_task(str(folder))
    with pytest.raises(DataError, match="UnsafeTemplateError") as caught:
        load_rows(task, None, None)
    assert "key 'gold'" in str(caught.value) and str(folder / "task.yaml") in str(caught.value)
    # the command a user runs first on a downloaded folder
    assert s3ft(["tasks", "check", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0 and "may not" in err
    assert not marker.exists()


@pytest.mark.parametrize("index", range(3))
def test_a_hostile_prompt_template_raises_before_anything_is_sent(tmp_path, index):
    marker = tmp_path / "ran"
    template = tmp_path / "answer.jinja"
    template.write_text("Question: {{ question }}\n" + hostile(marker)[index])
    with pytest.raises(UnsafeTemplateError, match=str(template)):
        PromptTemplate(template).render(question="What is 2 + 2?")
    assert not marker.exists()


def test_templates_still_read_fields_and_use_filters(tmp_path):
    template = tmp_path / "t.jinja"
    template.write_text("{{ question | upper }} {{ answers | join(', ') }} "
                        "{{ gold | regex_replace('<<[^>]*>>', '') }}")
    assert PromptTemplate(template).render(question="q", answers=["a", "b"], gold="4<<2+2=4>>") \
        == "Q a, b 4"


@pytest.mark.parametrize("key, value", [
    ("answer", "../../../etc/passwd"),
    ("paraphrase", "/etc/passwd"),
    ("system", "../outside.jinja"),
])
def test_a_prompt_path_outside_the_folder_is_refused(tmp_path, key, value):
    folder = numeric_task(tmp_path / "t")
    (tmp_path / "outside.jinja").write_text("{{ question }}")
    data = yaml.safe_load((folder / "task.yaml").read_text())
    data["prompts"][key] = value
    (folder / "task.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(TaskFileError, match=rf"key 'prompts.{key}'.*resolves outside the task folder"):
        read_task(folder)


def test_a_symlinked_template_that_leaves_the_folder_is_refused(tmp_path):
    folder = numeric_task(tmp_path / "t")
    secret = tmp_path / "secret.txt"
    secret.write_text("{{ question }} the user's secret")
    (folder / "answer.jinja").unlink()
    (folder / "answer.jinja").symlink_to(secret)
    with pytest.raises(TaskFileError, match="key 'prompts.answer'.*resolves outside"):
        read_task(folder)
    # a link that stays inside the folder is fine
    (folder / "answer.jinja").unlink()
    (folder / "real.jinja").write_text("Question: {{ question }}")
    (folder / "answer.jinja").symlink_to(folder / "real.jinja")
    assert read_task(folder).answer_prompt.user.render(question="q") == "Question: q"


def test_an_llm_judge_prompt_outside_the_folder_is_refused(tmp_path):
    folder = alias_task(tmp_path / "t")
    edit_task(folder, judge={"kind": "alias", "llm": {"prompt": "../../etc/passwd"}})
    with pytest.raises(TaskFileError, match="key 'judge.llm.prompt'.*resolves outside"):
        read_task(folder)
    edit_task(folder, judge={"kind": "llm", "prompt": "../../etc/passwd"})
    with pytest.raises(TaskFileError, match="key 'judge.prompt'.*resolves outside"):
        read_task(folder)


def test_a_template_cannot_change_a_rows_values(tmp_path):
    """The immutable sandbox: a template that appends to a row's list would change what every
    later template and the judge see of the row."""
    template = tmp_path / "t.jinja"
    template.write_text("{{ answers.append('anything') }}{{ answers }}")
    answers = ["Paris"]
    with pytest.raises(UnsafeTemplateError):
        PromptTemplate(template).render(answers=answers)
    assert answers == ["Paris"]


# -- a folder's Python runs only when the user trusts it ------------------------------------

def code_folder(tmp_path: Path, where: str) -> tuple[Path, Path]:
    """A task naming Python of its own, as a ``module`` judge or a ``prepare`` callable, whose
    import leaves ``marker`` behind: the test sees whether the code ran."""
    marker = tmp_path / "imported"
    folder = alias_task(tmp_path / "t", rows=4)
    code = (f"from pathlib import Path\nPath({str(marker)!r}).touch()\n\n"
            "def judge(response, row):\n    return False\n\n"
            "def prepare(row):\n    return {**row, 'extra': 'x'}\n")
    (folder / "code.py").write_text(code)
    if where == "judge":
        edit_task(folder, judge={"kind": "module", "path": "code.py", "callable": "judge"})
    else:
        edit_task(folder, prepare={"callable": "code.py:prepare", "adds": ["extra"]})
    return folder, marker


@pytest.mark.parametrize("where", ["judge", "prepare"])
def test_a_folders_python_is_refused_without_the_opt_in_and_never_imported(tmp_path, capsys, where):
    from pipeline.config import RunConfig
    from pipeline.curate import plan
    from pipeline.errors import UsageError

    folder, marker = code_folder(tmp_path, where)
    assert s3ft(["tasks", "show", str(folder)]) == 0  # reading it runs nothing
    assert s3ft(["tasks", "check", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0
    assert "names Python code" in err and "--trust-task-code" in err and str(folder) in err
    with pytest.raises(UsageError, match="--trust-task-code"):
        plan(RunConfig(task=str(folder), limit=2))
    assert not marker.exists()
    # Trusted, it runs: the check imports it, and a run plans.
    assert s3ft(["tasks", "check", str(folder), "--trust-task-code"]) == 0
    assert marker.exists()
    plan(RunConfig(task=str(folder), limit=2, trust_task_code=True))


def test_evaluate_and_compare_ask_for_the_same_opt_in(tmp_path, capsys, monkeypatch):
    # Before, neither had the flag: a task folder with Python could not be evaluated at all.
    from pipeline.evaluation import comparison
    from pipeline.evaluation.config import CompareConfig
    from pipeline.evaluation.scoring import split_benchmarks

    folder, marker = code_folder(tmp_path, "prepare")
    for command in (["evaluate", "--benchmarks", f"{folder},mmlu"], ["compare", "--task", str(folder)]):
        assert s3ft([*command, "--out", str(tmp_path / "out")]) == 2, command
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and err.count("\n") == 0, err
        assert "names Python code" in err and "--trust-task-code" in err
    assert not marker.exists() and not (tmp_path / "out").exists()
    assert split_benchmarks(f"{folder},mmlu", trust_code=True) == ([str(folder)], ["mmlu"])

    class Curating(Exception):
        pass

    def curation_starts(what, target, config, **kwargs):
        raise Curating(config)

    monkeypatch.setattr(comparison, "in_child", curation_starts)
    settings = CompareConfig(task=str(folder), trust_task_code=True, out=str(tmp_path / "c"),
                             benchmarks="mmlu", drift_prompts=0)
    with pytest.raises(Curating) as curating:
        comparison.compare(settings)
    assert curating.value.args[0].trust_task_code is True  # the curation child is trusted too


def test_the_opt_in_is_a_config_key_too(tmp_path):
    from pipeline.config import RunConfig, parse_config

    folder, _ = code_folder(tmp_path, "judge")
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({"task": str(folder), "trust_task_code": True}))
    assert parse_config(RunConfig, ["--config", str(config_file)], "run").trust_task_code is True


def test_a_built_in_tasks_python_needs_no_opt_in():
    task = load_task("nq")  # prepare: pipeline.tasks.nq_data:prepare_row
    assert task.trusted and task.prepare
    task.check_trust()
    assert callable(task.prepare_row())


def test_a_python_file_outside_the_folder_is_refused(tmp_path):
    folder = alias_task(tmp_path / "t", rows=2)
    (tmp_path / "outside.py").write_text("def judge(response, row):\n    return True\n")
    edit_task(folder, judge={"kind": "module", "path": "../outside.py"})
    with pytest.raises(TaskFileError, match="outside"):
        load_task(str(folder), trust_code=True)
