"""Task folders: parsing and its errors, data sources, split rules, rule judges, the gold
check and the stage keys. No engine: these are fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from judges.base import Verdict
from judges.rules import ChoiceJudge, ExactJudge, RegexJudge
from pipeline.cli import main as s3ft
from pipeline.config import RunConfig
from pipeline.errors import UsageError
from pipeline.stages.gold_check import check_gold, refuse_if_mostly_failing
from pipeline.stages.load import DataError, load_rows, read_data
from pipeline.tasks import builtin_names, load_task
from pipeline.tasks.cli import main
from pipeline.tasks.taskfile import TaskFileError, read_task
from tests.tasks.tasks_helpers import (
    alias_task,
    choice_task,
    edit_task,
    gsm8k_numbers,
    module_task,
    numeric_task,
    regex_task,
    write_jsonl,
)

PROJECT = Path(__file__).resolve().parents[2]


# -- the built-in tasks are task folders -------------------------------------------------------

def test_builtin_tasks_are_folders(capsys):
    assert builtin_names() == ["gsm8k", "mbpp", "nq"]
    kinds = {name: load_task(name).judge_kind for name in builtin_names()}
    assert kinds == {"gsm8k": "math", "mbpp": "python_tests", "nq": "alias"}
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in builtin_names())
    assert main(["show", "mbpp"]) == 0
    shown = capsys.readouterr().out
    assert "kind: python_tests" in shown and "[BEGIN]" in shown  # settings and the template


def test_builtin_metadata_lives_in_the_task_files():
    cards = {name: load_task(name).card for name in builtin_names()}
    assert cards["gsm8k"]["license"] == "mit"
    assert cards["nq"]["paper_shares"] == {"model": 66.0, "paraphrase": 25.6, "gold": 8.1}
    assert "question-answering" in cards["nq"]["task_categories"]


def test_a_task_is_named_by_folder_or_file(tmp_path):
    folder = numeric_task(tmp_path / "mytask")
    assert load_task(str(folder)).name == load_task(str(folder / "task.yaml")).name == "numbers"


def test_unknown_task_names_the_choices(tmp_path):
    with pytest.raises(Exception, match="built-in tasks: gsm8k, mbpp, nq"):
        load_task("gsm9k")
    with pytest.raises(Exception, match="is not a task folder"):
        load_task(str(tmp_path / "nothing" / "task.yaml"))


# -- errors in the task file name the file and the key ----------------------------------------

@pytest.mark.parametrize(("change", "message"), [
    ({"judgement": {"kind": "math"}}, r"unknown key 'judgement' at the top level"),
    ({"judge": {"kind": "fuzzy"}}, r"key 'judge.kind': 'fuzzy' is not a judge kind"),
    ({"judge": {"kind": "math", "tolerance": 1}}, r"unknown key 'tolerance' under 'judge'"),
    ({"fields": {"question": "problem"}}, r"uses \{\{ answer \}\}, which no field provides"),
    ({"gold": "{{ solution }}"}, r"key 'gold' uses \{\{ solution \}\}"),
    ({"prompts": {"answer": "missing.jinja", "paraphrase": "paraphrase.jinja"}},
     r"key 'prompts.answer': .*missing.jinja does not exist"),
    ({"judge": {"kind": "regex", "pattern": "(unclosed"}}, r"key 'judge.pattern': not a valid regex"),
    ({"judge": {"kind": "module", "path": "nope.py"}}, r"nope.py does not exist"),
    ({"judge": {"kind": "alias"}}, r"judge kind 'alias' reads the variable 'answers'"),
    ({"data": {"path": "x.jsonl", "split": {"by": "dice"}}}, r"'dice' is not a split rule"),
    ({"generation": {"max_tokens": "many"}}, r"key 'generation.max_tokens' must be a whole number"),
    ({"generation": {"samples": 0}}, r"key 'generation.samples' 0: must be from 1 to 64"),
    ({"generation": {"top_p": "most"}}, r"key 'generation.top_p' must be a number"),
    ({"generation": {"pick": "best"}}, r"key 'generation.pick' 'best': use likeliest, first, shortest"),
    ({"generation": {"temperature": float("inf")}},
     r"key 'generation.temperature' inf: must be a finite number >= 0"),
    # wrong types that ended in the "this is a bug" line, or passed (#38 item 8)
    ({"types": ["question"]}, r"key 'types' must be \{variable"),
    ({"data": {"path": "x.jsonl", "split": {"by": ["hash"], "salt": "s", "shares": {"a": 1}}}},
     r"key 'data.split.by': \['hash'\] is not a split rule"),
    ({"data": {"path": "x.jsonl", "split": {"by": "hash", "salt": "s", "shares": {"a": "1"}}}},
     r"key 'data.split.shares.a' must be a share"),
    ({"data": {"path": "x.jsonl", "split": {"by": "id_range", "field": "pid", "ranges": "1-9"}}},
     r"key 'data.split.ranges' must be \{split"),
    ({"data": {"path": "x.jsonl", "split": {"by": "id_range", "field": "pid",
                                            "ranges": {"train": [1, "x"]}}}},
     r"key 'data.split.ranges.train' must be \[first id"),
    ({"card": {"paper_shares": "66/25/8"}}, r"key 'card.paper_shares' must be"),
    ({"generation": {"max_tokens": -5}}, r"key 'generation.max_tokens' -5: must be at least 1"),
    ({"description": ["a", "b"]}, r"key 'description' must be a sentence"),
    ({"judge": {"kind": "math", "require_final_line": "false"}},
     r"key 'judge.require_final_line' must be true or false"),
    ({"judge": {"kind": "math", "admit_unproven_wording": "yes"}},
     r"key 'judge.admit_unproven_wording' must be true or false"),
    ({"judge": {"kind": "math", "prove_own_answers": 0}},
     r"key 'judge.prove_own_answers' must be true or false"),
    ({"judge": {"kind": "regex", "pattern": "(\\d+)", "flags": ["BOGUS"]}},
     r"key 'judge.flags': 'BOGUS' is not one of"),
    ({"judge": {"kind": "regex", "pattern": "(\\d+)", "group": "1"}},
     r"key 'judge.group' must be a whole number"),
    # a string where a mapping belongs read as "unknown key 'a'" (its first letter)
    ({"generation": "abc"}, r"key 'generation' must be a mapping of keys to values, not str"),
    ({"prepare": "x"}, r"key 'prepare' must be a mapping of keys to values, not str"),
    ({"card": "mit"}, r"key 'card' must be a mapping"),
])
def test_task_file_errors_name_file_and_key(tmp_path, change, message):
    folder = numeric_task(tmp_path / "t")
    edit_task(folder, **change)
    with pytest.raises(TaskFileError, match=message) as caught:
        read_task(folder)
    assert str(folder / "task.yaml") in str(caught.value)


def test_missing_key_and_bad_yaml(tmp_path):
    folder = numeric_task(tmp_path / "t")
    data = yaml.safe_load((folder / "task.yaml").read_text())
    del data["judge"]
    (folder / "task.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(TaskFileError, match="key 'judge' is missing"):
        read_task(folder)
    (folder / "task.yaml").write_text("name: [unclosed\n")
    with pytest.raises(TaskFileError, match="not valid YAML"):
        read_task(folder)


def test_a_key_given_twice_and_yaml_aliases_are_refused(tmp_path):
    folder = numeric_task(tmp_path / "t")
    text = (folder / "task.yaml").read_text()
    (folder / "task.yaml").write_text(text + "name: other\n")  # silently the last one before
    with pytest.raises(TaskFileError, match="key 'name' is given twice"):
        read_task(folder)
    # "billion laughs": nine levels of nine aliases exhausted memory after 43 s
    laughs = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else 'x'}]\n"
                     for i in range(9))
    (folder / "task.yaml").write_text(laughs + text)
    with pytest.raises(TaskFileError, match="YAML aliases .* are not allowed"):
        read_task(folder)


def test_cli_error_is_one_line(tmp_path, capsys):
    folder = numeric_task(tmp_path / "t")
    edit_task(folder, judge={"kind": "fuzzy"})
    assert s3ft(["tasks", "check", str(folder)]) == 2  # the console script's error path
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "judge.kind" in err


# -- data: columns, sources and splits ----------------------------------------------------------

def test_fields_map_the_users_columns(tmp_path):
    task = load_task(str(numeric_task(tmp_path / "t", rows=5)))
    frame, loaded = load_rows(task, None, None)
    assert frame.height == 5 and loaded.source.endswith("data/train.jsonl")
    first = frame.row(0, named=True)
    assert first["question"] == first["problem"] and first["answer"] == first["result"]
    assert first["gold"] == f"The answer is {first['answer']}.\n#### {first['answer']}"


def test_a_missing_column_names_the_key_and_the_columns(tmp_path):
    folder = numeric_task(tmp_path / "t")
    write_jsonl(folder / "data" / "train.jsonl", [{"question": "1+1?", "answer": "2"}])
    with pytest.raises(DataError, match=r"no column 'problem' \(task file .*task.yaml, key "
                                        r"'fields.question'\); the data has answer, question"):
        load_rows(load_task(str(folder)), None, None)


def test_a_missing_value_names_the_row(tmp_path):
    folder = numeric_task(tmp_path / "t")
    write_jsonl(folder / "data" / "train.jsonl", [{"problem": "1+1?", "result": "2"},
                                                  {"problem": "", "result": "3"}])
    with pytest.raises(DataError, match=r"row at line 2 is missing problem \(for question\)"):
        load_rows(load_task(str(folder)), None, None)


def test_data_flag_overrides_and_reads_a_saved_dataset(tmp_path):
    import datasets

    task = load_task(str(numeric_task(tmp_path / "t", rows=3)))
    rows = gsm8k_numbers(6)[3:]
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(saved))
    frame, loaded = load_rows(task, str(saved), None)
    assert frame["problem"].to_list() == [r["problem"] for r in rows]
    assert "saved dataset" in loaded.source
    with pytest.raises(DataError, match=r"no split 'test' \(it has train\)"):
        read_data(task, str(saved), "test")


def test_data_flag_takes_a_folder_of_files_and_a_hub_id(tmp_path, monkeypatch):
    """A folder of data files and a Hub id both go through ``datasets.load_dataset`` (the
    Hub code path); here the id resolves to a local folder, as ``load_dataset`` does for a
    folder named like the id (there is no network)."""
    task = load_task(str(numeric_task(tmp_path / "t", rows=2)))
    rows = gsm8k_numbers(4)
    write_jsonl(tmp_path / "hub" / "myorg" / "numbers" / "train.jsonl", rows)
    monkeypatch.chdir(tmp_path / "hub")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    frame, loaded = load_rows(task, "myorg/numbers", None)
    assert frame["problem"].to_list() == [r["problem"] for r in rows]
    assert loaded.source.startswith("hub:myorg/numbers")
    with pytest.raises(DataError, match="not a Hub dataset id"):
        load_rows(task, "no/such/folder", None)


def test_a_hub_id_that_does_not_load_is_one_clear_error(tmp_path, monkeypatch):
    task = load_task(str(numeric_task(tmp_path / "t", rows=2)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"--data nobody/nothing \(a Hub dataset id\): datasets "
                                        r"could not load it"):
        load_rows(task, "nobody/nothing", None)


def test_split_rules(tmp_path):
    rows = [{"problem": f"What is {i} + 1?", "result": str(i + 1), "part": "train" if i % 3 else "test",
             "n": i} for i in range(30)]
    folder = numeric_task(tmp_path / "t")
    write_jsonl(folder / "data" / "train.jsonl", rows)
    edit_task(folder, data={"path": "data/train.jsonl", "split": {"by": "column", "column": "part"}})
    task = load_task(str(folder))
    test, _ = load_rows(task, None, None, split="test")
    assert test["n"].to_list() == [i for i in range(30) if i % 3 == 0]
    edit_task(folder, data={"path": "data/train.jsonl", "split": {
        "by": "id_range", "field": "n", "ranges": {"train": [0, 19], "test": [20, None]}}})
    task = load_task(str(folder))
    assert load_rows(task, None, None, split="test")[0]["n"].to_list() == list(range(20, 30))
    assert task.splits == ["test", "train"]
    edit_task(folder, data={"path": "data/train.jsonl", "split": {
        "by": "hash", "salt": "x:", "shares": {"test": 0.5, "train": 0.5}}})
    task = load_task(str(folder))
    halves = [set(load_rows(task, None, None, split=s)[0]["n"].to_list()) for s in ("train", "test")]
    assert halves[0] | halves[1] == set(range(30)) and not halves[0] & halves[1]
    assert halves[0] and halves[1]


def test_an_empty_split_is_a_clear_error(tmp_path):
    folder = numeric_task(tmp_path / "t")
    edit_task(folder, data={"path": "data/train.jsonl", "split": {
        "by": "id_range", "field": "result", "ranges": {"train": [10**9, None]}}})
    with pytest.raises(DataError, match=r"no rows of split 'train' among its 8 rows under the "
                                        r"task's split rule"):
        load_rows(load_task(str(folder)), None, None)


def test_an_id_range_over_a_text_field_names_the_row_and_field(tmp_path):
    # int("What is 0 + 1?") ended in the "unexpected ValueError ... bug" line.
    folder = numeric_task(tmp_path / "t")
    edit_task(folder, data={"path": "data/train.jsonl", "split": {
        "by": "id_range", "field": "problem", "ranges": {"train": [0, None]}}})
    with pytest.raises(DataError, match=r"row at line 1: field 'problem' is .{40}, but an "
                                        r"id_range split needs a whole number there \(task file "
                                        r".*task.yaml, key 'data.split'\)"):
        load_rows(load_task(str(folder)), None, None)


def test_builtin_split_by_files_reports_a_missing_split():
    with pytest.raises(DataError, match=r"--split 'dev': task 'gsm8k' has splits test, train"):
        load_rows(load_task("gsm8k"), None, None, split="dev")


# -- rule judges --------------------------------------------------------------------------------

def test_math_judge_reads_plain_number_gold(tmp_path):
    task = load_task(str(numeric_task(tmp_path / "t", rows=3)))
    judge = task.make_judge()
    row = load_rows(task, None, 1)[0].row(0, named=True)
    answer = row["answer"]
    assert judge.judge(f"So it is {answer}.\n#### {answer}", row).correct
    wrong = judge.judge("#### 123456789", row)
    assert not wrong.correct and wrong.rule.startswith("strict")
    # The plain-number gold passes its own judge; GSM8K's default reading would call it bad.
    assert check_gold(judge, [row]) == []
    assert load_task("gsm8k").make_judge().judge("#### 1", {"answer": answer}).rule == "bad_gold"


def test_exact_regex_and_choice_judges_record_their_rule():
    exact = ExactJudge("{{ answer }}")
    assert exact.judge("The Beatles", {"answer": "the beatles"}).rule == "strict:whole"
    assert exact.judge("Let me think.\nThe Beatles.", {"answer": "Beatles"}).rule == "flexible:last_line"
    assert not exact.judge("The Rolling Stones", {"answer": "Beatles"}).correct
    regex = RegexJudge(r"Answer:\s*(-?\d+)", "{{ answer }}", flags=["IGNORECASE"])
    assert regex.judge("so answer: 42", {"answer": "42"}) == Verdict(True, "regex:match", "42", "")
    assert regex.judge("no number", {"answer": "42"}).rule == "regex:no_match"
    choice = ChoiceJudge("{{ answer }}", choices="choices")
    row = {"answer": "C", "choices": ["red", "green", "blue", "black"]}
    assert choice.judge("The answer is C.", row).rule == "choice:strict"
    assert choice.judge("C", row).correct
    assert choice.judge("I think blue is right", row).rule == "choice:flexible_text"
    assert not choice.judge("(A)", row).correct
    assert choice.judge("I would pick option D, black.", row).extracted == "D"
    assert choice.judge("I am not sure.", row).rule == "choice:no_answer"
    assert choice.judge("C. blue", row).rule == "choice:strict"


def test_choice_judge_refuses_answers_that_contradict_themselves():
    """Seen in a real ARC-Challenge run of the embedded model: a label with another
    option's text, and the option list copied out."""
    choice = ChoiceJudge("{{ answer }}", choices="choices")
    row = {"answer": "A", "choices": ["the price of boards will increase",
                                      "the price of boards will decrease",
                                      "there will be more boards available",
                                      "there will be more trees for logging"]}
    conflicting = choice.judge("B. the price of boards will increase", row)
    assert (conflicting.correct, conflicting.rule) == (False, "choice:conflicting")
    listed = "\n".join(f"{label}. {text}" for label, text in zip("ABCD", row["choices"], strict=True))
    assert choice.judge(listed, row).rule == "choice:several"
    assert choice.judge("A. the price of boards will increase", row).correct
    chemistry = {"answer": "D", "choices": ["Na + Cl_{2}", "NaCL + OH", "NaOH + Cl", "NaCl + H_{2}O"]}
    assert choice.judge("The correct answer is D. NaCl + H_{2}O.", chemistry).correct
    matter = {"answer": "A", "choices": ["Air is a mixture of gases.", "Ice is a mixture of gases.",
                                         "Air is a liquid.", "Ice is a liquid."]}
    assert choice.judge("A. Air is a mixture of gases.", matter).correct
    assert ChoiceJudge("{{ answer }}").judge("A", {"answer": "2"}).reason == "expected C"
    assert choice.judge("A", {**row, "answer": "Z"}).rule == "bad_gold"


