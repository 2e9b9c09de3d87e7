"""Differential tests for MBPP: more inputs than the three visible asserts, with the reference
solution as the oracle (as EvalPlus does for MBPP+).

Three asserts are a narrow net: ``{i.replace('x', str(i[0])) for i in t}`` passes a task's
tests because every test tuple holds one-character strings. The task's reference solution
knows better. From each visible (and challenge) test call ``f(a, b)`` whose arguments are
literals, :func:`mutated_calls` derives new calls by changing one argument at a time, by its
type: numbers nudged and sign-flipped, strings and sequences reversed, shortened, extended or
emptied, the first element of a sequence mutated in turn. The reference runs them in the
sandbox; a call on which it raises or times out is dropped (:func:`reference_outcomes`), and
on the rest a candidate must return what the reference returns (:func:`first_difference`),
compared here, outside the sandbox, with the value protocol of :mod:`judges.value_tests`.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Sequence
from typing import Any

from judges.sandbox import ValueProbe
from judges.value_tests import classify, decode

#: New inputs per task at most (each is one more call in the candidate's sandbox run).
MAX_INPUTS = 12
#: Numbers beyond this are not nudged (a mutation must not turn a quick call into a slow one).
_MAX_NUMBER = 10**6
_MAX_LENGTH = 200


def _variants(value: Any, depth: int = 0) -> list[Any]:
    """Type-aware mutations of one literal argument, most telling first, none equal to it."""
    return [v for v in _mutations(value, depth) if not (type(v) is type(value) and v == value)]


def _mutations(value: Any, depth: int) -> list[Any]:
    if depth > 2:
        return []
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        if abs(value) > _MAX_NUMBER:
            return []
        return [value + 1, -value if value else 2, value - 1, 0]
    if isinstance(value, float):
        return [value + 0.5, -value, 0.0] if math.isfinite(value) else []
    if isinstance(value, str):
        if len(value) > _MAX_LENGTH:
            return []
        return [value[::-1], value[:-1], value + value[:1], value.swapcase(), ""]
    if isinstance(value, list | tuple) and len(value) <= _MAX_LENGTH:
        kind = type(value)
        firsts = [kind([first, *value[1:]]) for first in _variants(value[0], depth + 1)[:2]] \
            if value else []
        # reversed, the first element changed, shortened, emptied, extended, ...
        return [kind(value[::-1]), *firsts[:1], kind(value[:-1]), kind(),
                kind([*value, *value[:1]]), *firsts[1:], kind(value[1:])]
    if isinstance(value, dict) and value:
        return [dict(list(value.items())[:-1]), {}]
    if isinstance(value, set | frozenset) and value:
        return [type(value)(sorted(value, key=repr)[:-1])]
    return []


def _literal_call(expression: str) -> tuple[str, list[Any]] | None:
    """``f(1, [2, 3])`` as ``("f", [1, [2, 3]])``; None for anything else (keywords, names,
    nested calls), which is then not mutated."""
    try:
        node = ast.parse(expression, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)) or node.keywords:
        return None
    try:
        return node.func.id, [ast.literal_eval(arg) for arg in node.args]
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _call_text(name: str, args: Sequence[Any]) -> str:
    return f"{name}({', '.join(repr(a) for a in args)})"


def mutated_calls(tests: Sequence[str], limit: int = MAX_INPUTS) -> list[ValueProbe]:
    """New calls of the function under test, derived from ``tests`` (see the module
    docstring), as value probes; the visible calls themselves are left out. Deterministic."""
    seen: set[str] = set()
    calls: list[tuple[str, list[Any]]] = []
    for test in tests:
        check = classify(test)
        call = _literal_call(check.probe.expression) if check else None
        if call is not None:
            calls.append(call)
            seen.add(_call_text(*call))
    # Round-robin: the first variant of every argument of every call, then the second, ...
    candidates: list[list[str]] = []
    for name, args in calls:
        for position, value in enumerate(args):
            candidates.append([_call_text(name, [*args[:position], variant, *args[position + 1:]])
                               for variant in _variants(value)])
    probes: list[ValueProbe] = []
    for rank in range(max((len(c) for c in candidates), default=0)):
        for options in candidates:
            if rank < len(options) and options[rank] not in seen and len(probes) < limit:
                seen.add(options[rank])
                name = options[rank].split("(", 1)[0]
                probes.append(ValueProbe(options[rank], (name,), name))
    return probes


def challenge_calls(tests: Sequence[str]) -> list[ValueProbe]:
    """The calls of MBPP's ``challenge_test_list`` asserts, as probes whose expected value is
    the reference's (the challenge asserts' own shapes vary)."""
    probes = []
    for test in tests:
        check = classify(test)
        call = _literal_call(check.probe.expression) if check else None
        if call is not None:
            probes.append(ValueProbe(_call_text(*call), (call[0],), call[0]))
    return probes


def reference_outcomes(run: Callable[[list[ValueProbe]], Any],
                       probes: list[ValueProbe]) -> list[tuple[ValueProbe, Any]]:
    """``(probe, encoded value)`` for each probe on which the reference returns normally.
    ``run(probes)`` runs the reference with those probes after its visible tests and returns
    ``(values by probe index, index of the probe that raised or timed out, or None)``; a
    probe that raised is dropped and the ones after it are run again."""
    outcomes: list[tuple[ValueProbe, Any]] = []
    todo = list(probes)
    while todo:
        values, stopped_at = run(todo)
        upto = len(todo) if stopped_at is None else stopped_at
        outcomes += [(todo[i], values[i]) for i in range(upto) if i in values]
        if stopped_at is None:
            break
        todo = todo[stopped_at + 1:]
    return outcomes


def same_value(value: Any, expected: Any) -> bool:
    """The candidate's value is the reference's: types as strict as the visible tests
    (a list is not a tuple, a bool not an int), floats equal to 1e-9 relative."""
    if type(value) is bool or type(expected) is bool:
        return type(value) is type(expected) and value == expected
    if isinstance(value, int | float) and isinstance(expected, int | float):
        return value == expected or (math.isfinite(value) and math.isfinite(expected)
                                     and math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12))
    if type(value) is not type(expected):
        return False
    if isinstance(value, list | tuple):
        return len(value) == len(expected) and all(
            same_value(a, b) for a, b in zip(value, expected, strict=True))
    if isinstance(value, dict):
        return value.keys() == expected.keys() and all(
            same_value(value[k], expected[k]) for k in value)
    return value == expected


def first_difference(outcomes: Sequence[tuple[ValueProbe, Any]], values: dict[int, Any],
                     offset: int) -> str | None:
    """The first probe (candidate value at ``offset + i``) whose value is not the
    reference's, described; None when every one agrees."""
    for i, (probe, expected) in enumerate(outcomes):
        if offset + i not in values:
            return f"{probe.expression[:200]} gave no value (the reference gives {shown(expected)})"
        try:
            got = decode(values[offset + i])
        except (ValueError, TypeError, OverflowError):
            return f"{probe.expression[:200]} returned a value that does not decode"
        if not same_value(got, decode(expected)):
            return (f"{probe.expression[:200]} -> {repr(got)[:120]}, the reference gives "
                    f"{shown(expected)}")
    return None


def shown(encoded: Any) -> str:
    """A reference value as the reasons show it (cut at 120 characters)."""
    try:
        return repr(decode(encoded))[:120]
    except (ValueError, TypeError, OverflowError):
        return "?"
