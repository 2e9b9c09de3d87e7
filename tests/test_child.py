"""``pipeline.child.in_child``: a function run in a spawned process, its failure a RunFailed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.child import in_child
from pipeline.errors import RunFailed, UsageError


def write_marker(path: str, text: str) -> dict:
    Path(path).write_text(text)
    return {"written": len(text)}  # a result (as training's metrics): not an exit status


def refuse(flag: str) -> None:
    raise UsageError(f"{flag}: wrong on purpose")


def test_the_function_runs_in_the_child_with_its_arguments(tmp_path):
    marker = tmp_path / "marker.txt"
    in_child("writing", write_marker, str(marker), "from the child")
    assert marker.read_text() == "from the child"


def test_a_failing_child_stops_the_parent_with_a_one_line_error(capfd):
    with pytest.raises(RunFailed, match=r"checking failed \(exit 2; its error is above\)"):
        in_child("checking", refuse, "--limit")
    err = capfd.readouterr().err
    assert "error: --limit: wrong on purpose" in err and "Traceback" not in err


def sleep_after_writing_pid(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)


# A command whose step runs in a child; it is stopped from outside while the child sleeps.
PARENT = """
import sys
import pipeline.child
from pipeline.child import in_child
from pipeline.errors import report_errors
from tests.test_child import sleep_after_writing_pid
pipeline.child.GRACE_SECONDS = 1.0
sys.exit(report_errors(lambda argv: in_child("sleeping", sleep_after_writing_pid, sys.argv[1]) or 0))
"""


def _child_pid(pid_file: Path, parent: subprocess.Popen) -> int:
    """The pid the child wrote once it started (the parent still running)."""
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and parent.poll() is None, "the child never started"
        time.sleep(0.1)
    return int(pid_file.read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_stopped_parent_stops_its_child_too(tmp_path, stop):
    # SIGTERM (kill, a scheduler) would end the parent at once and leave the child running on;
    # a SIGINT to the parent alone would leave it waiting at exit for the child to finish.
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pid_file)],
                              cwd=Path(__file__).parents[1], stderr=subprocess.PIPE, text=True)
    child = _child_pid(pid_file, parent)
    try:
        parent.send_signal(stop)
        _, err = parent.communicate(timeout=30)
        assert parent.returncode == (143 if stop == signal.SIGTERM else 130), err
        assert err.strip().splitlines()[-1].startswith("interrupted")
        assert "finished shards are kept" in err and "Traceback" not in err
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the child kept running after its parent was stopped"
    finally:  # a failed run of this test leaves no sleeping process behind
        for pid in (parent.pid, child):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


# A command whose library started a process of its own (as vLLM starts its engine), then was
# stopped from outside before it could close it.
LIBRARY_PARENT = """
import multiprocessing, sys, time
import pipeline.errors
from pipeline.errors import report_errors
from tests.test_child import sleep_after_writing_pid
pipeline.errors.CHILD_GRACE_SECONDS = 1.0

def main(argv):
    multiprocessing.get_context("spawn").Process(
        target=sleep_after_writing_pid, args=(sys.argv[1],)).start()
    time.sleep(120)
    return 0

if __name__ == "__main__":
    sys.exit(report_errors(main))
"""


def test_sigterm_ends_a_command_and_the_processes_its_libraries_started(tmp_path):
    # Python's default for SIGTERM ends the process at once: the vLLM engine's processes ran
    # on as orphans (4 GB). Now it unwinds like Ctrl-C, and what is left is ended.
    script = tmp_path / "parent.py"
    script.write_text(LIBRARY_PARENT)
    pid_file = tmp_path / "child.pid"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)], env=env,
                              cwd=Path(__file__).parents[1], stderr=subprocess.PIPE, text=True)
    child = _child_pid(pid_file, parent)
    try:
        parent.send_signal(signal.SIGTERM)
        _, err = parent.communicate(timeout=30)
        assert parent.returncode == 143, err
        assert err.strip() == ("interrupted (SIGTERM): finished shards are kept; rerun the same "
                               "command to resume")
        assert not _alive(child), "the library's process outlived its command"
    finally:
        for pid in (parent.pid, child):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
