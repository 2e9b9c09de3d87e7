"""The loop guard: stop a generation once it has started to repeat itself.

A small model often falls into a loop ("40% of 40% of ...", ``def`` after ``def``) and runs to
the token limit; a generation cut at the limit is never admitted as a target, so every token
after the loop starts is wasted. The guard watches each request's output tokens inside vLLM's
sampling loop (a v1 logits processor, :mod:`pipeline.backends.loop_guard_vllm`) and, the step
a loop is recognised, leaves the request only its end-of-sequence token: the engine stops it.

The rule (tuned on real runs of the embedded model, see docs/loop-guard.md): for some period
``p`` of at most ``max_period`` tokens, the last ``repeats`` periods of the output each repeat
the period before them at ``similarity`` of their positions or more (at least ``min_span``
tokens compared). An exact loop trips it after ``repeats + 1`` turns; a loop with a counter
in it ("12. Calculate ...", "13. Calculate ...") still trips it, while an answer that only
reuses a phrase here and there, as small models' answers often do, does not.

The engine can only report such a stop as an end-of-sequence stop. The backend tells the two
apart afterwards with the same rule (:func:`stopped_by_guard`) and records
``finish_reason = "repetition"``, which the judge and admission treat like ``length``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: The processor as vLLM loads it by name (engine workers, Ray actors, ``vllm serve``).
PROCESSOR = "pipeline.backends.loop_guard_vllm:LoopGuardProcessor"
#: ``SamplingParams.extra_args`` key of each setting (flat numbers, as ``vllm_xargs`` needs).
EXTRA_ARGS = {"max_period": "s3ft_loop_max_period", "repeats": "s3ft_loop_repeats",
              "similarity": "s3ft_loop_similarity", "min_span": "s3ft_loop_min_span"}


@dataclass(frozen=True)
class LoopGuard:
    """Stop an output whose last ``repeats`` periods (of some period <= ``max_period`` tokens)
    each match the period before at >= ``similarity`` of positions, >= ``min_span`` compared."""

    max_period: int = 64
    repeats: int = 8
    similarity: float = 0.9
    min_span: int = 32

    def __post_init__(self) -> None:
        if self.max_period < 1 or self.repeats < 1 or self.min_span < 1 or not 0 < self.similarity <= 1:
            raise ValueError(f"loop guard: max_period, repeats and min_span must be >= 1 and "
                             f"similarity in (0, 1] (got {self})")

    def window(self, period: int) -> int:
        """How many token comparisons at ``period`` apart decide."""
        return max(self.repeats * period, self.min_span)

    def extra_args(self) -> dict[str, float]:
        return {key: getattr(self, name) for name, key in EXTRA_ARGS.items()}

    @classmethod
    def from_extra_args(cls, extra: dict[str, Any] | None) -> LoopGuard | None:
        """The guard a request asked for (None: it did not); ValueError for bad settings."""
        if not extra or not any(key in extra for key in EXTRA_ARGS.values()):
            return None
        try:
            return cls(**{name: (float if name == "similarity" else int)(extra[key])
                          for name, key in EXTRA_ARGS.items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"loop guard: {', '.join(EXTRA_ARGS.values())} must all be numbers "
                             f"({exc})") from None


class RepetitionWatch:
    """One request's running comparison of each token with the tokens 1..max_period before it:
    :meth:`catch_up` is fed the output as it grows."""

    __slots__ = ("guard", "matches", "fed")

    def __init__(self, guard: LoopGuard):
        self.guard = guard
        #: period -> running count of positions j (from j = period on) where t[j] == t[j - period]
        self.matches: list[list[int]] = [[0] for _ in range(guard.max_period + 1)]
        self.fed = 0  # tokens of the output read so far

    def catch_up(self, tokens: Sequence[int]) -> bool:
        """Read the tokens added since the last call; True once the output is looping."""
        guard = self.guard
        looping = False
        for j in range(self.fed, len(tokens)):
            token = tokens[j]
            for period in range(1, min(guard.max_period, j) + 1):
                counts = self.matches[period]
                counts.append(counts[-1] + (token == tokens[j - period]))
                window = guard.window(period)
                if len(counts) > window and counts[-1] - counts[-1 - window] >= guard.similarity * window:
                    looping = True
        self.fed = max(self.fed, len(tokens))
        return looping


def loop_start(tokens: Sequence[int], guard: LoopGuard) -> int | None:
    """After how many tokens the guard stops this output (None: it never does)."""
    watch = RepetitionWatch(guard)
    for length in range(1, len(tokens) + 1):
        if watch.catch_up(tokens[:length]):
            return length
    return None


def trips_at_end(tokens: Sequence[int], guard: LoopGuard) -> bool:
    """Whether the rule holds on the last token of ``tokens`` (what the watch checks there)."""
    last = len(tokens) - 1
    for period in range(1, min(guard.max_period, last) + 1):
        window = guard.window(period)
        if last - period + 1 < window:  # fewer comparisons than the window holds
            continue
        matches = sum(tokens[j] == tokens[j - period] for j in range(last - window + 1, last + 1))
        if matches >= guard.similarity * window:
            return True
    return False


def stopped_by_guard(tokens: Sequence[int], guard: LoopGuard, stop_ids: set[int]) -> bool:
    """Whether a guarded output that ended on a stop token was ended by the guard: the rule
    holds on the token before it. (It held nowhere earlier, or the guard would have stopped
    the output there.)"""
    return len(tokens) > 1 and tokens[-1] in stop_ids and trips_at_end(tokens[:-1], guard)
