"""A user's own Python named from a task file: ``module.path:function`` (importable) or
``file.py:function`` (a file beside ``task.yaml``), e.g. a ``module`` judge or a
``prepare`` step. A file's contents are hashed into the stage keys, so editing it reruns
what it changes."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from pathlib import Path
from typing import Any

from judges.base import JudgeInputError


class UserCodeError(JudgeInputError):
    """A callable a task file names cannot be loaded; the message says where and why."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def callable_digest(spec: str, folder: Path) -> str:
    """A ``file.py:fn`` callable hashes its file (editing it reruns what it changes)."""
    path = spec.rsplit(":", 1)[0]
    if path.endswith(".py"):
        file = (folder / path) if not Path(path).is_absolute() else Path(path)
        return f"{spec}@{_digest(file.read_text())}" if file.is_file() else spec
    return spec


def load_callable(spec: str, folder: Path, where: str) -> Any:
    """``module.path:function`` (importable) or ``file.py:function`` (beside the task file)."""
    if ":" not in spec:
        raise UserCodeError(f"{where}: {spec!r} must read 'module:function' or 'file.py:function'")
    target, name = spec.rsplit(":", 1)
    if target.endswith(".py"):
        path = Path(target) if Path(target).is_absolute() else folder / target
        if not path.is_file():
            raise UserCodeError(f"{where}: {path} does not exist; put the file beside task.yaml")
        module_name = "s3ft_task_" + _digest(str(path.resolve()))
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise UserCodeError(f"{where}: importing {path} failed ({type(exc).__name__}: "
                                f"{exc})") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise UserCodeError(f"{where}: cannot import {target!r} ({exc})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserCodeError(f"{where}: {target} has no function {name!r}")
    return fn
