"""Prompt templates: Jinja files in a task's folder, versioned by their content hash."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from judges.base import JudgeInputError

DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"  # beside judges/

# Templates are data, and a task folder may come from anyone: a plain Environment lets a
# template reach Python's internals (`cycler.__init__.__globals__.os.popen(...)` runs a shell
# command). The sandbox refuses such attribute access when the template renders, and the
# immutable one also refuses calls that change a row's values (`row.answers.append(...)`).
_ENV = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined,
                                                    keep_trailing_newline=False)
_ENV.filters["regex_replace"] = lambda value, pattern, replacement="": re.sub(
    pattern, replacement, str(value))


class UnsafeTemplateError(JudgeInputError):
    """A template reached for what the sandbox refuses (Python internals, mutation)."""


def gold_environment() -> jinja2.Environment:
    """The Jinja environment of every task template: sandboxed, undefined variables are
    errors, and ``regex_replace(pattern, replacement)`` is a filter (e.g. to strip GSM8K's
    ``<<48/2=24>>`` calculator notes from a gold solution)."""
    return _ENV


def render_sandboxed(template: jinja2.Template, where: str, **fields: Any) -> str:
    """``template`` rendered with ``fields``; what the sandbox refuses is one clear error
    naming ``where`` (the template file or task-file key), and nothing of it runs."""
    try:
        return template.render(**fields).strip()
    except jinja2.sandbox.SecurityError as exc:
        raise UnsafeTemplateError(f"{where}: the template tried something templates may not do "
                                  f"({exc}); a template may read its fields and use Jinja's "
                                  f"filters, nothing of Python's internals") from None


@dataclass(frozen=True)
class PromptTemplate:
    path: Path

    @cached_property
    def text(self) -> str:
        if not self.path.is_file():
            raise FileNotFoundError(f"prompt template {self.path} is missing")
        return self.path.read_text()

    @property
    def version(self) -> str:
        """``<task>/<file>@<content hash>``: changes whenever the wording changes."""
        digest = hashlib.sha256(self.text.encode()).hexdigest()[:12]
        return f"{self.path.parent.name}/{self.path.name}@{digest}"

    @cached_property
    def _compiled(self) -> jinja2.Template:
        return _ENV.from_string(self.text)

    def render(self, **fields: Any) -> str:
        return render_sandboxed(self._compiled, str(self.path), **fields)

    def messages(self, **fields: Any) -> list[dict[str, str]]:
        """The rendered template as a single user turn (the model's own chat template applies)."""
        return [{"role": "user", "content": self.render(**fields)}]


def prompts_dir() -> Path:
    return Path(os.environ.get("S3FT_PROMPTS_DIR") or DEFAULT_PROMPTS_DIR)


def template(task: str, name: str) -> PromptTemplate:
    return PromptTemplate(prompts_dir() / task / f"{name}.jinja")


@dataclass(frozen=True)
class ChatPrompt:
    """A task prompt: the user turn's template, an optional system template and fixed
    few-shot turns. ``version`` hashes all of them, so any edit reruns the stage."""

    user: PromptTemplate
    system: PromptTemplate | None = None
    fewshot: tuple[tuple[str, str], ...] = ()

    def templates(self) -> list[PromptTemplate]:
        return [self.user] + ([self.system] if self.system else [])

    @property
    def text(self) -> str:
        return self.user.text

    @property
    def path(self) -> Path:
        return self.user.path

    @property
    def version(self) -> str:
        if self.system is None and not self.fewshot:
            return self.user.version  # a plain template keeps its plain version
        extra = hashlib.sha256(repr((self.system and self.system.text, self.fewshot))
                               .encode()).hexdigest()[:8]
        return f"{self.user.version}+{extra}"

    def render(self, **fields: Any) -> str:
        return self.user.render(**fields)

    def messages(self, **fields: Any) -> list[dict[str, str]]:
        turns = [{"role": "system", "content": self.system.render(**fields)}] if self.system else []
        for user, assistant in self.fewshot:
            turns += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        return turns + self.user.messages(**fields)
