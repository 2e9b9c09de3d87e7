"""MBPP code as text: the one target format, finding the program in a response, and telling
a copy of the reference apart (by AST).

Pure string and ``ast`` work, with no sandbox involved: kept apart from the judge in
:mod:`judges.mbpp` (which re-exports these names) so it can be read, tested and reused
without the run machinery.
"""

from __future__ import annotations

import ast
import re
import textwrap
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = [
    "code_target",
    "extract_code",
    "gold_response",
    "is_copy_of_code",
    "target_problem",
    "without_repeats",
]

_BEGIN = "[BEGIN]"
_DONE = "[DONE]"
_STRAY_FENCE = re.compile(r"^[ \t]*```[\w+-]*[ \t]*$", re.M)
_FENCED = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]", re.M)
_FENCE_LANGS = {"", "python", "python3", "py", "py3"}


def gold_response(example: Mapping[str, Any]) -> str:
    """The reference solution wrapped the way the prompt asks the model to answer, in the
    one target format (:func:`code_target`)."""
    return code_target(str(example["code"]))


def code_target(code: str) -> str:
    """The one format of every MBPP target, model, paraphrase and gold alike: the program
    between ``[BEGIN]`` and ``[DONE]`` lines (what the answer prompt asks for), ``\\n`` line
    ends, no trailing white space, and a statement the program repeats word for word (the
    small model pastes its function two or three times) written once."""
    return f"{_BEGIN}\n{without_repeats(_normalise(code))}\n{_DONE}"


def without_repeats(code: str) -> str:
    """``code`` without top-level statements that repeat an earlier one exactly (same AST):
    the program means the same, and the target does not teach pasting."""
    tree = quiet_parse(code)
    if tree is None:
        return code
    seen: set[str] = set()
    drop: set[int] = set()
    for node in tree.body:
        dump = ast.dump(node)
        if dump in seen:
            start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            drop.update(range(start - 1, node.end_lineno or node.lineno))
        seen.add(dump)
    if not drop:
        return code
    lines = [line for i, line in enumerate(code.split("\n")) if i not in drop]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def target_problem(code: str) -> tuple[str, str] | None:
    """Why a passing program is still not a good target: it runs code at import (demo
    ``print`` calls, often with wrong expected values in comments; ``assert f(1) == 2`` lines
    after the function; a ``__main__`` block), or it defines one name twice with different
    bodies (which one is the answer?). A target is the solution only: imports, definitions,
    and assignments of constants (or of names its definitions use)."""
    tree = quiet_parse(without_repeats(code))
    if tree is None:
        return ("format:not_python", "the code does not parse")
    defined: set[str] = set()
    used = _names_used_in_definitions(tree)
    for index, node in enumerate(tree.body):
        is_docstring = index == 0 and isinstance(node, ast.Expr) and isinstance(
            getattr(node, "value", None), ast.Constant)
        if is_docstring or isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name in defined:
                return ("format:redefined", f"{node.name!r} is defined twice, differently")
            defined.add(node.name)
            continue
        if isinstance(node, ast.Assign | ast.AnnAssign) and _is_solution_assignment(node, used):
            continue
        what = "test code" if isinstance(node, ast.Assert) else "code"
        return ("format:top_level_code", f"the program runs {what} at import "
                f"({ast.unparse(node)[:80]}): a target is the solution only")
    return None


def _names_used_in_definitions(tree: ast.Module) -> set[str]:
    """Names read inside the program's functions and classes."""
    return {n.id for d in tree.body if isinstance(d, ast.FunctionDef | ast.AsyncFunctionDef
                                                   | ast.ClassDef)
            for n in ast.walk(d) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _is_solution_assignment(node: ast.Assign | ast.AnnAssign, used: set[str]) -> bool:
    """``MAX = 1000``, ``regex = '^a'`` (a constant), or a value a definition reads
    (``Pair = namedtuple(...)``); not ``result = max_of_two(10, 20)``, kept to print."""
    if node.value is None:
        return True  # a bare annotation
    if all(isinstance(n, ast.Constant | ast.BinOp | ast.UnaryOp | ast.operator | ast.unaryop
                      | ast.Tuple | ast.List | ast.Set | ast.Dict | ast.expr_context)
           for n in ast.walk(node.value)):
        return True  # constants and arithmetic on them: 10**9 + 7
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return bool(names) and all(name in used for name in names)


def quiet_parse(code: str) -> ast.Module | None:
    """``ast.parse`` without the SyntaxWarnings of old code (``'\\d'`` escapes); None when
    the code does not parse."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.parse(code)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return None


def _statements(code: str) -> list[str] | None:
    """The program's top-level statements as AST dumps (formatting and comments ignored)."""
    tree = quiet_parse(_normalise(code))
    if tree is None:
        return None
    return [ast.dump(node) for node in tree.body]


def is_copy_of_code(code: str, reference: str) -> bool:
    """``code`` is ``reference`` again: the same statements (layout and comments aside),
    maybe pasted several times, and nothing of its own."""
    own, gold = _statements(code), _statements(reference)
    if own is None or gold is None:
        return _normalise(code) == _normalise(reference)
    return bool(own) and set(own) <= set(gold)



def extract_code(response: str) -> tuple[str | None, str]:
    """Return (code, rule) for the program in ``response``, or (None, "no_code").

    Strict rules first, because the prompt asks for ``[BEGIN] ... [DONE]``:
    ``strict:begin_done``, then ``strict:begin_no_done`` (an answer cut off before its
    ``[DONE]``), then markdown fences (``strict:fenced``: the first block that defines a
    function, else the first block). Last, ``flexible:raw``: the whole response if it
    parses as Python and does more than evaluate bare expressions (so a one-word answer
    is not taken for code).
    """
    if not isinstance(response, str) or not response.strip():
        return None, "no_code"
    start = response.find(_BEGIN)
    if start != -1:
        body = response[start + len(_BEGIN):]
        end = body.find(_DONE)
        rule = "strict:begin_done" if end != -1 else "strict:begin_no_done"
        code = _clean_block(body[:end] if end != -1 else body)
        if code:
            return code, rule
    code = _first_fenced(response)
    if code:
        return code, "strict:fenced"
    if _is_program(response):
        return _normalise(response), "flexible:raw"
    return None, "no_code"


def _clean_block(text: str) -> str:
    """The code inside ``[BEGIN]``: stray fences removed, common indentation removed, and
    the quotes some MBPP few-shot prompts put around the code (``'def f(): ...'``) undone."""
    text = _STRAY_FENCE.sub("", text)
    code = _normalise(text)
    quoted = text.strip()
    if len(quoted) >= 2 and quoted[0] == quoted[-1] == "'" and not _parses(code):
        unquoted = _normalise(quoted[1:-1])
        if _parses(unquoted):
            return unquoted
    return code


def _first_fenced(response: str) -> str | None:
    blocks = [
        _normalise(body) for lang, body in _FENCED.findall(response)
        if lang.lower() in _FENCE_LANGS
    ]
    blocks = [b for b in blocks if b]
    if not blocks:
        return None
    return next((b for b in blocks if _DEF.search(b)), blocks[0])


def _normalise(text: str) -> str:
    return textwrap.dedent(text.replace("\r\n", "\n")).strip("\n").rstrip()


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def _is_program(text: str) -> bool:
    try:
        tree = ast.parse(_normalise(text))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return any(not isinstance(node, ast.Expr) for node in tree.body)
