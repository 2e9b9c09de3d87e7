"""``pipeline.train``: column choice per mode, prompt masking, bad input, and a real CPU training
of SmolLM2 whose adapter, merged folder and vLLM load are checked against each other."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.stages.export import TRAIN_SCHEMA
from pipeline.train import TrainArguments
from pipeline.training.data import TrainInputError, build_examples
from pipeline.training.trainer import train

PROJECT = Path(__file__).resolve().parents[2]
PROMPT = [{"role": "user", "content": "What is {n} plus {n}?"}]


def write_export(path: Path, rows: list[dict], schema: pa.Schema = TRAIN_SCHEMA) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def export_row(n: int, *, source: str, candidate: str | None, paraphrase: str | None,
               paraphrase_verdict: bool | None) -> dict:
    gold = f"gold answer {n}: {2 * n}"
    target = {"model": candidate, "paraphrase": paraphrase, "gold": gold}[source]
    return {
        "id": f"row-{n}", "task": "toy",
        "prompt": [{"role": m["role"], "content": m["content"].format(n=n)} for m in PROMPT],
        "completion": [{"role": "assistant", "content": target}], "source": source, "target": target,
        "gold": gold, "candidate": candidate, "verdict": source == "model", "paraphrase": paraphrase,
        "admitted": source == "model",
        "paraphrase_verdict": paraphrase_verdict, "paraphrase_admitted": paraphrase_verdict,
        "model": "embedded:smollm2-135m-instruct",
    }


@pytest.fixture
def mixed_export(tmp_path: Path) -> Path:
    """One row per S3FT case, every text distinct, so each mode's choice is visible."""
    rows = [
        # model right: no paraphrase was made
        export_row(1, source="model", candidate="model answer 1", paraphrase=None, paraphrase_verdict=None),
        # model wrong, paraphrase passed
        export_row(2, source="paraphrase", candidate="wrong 2", paraphrase="paraphrase 2",
                   paraphrase_verdict=True),
        # model wrong, paraphrase failed
        export_row(3, source="gold", candidate="wrong 3", paraphrase="bad paraphrase 3",
                   paraphrase_verdict=False),
        # model right and (with --paraphrase-all) a passing paraphrase too
        export_row(4, source="model", candidate="model answer 4", paraphrase="paraphrase 4",
                   paraphrase_verdict=True),
    ]
    return write_export(tmp_path / "train.parquet", rows)


EXPECTED_TARGETS = {
    "sft": ["gold answer 1: 2", "gold answer 2: 4", "gold answer 3: 6", "gold answer 4: 8"],
    "s3ft": ["model answer 1", "paraphrase 2", "gold answer 3: 6", "model answer 4"],
    "sdft": ["gold answer 1: 2", "paraphrase 2", "gold answer 3: 6", "paraphrase 4"],
}


@pytest.mark.parametrize("mode", sorted(EXPECTED_TARGETS))
def test_each_mode_trains_on_its_column(mixed_export: Path, mode: str) -> None:
    examples = build_examples(mixed_export, mode)
    assert [e["completion"] for e in examples] == [
        [{"role": "assistant", "content": text}] for text in EXPECTED_TARGETS[mode]
    ]
    assert [e["prompt"] for e in examples] == [
        [{"role": "user", "content": f"What is {n} plus {n}?"}] for n in (1, 2, 3, 4)
    ]


def test_limit_keeps_the_first_rows(mixed_export: Path) -> None:
    examples = build_examples(mixed_export, "s3ft", limit=2)
    assert [e["completion"][0]["content"] for e in examples] == EXPECTED_TARGETS["s3ft"][:2]


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TrainInputError, match=r"--data .*nope\.parquet: no such file"):
        build_examples(tmp_path / "nope.parquet", "s3ft")


def test_not_a_parquet_file(tmp_path: Path) -> None:
    bogus = tmp_path / "train.parquet"
    bogus.write_text('{"prompt": "jsonl is not parquet"}\n')
    with pytest.raises(TrainInputError, match=r"train\.parquet: not a readable Parquet file"):
        build_examples(bogus, "s3ft")


def test_empty_file(tmp_path: Path) -> None:
    empty = write_export(tmp_path / "train.parquet", [])
    with pytest.raises(TrainInputError, match="has no rows"):
        build_examples(empty, "sft")


