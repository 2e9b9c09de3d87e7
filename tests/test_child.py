"""``pipeline.child.in_child``: a function run in a spawned process, its failure a RunFailed."""

from __future__ import annotations

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
