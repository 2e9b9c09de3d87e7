"""The ``s3ft`` console script: one entry point, the same commands as ``python -m pipeline.*``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.cli import COMMANDS, main

SCRIPT = Path(sys.executable).with_name("s3ft")


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "train", "evaluate", "compare", "audit", "push", "tasks"):
        assert f"  {command} " in out


def test_unknown_command_is_one_line_and_exit_2(capsys):
    assert main(["curate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown command 'curate'" in err and "run" in err


def test_every_command_module_has_a_main():
    from importlib import import_module

    for module, _ in COMMANDS.values():
        assert callable(import_module(module).main), module


def test_installed_script_runs_a_command_like_python_m():
    """The installed ``s3ft`` (pyproject's [project.scripts]) answers as ``python -m``."""
    assert SCRIPT.is_file(), f"{SCRIPT} missing: reinstall the project (pip install -e .)"
    via_script = subprocess.run([str(SCRIPT), "tasks", "list"], capture_output=True, text=True,
                                timeout=120)
    via_module = subprocess.run([sys.executable, "-m", "pipeline.tasks", "list"],
                                capture_output=True, text=True, timeout=120)
    assert via_script.returncode == via_module.returncode == 0, via_script.stderr
    assert via_script.stdout == via_module.stdout and "gsm8k" in via_script.stdout
    bad = subprocess.run([str(SCRIPT), "run", "--max-tokens", "0"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --max-tokens 0: must be at least 1"
