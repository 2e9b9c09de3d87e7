"""The technique an MBPP task names ("... using bitwise operator", "... using regex", "...
using heap sort") must be in the code, read on its AST.

``return n % 2 == 1`` passes "check whether the given number is odd or not using bitwise
operator", and ``sorted(...)`` passes "sort the given array by using heap sort"; both answer
something else than the task asks, and a model trained on them learns to ignore such words.
Each rule below was checked on the 974 references: a reference that does not use its own
stated technique is listed in :data:`REFERENCES_WITHOUT_TECHNIQUE` (and never refused, as a
gold target is the fallback anyway).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

from judges.mbpp_code import quiet_parse

#: References that do not use the technique their task names (checked on all 974).
REFERENCES_WITHOUT_TECHNIQUE: dict[int, str] = {}


def _modules(tree: ast.AST) -> set[str]:
    """Modules imported anywhere, and names used as ``module.attr``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def _calls(tree: ast.AST) -> set[str]:
    """Names called: ``f(...)`` and ``x.f(...)`` as ``f``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.id if isinstance(func, ast.Name) else getattr(func, "attr", ""))
    return names


def _recursive(tree: ast.AST) -> bool:
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef) and any(
                isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                and n.func.id == function.name for n in ast.walk(function)):
            return True
    return False


def _bitwise(tree: ast.AST) -> bool:
    operators = (ast.BitAnd, ast.BitOr, ast.BitXor, ast.LShift, ast.RShift, ast.Invert)
    return any(isinstance(getattr(n, "op", None), operators) for n in ast.walk(tree))


def _own_sort(tree: ast.AST) -> bool:
    """A sorting algorithm written out: no ``sorted()`` or ``.sort()`` doing the work."""
    return not {"sorted", "sort"} & _calls(tree)


#: (what the task text says, the check, what the rule reports as missing)
TECHNIQUES: list[tuple[re.Pattern[str], Callable[[ast.AST], bool], str]] = [
    (re.compile(r"\busing\s+regex", re.I), lambda t: "re" in _modules(t), "the re module"),
    (re.compile(r"\busing\s+(?:map\s+and\s+)?lambda", re.I),
     lambda t: any(isinstance(n, ast.Lambda) for n in ast.walk(t)), "a lambda"),
    (re.compile(r"\busing\s+map\b", re.I), lambda t: "map" in _calls(t), "map()"),
    (re.compile(r"\busing\s+(?:the\s+)?heap\s*q(?:ueue)?\b|\busing\s+heapq", re.I),
     lambda t: "heapq" in _modules(t), "the heapq module"),
    (re.compile(r"\busing\s+collections\s+module", re.I),
     lambda t: "collections" in _modules(t), "the collections module"),
    (re.compile(r"\busing\s+recursion", re.I), _recursive, "a recursive call"),
    (re.compile(r"\busing\s+bitwise", re.I), _bitwise, "a bitwise operator"),
    (re.compile(r"\busing\s+(?:heap|counting|comb|pancake|merge|shell|radix|bubble|insertion|"
                r"selection|quick)\s+sort", re.I), _own_sort,
     "the sorting algorithm written out (not sorted() or .sort())"),
]


def technique_problem(task_text: str, code: str) -> tuple[str, str] | None:
    """``("technique:missing", why)`` when the task names a technique the code does not
    use; None otherwise (no technique named, or code that does not parse: other rules say)."""
    tree = quiet_parse(code)
    if tree is None:
        return None
    for pattern, uses, what in TECHNIQUES:
        said = pattern.search(task_text or "")
        if said and not uses(tree):
            return ("technique:missing", f"the task says {said.group(0)!r}, but the code "
                                         f"does not use {what}")
    return None
