"""A test hook that makes chosen rows fail, so row-level error handling can be shown on the
real engine: ``S3FT_INJECT_FAULTS="engine=<marker>,judge=<marker>"`` fails the engine request
or the judge call of every row whose prompt contains ``<marker>``. Unset, it does nothing."""

from __future__ import annotations

import os


class InjectedFault(RuntimeError):
    pass


def marker(kind: str) -> str | None:
    for item in os.environ.get("S3FT_INJECT_FAULTS", "").split(","):
        name, _, value = item.partition("=")
        if name.strip() == kind and value:
            return value
    return None


def check(kind: str, text: str) -> None:
    """Raise :class:`InjectedFault` if faults of ``kind`` are injected for ``text``."""
    chosen = marker(kind)
    if chosen and chosen in text:
        raise InjectedFault(f"injected {kind} fault (S3FT_INJECT_FAULTS)")
