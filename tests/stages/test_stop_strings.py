"""A stop string that is not part of a task's target format never reaches a target; one that
is (``generation.keep_stop``, MBPP's ``[DONE]``) stays. The backends keep stop strings in
their output, as vLLM's ``include_stop_str_in_output`` does: the fake here does the same."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.backends.base import Generation, Sample
from pipeline.backends.fake import FakeBackend, last_user_message
from pipeline.config import RunConfig
from pipeline.curate import run
from pipeline.stages.generate import without_stop
from pipeline.tasks import TaskFileError, load_task
from tests.tasks.tasks_helpers import alias_task, edit_task, nq_closed_book_rows


@pytest.mark.parametrize("text, finish, expected", [
    ("Paris.\n\n", "stop", "Paris."),
    ("Paris.\n\n", "length", "Paris.\n\n"),  # cut at the limit: not a stop string
    ("Paris.", "stop", "Paris."),  # ended on end-of-sequence
    ("Paris.\n\nLyon.", "stop", "Paris.\n\nLyon."),  # only a stop string that ended the text
    (None, None, None),
])
def test_without_stop(text, finish, expected):
    assert without_stop(text, finish, ("\n\n",)) == expected


def _aliases_by_question(rows: int) -> dict[str, str]:
    return {r["q"]: r["aliases"][0] for r in nq_closed_book_rows(rows)}


def _curate(folder, reply, tmp_path) -> pl.DataFrame:
    out = tmp_path / "run"
    run(RunConfig(task=str(folder), out=str(out), progress=False, samples=2, temperature=0.7,
                  seed=3, measure_shift=False), served=FakeBackend(reply).served())
    return pl.read_parquet(out / "train.parquet")


def test_a_blank_line_stop_is_cut_from_answers_samples_and_paraphrases(tmp_path):
    folder = alias_task(tmp_path / "qa", rows=4)  # generation.stop: ["\n\n"]
    answers = _aliases_by_question(4)

    def reply(conversation):
        text = last_user_message(conversation)
        question = next(q for q in answers if q in text)
        if "Correct answer" in text:  # the paraphrase prompt
            return Generation(f"{answers[question]}.\n\n", "stop", 3, 3)
        return [Sample(f"{answers[question]}\n\n", "stop", 3), Sample("No idea.\n\n", "stop", 3)]

    train = _curate(folder, reply, tmp_path)
    assert train.height == 4
    for row in train.iter_rows(named=True):
        texts = [row["target"], row["candidate"], row["paraphrase"] or ""]
        assert not any(t.endswith("\n") for t in texts), row
    # Judged on the answer alone: an exact alias (or, for a row whose aliases are different
    # answers, not proven), never a text with a blank line after it.
    assert set(train["judge_rule"]) <= {"heuristic:exact", "needs_judge"}
    assert "model" in set(train["source"])


def test_a_stop_string_of_the_target_format_is_kept(tmp_path):
    folder = alias_task(tmp_path / "qa", rows=2)
    edit_task(folder, generation={"max_tokens": 32, "stop": ["[DONE]"], "keep_stop": ["[DONE]"]})
    assert load_task(str(folder)).dropped_stops == ()
    train = _curate(folder, lambda conversation: ["Some answer [DONE]"], tmp_path)
    assert set(train["candidate"]) == {"Some answer [DONE]"}


def test_keep_stop_must_name_a_stop_string(tmp_path):
    folder = alias_task(tmp_path / "qa", rows=2)
    edit_task(folder, generation={"max_tokens": 32, "stop": ["\n\n"], "keep_stop": ["[DONE]"]})
    with pytest.raises(TaskFileError, match=r"generation.keep_stop.*'\[DONE\]'.*generation.stop"):
        load_task(str(folder))


def test_the_built_in_tasks_say_which_stop_strings_are_theirs():
    assert load_task("mbpp").dropped_stops == () and load_task("mbpp").keep_stop == ("[DONE]",)
    assert load_task("nq").dropped_stops == ("\n\n",)