def test_module_judge_runs_the_users_function_and_its_file_is_in_the_key(tmp_path):
    folder = module_task(tmp_path / "t", rows=2)
    task = load_task(str(folder), trust_code=True)
    judge = task.make_judge()
    row = load_rows(task, None, 1)[0].row(0, named=True)
    assert judge.judge(f"It was {row['answer']}", row) == Verdict(True, "module:judge")
    assert not judge.judge("no idea", row).correct
    before = judge.settings()
    (folder / "my_judge.py").write_text((folder / "my_judge.py").read_text() + "\n# edited\n")
    assert load_task(str(folder), trust_code=True).make_judge().settings() != before


# -- the gold check -----------------------------------------------------------------------------

def test_rows_whose_gold_fails_are_listed(tmp_path, capsys):
    task = load_task(str(choice_task(tmp_path / "t", rows=8, bad_gold=True)))
    frame, _ = load_rows(task, None, None)
    problems = check_gold(task.make_judge(), frame.to_dicts())
    assert [rid for rid, _ in problems] == [frame["id"][-1]]
    assert "bad_gold" in problems[0][1]
    assert main(["check", str(task.file)]) == 0
    out = capsys.readouterr().out
    assert "1 fail and would be left out of a run" in out and frame["id"][-1] in out


def test_a_task_whose_gold_mostly_fails_is_refused(tmp_path):
    folder = numeric_task(tmp_path / "t")
    edit_task(folder, judge={"kind": "math"})  # GSM8K's reading: these answers have no '####'
    task = load_task(str(folder))
    frame, _ = load_rows(task, None, None)
    problems = check_gold(task.make_judge(), frame.to_dicts())
    assert len(problems) == frame.height
    with pytest.raises(Exception, match=r"the gold answer of 8 of 8 rows fails the task's own "
                                        r"judge .*pipeline.tasks check"):
        refuse_if_mostly_failing(task.name, str(task.file), frame.height, problems)


