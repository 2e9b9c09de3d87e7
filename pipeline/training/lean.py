"""A training step that computes only what the completion-only loss reads.

TRL's ``SFTTrainer`` pads every batch to its longest row and, off CUDA/XPU, projects every
position through the LM head (its fused head compacts to the labelled positions only on
Triton devices): on an NQ batch of 8 the head, its log-softmax over 49k words and its
backward were a quarter of the step, for the ~10 % of positions that carry a label. PEFT's
LoRA dropout draws one float per element of each adapted layer's input from the CPU
generator: another sixth of the step.

:class:`LeanSFTTrainer` changes how the loss is computed, not what it is:

- the batch's rows run as one packed sequence of their real tokens (no padding), position ids
  restarting in each row and attention causal within each row only (:func:`segmented_sdpa`);
- the LM head and log-softmax see only the positions whose next token is labelled;
- the loss is the sum of those tokens' negative log-likelihoods over ``num_items_in_batch``,
  exactly what TRL's loss is (tested against it on a fixed batch, dropout off).

:class:`FastDropout` is the same Bernoulli dropout (keep with probability ``1 - p``, scale by
``1 / (1 - p)``) drawn from 16-bit random words, four per 64-bit draw: ``p`` is rounded to a
multiple of 1/65536. ``benchmarks/train_step.py --compare`` times TRL's step against this one.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
from trl import SFTTrainer

#: 16-bit words: p is honoured to 1/65536 (0.1 → 0.100006).
_WORD_STATES = 1 << 16


class FastDropout(torch.nn.Module):
    """``nn.Dropout(p)`` with its mask drawn four elements per 64-bit random number."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        # A word (uniform over int16) is dropped when below this threshold.
        self.threshold = -(_WORD_STATES // 2) + round(p * _WORD_STATES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if torch.is_autocast_enabled(x.device.type) and x.dtype == torch.float32:
            # The adapter's matmul casts its input to the autocast dtype anyway; masking after the
            # cast moves half the bytes, and the saved mask is half the size.
            x = x.to(torch.get_autocast_dtype(x.device.type))
        count = x.numel()
        draws = torch.randint(-(2**63), 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64, device=x.device)
        keep = draws.view(torch.int16)[:count].view(x.shape) >= self.threshold
        return x * (keep.to(x.dtype) * (1.0 / (1.0 - self.p)))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_lora_dropout(model: torch.nn.Module) -> int:
    """Replace every PEFT LoRA ``nn.Dropout`` with :class:`FastDropout` of the same ``p``;
    returns how many were replaced (dropout has no weights: the saved adapter is unchanged)."""
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                dropouts[name] = FastDropout(dropout.p)
                replaced += 1
    return replaced


def causal_parts(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(backbone, LM head) of a causal LM, through a PEFT wrapper if there is one (LoRA layers
    live inside the backbone's modules, so calling the backbone applies them)."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return causal.base_model, causal.get_output_embeddings()


#: The attention implementation the packed step switches a model to while it runs.
SEGMENTED = "s3ft_segmented_sdpa"


def segmented_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, *, segments: list[int], **kwargs: Any) -> tuple:
    """Causal attention within each packed row, none across rows: transformers' own SDPA
    (``is_causal``, no mask) on each ``segments`` span of the one packed sequence.

    In float32, outside autocast: on CPU, PyTorch's bf16 flash-attention backward is slower
    than its float32 one (one NQ step of 8 rows: 3.4 → 3.0 s), and float32 is the more exact."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    dtype = query.dtype
    with torch.autocast(query.device.type, enabled=False):
        query, key, value = query.float(), key.float(), value.float()
        outputs = [sdpa_attention_forward(module, query[:, :, start:end], key[:, :, start:end],
                                          value[:, :, start:end], None, is_causal=True, **kwargs)[0]
                   for start, end in zip(segments, segments[1:], strict=False)]
    return torch.cat(outputs, dim=1).to(dtype), None


def _register_segmented() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(SEGMENTED, segmented_sdpa)


@contextmanager
def packed_attention(model: torch.nn.Module):
    """The model's attention switched to :func:`segmented_sdpa` for one forward; the config's
    own setting is back afterwards (what is saved, merged or served never sees it)."""
    _register_segmented()
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = SEGMENTED
    try:
        yield
    finally:
        config._attn_implementation = before


def pack_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor,
              labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """A padded batch as one sequence of its real tokens: (ids, position ids restarting at 0 in
    each row, the next-token label of every position, -100 at each row's last token, and the
    row boundaries)."""
    ids, positions, targets, segments = [], [], [], [0]
    for row_ids, mask, row_labels in zip(input_ids, attention_mask.bool(), labels, strict=True):
        row_ids, row_labels = row_ids[mask], row_labels[mask]
        ids.append(row_ids)
        positions.append(torch.arange(len(row_ids), device=row_ids.device))
        targets.append(torch.cat([row_labels[1:], row_labels.new_full((1,), -100)]))
        segments.append(segments[-1] + len(row_ids))
    return torch.cat(ids), torch.cat(positions), torch.cat(targets), segments


def completion_nll(backbone: torch.nn.Module, head: torch.nn.Module, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Summed negative log-likelihood of the labelled tokens of a padded batch, run as one packed
    sequence of its real tokens; also the count, top-1 hits and summed entropy of those tokens
    (for the training log)."""
    ids, positions, targets, segments = pack_rows(input_ids, attention_mask, labels)
    with packed_attention(backbone):
        hidden = backbone(input_ids=ids[None], position_ids=positions[None], segments=segments,
                          use_cache=False).last_hidden_state[0]
    scored = targets != -100
    targets = targets[scored]
    # The head in float32, outside autocast: few positions, and bf16 logits (8-bit mantissa)
    # would round the log-probabilities the loss is made of.
    with torch.autocast(hidden.device.type, enabled=False):
        logits = torch.nn.functional.linear(hidden[scored].float(), head.weight.float(),
                                            None if head.bias is None else head.bias.float())
    logprobs = logits.log_softmax(-1)
    nll = -logprobs.gather(1, targets[:, None]).sum()
    with torch.no_grad():
        stats = {"tokens": torch.tensor(targets.numel()),
                 "top1": (logprobs.argmax(-1) == targets).sum(),
                 "entropy": -(logprobs.exp() * logprobs).sum()}
    return {"nll": nll, **stats}


class LeanSFTTrainer(SFTTrainer):
    """``SFTTrainer`` with the lean loss above for the plain NLL loss on padded batches; any
    other configuration (padding-free batches, label smoothing, a custom loss, DFT) is TRL's."""

    def _lean(self, inputs: dict[str, Any], return_outputs: bool) -> bool:
        return (not return_outputs and "attention_mask" in inputs and self.args.loss_type == "nll"
                and self.compute_loss_func is None and self.label_smoother is None
                and not getattr(self, "aux_loss_enabled", False)
                and self.model.config._attn_implementation == "sdpa"  # what segmented_sdpa runs
                # a checkpointed layer recomputes its forward during backward, after
                # packed_attention has put the config's own attention back
                and not self.args.gradient_checkpointing)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001 (TRL's)
        if not self._lean(inputs, return_outputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        backbone, head = causal_parts(self.accelerator.unwrap_model(model))
        # Accelerate puts autocast (bf16) around the wrapped model's forward; the backbone and
        # head are called directly here, so they need it around them too.
        with self.accelerator.autocast():
            result = completion_nll(backbone, head, inputs["input_ids"], inputs["attention_mask"],
                                    inputs["labels"])
        tokens = result["tokens"] if num_items_in_batch is None else num_items_in_batch
        loss = result["nll"] / torch.as_tensor(tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as TRL: DDP averages, the count is global
        self._log_like_trl(inputs, result)
        return loss

    def _log_like_trl(self, inputs: dict[str, Any], result: dict[str, torch.Tensor]) -> None:
        """The per-step figures TRL logs (entropy, token accuracy, tokens seen), so train_log.json
        keeps its columns whichever loss ran."""
        mode = "train" if self.model.training else "eval"
        metrics, count = self._metrics[mode], max(int(result["tokens"]), 1)
        metrics["entropy"].append(float(result["entropy"]) / count)
        metrics["mean_token_accuracy"].append(float(result["top1"]) / count)
        if mode == "train":
            self._total_train_tokens += int(inputs["attention_mask"].sum())
            metrics["num_tokens"] = [self._total_train_tokens]
