"""The MBPP judge: code extraction, each verdict outcome from a concrete program, and the real
MBPP data (every reference passes its own tests; references run on other tasks' tests fail,
exactly as expected)."""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import judges
from judges.base import Verdict
from judges.mbpp import MbppJudge, check_references, extract_code, gold_response, program_source
from tests.conftest import sweep, sweep_params

REPO = Path(__file__).resolve().parents[2]

#: Reference solutions that fail their own tests, with the reason. None in this copy of
#: MBPP, provided test_setup_code runs *after* the solution (tasks 367 and 927 build their
#: test trees with the solution's own Node class).
KNOWN_BAD_REFERENCES: dict[int, str] = {}

#: Tasks whose tests call the same function name and whose references are interchangeable:
#: (a, b) means task b's reference passes task a's tests. Everything else fails or errors.
INTERCHANGEABLE = {
    (30, 338), (338, 30), (719, 930), (930, 719), (49, 154), (154, 49),
    (102, 411), (411, 102), (104, 569), (569, 104), (362, 658), (658, 362), (199, 388),
    (388, 199), (208, 759), (759, 208), (248, 704), (704, 248), (361, 966), (966, 361),
    (427, 928), (928, 427), (478, 495), (495, 478), (591, 625), (625, 591), (595, 699),
    (699, 595), (635, 940), (940, 635), (651, 872), (758, 779), (779, 758), (933, 965),
    (965, 933),
}


def mbpp_path() -> Path:
    data_dir = os.environ.get("S3FT_DATA_DIR", str(REPO / "data"))
    return Path(data_dir) / "mbpp" / "mbpp.jsonl"


def load_mbpp() -> list[dict]:
    path = mbpp_path()
    if not path.is_file():
        pytest.fail(f"MBPP data not found at {path}; set S3FT_DATA_DIR to the directory that "
                    "holds mbpp/mbpp.jsonl (e.g. S3FT_DATA_DIR=/work/shared/data)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def example(code: str, tests: list[str], setup: str = "", task_id: int = 0) -> dict:
    return {"task_id": task_id, "text": "", "code": code, "test_list": tests,
            "test_setup_code": setup, "challenge_test_list": []}


ADD = example("def add(a, b):\n    return a + b",
              ["assert add(1, 2) == 3", "assert add(2, 2) == 4"])


@pytest.fixture(scope="module")
def judge() -> MbppJudge:
    return MbppJudge(timeout_s=3.0, calibrate_timeouts=False)


# ----------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("response", "code", "rule"), [
    ("[BEGIN]\ndef f():\n    return 1\n[DONE]", "def f():\n    return 1", "strict:begin_done"),
    ("Sure!\n[BEGIN]\ndef f():\n    return 1\n[DONE]\nMore text [BEGIN]x = 2[DONE]",
     "def f():\n    return 1", "strict:begin_done"),
    ("[BEGIN]\ndef f():\n    return 1", "def f():\n    return 1", "strict:begin_no_done"),
    ("[BEGIN]\n```python\ndef f():\n    return 1\n```\n[DONE]", "def f():\n    return 1",
     "strict:begin_done"),
    ("[BEGIN]\n 'def f():\r\n    return 1' \n[DONE]", "def f():\n    return 1",
     "strict:begin_done"),
    ("[BEGIN]\n    def f():\n        return 1\n[DONE]", "def f():\n    return 1",
     "strict:begin_done"),
    ("Here:\n```python\nprint(f())\n```\nand\n```python\ndef f():\n    return 1\n```",
     "def f():\n    return 1", "strict:fenced"),
    ("```\nx = 1\n```", "x = 1", "strict:fenced"),
    ("```py\ndef f():\n    return 1", "def f():\n    return 1", "strict:fenced"),
    ("```bash\nls\n```", None, "no_code"),
    ("def f():\n    return 1\n", "def f():\n    return 1", "flexible:raw"),
    ("[BEGIN]\n[DONE]\n```python\ndef f(): return 2\n```", "def f(): return 2",
     "strict:fenced"),
    ("[BEGIN]\n[DONE]", None, "no_code"),
    ("The answer is 42.", None, "no_code"),
    ("hello", None, "no_code"),
    ("", None, "no_code"),
    ("   \n", None, "no_code"),
])
def test_extract_code(response: str, code: str | None, rule: str) -> None:
    assert extract_code(response) == (code, rule)