def test_other_kinds_pass_their_own_gold(tmp_path):
    for make in (alias_task, regex_task, module_task, choice_task):
        task = load_task(str(make(tmp_path / make.__name__, rows=6)), trust_code=True)
        frame, _ = load_rows(task, None, None)
        assert check_gold(task.make_judge(), frame.to_dicts()) == [], task.name


# -- stage keys follow the task file ------------------------------------------------------------

def keys(folder: Path) -> dict[str, str]:
    from pipeline.curate import plan

    return plan(RunConfig(task=str(folder), limit=4, shard_size=4)).keys


def test_editing_a_task_reruns_exactly_what_it_changes(tmp_path):
    folder = numeric_task(tmp_path / "t")
    base = keys(folder)
    assert keys(folder) == base
    edit_task(folder, generation={"max_tokens": 100})
    shorter = keys(folder)
    assert shorter["load"] == base["load"] and shorter["generate"] != base["generate"]
    edit_task(folder, generation={"max_tokens": 160},
              judge={"kind": "math", "gold_answer": "{{ answer }}", "require_final_line": False})
    rejudged = keys(folder)
    assert (rejudged["load"], rejudged["generate"]) == (base["load"], base["generate"])
    assert rejudged["judge"] != base["judge"]
    edit_task(folder, judge={"kind": "math", "gold_answer": "{{ answer }}"},
              gold="#### {{ answer }}")
    regold = keys(folder)
    assert regold["load"] != base["load"]
    (folder / "answer.jinja").write_text((folder / "answer.jinja").read_text() + " Be brief.")
    edit_task(folder, gold="The answer is {{ answer }}.\n#### {{ answer }}")
    reworded = keys(folder)
    assert reworded["load"] == base["load"] and reworded["generate"] != base["generate"]


