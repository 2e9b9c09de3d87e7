"""Errors a user can act on, and how every CLI reports them: one line, no traceback.

* :class:`UsageError` (exit 2): a flag, a config file, an input file or a row is wrong; the
  message names it and says what to do.
* :class:`RunFailed` (exit 1): the run could not produce a trustworthy dataset (a stage's
  rows failed beyond ``--max-error-rate``, a server is down); finished shards are kept and a
  rerun of the same command retries only what failed.

:func:`report_errors` wraps a CLI's ``main``: it turns these, and the operating system's own
refusals (disk full, read-only or missing folders), into ``error: ...`` lines. Anything else
is a bug: one line too, with the hint that ``--debug`` (or ``S3FT_DEBUG=1``) shows the
traceback.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any


class S3ftError(Exception):
    """Base of the errors the CLIs report as one line."""

    exit_code = 1


class UsageError(S3ftError):
    """A wrong flag, config file, input file or row: the message names it and the fix."""

    exit_code = 2


class RunFailed(S3ftError):
    """The run stopped rather than turn failures into a dataset; finished work is kept."""

    exit_code = 1


def debug_requested(argv: list[str] | None) -> bool:
    return bool(os.environ.get("S3FT_DEBUG")) or "--debug" in (argv if argv is not None else sys.argv)


def describe_os_error(exc: OSError) -> str:
    """A sentence for an OSError, naming the path and what to do."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device{where}: free space there or pass --out on another disk"
    if exc.errno == errno.EROFS:
        return f"the file system is read-only{where}: pass --out to a writable folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}: pass --out to a folder you can write to"
    if exc.errno == errno.ENOTDIR:
        return f"a path component is a file, not a folder{where}: choose another --out"
    if exc.errno == errno.EEXIST:
        return f"a file is in the way{where}: remove it or choose another --out"
    return f"{exc.strerror or exc}{where}"


def report_errors(main: Callable[[list[str] | None], int],
                  argv: list[str] | None = None) -> int:
    """Run a CLI ``main`` and turn user-facing failures into one ``error:`` line."""
    debug = debug_requested(argv)
    try:
        with _sigterm_as_interrupt():
            return main(argv)
    except S3ftError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if debug:
            raise
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        _end_children()
        terminated = isinstance(exc, Terminated)
        print(f"interrupted{' (SIGTERM)' if terminated else ''}: finished shards are kept; "
              f"rerun the same command to resume", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as exc:
        if debug:
            raise
        code = getattr(exc, "exit_code", None)
        if isinstance(code, int):
            # A judge's input error (judges.base.JudgeInputError: a template, a task's own
            # code) carries its exit code; the judges package does not import s3ft's errors.
            print(f"error: {exc}", file=sys.stderr)
            return code
        # A bug: say so in one line, the traceback on request.
        print(f"error: unexpected {type(exc).__name__}: {exc} (this is a bug in s3ft; rerun "
              f"with --debug or S3FT_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's preemption): unwinds like Ctrl-C, so ``finally`` blocks
    close the engine and finished shards stay; the exit code is 143, as for a plain SIGTERM."""


#: Seconds an engine process gets to end after SIGTERM before it is killed.
CHILD_GRACE_SECONDS = 10.0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Python's default for SIGTERM ends the process at once, skipping ``finally`` blocks, so
    the vLLM engine's processes were left running (4 GB, orphaned). The first SIGTERM raises
    :class:`Terminated` instead; a second one, while cleanup hangs, ends the children and
    exits."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be set from the main thread (e.g. a CLI called in a thread)
        return
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Terminated(f"signal {signum}")
        _end_children()
        os._exit(143)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _end_children() -> None:
    """After an interruption, end the child processes the cleanup left (an engine interrupted
    while starting has no handle to close): SIGTERM, a grace period, then SIGKILL."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(CHILD_GRACE_SECONDS)
        if child.is_alive():
            child.kill()
            child.join()
