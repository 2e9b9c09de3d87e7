"""Progress a user can read: rows done / total, generated tokens, tokens/s and an ETA.

One :class:`Progress` per long step (a stage, a calibration, the MBPP preflight, training).
It advances as work finishes, not per shard: the engine's per-request completions (through
vLLM's ``use_tqdm`` hook), the OpenAI backend's completed requests, the sandbox's judged
programs. On a terminal it draws a tqdm bar; otherwise (``nohup``, CI, a container or Slurm
log) it writes a plain log line every ``S3FT_PROGRESS_INTERVAL`` seconds (default 30), at
each shard and at the end, so a log always shows where a run is. ``--no-progress`` or
``S3FT_PROGRESS=0`` turns it off.

Code deep in a backend does not know which step it serves: it calls :func:`advance`, which
moves the step that is running (one at a time: stages run one after another).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pipeline.progress")

_lock = threading.Lock()
#: Seconds of recent decoding the ETA's token rate is measured over.
RATE_WINDOW = 30.0
_active: Progress | None = None


def enabled() -> bool:
    return os.environ.get("S3FT_PROGRESS", "1").lower() not in ("0", "false", "no", "off")


def interval() -> float:
    try:
        return max(0.1, float(os.environ.get("S3FT_PROGRESS_INTERVAL", "30")))
    except ValueError:
        return 30.0


def duration(seconds: float) -> str:
    """``3h05m``, ``4m10s``, ``12s``: an ETA as people read it."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def score_text(accuracy: float | None, ci95: Any = None, n: int | None = None) -> str:
    """``23.0% [15.4, 32.8], n=100``: a score as people read it (accuracy is a share)."""
    if accuracy is None:
        return "n/a"
    text = f"{100 * accuracy:.1f}%"
    if ci95:
        text += f" [{100 * ci95[0]:.1f}, {100 * ci95[1]:.1f}]"
    return text + (f", n={n}" if n is not None else "")


def eta_seconds(done: int, total: int, elapsed: float) -> float | None:
    """Time left at the rate so far; None before the first row is done."""
    if done <= 0 or elapsed <= 0 or total <= done:
        return None if done <= 0 else 0.0
    return (total - done) * elapsed / done