def test_the_task_sets_max_tokens_unless_the_command_line_does(tmp_path):
    from pipeline.curate import plan

    folder = numeric_task(tmp_path / "t")
    assert plan(RunConfig(task=str(folder), limit=2)).stages[0].sampling.max_tokens == 160
    assert plan(RunConfig(task=str(folder), limit=2, max_tokens=20)).stages[0].sampling.max_tokens == 20
    assert plan(RunConfig(task="mbpp", limit=2)).stages[0].sampling.stop == ("[DONE]",)


def test_the_task_sets_sampling_unless_the_command_line_does(tmp_path):
    from pipeline.curate import plan

    folder = numeric_task(tmp_path / "t")
    edit_task(folder, generation={"max_tokens": 160, "samples": 4, "top_p": 0.9, "pick": "first"})
    stages = {s.name: s for s in plan(RunConfig(task=str(folder), limit=2)).stages}
    sampling = stages["generate"].sampling
    assert (sampling.n, sampling.temperature, sampling.top_p, sampling.seed) == (4, 0.7, 0.9, 0)
    assert stages["admit"].pick == "first" and stages["judge"].samples == 4
    assert stages["paraphrase"].sampling.n == 1  # paraphrases stay one greedy rewrite
    given = plan(RunConfig(task=str(folder), limit=2, samples=2, temperature=1.0, pick="shortest"))
    stages = {s.name: s for s in given.stages}
    assert (stages["generate"].sampling.n, stages["generate"].sampling.temperature) == (2, 1.0)
    assert stages["admit"].pick == "shortest"


