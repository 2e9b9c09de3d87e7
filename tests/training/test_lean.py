"""The lean training step (pipeline/training/lean.py) computes TRL's loss and gradients, faster."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.train import TrainArguments
from pipeline.training.lean import FastDropout, pack_rows
from tests.training.test_train import mixed_export  # noqa: F401 (fixture)


def test_fast_dropout_keeps_one_minus_p_and_scales_what_it_keeps() -> None:
    torch.manual_seed(0)
    dropout = FastDropout(0.1)
    x = torch.ones(1000, 1001, requires_grad=True)  # odd size: the last 64-bit draw is partly used
    y = dropout(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.002  # 1M draws: 5 standard errors is 0.0015
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient is the same mask and scale
    assert not torch.equal(dropout(x), y)  # a new mask on every call
    dropout.eval()
    assert dropout(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        FastDropout(1.0)


def test_pack_rows_keeps_real_tokens_restarts_positions_and_shifts_labels() -> None:
    # row 0 is right-padded, row 1 left-padded (pad id 0); labels -100 on prompt and padding
    ids = torch.tensor([[5, 6, 7, 0], [0, 8, 9, 10]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    labels = torch.tensor([[-100, 6, 7, -100], [-100, -100, 9, 10]])
    packed, positions, targets, segments = pack_rows(ids, mask, labels)
    assert packed.tolist() == [5, 6, 7, 8, 9, 10]
    assert positions.tolist() == [0, 1, 2, 0, 1, 2]
    # each position's next token within its own row; a row's last token predicts nothing
    assert targets.tolist() == [6, 7, -100, 9, 10, -100]
    assert segments == [0, 3, 6]


def _trainer(data: Path, out: Path, lean: bool, bf16: bool = False):
    from pipeline.training.trainer import prepare_training

    run = prepare_training(TrainArguments(data=str(data), out=str(out), lean_step=lean, lora_dropout=0.0),
                           {"save_strategy": "no", "bf16": bf16, "per_device_train_batch_size": 4})
    return run.trainer


def _loss_and_grads(trainer, batch) -> tuple[float, dict[str, torch.Tensor]]:
    model = trainer.model
    model.train()
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=(batch["labels"] != -100).sum())
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return loss.item(), grads


@pytest.mark.slow
def test_the_lean_step_computes_trls_loss_and_gradients(mixed_export: Path, tmp_path: Path) -> None:  # noqa: F811
    """One padded batch of four rows of different lengths, float32, no dropout: TRL's padded
    forward over every position and the packed forward over labelled positions agree."""
    reference = _trainer(mixed_export, tmp_path / "trl", lean=False)
    lean = _trainer(mixed_export, tmp_path / "lean", lean=True)
    assert type(reference).__name__ == "SFTTrainer" and type(lean).__name__ == "LeanSFTTrainer"
    lean.model.load_state_dict(reference.model.state_dict())  # the same LoRA initialisation
    batch = reference.data_collator([reference.train_dataset[i] for i in range(4)])
    assert (batch["attention_mask"] == 0).any()  # the batch is padded
    # Make the adapter do something, so its B matrices are not zero and every gradient counts.
    with torch.no_grad():
        for model in (reference.model, lean.model):
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.linspace(-0.01, 0.01, param.numel()).view_as(param))

    want_loss, want_grads = _loss_and_grads(reference, batch)
    got_loss, got_grads = _loss_and_grads(lean, batch)
    assert got_loss == pytest.approx(want_loss, rel=1e-5)
    assert want_grads.keys() == got_grads.keys() and len(want_grads) == 2 * 7 * 30
    for name, want in want_grads.items():
        # float32 sums in another order: equal to 0.1 % of the gradient's norm (rows that leak
        # into each other's attention: far more)
        assert (got_grads[name] - want).norm() <= 1e-3 * want.norm(), name
    # TRL's own log figures are kept
    assert lean._metrics["train"]["mean_token_accuracy"] and lean._metrics["train"]["entropy"]


@pytest.mark.slow
def test_the_lean_step_is_the_cpu_default_and_steps_aside_where_it_cannot_run(mixed_export: Path,  # noqa: F811
                                                                              tmp_path: Path) -> None:
    from pipeline.training.trainer import prepare_training

    run = prepare_training(TrainArguments(data=str(mixed_export), out=str(tmp_path / "a")),
                           {"save_strategy": "no"})
    dropouts = [m for m in run.trainer.model.modules() if isinstance(m, FastDropout)]
    assert len(dropouts) == 7 * 30 and {d.p for d in dropouts} == {0.1}
    batch = run.trainer.data_collator([run.trainer.train_dataset[i] for i in range(2)])
    assert run.trainer._lean(batch, return_outputs=False)
    assert not run.trainer._lean(batch, return_outputs=True)
    # Gradient checkpointing recomputes layers in backward, outside the packed attention: TRL's step.
    checkpointed = prepare_training(TrainArguments(data=str(mixed_export), out=str(tmp_path / "b")),
                                    {"save_strategy": "no", "gradient_checkpointing": True})
    assert not checkpointed.trainer._lean(batch, return_outputs=False)
    loss = checkpointed.trainer.compute_loss(checkpointed.trainer.model, dict(batch))
    assert torch.isfinite(loss)
