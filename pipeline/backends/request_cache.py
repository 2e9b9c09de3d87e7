"""A disk cache of remote model answers, keyed by a hash of the full request.

A rerun (or a run killed half-way through a shard) must not pay for the same request twice.
Each answer is one SQLite row, committed on its own: SQLite's journal makes every commit
atomic, so a process killed mid-write leaves the file consistent and loses at most the answer
it was writing. Only successful answers are stored; failed requests are asked again next time.

The key covers what decides the answer: model name, messages, sampling parameters, guided
decoding schema, extra request fields and a caller-chosen namespace. The server address is
deliberately left out, so the same model moved to another port or host keeps its cache; pass
a ``namespace`` (e.g. the model's fingerprint) when one served name may mean different weights.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.errors import RunFailed
from pipeline.text import safe_text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    answer TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class RequestCacheError(RunFailed):
    """The cache file cannot be used; the message names it and says what to do."""


def request_key(request: dict[str, Any]) -> str:
    """sha256 of the request as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class RequestCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: the backend may run its event loop on a worker thread;
            # every use goes through self._lock.
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False,
                                       isolation_level=None)  # autocommit: one write, one commit
            self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            self._db.execute("PRAGMA synchronous=NORMAL")  # safe against a killed process
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise RequestCacheError(
                f"request cache {self.path} cannot be opened ({exc}); delete the file to start "
                f"a fresh cache, or point the cache elsewhere"
            ) from None

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, request: dict[str, Any], answer: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, request, answer, created) VALUES (?, ?, ?, ?)",
                (key, safe_text(json.dumps(request, sort_keys=True, ensure_ascii=False)),
                 safe_text(json.dumps(answer, ensure_ascii=False)), time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
