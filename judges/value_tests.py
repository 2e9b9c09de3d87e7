"""The value protocol: expected values never enter the sandbox.

An MBPP test such as ``assert max_chain([Pair(5, 24), Pair(15, 25)], 2) == 3`` is split with
``ast`` into the expression the program must compute (``max_chain(...)``) and the expected
value (``3``). The sandbox evaluates only the expression (:class:`judges.sandbox.ValueProbe`)
and sends its value back as plain data; this module decodes it without executing anything
and compares it with the expected value here, in the judge's process. A program therefore
passes only by computing the right values: it never sees them, and nothing it returns can
run code during the comparison (an object with a custom ``__eq__`` is not plain data and
fails).

Shapes handled (nearly all of MBPP): ``assert E == L`` and ``L == E``, ``assert E != L``,
``assert E`` / ``assert not E``, ``assert E is True|False|None``, ``assert
math.isclose(E, L, ...)``, where ``L`` is a literal or a builtin conversion of one
(``set([1, 2])``, ``float('inf')``). Comparison is strict: a ``bool`` is not an ``int``,
a list is not a tuple; an ``int`` and a ``float`` compare as numbers (as Python does).
Other shapes fall back to the in-sandbox harness, and the verdict says so.
"""

from __future__ import annotations

import ast
import builtins
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

from judges.sandbox import CONFLICT, ValueProbe

#: Builtins that may wrap an expected literal (evaluated here, on the literal only).
_CONVERSIONS = {"set": set, "frozenset": frozenset, "list": list, "tuple": tuple,
                "sorted": sorted, "float": float, "int": int, "str": str, "dict": dict}
_MISSING = object()
_BUILTIN_NAMES = frozenset(dir(builtins))


@dataclass(frozen=True)
class ValueCheck:
    """One test as a probe for the sandbox and a comparison for the judge."""

    probe: ValueProbe
    kind: str  # eq | ne | truthy | falsy | is | isclose
    expected: Any = None
    options: tuple[tuple[str, Any], ...] = ()  # math.isclose keywords


def _literal(node: ast.AST) -> Any:
    """The value of a literal, or of a builtin conversion of one; _MISSING otherwise."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in _CONVERSIONS and not node.keywords and len(node.args) <= 1:
        inner = _literal(node.args[0]) if node.args else ()
        if inner is not _MISSING:
            try:
                return _CONVERSIONS[node.func.id](inner)
            except (TypeError, ValueError):
                return _MISSING
    return _MISSING


def _probe(expression: ast.expr, source: str) -> ValueProbe:
    names = tuple(sorted({n.id for n in ast.walk(expression) if isinstance(n, ast.Name)}))
    calls = [n.func.id for n in ast.walk(expression)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    # The function under test: the outermost call of a name no builtin has (set(f(x)) -> f);
    # if every called name is a builtin, the outermost one (a solution named like a builtin).
    callee = next((c for c in calls if c not in _BUILTIN_NAMES), calls[0] if calls else "")
    return ValueProbe(ast.get_source_segment(source, expression) or ast.unparse(expression),
                      names, callee)


@functools.lru_cache(maxsize=8192)
def classify(test: str) -> ValueCheck | None:
    """The test as a value check, or None when its shape needs the in-sandbox harness."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tree = ast.parse(test)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    node = tree.body[0].test
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        op, left, right = node.ops[0], node.left, node.comparators[0]
        if isinstance(op, ast.Eq | ast.NotEq):
            kind = "eq" if isinstance(op, ast.Eq) else "ne"
            for expression, literal in ((left, right), (right, left)):
                expected = _literal(literal)
                if expected is not _MISSING and _literal(expression) is _MISSING:
                    return ValueCheck(_probe(expression, test), kind, expected)
            return None
        if isinstance(op, ast.Is) and isinstance(right, ast.Constant) \
                and right.value in (True, False, None) and type(right.value) in (bool, type(None)):
            return ValueCheck(_probe(left, test), "is", right.value)
        return None
    if isinstance(node, ast.Call) and _is_isclose(node.func) and len(node.args) == 2:
        expected = _literal(node.args[1])
        options = tuple((k.arg, _literal(k.value)) for k in node.keywords)
        if isinstance(expected, int | float) and all(
                k and isinstance(v, int | float) for k, v in options):
            return ValueCheck(_probe(node.args[0], test), "isclose", expected, options)
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ValueCheck(_probe(node.operand, test), "falsy")
    if isinstance(node, ast.Call | ast.Name | ast.Attribute | ast.Subscript | ast.BoolOp):
        return ValueCheck(_probe(node, test), "truthy")
    return None


