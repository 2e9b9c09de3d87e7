"""Prompt templates: Jinja files under ``prompts/<task>/``, versioned by their content hash."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2

DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)


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
        return self._compiled.render(**fields).strip()

    def messages(self, **fields: Any) -> list[dict[str, str]]:
        """The rendered template as a single user turn (the model's own chat template applies)."""
        return [{"role": "user", "content": self.render(**fields)}]


def prompts_dir() -> Path:
    return Path(os.environ.get("S3FT_PROMPTS_DIR") or DEFAULT_PROMPTS_DIR)


def template(task: str, name: str) -> PromptTemplate:
    return PromptTemplate(prompts_dir() / task / f"{name}.jinja")
