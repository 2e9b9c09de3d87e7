"""Text that every stage can store: valid UTF-8, whatever a model, a server or a program wrote.

Python strings can hold lone surrogates (``chr(0xDC80)``: what ``surrogateescape`` makes of a
stray byte, or what a JSON ``"\\udc80"`` escape decodes to). Arrow, Polars, SQLite and the
UTF-8 codec all refuse them, so one such character in a model answer, a server reply or a
sandboxed program's error message used to crash a stage on every rerun. Each is replaced
with U+FFFD (the replacement character), and callers count the texts repaired.
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def safe_text(text: str | None) -> str | None:
    """``text`` with every lone surrogate replaced by U+FFFD (None stays None)."""
    if text is None or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(REPLACEMENT, text)


def needs_repair(text: str | None) -> bool:
    return text is not None and _SURROGATE.search(text) is not None