def test_extract_code_of_a_non_string_is_no_code() -> None:
    assert extract_code(None) == (None, "no_code")  # type: ignore[arg-type]


def test_gold_response_uses_the_prompt_format_and_round_trips() -> None:
    assert gold_response(ADD) == f"[BEGIN]\n{ADD['code']}\n[DONE]"
    assert extract_code(gold_response(ADD)) == (ADD["code"], "strict:begin_done")


def test_setup_code_runs_after_the_solution() -> None:
    source = program_source("class Node:\n    pass", {"test_setup_code": "root = Node()"})
    assert source.index("class Node") < source.index("root = Node()")
    assert program_source("x = 1", {"test_setup_code": ""}) == "x = 1\n"


# ----------------------------------------------------------------------------------------
# Outcomes, each produced by a concrete program
# ----------------------------------------------------------------------------------------
def test_registry_builds_the_judge() -> None:
    built = judges.get("mbpp", timeout_s=2.0)
    assert isinstance(built, MbppJudge)
    assert built.name == "mbpp" and built.version and built.timeout_s == 2.0


def test_pass(judge: MbppJudge) -> None:
    verdict = judge.judge(gold_response(ADD), ADD)
    assert verdict == Verdict(True, "pass", ADD["code"],
                              "[strict:begin_done] all 2 asserts passed, values checked by the judge")


def test_a_demo_main_block_is_not_run(judge: MbppJudge) -> None:
    response = ("[BEGIN]\ndef add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n"
                "    print(add(int(input()), 1))\n[DONE]")
    assert judge.judge(response, ADD).rule == "pass"


def test_fail_names_the_assert(judge: MbppJudge) -> None:
    verdict = judge.judge("[BEGIN]\ndef add(a, b):\n    return 3\n[DONE]", ADD)
    assert (verdict.correct, verdict.rule) == (False, "fail")
    assert "assert 2/2 failed: assert add(2, 2) == 4" in verdict.reason


@pytest.mark.parametrize(("response", "expected"), [
    ("[BEGIN]\ndef plus(a, b):\n    return a + b\n[DONE]", "NameError: name 'add' is not defined"),
    ("[BEGIN]\ndef add(a, b)\n    return a + b\n[DONE]", "SyntaxError"),
    ("[BEGIN]\nraise ValueError('top level')\n[DONE]", "ValueError: top level"),
    ("[BEGIN]\ndef add(a, b):\n    return a + b\nimport sys\nsys.exit(0)\n[DONE]",
     "SystemExit"),
    ("[BEGIN]\ndef add(a, b):\n    return a + b\nimport os\nos._exit(0)\n[DONE]",
     "exited with code 0 before all 2 asserts ran"),
    ("[BEGIN]\ndef add(a, b):\n    return a + b\nimport builtins, os\n"
     "builtins.print = lambda *a: None\nos._exit(0)\n[DONE]", "exited with code 0"),
])
def test_error(judge: MbppJudge, response: str, expected: str) -> None:
    verdict = judge.judge(response, ADD)
    assert (verdict.correct, verdict.rule) == (False, "error")
    assert expected in verdict.reason


def test_timeout() -> None:
    quick = MbppJudge(timeout_s=1.0, calibrate_timeouts=False)
    verdict = quick.judge("[BEGIN]\ndef add(a, b):\n    while True:\n        pass\n[DONE]", ADD)
    assert (verdict.correct, verdict.rule) == (False, "timeout")


@pytest.mark.parametrize("body", [
    "x = bytearray(8 * 1024 ** 3)",
    "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "with open('f', 'wb') as f:\n    while True:\n        f.write(b'0' * 2 ** 20)",  # EFBIG
])
def test_killed(body: str) -> None:
    small = MbppJudge(timeout_s=5.0, memory_mb=256, calibrate_timeouts=False)
    verdict = small.judge(f"[BEGIN]\n{body}\n[DONE]", ADD)
    assert (verdict.correct, verdict.rule) == (False, "killed"), verdict


@pytest.mark.parametrize("response", ["I don't know.", "", None])
def test_no_code(judge: MbppJudge, response) -> None:
    verdict = judge.judge(response, ADD)
    assert verdict == Verdict(False, "no_code", None, "no program found in the response")