def test_file_without_prompt_column(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.string()), ("target", pa.string())])
    path = write_export(tmp_path / "train.parquet", [{"id": "a", "target": "t"}], schema)
    with pytest.raises(TrainInputError, match=r"--mode s3ft needs column\(s\) prompt"):
        build_examples(path, "s3ft")


def test_sdft_on_a_file_without_paraphrase_admitted(tmp_path: Path) -> None:
    schema = pa.schema([f for f in TRAIN_SCHEMA if f.name != "paraphrase_admitted"])
    row = export_row(1, source="gold", candidate=None, paraphrase=None, paraphrase_verdict=None)
    row.pop("paraphrase_admitted")
    path = write_export(tmp_path / "train.parquet", [row], schema)
    with pytest.raises(TrainInputError, match=r"--mode sdft needs column\(s\) paraphrase_admitted"):
        build_examples(path, "sdft")
    assert build_examples(path, "sft")  # the same file is fine for a mode that does not need it


def test_unknown_mode(mixed_export: Path) -> None:
    with pytest.raises(TrainInputError, match=r"--mode 'dpo': unknown mode; choose one of s3ft, sft, sdft"):
        train(TrainArguments(data=str(mixed_export), mode="dpo"))


def test_missing_data_flag() -> None:
    with pytest.raises(TrainInputError, match="--data is required"):
        train(TrainArguments())


def test_empty_target_names_the_row(tmp_path: Path) -> None:
    rows = [export_row(n, source="gold", candidate=None, paraphrase=None, paraphrase_verdict=None)
            for n in (1, 2)]
    rows[1]["gold"] = None
    path = write_export(tmp_path / "train.parquet", rows)
    with pytest.raises(TrainInputError, match=r"row 1 \(id row-2\): --mode sft trains on `gold`"):
        build_examples(path, "sft")


def test_rows_from_several_models_need_model_flag(tmp_path: Path) -> None:
    from pipeline.training.data import resolve_training_model

    rows = [export_row(n, source="gold", candidate=None, paraphrase=None, paraphrase_verdict=None)
            for n in (1, 2)]
    rows[1]["model"] = "someone/other-model"
    path = write_export(tmp_path / "train.parquet", rows)
    with pytest.raises(TrainInputError, match="several models .*pass --model"):
        resolve_training_model(None, path)


def test_unresolvable_data_model_falls_back_to_default_loudly(tmp_path: Path, caplog) -> None:
    from pipeline.backends.model import resolve_model
    from pipeline.training.data import resolve_training_model

    row = export_row(1, source="gold", candidate=None, paraphrase=None, paraphrase_verdict=None)
    row["model"] = str(tmp_path / "gone.gguf")
    path = write_export(tmp_path / "train.parquet", [row])
    with caplog.at_level("WARNING", logger="pipeline.training.data"):
        assert resolve_training_model(None, path) == resolve_model().path
    assert "gone.gguf" in caplog.text and "pass --model" in caplog.text


def test_help_needs_no_heavy_import() -> None:
    code = ("import sys; from pipeline.train import main; main(['--help']); "
            "print('heavy:', [m for m in ('torch', 'transformers', 'trl') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    for flag in ("--data", "--mode", "--out", "--model", "--no-lora", "--lora_r", "--merge", "--help-all",
                 "--config"):
        assert flag in done.stdout
    assert done.stdout.strip().endswith("heavy: []")


# --------------------------------------------------------------------------- TRL wiring


@pytest.mark.slow
def test_yaml_then_flags_over_our_defaults(tmp_path: Path) -> None:
    import torch

    from pipeline.train import make_parser

    config = tmp_path / "train.yaml"
    config.write_text("mode: sft\nlora_r: 2\nlearning_rate: 3.0e-4\nmax_steps: 5\n")
    args, sft = make_parser().parse_args_and_config(
        args=["--config", str(config), "--lora_r", "4", "--no-lora", "--data", "x.parquet"])
    assert (args.mode, args.lora_r, args.lora, args.data) == ("sft", 4, False, "x.parquet")
    assert (sft.learning_rate, sft.max_steps) == (3e-4, 5)
    assert sft.completion_only_loss is True and sft.logging_steps == 1
    if not torch.cuda.is_available():
        assert sft.use_cpu and not sft.gradient_checkpointing

    from pipeline.training.trainer import make_sft_config

    with pytest.raises(TrainInputError, match="unknown SFTConfig option.*learning_rat"):
        make_sft_config({"learning_rat": 1e-4})


