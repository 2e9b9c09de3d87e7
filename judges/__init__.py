"""One judge per kind of task.

``judges.build(kind, options, folder)`` makes the judge a task file names (``judge.kind``):

- ``math``: a final number (``#### N`` strictly, the last number flexibly), compared with
  Math-Verify; options ``gold_answer`` (template), ``require_final_line`` (default true),
  ``admit_unproven_wording`` (default false: a paraphrase proven calculation by
  calculation still keeps its gold, as no rule proves its words), ``prove_own_answers``
  (default true: the model's own answer must do the gold's calculations too);
- ``alias``: a short answer against the row's ``answers`` list (the NQ heuristic), with
  ``llm: {prompt: judge.jinja}`` for what the heuristic cannot decide;
- ``exact``, ``regex`` (``pattern``, ``flags``, ``group``), ``choice`` (``labels``,
  ``choices``): :mod:`judges.rules`, against ``gold_answer``;
- ``llm``: a short answer against ``gold_answer``, the alias rules for clear matches and a
  calibrated LLM judge (``prompt``) for the rest;
- ``python_tests``: the row's ``test_list`` asserts run on the program in the sandbox;
- ``module``: a user's function ``judge(response, row) -> bool | Verdict`` (``path``,
  ``callable``).

``judges.get(name)`` returns a built-in task's judge by its name.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

from judges.base import UNDECIDED_RULES, Judge, Verdict

# name -> "module:factory"; imported lazily so a judge's heavy dependencies load only when used.
_REGISTRY: dict[str, str] = {
    "gsm8k": "judges.gsm8k:Gsm8kJudge",
    "mbpp": "judges.mbpp:MbppJudge",
    "nq": "judges.nq:NqJudge",
}


def available() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str, **settings) -> Judge:
    """Return the judge registered as ``name``, built with ``settings``."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown judge {name!r}; available judges: {', '.join(available())}") from None
    module_name, factory_name = target.split(":")
    factory: Callable[..., Judge] = getattr(import_module(module_name), factory_name)
    return factory(**settings)


def build(kind: str, options: dict[str, Any], folder: Path, **runtime: Any) -> Judge:
    """The judge of ``kind`` with a task file's ``options``. ``runtime`` (``chat``,
    ``max_tokens``, ``min_tpr``, ``min_tnr``) reaches only an LLM-backed judge."""
    # Each judge module loads when its kind is asked for (Math-Verify, the sandbox, ...): a
    # user of one judge does not pay for the others.
    options = dict(options)
    if kind == "math":
        from judges.gsm8k import Gsm8kJudge

        return Gsm8kJudge(**options)
    if kind == "alias":
        from judges.nq import NqJudge
        from judges.templates import PromptTemplate

        llm = options.get("llm")
        if not llm or runtime.get("chat") is None:
            return NqJudge()  # the alias heuristic alone
        return NqJudge(prompt=PromptTemplate(folder / llm["prompt"]), **runtime)
    if kind == "python_tests":
        from judges.mbpp import MbppJudge

        renamed = {"challenge_tests": "include_challenge_tests"}
        return MbppJudge(**{renamed.get(k, k): v for k, v in options.items()})
    if kind == "llm":
        from judges.rules import LlmJudge
        from judges.templates import PromptTemplate

        return LlmJudge(PromptTemplate(folder / options["prompt"]),
                        gold_answer=options.get("gold_answer"), **runtime)
    if kind == "module":
        from judges.rules import ModuleJudge

        return ModuleJudge(folder=folder, **options)
    from judges import rules

    classes = {"exact": rules.ExactJudge, "regex": rules.RegexJudge, "choice": rules.ChoiceJudge}
    if kind not in classes:
        raise KeyError(f"unknown judge kind {kind!r}")
    return classes[kind](**options)


__all__ = ["UNDECIDED_RULES", "Judge", "Verdict", "available", "build", "get"]
