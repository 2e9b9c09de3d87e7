"""LoRA adapters on the embedded model for tests, made in a moment instead of trained."""

from __future__ import annotations

import json

import torch


def perturbed_adapter(path, base_path: str, scale: float) -> str:
    """A LoRA adapter on the base; scale 0 keeps PEFT's zero-initialised B (the identity)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    with torch.random.fork_rng():  # PEFT draws lora_A from the global generator: pin it, so the
        torch.manual_seed(0)       # adapter is the same whichever tests ran before
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    generator = torch.Generator().manual_seed(0)
    for name, weight in model.named_parameters():
        if "lora_B" in name and scale:
            weight.data = scale * torch.randn(weight.shape, generator=generator)
    model.save_pretrained(path)
    config = json.loads((path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == base_path
    return str(path)


def fully_tuned_copy(path, adapter: str, base_path: str) -> str:
    """A whole model folder as ``pipeline.train --no-lora`` leaves it: ``adapter`` merged
    into the base's weights, and a train_metrics.json that names the base it came from."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    PeftModel.from_pretrained(model, adapter).merge_and_unload().save_pretrained(path)
    (path / "train_metrics.json").write_text(json.dumps({"mode": "sft", "lora": False, "model": base_path}))
    return str(path)