@pytest.mark.slow
def test_cli_reports_bad_input_with_flag_and_column(tmp_path: Path) -> None:
    schema = pa.schema([f for f in TRAIN_SCHEMA if f.name != "paraphrase_admitted"])
    row = export_row(1, source="gold", candidate=None, paraphrase=None, paraphrase_verdict=None)
    row.pop("paraphrase_admitted")
    path = write_export(tmp_path / "train.parquet", [row], schema)
    done = subprocess.run([sys.executable, "-m", "pipeline.train", "--data", str(path), "--mode", "sdft"],
                          cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert f"--data {path}: --mode sdft needs column(s) paraphrase_admitted" in done.stderr
    assert not (tmp_path / "sdft-lora").exists()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sdft", "s3ft"])
def test_labels_mask_the_prompt_and_keep_the_whole_completion(mixed_export: Path, tmp_path: Path,
                                                              mode: str) -> None:
    """The rows TRL trains on: prompt tokens (system turn, user turn and the assistant header
    ``<|im_start|>assistant\\n``) carry label -100; every completion token (the target, then
    ``<|im_end|>\\n``) carries its own id, also after the collator pads the batch."""
    import torch

    from pipeline.training.trainer import prepare_training

    run = prepare_training(TrainArguments(data=str(mixed_export), mode=mode, out=str(tmp_path / "out")),
                           {"save_strategy": "no"})
    tokenizer, rows = run.tokenizer, run.trainer.train_dataset
    assert len(rows) == 4
    for row, example, target in zip(rows, build_examples(mixed_export, mode), EXPECTED_TARGETS[mode],
                                    strict=True):
        prompt_ids = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True,
                                                   tokenize=True, return_dict=True)["input_ids"]
        full_ids = tokenizer.apply_chat_template(example["prompt"] + example["completion"],
                                                 tokenize=True, return_dict=True)["input_ids"]
        assert tokenizer.decode(prompt_ids).endswith("<|im_start|>assistant\n")
        assert row["input_ids"] == full_ids
        n = len(prompt_ids)
        assert row["labels"][:n] == [-100] * n
        assert row["labels"][n:] == row["input_ids"][n:]
        assert tokenizer.decode(row["input_ids"][n:]) == target + "<|im_end|>\n"

    # The collator pads with <|im_end|> (SmolLM2's pad token is its eos): padding must be masked
    # while the real <|im_end|> closing each completion keeps its label.
    batch = run.trainer.data_collator([rows[i] for i in range(4)])
    for i in range(4):
        length = len(rows[i]["input_ids"])
        assert batch["labels"][i, :length].tolist() == rows[i]["labels"]
        assert bool((batch["labels"][i, length:] == -100).all())
        assert batch["attention_mask"][i].sum().item() == length
    assert tokenizer.eos_token_id in batch["labels"].tolist()[0]
    assert isinstance(batch["input_ids"], torch.Tensor)


# --------------------------------------------------------------------------- real training

SMOKE_STEPS = 8


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory, gsm8k_train) -> Iterator[Path]:
    """4 real GSM8K rows (the shortest of the first 400, to keep CPU steps cheap) in the export's
    schema, with the project's prompt template and the cleaned gold answer as target. Set
    ``S3FT_SMOKE_TRAIN_PARQUET`` to a curated train.parquet to use its first 4 rows instead.
    The folder (it gets the trained adapter and a merged whole model, 0.5 GB) is removed when
    the module's tests are done: the suite's peak disk use, not only its end state, counts."""
    folder = tmp_path_factory.mktemp("smoke")
    yield _smoke_rows(folder / "train.parquet", gsm8k_train)
    shutil.rmtree(folder, ignore_errors=True)


def _smoke_rows(path: Path, gsm8k_train) -> Path:
    from pipeline.tasks import load_task

    curated = os.environ.get("S3FT_SMOKE_TRAIN_PARQUET")
    if curated:
        pq.write_table(pq.read_table(curated).slice(0, 4), path)
        return path
    task = load_task("gsm8k")
    shortest = sorted(gsm8k_train[:400], key=lambda r: len(r["question"]) + len(r["answer"]))[:4]
    rows = []
    for index, source in enumerate(shortest):
        gold = task.gold_response(source)
        rows.append({"id": f"gsm8k-smoke-{index}", "task": "gsm8k",
                     "prompt": task.answer_prompt.messages(**source),
                     "completion": [{"role": "assistant", "content": gold}], "source": "gold",
                     "target": gold, "gold": gold, "model": "embedded:smollm2-135m-instruct"})
    return write_export(path, rows)