def test_greedy_with_several_samples_is_refused_where_it_was_written(tmp_path):
    from pipeline.curate import plan

    folder = numeric_task(tmp_path / "t")
    edit_task(folder, generation={"samples": 4, "temperature": 0})
    with pytest.raises(UsageError, match=r"task.yaml: generation.temperature 0 with 4 samples per "
                                         r"prompt \(task file\): greedy decoding gives one answer"):
        plan(RunConfig(task=str(folder), limit=2))
    # The command line's temperature wins over the task file's.
    assert plan(RunConfig(task=str(folder), limit=2, temperature=0.5)).stages[0].sampling.n == 4
    with pytest.raises(UsageError, match=r"--temperature 0 with 4 samples per prompt \(task file\)"):
        plan(RunConfig(task=str(folder), limit=2, temperature=0.0))


def test_system_prompt_and_fewshot_turns(tmp_path):
    folder = numeric_task(tmp_path / "t")
    (folder / "system.jinja").write_text("You are a careful math tutor.")
    edit_task(folder, prompts={"answer": "answer.jinja", "paraphrase": "paraphrase.jinja",
                               "system": "system.jinja",
                               "fewshot": [{"user": "1+1?", "assistant": "1+1=2\n#### 2"}]})
    task = load_task(str(folder))
    messages = task.answer_prompt.messages(question="2+2?")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"].endswith("Problem: 2+2?")
    assert "+" in task.answer_prompt.version