class Progress:
    """A step's progress; use as a context manager (it becomes the one :func:`advance` moves)."""

    def __init__(self, desc: str, total: int, unit: str = "rows", *,
                 clock: Callable[[], float] = time.monotonic, terminal: bool | None = None,
                 emit: Callable[[str], None] | None = None, every: float | None = None):
        self.desc, self.total, self.unit = desc, max(0, int(total)), unit
        self.done = 0
        self.tokens = 0
        #: The engine's decoding for this step (set by :class:`DecodingMeter`), asked what it
        #: still has to decode when a line is written; None: no engine is decoding.
        self.decoding: DecodingMeter | None = None
        #: (time, tokens) of recent updates: the decoding rate of the last RATE_WINDOW seconds
        #: (prefill yields few tokens, then decoding many: a rate since the start lags behind).
        self._recent: deque[tuple[float, int]] = deque()
        self._clock = clock
        self._started = clock()
        self._every = interval() if every is None else every
        self._last_line = self._started
        #: (time, rows) of the first update: the ETA's rate leaves out start-up (an engine
        #: starting inside the step) and counts only from there.
        self._first: tuple[float, int] | None = None
        self._emit = emit or log.info
        self._on = enabled()
        self._bar = None
        terminal = sys.stderr.isatty() if terminal is None else terminal
        if self._on and terminal:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit.rstrip("s") or unit,
                             dynamic_ncols=True, leave=True)

    # -- the numbers ---------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def line(self) -> str:
        """``generate: 120/256 rows (46.9%), 12,345 tokens, 340.2 tok/s, ETA 3m20s``."""
        parts = [f"{self.desc}: {self.done:,}/{self.total:,} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.1f}%)"
        elapsed = self.elapsed
        if self.tokens:
            parts.append(f"{self.tokens:,} tokens, {self.tokens / max(elapsed, 1e-9):,.1f} tok/s")
        left = None
        if self._first is not None and self.done > self._first[1]:
            since, base = self._clock() - self._first[0], self._first[1]
            left = eta_seconds(self.done - base, self.total - base, since)
        decoding_left = self.decoding.left() if self.decoding is not None else None
        if decoding_left is not None and len(self._recent) > 1:
            # The rows that finish first are the short ones: the engine's own count of what it
            # still has to decode keeps the ETA from promising the end too early.
            (since, base), (now, tokens) = self._recent[0], self._recent[-1]
            if now > since and tokens > base:
                left = max(left or 0.0, decoding_left * (now - since) / (tokens - base))
        parts.append(f"elapsed {duration(elapsed)}")
        if left is not None and self.done < self.total:
            parts.append(f"ETA {duration(left)}")
        return ", ".join(parts)

    # -- moving it -----------------------------------------------------------------------------
    def update(self, n: int = 1, tokens: int = 0, *, quiet: bool = False) -> None:
        with _lock:
            self.done = min(self.total, self.done + n) if self.total else self.done + n
            self.tokens += tokens
            if tokens:
                now = self._clock()
                self._recent.append((now, self.tokens))
                while now - self._recent[0][0] > RATE_WINDOW:
                    self._recent.popleft()
            if n and self._first is None:
                self._first = (self._clock(), self.done)
        if self._bar is not None:
            self._bar.update(n)
            if self.tokens:
                self._bar.set_postfix_str(f"{self.tokens / max(self.elapsed, 1e-9):,.0f} tok/s",
                                          refresh=False)
        elif self._on and not quiet and self._clock() - self._last_line >= self._every:
            self.log_now()

    def reach(self, done: int, tokens: int | None = None) -> None:
        """Set the count to at least ``done`` (e.g. at a shard's end, whatever was hooked)."""
        missing = done - self.done
        extra = 0 if tokens is None else max(0, tokens - self.tokens)
        if missing > 0 or extra:
            self.update(max(0, missing), extra, quiet=True)

    def resize(self, total: int) -> None:
        """The step turned out to have ``total`` items (known only once it ran)."""
        with _lock:
            self.total = max(0, int(total))
            self.done = min(self.done, self.total)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def log_now(self) -> None:
        """A line now (e.g. at a shard's end), unless the step is complete: then the closing
        line says it."""
        if self._on and self._bar is None and (not self.total or self.done < self.total):
            self._last_line = self._clock()
            self._emit(self.line())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._on:
            self._emit(self.line() + " - done" if self.done >= self.total else self.line())

    def __enter__(self) -> Progress:
        global _active
        with _lock:
            self._previous = _active
            _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        with _lock:
            _active = self._previous
        self.close()


class quiet:
    """``with quiet():`` work inside does not move the running step (e.g. the judging of
    paraphrases, counted once with their generation)."""

    def __enter__(self) -> None:
        global _active
        with _lock:
            self._previous, _active = _active, None

    def __exit__(self, *exc: object) -> None:
        global _active
        with _lock:
            _active = self._previous


def advance(n: int = 1, tokens: int = 0) -> None:
    """Move the step that is running, if any."""
    current = _active
    if current is not None:
        current.update(n, tokens)


class _VllmBar:
    """The tqdm vLLM's offline loop expects, forwarding finished requests (rows) to the
    running step."""

    def __init__(self, total: int = 0, **_: Any):
        self.n = 0
        self._started = time.monotonic()
        self.postfix = ""

    @property
    def format_dict(self) -> dict[str, float]:
        return {"elapsed": max(time.monotonic() - self._started, 1e-9)}

    def update(self, n: int = 1) -> None:
        # vLLM calls this once per finished request with n = its number of outputs (k
        # samples): one row. Tokens come from the DecodingMeter as they are decoded.
        self.n += n
        advance(1)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def vllm_bar(*args: Any, **kwargs: Any) -> Any:
    """``use_tqdm=`` for ``vllm.LLM.generate``: per-request completions reach the step.

    vLLM calls it two ways: ``use_tqdm(prompts, desc=...)`` to wrap the prompts it renders
    (handed back as they are: rendering is not the work a user waits for), and
    ``use_tqdm(total=n, ...)`` for the bar of finished requests."""
    if args and not isinstance(args[0], int):
        return args[0]
    return _VllmBar(*args, **kwargs)


class DecodingMeter:
    """``with DecodingMeter(llm.llm_engine, sequences, cap):`` around one ``LLM.generate``:
    after each engine step the tokens decoded so far reach the running step, and so does what
    is still to decode, so a line moves while the engine works (a k=4 run finishes its first
    row only minutes in) and its ETA counts the long generations that finish last.

    ``LLM.generate`` asks the engine for finished requests only, so the count is read one level
    down, from the engine core's outputs: each step's new tokens per sequence (a prompt with k
    samples is k sequences). What is left is estimated once every sequence has started (before,
    prefill is still under way and nothing is known): for a sequence at n tokens, the mean final
    length of the finished ones longer than n, or ``cap`` (the most it may decode) when none
    was, less n. Pessimistic early, as a user would rather be told.
    """

    def __init__(self, llm_engine: Any, sequences: int, cap: int):
        # A vLLM internal: an engine without it (another version) is run unmetered, rows only.
        core = getattr(llm_engine, "engine_core", None)
        self.core = core if callable(getattr(core, "get_output", None)) else None
        self.sequences = sequences
        self.cap = cap
        self.lengths: dict[str, int] = {}
        self.finished: set[str] = set()

    def __enter__(self) -> DecodingMeter:
        if self.core is not None:
            self._get_output = self.core.get_output
            self.core.get_output = self._counted_output  # the instance attribute shadows the method
        return self

    def __exit__(self, *exc: object) -> None:
        if self.core is not None:
            del self.core.get_output
        current = _active
        if current is not None:
            current.decoding = None

    def _counted_output(self, *args: Any, **kwargs: Any) -> Any:
        outputs = self._get_output(*args, **kwargs)
        new = 0
        for output in outputs.outputs:
            request, tokens = output.request_id, len(output.new_token_ids)
            new += tokens
            self.lengths[request] = self.lengths.get(request, 0) + tokens
            if output.finish_reason is not None:
                self.finished.add(request)
        current = _active
        if current is not None:
            current.decoding = self
            if new:
                current.update(0, new)
        return outputs

    def left(self) -> int | None:
        """Tokens still expected from the sequences this call holds; None while some have not
        started."""
        if len(self.lengths) < self.sequences:
            return None
        done = sorted(self.lengths[r] for r in self.finished)
        after = list(itertools.accumulate(reversed(done)))[::-1] + [0]  # after[i] = sum(done[i:])
        left = 0.0
        for request, n in self.lengths.items():
            if request not in self.finished:
                i = bisect.bisect_right(done, n)
                left += (after[i] / (len(done) - i) if i < len(done) else self.cap) - n
        return round(left)
