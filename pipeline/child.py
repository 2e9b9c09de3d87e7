"""Run one function in a spawned child process: a fresh interpreter that frees an engine's or
a trainer's memory when it ends. Used for training after curation (``pipeline.run --train``)
and for every step of ``pipeline.compare``; the function is called with config objects,
never with an argument list built by hand."""

from __future__ import annotations

import logging
import multiprocessing
import sys
from collections.abc import Callable
from typing import Any

from pipeline.config import LOG_FORMAT
from pipeline.errors import RunFailed, report_errors


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
    process.join()
    if process.exitcode != 0:
        raise RunFailed(f"{what} failed (exit {process.exitcode}; its error is above); fix it "
                        f"and rerun the same command: finished work is reused")
