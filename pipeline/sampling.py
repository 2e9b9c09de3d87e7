"""How answers are sampled: ``--samples k`` and the sampling controls, resolved per run.

Each setting comes from the first place that gives it: the command line, the ``--config``
YAML, the task file's ``generation:`` block, then the built-in default below. Every place
checks its values with :func:`problem`, so a bad value is refused where it was written (the
flag, or the task file's key) before any data is read or any engine starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.errors import UsageError

PICK_RULES = ("likeliest", "first", "shortest")
#: The sampling settings and their built-in defaults. ``temperature`` has none of its own:
#: 0 (greedy) with one sample, :data:`SAMPLED_TEMPERATURE` with more.
DEFAULTS: dict[str, Any] = {"samples": 1, "pick": "likeliest", "temperature": None, "top_p": 1.0,
                            "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
#: RFT's setting (OFA-Sys/gsm8k-ScRel samples at T = 0.7).
SAMPLED_TEMPERATURE = 0.7
TYPES: dict[str, tuple[type, ...]] = {"samples": (int,), "pick": (str,), "temperature": (int, float),
                                      "top_p": (int, float), "top_k": (int,), "min_p": (int, float),
                                      "repetition_penalty": (int, float)}


#: The most answers sampled per prompt (the k-samples study used up to 16).
MAX_SAMPLES = 64


def problem(key: str, value: Any) -> str | None:
    """What is wrong with one setting's value (None: nothing)."""
    checks = {
        # vLLM keeps every sample of a prompt in memory at once: 100,000 failed only after
        # the engine had started
        "samples": (lambda v: 1 <= v <= MAX_SAMPLES, f"must be from 1 to {MAX_SAMPLES}"),
        "pick": (lambda v: v in PICK_RULES, f"use {', '.join(PICK_RULES)}"),
        # finite: an infinite temperature (or penalty) passed every check and failed each
        # request at the server or after the engine had started
        "temperature": (lambda v: math.isfinite(v) and v >= 0, "must be a finite number >= 0"),
        "top_p": (lambda v: 0 < v <= 1, "must be a share in (0, 1]"),
        "top_k": (lambda v: v >= 0, "must be >= 0 (0: off)"),
        "min_p": (lambda v: 0 <= v < 1, "must be a share in [0, 1)"),
        "repetition_penalty": (lambda v: math.isfinite(v) and v > 0,
                               "must be a finite number above 0 (1: off)"),
    }
    ok, what = checks[key]
    return None if ok(value) else what


@dataclass(frozen=True)
class AnswerSampling:
    """The resolved sampling settings of a run's answers, and where each came from."""

    samples: int
    pick: str
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repetition_penalty: float
    #: setting -> "command line or --config", "task file" or "default"
    origin: dict[str, str]


def resolve(given: dict[str, Any], task_generation: dict[str, Any], task_file: str) -> AnswerSampling:
    """The run's answer sampling: ``given`` (the options, None where not set) over the task
    file's ``generation`` settings over :data:`DEFAULTS`."""
    values, origin = {}, {}
    for key, default in DEFAULTS.items():
        if given.get(key) is not None:
            values[key], origin[key] = given[key], "command line or --config"
        elif task_generation.get(key) is not None:
            values[key], origin[key] = task_generation[key], "task file"
        else:
            values[key], origin[key] = default, "default"
    if values["temperature"] is None:
        values["temperature"] = 0.0 if values["samples"] == 1 else SAMPLED_TEMPERATURE
    if values["samples"] > 1 and values["temperature"] == 0:
        where = {"command line or --config": "--temperature", "task file":
                 f"{task_file}: generation.temperature"}.get(origin["temperature"], "temperature")
        raise UsageError(f"{where} 0 with {values['samples']} samples per prompt "
                         f"({origin['samples']}): greedy decoding gives one answer; set a "
                         f"temperature above 0 (e.g. 0.7) or use --samples 1")
    return AnswerSampling(**values, origin=origin)