@pytest.fixture(scope="module")
def smoke_run(smoke_data: Path) -> dict:
    """A real LoRA training through the command line: same 4 rows every step, high constant
    learning rate, so the loss must fall; adapter and merged model saved."""
    out = smoke_data.parent / "s3ft-lora"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "--data", str(smoke_data), "--mode", "s3ft", "--limit", "4",
         "--out", str(out), "--merge", "--max_steps", str(SMOKE_STEPS), "--per_device_train_batch_size", "4",
         "--learning_rate", "2e-3", "--lr_scheduler_type", "constant", "--save_strategy", "no",
         "--seed", "0", "--disable_tqdm", "true"],
        cwd=PROJECT, capture_output=True, text=True, timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # Progress reaches the log even without a terminal: steps done / total, then "done".
    assert f"train: {SMOKE_STEPS}/{SMOKE_STEPS} steps (100.0%)" in done.stderr
    metrics = json.loads((out / "train_metrics.json").read_text())
    # stdout: TRL's per-step log lines (tqdm is off), then the metrics as indented JSON
    assert json.loads(done.stdout[done.stdout.index("{\n"):]) == metrics
    return metrics


@pytest.mark.slow
def test_smoke_loss_is_finite_and_falls(smoke_run: dict) -> None:
    out = Path(smoke_run["out"])
    losses = [float(line.split(",")[2]) for line in (out / "train_log.csv").read_text().splitlines()[1:]]
    assert len(losses) == SMOKE_STEPS == smoke_run["steps"]
    assert all(math.isfinite(loss) for loss in losses)
    assert max(losses[-3:]) < min(losses[:3])
    assert losses[-1] < 0.6 * losses[0]
    assert smoke_run["final_loss"] == losses[-1]
    assert smoke_run["seconds_per_step"] > 0 and smoke_run["peak_rss_mib"] > 0
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((out / "train_log.json").read_text())
    assert [e["loss"] for e in history if "loss" in e] == losses


@pytest.fixture(scope="module")
def smoke_logits(smoke_run: dict, smoke_data: Path) -> dict:
    """Base, base + saved adapter and merged-folder outputs on the first training row."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(smoke_run["out"])
    example = build_examples(smoke_data, "s3ft")[0]
    tokenizer = AutoTokenizer.from_pretrained(out)
    prompt_ids = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
    full_ids = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=True,
                                             return_dict=True)["input_ids"]
    ids = torch.tensor([full_ids])
    with torch.no_grad():
        model = AutoModelForCausalLM.from_pretrained(smoke_run["model"], dtype=torch.float32)
        base = model(ids).logits
        adapted_model = PeftModel.from_pretrained(model, out)
        adapted = adapted_model(ids).logits
        merged_model = AutoModelForCausalLM.from_pretrained(smoke_run["merged"], dtype=torch.float32)
        merged = merged_model(ids).logits
        greedy = merged_model.generate(torch.tensor([prompt_ids]), max_new_tokens=8, do_sample=False)
    return {"base": base, "adapted": adapted, "merged": merged, "n_prompt": len(prompt_ids),
            "full_ids": full_ids, "prompt_ids": prompt_ids,
            "merged_greedy": greedy[0, len(prompt_ids):].tolist()}


def completion_nll(logits, full_ids: list[int], n_prompt: int) -> float:
    import torch

    targets = torch.tensor(full_ids[n_prompt:])
    return torch.nn.functional.cross_entropy(logits[0, n_prompt - 1:-1], targets).item()


@pytest.mark.slow
def test_saved_adapter_changes_the_model(smoke_logits: dict) -> None:
    base, adapted = smoke_logits["base"], smoke_logits["adapted"]
    assert (adapted - base).abs().max().item() > 0.1
    args = (smoke_logits["full_ids"], smoke_logits["n_prompt"])
    assert completion_nll(adapted, *args) < 0.6 * completion_nll(base, *args)


@pytest.mark.slow
def test_merged_folder_equals_base_plus_adapter(smoke_run: dict, smoke_logits: dict) -> None:
    merged_dir = Path(smoke_run["merged"])
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (merged_dir / name).is_file(), name
    assert not (merged_dir / "adapter_config.json").exists()
    import torch

    assert torch.allclose(smoke_logits["merged"], smoke_logits["adapted"], atol=1e-3)


VLLM_SCRIPT = textwrap.dedent("""
    import json, sys

    def main():
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt

        from pipeline.backends.device import configure_environment
        from pipeline.backends.model import cache_dir

        configure_environment(cache_dir(), kv_cache_gib=1)
        llm = LLM(model=sys.argv[1], enforce_eager=True, dtype="float32", max_model_len=512, seed=0)
        prompt = TokensPrompt(prompt_token_ids=json.loads(sys.argv[2]))
        output = llm.generate([prompt], SamplingParams(temperature=0.0, max_tokens=8), use_tqdm=False)
        print("TOKENS", json.dumps(list(output[0].outputs[0].token_ids)))

    if __name__ == "__main__":
        main()
