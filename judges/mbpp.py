"""The MBPP judge: extract the program from a response and run the task's asserts on it.

A response counts as correct only if its program ran every assert of ``test_list`` in the
sandbox (:mod:`judges.sandbox`) and the run proved it (per-run nonce, exit code 0): a
program that exits early, prints fake output or overrides ``print`` cannot pass.

The code-as-text helpers (target format, extraction, copy detection) live in
:mod:`judges.mbpp_code` and are re-exported here.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from judges.base import Judge, TargetProblem, Verdict
from judges.mbpp_code import (
    code_target,
    extract_code,
    gold_response,
    is_copy_of_code,
    target_problem,
    without_repeats,
)
from judges.mbpp_differential import (
    challenge_calls,
    first_difference,
    mutated_calls,
    reference_outcomes,
    shown,
)
from judges.mbpp_technique import technique_problem
from judges.sandbox import SandboxResult, ValueProbe, capabilities, run_python
from judges.value_tests import classify, passes

__all__ = [
    "DEFAULT_MAX_PROCESSES",
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_FACTOR",
    "DEFAULT_TIMEOUT_S",
    "VERSION",
    "MbppJudge",
    "check_references",
    "code_target",
    "extract_code",
    "gold_response",
    "is_copy_of_code",
    "program_source",
    "target_problem",
    "without_repeats",
]

#: Bump whenever extraction or judging changes, so cached verdicts are recomputed.
#: 5: a target is the solution only (asserts, a __main__ block, unused assignments refused);
#: differential tests against the reference (differs_from_reference); the technique a task
#: names is in the code (technique:missing).
VERSION = "5"

#: Wall-clock floor per program. Each task's limit is max(floor, factor x the reference
#: solution's own runtime on this machine), as evalplus does (4 s, 4x); the floor is a
#: little higher here because a 2-core machine judging in parallel, possibly next to an
#: inference engine, runs everything slower. (Task 123's reference alone needs ~6 s.)
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_TIMEOUT_FACTOR = 4.0
#: RLIMIT_AS per process; MBPP references need a few tens of MB.
DEFAULT_MEMORY_MB = 1024
#: RLIMIT_NPROC; MBPP programs never need to fork, and this bounds a fork bomb's memory
#: to about DEFAULT_MAX_PROCESSES x DEFAULT_MEMORY_MB.
DEFAULT_MAX_PROCESSES = 4
#: The program runs as this module, not ``__main__``: like human-eval/evalplus (which exec
#: without ``__name__``), a demo ``if __name__ == "__main__":`` block that reads input()
#: or prints is skipped instead of failing a correct solution.
SOLUTION_MODULE = "__solution__"
#: Limit for timing a reference solution (calibration).
CALIBRATION_TIMEOUT_S = 120.0


def program_source(code: str, example: Mapping[str, Any]) -> str:
    """The program the sandbox runs before the asserts: the candidate, then the task's
    ``test_setup_code``.

    The setup goes *after* the candidate because the only MBPP rows that have one (tasks
    367 and 927) build trees from the ``Node`` class the solution itself defines; run
    before the code, even the reference solutions fail with a NameError.
    """
    setup = example.get("test_setup_code") or ""
    return f"{code}\n{setup}\n" if setup.strip() else f"{code}\n"


class MbppJudge(Judge):
    """Judges MBPP responses by running the task's asserts in the sandbox.

    Verdict rules: ``pass`` (every value computed by the program matched, compared here,
    outside the sandbox: :mod:`judges.value_tests`), ``pass:harness`` (some asserts have a
    shape the value protocol does not cover and ran inside the sandbox), ``fail`` (an
    assert was false; the reason quotes it),
    ``error`` (an exception, a syntax error, or an exit before all asserts ran),
    ``timeout``, ``killed`` (a resource limit: MemoryError, a signal, file size),
    ``no_code``, and ``differs_from_reference``: it passes the asserts but returns something
    else than the reference solution (or raises, or hangs) on an input derived from them
    (:mod:`judges.mbpp_differential`; ``differential=False`` turns this off). The extraction
    rule that found the code is named in the reason.

    Time limit per task: max(``timeout_s``, ``timeout_factor`` x the reference solution's
    runtime), the reference being timed once per task (lazily, or up front with
    :meth:`calibrate`) so a correct but slow-ish program is not failed on a slow machine.
    ``calibrate_timeouts=False`` uses ``timeout_s`` alone.
    """

    name = "mbpp"
    version = VERSION

    def __init__(
        self,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        timeout_factor: float = DEFAULT_TIMEOUT_FACTOR,
        calibrate_timeouts: bool = True,
        memory_mb: int = DEFAULT_MEMORY_MB,
        max_processes: int = DEFAULT_MAX_PROCESSES,
        workers: int | None = None,
        include_challenge_tests: bool = False,
        max_output_bytes: int = 16 * 1024,
        sandbox_mode: str | None = None,
        differential: bool = True,
    ) -> None:
        self.timeout_s = float(timeout_s)
        self.timeout_factor = float(timeout_factor)
        self.calibrate_timeouts = calibrate_timeouts
        self.memory_mb = int(memory_mb)
        self.max_processes = int(max_processes)
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.include_challenge_tests = include_challenge_tests
        self.max_output_bytes = max_output_bytes
        self.sandbox_mode = sandbox_mode
        self.differential = differential
        #: reference runtime in seconds (None: the reference does not pass) per task key
        self._reference_s: dict[tuple, float | None] = {}
        #: per task key: the derived inputs and the reference's values on them
        self._outcomes: dict[tuple, list] = {}
        self._key_locks: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()

    def tests_for(self, example: Mapping[str, Any]) -> list[str]:
        """The asserts a response must pass (``test_list``, plus the challenge tests if
        configured)."""
        tests = list(example["test_list"])
        if self.include_challenge_tests:
            tests += list(example.get("challenge_test_list") or [])
        return tests

    def judge(self, response: str, example: Mapping[str, Any]) -> Verdict:
        """Judge one response. Raises only if the sandbox itself is broken."""
        code, rule = extract_code(response)
        if code is None:
            return Verdict(False, "no_code", None, "no program found in the response")
        limit = self.time_limit(example)
        if self.differential and example.get("code"):
            self._reference_runtime(example)  # the reference's outcomes (once per task)
        outcomes = self._outcomes.get(_task_key(example), [])
        result = self._run(code, example, limit, [probe for probe, _ in outcomes])
        tests = self.tests_for(example)
        differs = _difference(result, tests, outcomes, limit)
        if differs is None:
            return _verdict(result, tests, code, rule, limit)
        visible = _verdict(result, tests, code, rule, limit, visible_only=True)
        if not visible.correct:
            return visible
        return Verdict(False, "differs_from_reference", code,
                       f"[{rule}] passes the {len(tests)} asserts, but differs from the "
                       f"reference solution on a new input: {differs}")

    def settings(self) -> dict[str, Any]:
        """Limits, and the containment in force (a degraded sandbox changes what a pass
        proves): part of the judge stage's key, written to config.yaml and the summary."""
        caps = capabilities()
        return {"timeout_s": self.timeout_s, "timeout_factor": self.timeout_factor,
                "memory_mb": self.memory_mb, "max_processes": self.max_processes,
                "challenge_tests": self.include_challenge_tests,
                "sandbox_mode": self.sandbox_mode or caps.mode, "seccomp": caps.seccomp,
                "protocol": "values", "differential": self.differential}

    def is_copy_of_gold(self, text: str, example: Mapping[str, Any], gold: str) -> bool:
        code, _ = extract_code(text)
        return code is not None and is_copy_of_code(code, str(example["code"]))

    def check_target(self, text: str, verdict: Verdict,
                     example: Mapping[str, Any]) -> TargetProblem | None:
        code = verdict.extracted or extract_code(text)[0]
        problem = target_problem(code) if code else ("no_code", "no program found")
        if problem is None and code:
            problem = technique_problem(str(example.get("text") or ""), code)
        return TargetProblem(*problem) if problem else None

    def format_gold(self, text: str, example: Mapping[str, Any]) -> str:
        return code_target(text)

    def check_gold(self, examples: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
        """Every reference against its own tests, once each (this also times each reference
        for the per-task time limits)."""
        verdicts = self.calibrate(examples)
        return [(str(e["id"]), f"reference solution fails its own tests: {v.rule} {v.reason}")
                for e, v in zip(examples, verdicts, strict=True) if not v.correct]

    def format_target(self, text: str, verdict: Verdict | None, example: Mapping[str, Any]) -> str:
        code = verdict.extracted if verdict is not None and verdict.extracted else None
        if code is None:
            code, _ = extract_code(text)
        return code_target(code) if code else text

    def judge_paraphrases(self, texts: list[str],
                          examples: list[Mapping[str, Any]]) -> list[Verdict]:
        return self.judge_many(texts, examples)

    def judge_many(
        self, responses: Sequence[str], examples: Sequence[Mapping[str, Any]]
    ) -> list[Verdict]:
        """Judge many responses in parallel (one sandboxed process each, ``workers`` at a
        time), returning verdicts in input order."""
        if len(responses) != len(examples):
            raise ValueError(f"{len(responses)} responses for {len(examples)} examples")
        return self._map(self.judge, responses, examples)

    def time_limit(self, example: Mapping[str, Any]) -> float:
        """Wall-clock limit for a response to ``example`` (times the reference if needed)."""
        if not self.calibrate_timeouts or not example.get("code"):
            return self.timeout_s
        reference_s = self._reference_runtime(example)
        if reference_s is None:
            return self.timeout_s
        return max(self.timeout_s, self.timeout_factor * reference_s)

    def calibrate(self, examples: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        """Run every reference solution once, in parallel: records its runtime (for the
        time limits) and returns its verdict against its own tests."""
        return self._map(self._calibrate_one, examples)

    def _calibrate_one(self, example: Mapping[str, Any]) -> Verdict:
        key = _task_key(example)
        code, rule = extract_code(gold_response(example))
        if code is None:
            with self._lock:
                self._reference_s[key] = None
            return Verdict(False, "no_code", None, "the reference solution is empty")
        result = self._run(code, example, CALIBRATION_TIMEOUT_S)
        verdict = _verdict(result, self.tests_for(example), code, rule, CALIBRATION_TIMEOUT_S)
        runtime = result.duration_s if result.completed else None
        outcomes: list = []
        if self.differential and verdict.correct and runtime is not None:
            outcomes, runtime = self._reference_outcomes(code, example, runtime)
        with self._lock:
            self._reference_s[key] = runtime
            self._outcomes[key] = outcomes
        return verdict

    def _reference_outcomes(self, code: str, example: Mapping[str, Any],
                            runtime: float) -> tuple[list, float]:
        """The reference's values on the inputs derived from the task's tests, and its
        runtime with them (the candidate's time limit covers those calls too)."""
        tests = self.tests_for(example)
        probes = mutated_calls([*tests, *(example.get("challenge_test_list") or [])])
        probes = challenge_calls(example.get("challenge_test_list") or []) + probes
        limit = max(self.timeout_s, self.timeout_factor * runtime)
        durations = [runtime]

        def run(todo: list) -> tuple[dict, int | None]:
            result = self._run(code, example, limit, todo)
            durations.append(result.duration_s)
            values = {i - len(tests): v for i, v in result.values.items() if i >= len(tests)}
            if result.completed:
                return values, None
            failure = result.failure
            if not values and (failure is None or failure.index < len(tests)):
                return values, len(todo)  # not even its own tests this time: no new inputs
            return values, next(i for i in range(len(todo) + 1) if i not in values)

        return reference_outcomes(run, probes), max(durations)

    def _reference_runtime(self, example: Mapping[str, Any]) -> float | None:
        key = _task_key(example)
        with self._lock:
            if key in self._reference_s:
                return self._reference_s[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one timing run per task, even with many threads judging it
            with self._lock:
                if key in self._reference_s:
                    return self._reference_s[key]
            self._calibrate_one(example)
            with self._lock:
                return self._reference_s[key]

    def _run(self, code: str, example: Mapping[str, Any], timeout_s: float,
             extra: Sequence[ValueProbe] = ()) -> SandboxResult:
        """``code`` against the task's tests, then the ``extra`` probes (differential)."""
        return run_python(
            program_source(code, example),
            tests=[*sandbox_tests(self.tests_for(example)), *extra],
            timeout_s=timeout_s,
            memory_mb=self.memory_mb, max_processes=self.max_processes,
            max_output_bytes=self.max_output_bytes, module_name=SOLUTION_MODULE,
            mode=self.sandbox_mode,
        )

    def _map(self, fn, *iterables: Sequence) -> list:
        if not iterables[0]:
            return []
        def counted(*args):
            try:
                return fn(*args)
            finally:
                self.on_progress(1)  # one program judged

        workers = min(self.workers, len(iterables[0]))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mbpp-judge") as pool:
            return list(pool.map(counted, *iterables))


def _task_key(example: Mapping[str, Any]) -> tuple:
    """Calibration cache key: the task id plus what the timing depends on."""
    return (example.get("task_id"), example.get("code"), tuple(example.get("test_list") or ()),
            example.get("test_setup_code") or "")


def check_references(
    examples: Sequence[Mapping[str, Any]], judge: MbppJudge | None = None
) -> list[tuple[Any, Verdict]]:
    """Run every reference solution against its own tests; return (task_id, verdict) for
    each that does not pass, so the pipeline can drop or flag those tasks before curation.

    With ``judge`` given, this also calibrates that judge's time limits (one run each).
    """
    judge = judge or MbppJudge()
    verdicts = judge.calibrate(examples)
    return [(ex.get("task_id"), v) for ex, v in zip(examples, verdicts, strict=True)
            if not v.correct]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


#: Exceptions that mean "a resource limit was hit", not "the program is wrong".
_LIMIT_ERRNOS = {27, 28}  # EFBIG (RLIMIT_FSIZE), ENOSPC (the tmpfs is full)


def sandbox_tests(tests: list[str]) -> list[str | ValueProbe]:
    """Each test as a value probe where its shape allows (the expected value stays here),
    else as the assert statement the harness executes."""
    checks = [classify(test) for test in tests]
    return [check.probe if check else test for check, test in zip(checks, tests, strict=True)]


def _difference(result: SandboxResult, tests: list[str], outcomes: list,
                timeout_s: float) -> str | None:
    """How the run differs from the reference on the derived inputs (run after the ``tests``),
    or None: it agrees, or it stopped in the tests themselves (the usual verdict says how)."""
    n = len(tests)
    if not outcomes:
        return None
    if result.completed:
        return first_difference(outcomes, result.values, n)
    failure = result.failure
    if failure is not None and failure.phase == "test" and failure.index >= n:
        probe, expected = outcomes[failure.index - n]
        what = ("exited the program" if failure.kind == "exit"
                else f"raised {failure.exc_type}: {failure.message[:120]}")
        return f"{probe.expression[:200]} {what} (the reference returns {shown(expected)})"
    checked = [i for i, test in enumerate(tests) if classify(test)]
    if result.timed_out and checked and all(i in result.values for i in checked):
        hung = next((i for i in range(len(outcomes)) if n + i not in result.values), None)
        if hung is not None:
            return f"{outcomes[hung][0].expression[:200]} did not return within {timeout_s:g} s"
    return None


def _verdict(result: SandboxResult, tests: list[str], code: str, rule: str,
             timeout_s: float, visible_only: bool = False) -> Verdict:
    """The verdict on the task's asserts; ``visible_only``: the run went past them (it
    stopped later, on a derived input), so only their values are read."""
    def verdict(correct: bool, outcome: str, reason: str) -> Verdict:
        return Verdict(correct, outcome, code, f"[{rule}] {reason}")

    n = len(tests)
    if result.completed or visible_only:
        checks = [classify(test) for test in tests]
        for index, check in enumerate(checks):
            if check is None:
                continue
            if index not in result.values:
                return verdict(False, "error", f"no value came back for assert {index + 1}/{n} "
                                               f"({tests[index][:200]})")
            ok, seen = passes(check, result.values[index])
            if not ok:
                return verdict(False, "fail", f"assert {index + 1}/{n} failed: "
                                              f"{tests[index][:300]} ({seen})")
        harness = n - sum(c is not None for c in checks)
        if harness:
            # Those asserts ran inside the sandbox, where a program can interfere with them.
            return verdict(True, "pass:harness", f"all {n} asserts passed; {harness} of them "
                                                 "checked by the in-sandbox harness")
        return verdict(True, "pass", f"all {n} asserts passed, values checked by the judge")
    if result.timed_out:
        return verdict(False, "timeout", f"no result within {timeout_s:g} s "
                                         f"({result.tests_run}/{n} asserts had passed)")
    failure = result.failure
    if failure is not None:
        where = _where(failure.phase, failure.index, tests)
        detail = f"{failure.exc_type}: {failure.message}".rstrip(": ")
        if failure.kind == "exit":
            return verdict(False, "error", f"exited ({detail}) {where}, before all {n} "
                                           "asserts ran")
        if failure.exc_type == "MemoryError" or failure.errno in _LIMIT_ERRNOS:
            return verdict(False, "killed", f"resource limit {where}: {detail}")
        if failure.phase == "test" and failure.exc_type == "AssertionError":
            return verdict(False, "fail", f"assert {failure.index + 1}/{n} failed: "
                                          f"{tests[failure.index]}")
        return verdict(False, "error", f"{detail} {where}")
    if result.killed_by_signal is not None:
        return verdict(False, "killed", f"killed by {_signal_name(result.killed_by_signal)} "
                                        f"after {result.tests_run}/{n} asserts")
    tail = result.stderr.strip().splitlines()[-1:] or [""]
    return verdict(False, "error", f"exited with code {result.returncode} before all {n} "
                                   f"asserts ran {tail[0][:300]}".rstrip())


def _where(phase: str, index: int, tests: list[str]) -> str:
    if phase in ("test", "test_compile") and 0 <= index < len(tests):
        return f"in assert {index + 1}/{len(tests)} ({tests[index][:200]})"
    if phase == "compile":
        return "while compiling the program"
    return "while running the program's top level"