def test_judge_many_keeps_the_input_order(judge: MbppJudge) -> None:
    right = gold_response(ADD)
    wrong = "[BEGIN]\ndef add(a, b):\n    return a - b\n[DONE]"
    responses = [right, wrong, "nothing", right, wrong, right]
    verdicts = judge.judge_many(responses, [ADD] * len(responses))
    assert [v.rule for v in verdicts] == ["pass", "fail", "no_code", "pass", "fail", "pass"]
    with pytest.raises(ValueError):
        judge.judge_many([right], [ADD, ADD])
    assert judge.judge_many([], []) == []


def test_time_limit_scales_with_the_reference_runtime() -> None:
    slow = example("import time\ndef f():\n    time.sleep(0.6)\n    return 1",
                   ["assert f() == 1"], task_id=-1)
    calibrated = MbppJudge(timeout_s=1.0, timeout_factor=4.0)
    limit = calibrated.time_limit(slow)
    assert limit >= 2.4  # 4 x (0.6 s + start-up)
    assert calibrated.time_limit(slow) == limit  # timed once, then cached
    slower = "[BEGIN]\nimport time\ndef f():\n    time.sleep(1.2)\n    return 1\n[DONE]"
    assert calibrated.judge(slower, slow).rule == "pass"
    assert MbppJudge(timeout_s=1.0, calibrate_timeouts=False).judge(slower, slow).rule == "timeout"


def test_check_references_reports_broken_references() -> None:
    broken = example("def add(a, b):\n    return a * b", ADD["test_list"], task_id=7)
    setup_after = example("class Node:\n    def __init__(self, v):\n        self.v = v",
                          ["assert root.v == 1"], setup="root = Node(1)", task_id=8)
    bad = check_references([ADD, broken, setup_after], MbppJudge(timeout_s=3.0))
    assert [(task_id, v.rule) for task_id, v in bad] == [(7, "fail")]