""")


@pytest.mark.slow
@pytest.mark.heavy  # an engine start of its own; the first tier serves merged copies in vLLM in
# tests/evaluation/test_vllm_scorer.py (the adapter scored merged, against HF)
def test_merged_folder_serves_in_vllm(smoke_run: dict, smoke_logits: dict, tmp_path: Path) -> None:
    """vLLM loads the merged folder and decodes greedily what transformers decodes from it."""
    script = tmp_path / "vllm_generate.py"
    script.write_text(VLLM_SCRIPT)
    from pipeline.backends.device import record_engine_start

    record_engine_start("vllm (merged folder)")
    done = subprocess.run(
        [sys.executable, str(script), smoke_run["merged"], json.dumps(smoke_logits["prompt_ids"])],
        cwd=PROJECT, capture_output=True, text=True, timeout=1200,
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": str(PROJECT)},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    tokens = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("TOKENS "))[7:])
    assert tokens == smoke_logits["merged_greedy"]


@pytest.mark.slow
def test_full_fine_tuning_saves_a_whole_model(smoke_data: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "sft-full"
    metrics = train(TrainArguments(data=str(smoke_data), mode="sft", out=str(out), lora=False, limit=1,
                                   merge=True),
                    {"max_steps": 1, "per_device_train_batch_size": 1, "learning_rate": 1e-3,
                     "save_strategy": "no", "disable_tqdm": True})
    assert metrics["steps"] == 1 and math.isfinite(metrics["final_loss"])
    assert metrics["merged"] == str(out) and not (out / "adapter_config.json").exists()
    tuned = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(metrics["model"], dtype=torch.float32)
    layer = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(tuned.state_dict()[layer], base.state_dict()[layer])


def test_a_training_yaml_splits_into_our_options_and_sftconfig_options(tmp_path):
    from pipeline.errors import UsageError
    from pipeline.training.trainer import training_options

    path = tmp_path / "train.yaml"
    path.write_text("max_steps: 2\nlimit: 8\nlora_r: 4\nlearning_rate: 5.0e-3\n")
    assert training_options(str(path)) == ({"limit": 8, "lora_r": 4},
                                           {"max_steps": 2, "learning_rate": 0.005})
    assert training_options(None) == ({}, {})
    path.write_text("mode: sft\n")
    with pytest.raises(UsageError, match="mode is set by the command itself"):
        training_options(str(path))
    path.write_text("- a list\n")
    with pytest.raises(UsageError, match="expected a mapping"):
        training_options(str(path))


def test_compare_and_run_train_keep_no_checkpoint_unless_the_yaml_asks(monkeypatch, tmp_path):
    """``train_from_config`` (compare, run --train) never resumes a checkpoint, so it saves none
    by default: a full fine-tuning's final one is the weights again plus the optimizer state."""
    from pipeline.training import trainer

    seen = []
    monkeypatch.setattr(trainer, "train", lambda args, config: seen.append((config.save_strategy,
                                                                           config.max_steps)))
    path = tmp_path / "train.yaml"
    trainer.train_from_config("train.parquet", "sft", "out", None)
    path.write_text("max_steps: 3\n")
    trainer.train_from_config("train.parquet", "sft", "out", str(path))
    path.write_text("max_steps: 3\nsave_strategy: steps\nsave_steps: 1\n")
    trainer.train_from_config("train.parquet", "sft", "out", str(path))
    path.write_text("resume_from_checkpoint: true\n")
    trainer.train_from_config("train.parquet", "sft", "out", str(path))
    assert seen == [("no", -1), ("no", 3), ("steps", 3), ("steps", -1)]