def _is_isclose(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "isclose"
            and isinstance(func.value, ast.Name) and func.value.id == "math")


def decode(encoded: Any, depth: int = 0) -> Any:
    """The harness's plain-data encoding back into a value; ValueError when malformed.
    Builds only built-in containers of primitives: nothing here can run the program's code."""
    if depth > 66:
        raise ValueError("nested too deeply")
    if encoded is None or type(encoded) in (bool, int, str, bytes):
        return encoded
    if type(encoded) is not tuple or len(encoded) != 2 or type(encoded[0]) is not str:
        raise ValueError(f"not a value record: {type(encoded).__name__}")
    tag, body = encoded
    if tag == "f" and type(body) is str:
        return float(body)
    if tag == "c" and type(body) is str:
        return complex(body)
    if type(body) is not list:
        raise ValueError(f"malformed {tag!r} record")
    items = [decode(item, depth + 1) for item in body] if tag != "D" else None
    if tag == "L":
        return items
    if tag == "T":
        return tuple(items)  # type: ignore[arg-type]
    if tag in ("S", "FS"):
        return (set if tag == "S" else frozenset)(items)  # type: ignore[arg-type]
    if tag == "D":
        pairs = [(decode(p[0], depth + 1), decode(p[1], depth + 1)) for p in body
                 if type(p) is list and len(p) == 2]
        if len(pairs) != len(body):
            raise ValueError("malformed dict record")
        return dict(pairs)
    raise ValueError(f"unknown tag {tag!r}")


def strict_equal(value: Any, expected: Any) -> bool:
    """Equality that does not let a ``bool`` pass for a number or a list for a tuple.

    One allowance, for the references themselves (task 414 returns 0 for False): an
    expected ``bool`` accepts the ``int`` 0 or 1 it equals."""
    numeric = (int, float, complex)
    if type(value) is bool:
        return type(expected) is bool and value == expected
    if type(expected) is bool:
        return type(value) is int and value in (0, 1) and value == expected
    if isinstance(value, numeric) and isinstance(expected, numeric):
        return value == expected
    a, b = value, expected
    if type(a) in (list, tuple) and type(b) is type(a):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, set | frozenset) and isinstance(b, set | frozenset):
        return len(a) == len(b) and all(any(strict_equal(x, y) for y in b) for x in a)
    if type(a) is dict and type(b) is dict:
        if len(a) != len(b):
            return False
        for key, item in a.items():
            match = next((k for k in b if strict_equal(key, k)), _MISSING)
            if match is _MISSING or not strict_equal(item, b[match]):
                return False
        return True
    return type(a) is type(b) and a == b


def passes(check: ValueCheck, encoded: Any) -> tuple[bool, str]:
    """Whether the value the sandbox reported satisfies the test, and what was seen."""
    if encoded is CONFLICT:
        return False, "several value records for this test (written by the program?)"
    try:
        value = decode(encoded)
    except (ValueError, TypeError, OverflowError) as exc:
        return False, f"the reported value does not decode ({exc})"
    shown = repr(value)[:200]
    if check.kind == "eq":
        return strict_equal(value, check.expected), f"got {shown}"
    if check.kind == "ne":
        return not strict_equal(value, check.expected), f"got {shown}"
    if check.kind == "is":
        return value is check.expected or (type(value) is type(check.expected)
                                           and value == check.expected), f"got {shown}"
    if check.kind == "isclose":
        ok = type(value) in (int, float) and math.isclose(
            value, check.expected, **dict(check.options))
        return ok, f"got {shown}"
    truthy = bool(value)
    return (truthy if check.kind == "truthy" else not truthy), f"got {shown}"
