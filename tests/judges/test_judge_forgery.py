"""The code judge cannot be fooled: programs that try to pass without computing the right
values, and programs that reach for kernel surfaces a judged program never needs.

Every forgery here passed before the value protocol (judges/value_tests.py); each must now be
judged wrong, and the judge must stay healthy (a correct program still passes afterwards).
"""

from __future__ import annotations

import textwrap

import pytest

import judges
from judges.mbpp import MbppJudge
from judges.sandbox import run_python
from judges.value_tests import classify, decode, passes, strict_equal

TASK = {
    "task_id": 9001, "text": "Return the length of the longest word.",
    "code": "def longest(words):\n    return max(len(w) for w in words)",
    "test_list": ["assert longest(['a', 'abc', 'ab']) == 3",
                  "assert longest(['hello', 'hi']) == 5",
                  "assert longest(['x']) == 1"],
}
#: A task whose tests call a builtin themselves: the program must not be able to patch it.
LEN_TASK = {
    "task_id": 9002, "text": "Repeat a string twice.",
    "code": "def twice(s):\n    return s + s",
    "test_list": ["assert len(twice('ab')) == 4", "assert int(twice('1')) == 11"],
}


@pytest.fixture(scope="module")
def judge() -> MbppJudge:
    return judges.get("mbpp", calibrate_timeouts=False, timeout_s=10)


def answer(code: str) -> str:
    return f"[BEGIN]\n{textwrap.dedent(code).strip()}\n[DONE]"


FORGERIES = {
    "always-equal object": """
        class Anything:
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
            __hash__ = object.__hash__
        def longest(words):
            return Anything()
    """,
    "int subclass that equals everything": """
        class Sly(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        def longest(words):
            return Sly(0)
    """,
    "reach the harness frame and drop the tests": """
        import sys
        def longest(words):
            frame = sys._getframe(1)
            while frame is not None and "compiled" not in frame.f_locals:
                frame = frame.f_back
            if frame is not None:
                tests = frame.f_locals["compiled"]
                nothing = compile("None", "<x>", "exec")
                for i in range(len(tests)):
                    tests[i] = ("exec", nothing, (), "")
            return 0
    """,
    "write fake records to every descriptor": """
        import os
        def longest(words):
            for fd in range(3, 64):
                for record in ("('value', 0, 3)", "('value', 1, 5)", "('value', 2, 1)",
                               "('done', '00', 3)"):
                    try:
                        os.write(fd, (record + "\\n").encode())
                    except OSError:
                        pass
            return -1
    """,
    "hook stdout.flush to forge the completion": """
        import os, sys
        class Writer:
            def write(self, text):
                return len(text)
            def flush(self):
                for fd in range(3, 64):
                    try:
                        os.write(fd, b"('value', 0, 3)\\n('value', 1, 5)\\n('value', 2, 1)\\n")
                    except OSError:
                        pass
        sys.stdout = Writer()
        def longest(words):
            return None
    """,
    "exception whose __str__ exits cleanly": """
        import os
        class Boom(Exception):
            def __str__(self):
                os._exit(0)
        def longest(words):
            raise Boom()
    """,
    "audit hook that exits on the harness's next eval": """
        import os, sys
        def hook(event, args):
            if event == "exec":
                os._exit(0)
        sys.addaudithook(hook)
        def longest(words):
            return 0
    """,
    "steal the nonce": """
        import os
        def longest(words):
            for fd in range(3, 64):
                try:
                    os.read(fd, 256)
                except OSError:
                    pass
            return 3
    """,
    "a bool where a number is expected": """
        def longest(words):
            return True
    """,
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_forgery_is_judged_wrong(judge, name):
    verdict = judge.judge(answer(FORGERIES[name]), TASK)
    assert not verdict.correct, (name, verdict)
    assert verdict.rule in ("fail", "error", "killed", "timeout"), verdict


@pytest.mark.parametrize("code", [
    # patch the builtin the test itself calls
    """
    import builtins
    builtins.len = lambda x: 4
    builtins.int = lambda x: 11
    def twice(s):
        return ""
    """,
    # or shadow it at module level
    """
    def len(x):
        return 4
    def int(x):
        return 11
    def twice(s):
        return "?"
    """,
])
def test_the_tests_own_calls_use_pristine_builtins(judge, code):
    verdict = judge.judge(answer(code), LEN_TASK)
    assert not verdict.correct and verdict.rule in ("fail", "error"), verdict


def test_after_the_attacks_a_correct_program_still_passes(judge):
    for name in sorted(FORGERIES):
        judge.judge(answer(FORGERIES[name]), TASK)
    verdict = judge.judge(answer(TASK["code"]), TASK)
    assert verdict.correct and verdict.rule == "pass", verdict
    assert judge.judge(answer(LEN_TASK["code"]), LEN_TASK).rule == "pass"


def test_a_test_of_another_shape_is_judged_by_the_harness_and_says_so(judge):
    task = {**TASK, "test_list": [*TASK["test_list"], "assert longest(['ab']) in (2, 3)"]}
    verdict = judge.judge(answer(TASK["code"]), task)
    assert verdict.correct and verdict.rule == "pass:harness"
    assert "1 of them checked by the in-sandbox harness" in verdict.reason


# -- kernel surfaces: refused by the seccomp filter -----------------------------------------

PROBE = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
NR = {"x86_64": {"keyctl": 250, "add_key": 248, "shmget": 29, "shmat": 30},
      "aarch64": {"keyctl": 219, "add_key": 217, "shmget": 194, "shmat": 196}}[os.uname().machine]
def call(name, *args):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) for a in args])
    return result, ctypes.get_errno()
