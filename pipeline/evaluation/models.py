"""A model under test: what the user named (a model, a ``.gguf``, an embedded spec or a PEFT
adapter folder) resolved to the base model that loads and the adapter served on top of it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UsageError


@dataclass(frozen=True)
class ModelUnderTest:
    name: str
    spec: str  # what the user passed
    base: str  # the model spec vLLM / lm-eval load
    adapter: str | None = None  # PEFT adapter folder served on top of ``base``
    rank: int = 0
    #: A fully fine-tuned folder (``pipeline.train --no-lora``): the model it was trained
    #: from, as its train_metrics.json records it; drift measures how far it moved from there.
    trained_from: str | None = None

    @property
    def adapter_fingerprint(self) -> str | None:
        if not self.adapter:
            return None
        digest = hashlib.sha256()
        for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
            path = Path(self.adapter) / name
            if path.is_file():
                digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    @property
    def weights_fingerprint(self) -> str | None:
        """What training changed: the adapter's files, or a fully fine-tuned model's weights."""
        if self.adapter:
            return self.adapter_fingerprint
        if not self.trained_from:
            return None
        digest = hashlib.sha256()
        for path in sorted(Path(self.spec).glob("*.safetensors")) + sorted(Path(self.spec).glob("*.bin")):
            with path.open("rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
        return digest.hexdigest()[:16]


def model_under_test(spec: str, name: str | None = None, base_model: str | None = None) -> ModelUnderTest:
    path = Path(spec)
    adapter_config = path / "adapter_config.json"
    if not adapter_config.is_file():
        if path.is_dir() and not (path / "config.json").is_file():
            raise UsageError(f"--model {spec}: the folder has neither config.json (a model) nor "
                             f"adapter_config.json (a PEFT adapter)")
        return ModelUnderTest(name or (path.name if path.exists() else spec), spec, spec,
                              trained_from=_trained_from(path))
    settings = json.loads(adapter_config.read_text())
    base = base_model or settings.get("base_model_name_or_path")
    if not base:
        raise UsageError(f"{adapter_config} names no base_model_name_or_path: pass --base-model")
    if base_model is None and not Path(base).exists() and base.startswith(("/", ".", "~")):
        # a local base moved or deleted: say which flag fixes it, not --model
        raise UsageError(f"--model {spec}: the adapter's base model {base} (its "
                         f"adapter_config.json's base_model_name_or_path) does not exist; pass "
                         f"--base-model with where the base model is now")
    return ModelUnderTest(name or path.name, spec, base, str(path.resolve()), int(settings.get("r", 8)))


def _trained_from(path: Path) -> str | None:
    """The base a ``pipeline.train --no-lora`` folder was fine-tuned from, else None."""
    metrics = path / "train_metrics.json"
    if not metrics.is_file():
        return None
    recorded = json.loads(metrics.read_text())
    return None if recorded.get("lora", True) else recorded.get("model")
