"""One judge per kind of task. ``judges.get(name)`` returns a ready-to-use judge."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from judges.base import Judge, Verdict

# name -> "module:factory"; imported lazily so a judge's heavy dependencies load only when used.
_REGISTRY: dict[str, str] = {
    "gsm8k": "judges.gsm8k:Gsm8kJudge",
    "mbpp": "judges.mbpp:MbppJudge",
    "nq": "judges.nq:NqJudge",
}


def available() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str, **settings) -> Judge:
    """Return the judge registered as ``name``, built with ``settings``."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown judge {name!r}; available judges: {', '.join(available())}") from None
    module_name, factory_name = target.split(":")
    factory: Callable[..., Judge] = getattr(import_module(module_name), factory_name)
    return factory(**settings)


__all__ = ["Judge", "Verdict", "available", "get"]