print("keyctl", *call("keyctl", 0, -3, 0))            # KEYCTL_GET_KEYRING_ID (session)
print("add_key", *call("add_key", 0, 0, 0, 0, -3))
size = 1200 << 20
print("shmget", *call("shmget", 0, size, 0o1600))      # IPC_PRIVATE | IPC_CREAT
try:
    fd = os.memfd_create("fill")
    os.ftruncate(fd, size)
    print("memfd", "created")
except OSError as exc:
    print("memfd", exc.errno)
x = 1
"""


def test_keyring_and_shared_memory_are_refused():
    result = run_python(PROBE, tests=["assert x == 1"], timeout_s=20)
    assert result.completed and result.seccomp, result.stderr[-500:]
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    assert lines == {"keyctl": "-1 1", "add_key": "-1 1", "shmget": "-1 1", "memfd": "1"}


def test_a_cpu_bound_neighbour_does_not_flip_a_slow_reference(judge):
    """Limits are 4x the reference's own runtime, measured on this machine: a reference that
    takes ~1 s still passes while two CPU-bound processes compete for the same cores."""
    import multiprocessing

    slow = {"task_id": 9003, "text": "Sum of squares below n.",
            "code": "def squares(n):\n    return sum(i * i for i in range(n))",
            "test_list": ["assert squares(3_000_000) == 8999995500000500000"]}
    fresh = judges.get("mbpp")
    fresh.calibrate([slow])  # the reference timed alone
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(2)]
    for burner in burners:
        burner.start()
    try:
        verdicts = [fresh.judge(answer(slow["code"]), slow) for _ in range(3)]
    finally:
        for burner in burners:
            burner.terminate()
    assert all(v.correct for v in verdicts), verdicts


def _burn() -> None:
    while True:
        sum(i * i for i in range(10_000))


# -- the protocol's own pieces ---------------------------------------------------------------

@pytest.mark.parametrize("test, kind, expected", [
    ("assert f(1) == 3", "eq", 3),
    ("assert 3 == f(1)", "eq", 3),
    ("assert f(1) != [1, 2]", "ne", [1, 2]),
    ("assert set(f(1)) == set([1, 2])", "eq", {1, 2}),
    ("assert f(1) == float('inf')", "eq", float("inf")),
    ("assert f(1)", "truthy", None),
    ("assert not f(1)", "falsy", None),
    ("assert f(1) is None", "is", None),
    ("assert math.isclose(f(1), 0.5, rel_tol=0.001)", "isclose", 0.5),
])
def test_test_shapes_become_value_checks(test, kind, expected):
    check = classify(test)
    assert check is not None and check.kind == kind
    assert expected is None or strict_equal(check.expected, expected)
    assert check.probe.callee == "f" and "f" in check.probe.names


@pytest.mark.parametrize("test", ["assert f(1) in (1, 2)", "x = f(1)\nassert x == 1",
                                  "assert f(1) == sys.getsizeof(1)", "assert f(1) < 3"])
def test_other_shapes_stay_with_the_harness(test):
    assert classify(test) is None


@pytest.mark.parametrize("value, expected, equal", [
    (1, 1.0, True), (True, 1, False), (1, True, True), (2, True, False), ([1, 2], (1, 2), False),
    ({"a": [1]}, {"a": [1]}, True), ({1, 2}, {2, 1}, True), ((1, [2]), (1, [2]), True),
    ("1", 1, False), (None, 0, False),
])
def test_strict_equality(value, expected, equal):
    assert strict_equal(value, expected) is equal


def test_decoding_builds_only_plain_values():
    assert decode(("L", [1, ("T", ["a", ("f", "1.5")]), ("S", [2]), ("D", [[1, None]])])) \
        == [1, ("a", 1.5), {2}, {1: None}]
    for bad in [("X", []), ("L", "notalist"), ("D", [[1]]), object(), 1.5]:
        with pytest.raises(ValueError):
            decode(bad)
    check = classify("assert f(1) == 3")
    assert passes(check, ("conflict",))[0] is False
