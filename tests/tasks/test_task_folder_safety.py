"""A task folder may come from anyone: its templates render in Jinja's sandbox, and the
template files it names stay inside it (issue #38, items 1 and 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.cli import main as s3ft
from pipeline.stages.load import DataError, load_rows
from pipeline.tasks import load_task
from pipeline.tasks.taskfile import TaskFileError, read_task
from pipeline.tasks.templates import PromptTemplate, UnsafeTemplateError
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
