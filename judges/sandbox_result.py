"""What one sandbox run reports, and how the in-child harness's records become that report.

The result types (:class:`SandboxResult`, :class:`Failure`, :class:`ValueProbe`,
:class:`SandboxError`) and the parsing of the status pipe live here, apart from the API in
:mod:`judges.sandbox`, so that the run machinery (:mod:`judges.sandbox_run`) and the API can
both use them without importing each other. Import them from :mod:`judges.sandbox`.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class Streams(Protocol):
    """What a run collected from the program's pipes (``sandbox_run._Collector``)."""

    data: Mapping[int, bytearray]
    truncated: Mapping[int, bool]

#: Exit code the bootstrap uses when the sandbox itself could not be set up.
_SETUP_FAILED = 125


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): the result would not be trustworthy."""


@dataclass(frozen=True)
class Failure:
    """Why the program stopped early, as reported by the in-child harness.

    kind: ``raised`` (an exception escaped) or ``exit`` (``SystemExit`` before the end).
    phase: ``compile`` (the program does not compile), ``test_compile``, ``source`` (the
        program's top level) or ``test`` (test number ``index``).
    """

    kind: str
    phase: str
    index: int
    exc_type: str
    message: str
    errno: int | None = None


@dataclass(frozen=True)
class SandboxResult:
    """Everything observed about one run. ``completed`` is the only proof of success."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    killed_by_signal: int | None
    duration_s: float
    mode: str
    tests_total: int
    #: Tests that ran without raising (verified by the nonce when ``completed``).
    tests_run: int
    #: Exit code 0, the per-run nonce came back, and every test ran.
    completed: bool
    failure: Failure | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    #: The throw-away uid the program ran as (None when the mode keeps the caller's uid).
    uid: int | None = None
    #: Host directory used for the run (already deleted when the result is returned).
    workdir: str = ""
    #: The seccomp filter of DENIED_SYSCALLS was in force (False: degraded, see docs).
    seccomp: bool = True
    #: What each :class:`ValueProbe` test evaluated to, by test index, in the harness's
    #: plain-data encoding (decode with :func:`judges.value_tests.decode`); an index with
    #: more than one record (a program writing fake ones) maps to :data:`CONFLICT`.
    values: dict[int, object] = field(default_factory=dict)


#: Marks a test index for which the status pipe carried several value records.
CONFLICT = ("conflict",)


@dataclass(frozen=True)
class ValueProbe:
    """A test whose expression the sandbox only evaluates: the value comes back as plain data
    and is compared with the expected one outside, by the judge (see judges/value_tests.py).

    ``names`` are every name the expression reads; ``callee`` is the function under test,
    the one name taken from the program even when a builtin has it too.
    """

    expression: str
    names: tuple[str, ...]
    callee: str = ""

    def wire(self) -> tuple:
        params = ", ".join(self.names)
        return ("eval", f"lambda {params}: ({self.expression})", tuple(self.names), self.callee)


def _parse_status(raw: bytes) -> list[tuple]:
    """Parse the harness's records; anything malformed (the program may write here too)
    is ignored. literal_eval only builds literals, so hostile input cannot run code."""
    records = []
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            value = ast.literal_eval(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, tuple) and value and isinstance(value[0], str):
            records.append(value)
    return records


def _failure_from(record: tuple) -> Failure | None:
    try:
        kind, phase, index, exc_type, message, errno = record
    except ValueError:
        return None
    if not (isinstance(phase, str) and isinstance(index, int) and isinstance(exc_type, str)
            and isinstance(message, str) and (errno is None or isinstance(errno, int))):
        return None
    return Failure(kind, phase, index, exc_type, message, errno)


def _result(status: int | None, streams: Streams, out_r: int, err_r: int,
            status_r: int, *, timed_out: bool, duration: float, mode: str, tests: list,
            nonce: str, uid: int | None, workdir: str) -> SandboxResult:
    returncode = None if status is None else os.waitstatus_to_exitcode(status)
    records = _parse_status(bytes(streams.data[status_r]))
    setup = [r for r in records if r[0] == "setup" and len(r) == 2]
    # Exit code 125 is reserved: the wrapper maps a program's own 125 to 1.
    if returncode == _SETUP_FAILED and not timed_out:
        detail = setup[-1][1] if setup else "no detail"
        stderr_tail = bytes(streams.data[err_r])[-500:].decode("utf-8", "replace")
        if stderr_tail:
            detail += f"; stderr: {stderr_tail}"
        raise SandboxError(f"sandbox setup failed in mode {mode!r}: {detail}")
    done = any(
        r[0] == "done" and len(r) == 3 and r[1] == nonce and r[2] == len(tests) for r in records
    )
    failure = None
    values: dict[int, object] = {}
    for record in records:
        if record[0] in ("raised", "exit"):
            failure = _failure_from(record) or failure
        elif record[0] == "value" and len(record) == 3 and isinstance(record[1], int):
            values[record[1]] = CONFLICT if record[1] in values else record[2]
    if done:
        tests_run = len(tests)
    elif failure is not None and failure.phase == "test":
        tests_run = failure.index
    else:
        tests_run = 0
    signal_number = -returncode if returncode is not None and returncode < 0 else None
    return SandboxResult(
        returncode=returncode,
        stdout=bytes(streams.data[out_r]).decode("utf-8", "replace"),
        stderr=bytes(streams.data[err_r]).decode("utf-8", "replace"),
        timed_out=timed_out,
        killed_by_signal=None if timed_out else signal_number,
        duration_s=duration,
        mode=mode,
        tests_total=len(tests),
        tests_run=tests_run,
        completed=done and returncode == 0 and not timed_out,
        failure=None if done else failure,
        stdout_truncated=streams.truncated[out_r],
        stderr_truncated=streams.truncated[err_r],
        uid=uid,
        workdir=workdir,
        values=values,
        seccomp=not any(r[0] == "seccomp_off" for r in records),
    )