# -- shipped as package data --------------------------------------------------------------------

@pytest.mark.slow
def test_a_wheel_finds_every_builtin_task(tmp_path):
    """``pip wheel .``, installed into a fresh environment, run outside the checkout."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(PROJECT)], check=True, timeout=600)
    wheel = next(wheels.glob("s3ft-*.whl"))
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    site = next(fresh.glob("lib/python*/site-packages"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, timeout=600)
    # The project's dependencies come from this environment's site-packages; the .pth line
    # adds that folder as a plain path, so the checkout's editable install is not seen.
    import polars

    deps = Path(polars.__file__).resolve().parents[1]
    (site / "deps.pth").write_text(f"{deps}\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    python = fresh / "bin" / "python"
    where = subprocess.run([str(python), "-c", "import pipeline, prompts; print(pipeline.__file__)"],
                           cwd=work, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(site)), where.stdout
    listed = subprocess.run([str(python), "-m", "pipeline.tasks", "list"], cwd=work,
                            capture_output=True, text=True, check=True)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["gsm8k", "mbpp", "nq"]
    checked = subprocess.run([str(python), "-m", "pipeline.tasks", "check", "nq", "--limit", "20"],
                             cwd=work, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "the gold of 20 rows passes" in checked.stdout
    shown = subprocess.run([str(python), "-m", "pipeline.tasks", "show", "mbpp"], cwd=work,
                           capture_output=True, text=True, check=True)
    assert str(site) in shown.stdout and "[BEGIN]" in shown.stdout


def test_the_readme_example_task_checks(capsys):
    assert main(["check", str(PROJECT / "docs" / "examples" / "mytask")]) == 0
    out = capsys.readouterr().out
    assert "8 rows of split 'train'" in out and "the gold of 8 rows passes; 0 fail" in out
    readme = (PROJECT / "README.md").read_text()
    assert 'gold: "{{ solution }}\\n#### {{ answer }}"' in readme  # the README shows this file
    assert 'gold: "{{ solution }}\\n#### {{ answer }}"' in (
        PROJECT / "docs" / "examples" / "mytask" / "task.yaml").read_text()


def test_a_run_whose_gold_mostly_fails_stops_before_any_engine(tmp_path):
    from tests.conftest import run_cli

    folder = numeric_task(tmp_path / "t")
    edit_task(folder, judge={"kind": "math"})  # GSM8K's reading: these answers have no '####'
    done = run_cli("--task", str(folder), "--out", str(tmp_path / "run"), timeout=300)
    assert done.returncode == 2
    assert "the gold answer of 8 of 8 rows fails the task's own judge" in done.stderr
    assert "Traceback" not in done.stderr and "EngineCore" not in done.stderr
    assert not (tmp_path / "run" / "train.parquet").exists()


def llm_task(root: Path, rows: int) -> Path:
    from tests.tasks.tasks_helpers import nq_closed_book_rows

    folder = module_task(root, rows=1)  # the templates of a short-answer task
    data = [{"q": r["q"], "answer": r["aliases"][0]} for r in nq_closed_book_rows(rows)]
    write_jsonl(root / "qa.jsonl", data)
    (folder / "judge.jinja").write_text((PROJECT / "prompts" / "nq" / "judge.jinja").read_text())
    edit_task(folder, name="llmqa", data={"path": "qa.jsonl"},
              judge={"kind": "llm", "prompt": "judge.jinja", "gold_answer": "{{ answer }}"})
    return folder


def test_llm_judge_kind_is_calibrated_then_decides_what_the_rules_cannot(tmp_path):
    from pipeline.backends.openai_backend import OpenAIBackend
    from tests.fake_openai_server import FakeOpenAIServer, grading_judge

    task = load_task(str(llm_task(tmp_path / "t", rows=60)))
    assert task.llm_judge
    frame, _ = load_rows(task, None, None)
    rows = frame.to_dicts()
    assert check_gold(task.make_judge(), rows) == []  # the rules alone accept every gold
    with FakeOpenAIServer(responder=grading_judge) as server:
        chat = OpenAIBackend(server.base_url, server.served_model, api_key="k", timeout=5,
                             max_retries=1, backoff_base=0.01, cache_path=tmp_path / "c.sqlite")
        judge = task.make_judge(chat=chat, max_tokens=64)
        assert judge.uses_llm and judge.calibration is None
        calibration = judge.calibrate(rows, [None] * len(rows))
        assert calibration.trusted and judge.calibration is calibration
        row = rows[0]
        stated = judge.judge(row["answer"], row)
        assert stated.correct and stated.rule.startswith("heuristic")  # no LLM needed
        padded = f"As far as I know, it is {row['answer']}, I believe, though many people doubt it"
        asked = judge.judge_many([padded, "Nobody knows that."], [row, row])
        assert [v.rule for v in asked] == ["llm:correct", "llm:incorrect"]
        assert judge.usage["llm_requests"] >= 2
        assert "judge_prompt" in judge.settings() and judge.settings()["gold_answer"] == "{{ answer }}"