def test_missing_data_fails_with_a_clear_message(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("S3FT_DATA_DIR", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="set S3FT_DATA_DIR"):
        load_mbpp()


# ----------------------------------------------------------------------------------------
# The real MBPP data
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mbpp_rows() -> list[dict]:
    rows = load_mbpp()
    assert len(rows) == 974
    return rows


@pytest.fixture(scope="module", params=sweep_params(150))
def calibrated(request, mbpp_rows: list[dict]) -> tuple[MbppJudge, list[Verdict], list[int]]:
    """One judge, calibrated on the swept references (one run each: every reference in the
    second tier, a fixed sample in the first), shared by the slow tests; the swept indexes."""
    indexes = sweep(list(range(len(mbpp_rows))), request.param)
    real = MbppJudge()
    return real, real.calibrate([mbpp_rows[i] for i in indexes]), indexes


@pytest.mark.slow
def test_every_reference_passes_its_own_tests(mbpp_rows, calibrated) -> None:
    _, verdicts, indexes = calibrated
    swept = [mbpp_rows[i] for i in indexes]
    failing = {row["task_id"]: v.reason for row, v in zip(swept, verdicts, strict=True)
               if not v.correct}
    assert set(failing) == set(KNOWN_BAD_REFERENCES) & {row["task_id"] for row in swept}, failing
    assert check_references([]) == []


@pytest.mark.slow
def test_references_fail_the_next_tasks_tests(mbpp_rows, calibrated) -> None:
    real, _, indexes = calibrated
    swept = [mbpp_rows[i] for i in indexes]
    shifted = [gold_response(mbpp_rows[(i + 1) % len(mbpp_rows)]) for i in indexes]
    verdicts = real.judge_many(shifted, swept)
    assert Counter(v.rule for v in verdicts) == {"error": len(swept)}
    # The next task's reference never defines the function these tests call ...
    not_defined = {row["task_id"] for row, v in zip(swept, verdicts, strict=True)
                   if "NameError" in v.reason}
    # ... not even for task 126, whose function is named sum(): the function under test is
    # always the program's (judges/value_tests.py), never the builtin of the same name.
    assert {row["task_id"] for row in swept} - not_defined == set()


@pytest.mark.slow
def test_references_of_same_named_tasks_pass_only_when_interchangeable(
    mbpp_rows, calibrated
) -> None:
    real, *_ = calibrated
    by_id = {row["task_id"]: row for row in mbpp_rows}
    same_name: defaultdict[str, list[int]] = defaultdict(list)
    for row in mbpp_rows:
        name = re.match(r"assert\s*\(?\s*(?:not\s+)?\(?\s*([A-Za-z_]\w*)\s*\(", row["test_list"][0])
        same_name[name.group(1)].append(row["task_id"])
    pairs = [(a, b) for ids in same_name.values() for a in ids for b in ids if a != b]
    assert len(pairs) == 160
    verdicts = real.judge_many([gold_response(by_id[b]) for _, b in pairs],
                               [by_id[a] for a, _ in pairs])
    assert {pair for pair, v in zip(pairs, verdicts, strict=True) if v.correct} == INTERCHANGEABLE
    # Tasks 76 and 347 (squares in a rectangle) pass each other's three asserts, but their
    # references disagree on count_Squares(5, 3): 26 (right: 15 + 8 + 3) against 25; the
    # differential tests tell them apart.
    assert Counter(v.rule for v in verdicts) == {"pass": 35, "fail": 84, "error": 39,
                                                 "differs_from_reference": 2}


# ----------------------------------------------------------------------------------------
# Differential tests against the reference (#43)
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mbpp_by_id() -> dict[int, dict]:
    return {row["task_id"]: row for row in load_mbpp()}


def test_code_that_passes_only_narrow_asserts_differs_from_the_reference(mbpp_by_id) -> None:
    # Task 945, "convert the given tuples into set": every test tuple holds one-character
    # strings, so this passed; on ('', 'y', 'z') it raises where the reference returns a set.
    task = mbpp_by_id[945]
    narrow = "def tuple_to_set(tuple_tuple):\n    return {i.replace('x', str(i[0])) for i in tuple_tuple}"
    judge = MbppJudge(differential=False)
    assert judge.judge(f"[BEGIN]\n{narrow}\n[DONE]", task).correct  # the asserts alone pass it
    verdict = MbppJudge().judge(f"[BEGIN]\n{narrow}\n[DONE]", task)
    assert verdict.rule == "differs_from_reference", verdict
    assert "tuple_to_set(('', 'y', 'z')) raised IndexError" in verdict.reason
    assert "the reference returns" in verdict.reason


def test_a_different_but_equivalent_implementation_is_admitted(mbpp_by_id) -> None:
    task = mbpp_by_id[945]
    other = "def tuple_to_set(t):\n    out = set()\n    for item in t:\n        out.add(item)\n    return out"
    verdict = MbppJudge().judge(f"[BEGIN]\n{other}\n[DONE]", task)
    assert verdict.correct and verdict.rule == "pass", verdict


def test_a_wrong_value_on_a_new_input_names_the_input_and_both_values() -> None:
    task = example("def add(a, b):\n    return a + b", ["assert add(1, 2) == 3", "assert add(2, 2) == 4"])
    cheat = "def add(a, b):\n    return {(1, 2): 3, (2, 2): 4}.get((a, b), 0)"
    verdict = MbppJudge().judge(f"[BEGIN]\n{cheat}\n[DONE]", task)
    assert verdict.rule == "differs_from_reference"
    assert re.search(r"add\(2, 2\) -> 0, the reference gives 4|add\(\S+, \S+\) -> 0, the "
                     r"reference gives -?\d+", verdict.reason), verdict.reason


def test_inputs_on_which_the_reference_raises_are_never_used() -> None:
    from judges.mbpp_differential import mutated_calls

    # the reference indexes its list: an emptied list makes it raise, so no candidate is
    # asked to return anything there
    task = example("def first(xs):\n    return xs[0]", ["assert first([3, 4]) == 3"])
    assert "first([])" in [p.expression for p in mutated_calls(task["test_list"])]
    judge = MbppJudge()
    judge.calibrate([task])
    used = [probe.expression for probe, _ in judge._outcomes[next(iter(judge._outcomes))]]
    assert used and "first([])" not in used
    assert judge.judge("[BEGIN]\ndef first(xs):\n    return xs[0] if xs else None\n[DONE]",
                       task).correct
