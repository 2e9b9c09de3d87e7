"""Run one function in a spawned child process: a fresh interpreter that frees an engine's or
a trainer's memory when it ends. Used for training after curation (``pipeline.run --train``)
and for every step of ``pipeline.compare``; the function is called with config objects,
never with an argument list built by hand."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.config import LOG_FORMAT
from pipeline.errors import RunFailed, Terminated, report_errors

#: Seconds a child gets to end by itself, then after SIGTERM, before it is killed.
GRACE_SECONDS = 10.0


def _child_main(target: Callable[..., Any], args: tuple, log_level: str) -> None:
    """Entry point of the child: one-line errors and an exit code, as a command has."""
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    def call(_argv: list[str] | None) -> int:
        target(*args)  # what it returns stays in the child (e.g. training metrics)
        return 0

    sys.exit(report_errors(call, argv=[]))


def in_child(what: str, target: Callable[..., Any], *args: Any, log_level: str = "INFO") -> None:
    """``target(*args)`` in a spawned child; a failure raises :class:`RunFailed` naming ``what``
    (the child has printed its own error line above)."""
    process = multiprocessing.get_context("spawn").Process(
        target=_child_main, args=(target, args, log_level), name=what)
    process.start()
    try:
        with _sigterm_as_interrupt(process):
            process.join()
    except BaseException:
        # Stopped while the child runs (Ctrl-C, or SIGTERM from `kill` or a scheduler): stop
        # the child too. Left alone it would run on as an orphan (SIGTERM), or keep this
        # process waiting for it at exit (multiprocessing joins its children then).
        _stop(process)
        raise
    if process.exitcode != 0:
        raise RunFailed(f"{what} failed (exit {process.exitcode}; its error is above); fix it "
                        f"and rerun the same command: finished work is reused")


@contextlib.contextmanager
def _sigterm_as_interrupt(process: multiprocessing.process.BaseProcess) -> Iterator[None]:
    """While the child runs, SIGTERM is passed on to it and raises :class:`Terminated` here
    (the default would end this process at once and leave the child running). Commands get
    this from ``report_errors`` too; this covers ``in_child`` called as a library."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(signum: int, frame: Any) -> None:
        if process.is_alive():
            process.terminate()
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(process: multiprocessing.process.BaseProcess) -> None:
    """End a child whose parent was stopped. A terminal's Ctrl-C reaches the child too, and it
    may be closing down on its own (finished shards are kept either way); else SIGTERM, then
    SIGKILL."""
    process.join(timeout=GRACE_SECONDS)
    if process.is_alive():
        process.terminate()
        process.join(timeout=GRACE_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()
