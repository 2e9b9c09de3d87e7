"""``pipeline.evaluate`` / ``pipeline.compare`` / ``pipeline.evaluation.scoreboard``: benchmark names, model
specs, the table's arithmetic, and real compare runs (curation reused, real LoRA trainings, one
vLLM engine generating for the base and its adapters, lm-eval on real ARC items): SFT and
S3FT in the first tier, every mode (SDFT too) in the second."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from judges import UNDECIDED_RULES
from pipeline.errors import UsageError
from pipeline.evaluation.models import model_under_test
from pipeline.evaluation.scoreboard import (
    csv_table,
    general_change,
    limits_text,
    markdown_table,
    plot_chart,
    write_table,
)
from pipeline.evaluation.scoring import split_benchmarks

PROJECT = Path(__file__).resolve().parents[2]


def test_benchmark_names_split_into_tasks_and_general():
    assert split_benchmarks("gsm8k, mmlu,truthfulqa_mc,arc") == (
        ["gsm8k"], ["mmlu", "truthfulqa_mc1", "arc_challenge"])
    assert split_benchmarks("mbpp,nq") == (["mbpp", "nq"], [])
    assert split_benchmarks("winogrande,auto") == ([], ["winogrande", "auto"])
    with pytest.raises(UsageError, match="mmlu_pro"):
        split_benchmarks("gsm8k,mmlu_pro")
    with pytest.raises(UsageError, match="twice"):
        split_benchmarks("truthfulqa,truthfulqa_mc1")
    with pytest.raises(UsageError, match="names no benchmark"):
        split_benchmarks(" , ")


@pytest.mark.parametrize("flag", ["--limit-train", "--limit-eval", "--limit-general"])
def test_compare_names_its_own_limit_flag(flag):
    from pipeline.compare import main as compare_main

    with pytest.raises(UsageError, match=f"^{flag} 0: must be a positive number"):
        compare_main(["--task", "gsm8k", flag, "0", "--debug"])


def test_compare_curates_with_the_sampling_it_is_given(monkeypatch, tmp_path):
    """``compare --samples 4 --temperature 0.7`` curates as ``pipeline.run`` does with those
    options (a larger own-answer share); left at their defaults, the sampling options keep the
    compare's folder key as it was before they were options."""
    from pipeline.evaluation import comparison
    from pipeline.evaluation.config import CompareConfig

    curated: list = []
    monkeypatch.setattr(comparison, "in_child", lambda name, work, config, **_: curated.append(config))
    sampled = CompareConfig(task="nq", samples=4, temperature=0.7, seed=7, paraphrase_all=False)
    comparison.curate(sampled, tmp_path / "curation")
    (config,) = curated
    assert (config.samples, config.temperature, config.seed, config.paraphrase_all) == (4, 0.7, 7, False)
    assert config.sampling_given()["samples"] == 4
    plain = CompareConfig(task="nq")
    without = {k: v for k, v in vars(plain).items()
               if k not in ("fresh", "log_level", "progress", "debug", "config", "loop_guard", "samples",
                            "pick", "temperature", "top_p", "top_k", "min_p", "repetition_penalty")}
    from pipeline.config import stable_hash

    assert comparison.settings_key(plain) == stable_hash(without)
    assert comparison.settings_key(sampled) != comparison.settings_key(CompareConfig(
        task="nq", seed=7, paraphrase_all=False))


def test_compare_names_and_reuses_a_fully_fine_tuned_model(monkeypatch, tmp_path):
    """A training config with ``lora: false`` trains into ``<mode>-full`` (it holds a whole
    model, not an adapter), and a rerun with the same data and config reuses that model."""
    from pipeline.evaluation import comparison
    from pipeline.evaluation.config import CompareConfig

    full = tmp_path / "full.yaml"
    full.write_text("lora: false\nmax_steps: 4\n")
    settings = CompareConfig(task="nq", train_config=str(full))
    assert comparison.training_folder(settings, "sft", tmp_path) == tmp_path / "train" / "sft-full"
    assert comparison.training_folder(CompareConfig(task="nq"), "sft", tmp_path).name == "sft-lora"

    trained: list = []

    def fake_child(name, work, data, mode, out, config, **_):
        trained.append(mode)
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "config.json").write_text("{}")  # what a full model folder holds

    monkeypatch.setattr(comparison, "in_child", fake_child)
    data = tmp_path / "train.parquet"
    data.write_bytes(b"rows")
    folder = comparison.training_folder(settings, "sft", tmp_path)
    assert comparison.train_mode(settings, data, "sft", folder) == folder
    assert comparison.train_mode(settings, data, "sft", folder) == folder
    assert trained == ["sft"]  # the second call reused the model
    data.write_bytes(b"other rows")
    comparison.train_mode(settings, data, "sft", folder)
    assert trained == ["sft", "sft"]  # new data: trained again


def test_model_specs(tmp_path):
    adapter = tmp_path / "s3ft-lora"
    adapter.mkdir()
    base = tmp_path / "base"
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base),
                                                             "r": 8}))
    with pytest.raises(UsageError, match=r"base model .*base \(its .*\) does not exist; pass --base-model"):
        model_under_test(str(adapter))  # a local base that moved: --base-model fixes it
    base.mkdir()
    m = model_under_test(str(adapter))
    assert (m.name, m.base, m.adapter, m.rank) == ("s3ft-lora", str(base), str(adapter.resolve()), 8)
    assert model_under_test(str(adapter), "s3ft", base_model="/other").base == "/other"
    before = m.adapter_fingerprint
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    assert m.adapter_fingerprint != before  # retrained adapter → new cache keys
    embedded = model_under_test("embedded:smollm2-135m-instruct", "base")
    assert (embedded.base, embedded.adapter) == ("embedded:smollm2-135m-instruct", None)
    assert (embedded.trained_from, embedded.weights_fingerprint) == (None, None)
    # A fully fine-tuned folder names the model it was trained from (drift's reference).
    full = tmp_path / "sft-full"
    full.mkdir()
    (full / "config.json").write_text("{}")
    (full / "model.safetensors").write_bytes(b"weights")
    (full / "train_metrics.json").write_text(json.dumps({"lora": False, "model": str(base)}))
    tuned = model_under_test(str(full), "sft")
    assert (tuned.base, tuned.adapter, tuned.trained_from) == (str(full), None, str(base))
    before = tuned.weights_fingerprint
    (full / "model.safetensors").write_bytes(b"retrained")
    assert tuned.weights_fingerprint != before
    (full / "train_metrics.json").write_text(json.dumps({"lora": True, "model": str(base)}))
    assert model_under_test(str(full)).trained_from is None  # e.g. a merged copy of an adapter
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="neither config.json"):
        model_under_test(str(empty))
    (tmp_path / "nobase").mkdir()
    (tmp_path / "nobase" / "adapter_config.json").write_text("{}")
    with pytest.raises(UsageError, match="--base-model"):
        model_under_test(str(tmp_path / "nobase"))


def _score(accuracy: float, n: int = 100) -> dict:
    return {"n": n, "accuracy": accuracy, "ci95": [max(0.0, accuracy - 0.1), min(1.0, accuracy + 0.1)]}


RESULTS = {
    "limit": 100, "in_domain_tasks": ["gsm8k"], "general_benchmarks": ["mmlu", "arc_challenge"],
    "scores": {
        "base": {"gsm8k": _score(0.40), "mmlu": _score(0.50), "arc_challenge": _score(0.30)},
        "sft": {"gsm8k": _score(0.53), "mmlu": _score(0.44), "arc_challenge": _score(0.27)},
        "s3ft": {"gsm8k": _score(0.57), "mmlu": _score(0.49), "arc_challenge": _score(0.29, n=80)},
    },
}


def test_table_shows_scores_intervals_and_average_general_change(tmp_path):
    assert general_change(RESULTS, "sft", "base") == pytest.approx(-4.5)  # (-6 - 3) / 2
    assert general_change(RESULTS, "s3ft", "base") == pytest.approx(-1.0)
    text = markdown_table(RESULTS, baseline="base")
    lines = text.splitlines()
    assert lines[0] == "| model | gsm8k | mmlu | arc_challenge | avg general Δ vs base (pts) |"
    assert lines[3] == "| sft | 53.0 [43.0, 63.0] (n=100) | 44.0 [34.0, 54.0] (n=100) | " \
                       "27.0 [17.0, 37.0] (n=100) | -4.5 |"
    assert lines[4].endswith("29.0 [19.0, 39.0] (n=80) | -1.0 |")
    assert "avg general" not in markdown_table(RESULTS, baseline=None)
    rows = list(csv.DictReader(io.StringIO(csv_table(RESULTS, "base"))))
    assert len(rows) == 9
    sft_mmlu = next(r for r in rows if r["model"] == "sft" and r["benchmark"] == "mmlu")
    assert (sft_mmlu["kind"], sft_mmlu["n"]) == ("general", "100")
    assert float(sft_mmlu["change_vs_baseline_pts"]) == pytest.approx(-6.0)
    chart = plot_chart(RESULTS, tmp_path / "chart.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_undecided_in_domain_answers_are_counted_in_the_cell_and_explained(tmp_path):
    # NQ with an untrusted LLM judge: most of the base model's sentences are neither proven
    # right nor wrong; its score is a lower bound, and the table must say by how much.
    results = json.loads(json.dumps(RESULTS))
    results["scores"]["base"]["gsm8k"]["undecided"] = 37
    lines = markdown_table(results, baseline="base").splitlines()
    assert lines[2].startswith("| base | 40.0 [30.0, 50.0] (n=100, 37 undecided) |")
    assert "(n=100) |" in lines[3]  # none undecided: nothing added
    rows = list(csv.DictReader(io.StringIO(csv_table(results, "base"))))
    assert [r["undecided"] for r in rows if r["benchmark"] == "gsm8k"] == ["37", "", ""]
    write_table(results, tmp_path, "base")
    assert "counted as not correct (the score is a lower bound)" in (tmp_path / "table.md").read_text()
    write_table(RESULTS, tmp_path, "base")
    assert "undecided" not in (tmp_path / "table.md").read_text()


def test_general_benchmarks_can_have_their_own_limit():
    from pipeline.config import parse_config
    from pipeline.evaluation.config import EvaluateConfig

    def general_limit(*argv: str) -> int | None:
        return parse_config(EvaluateConfig, list(argv), "evaluate").general_limit

    assert general_limit("--limit", "300") == 300
    assert general_limit("--limit", "300", "--limit-general", "1000") == 1000
    assert general_limit() is None  # every item
    with pytest.raises(UsageError, match="--limit-general 0"):
        general_limit("--limit-general", "0")
    results = {"limit": 300, "limit_general": 1000}
    assert limits_text(results) == "limit 300, general 1000"
    assert limits_text({"limit": 100}) == limits_text({"limit": 100, "limit_general": 100}) == "limit 100"
    assert limits_text({"limit": None, "limit_general": 500}) == "limit all, general 500"


def test_adapter_needs_a_lora_engine(tmp_path):
    from pipeline.backends.vllm_backend import VllmBackend

    backend = VllmBackend(str(tmp_path), "m", cache_root=tmp_path, kv_cache_gib=1)  # no engine starts here
    with pytest.raises(ValueError, match="max_lora_rank"):
        backend.with_adapter(str(tmp_path), "a")


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT, capture_output=True,
                          text=True, timeout=1500, env=dict(os.environ))


@pytest.fixture(scope="module", params=[
    pytest.param(("sft", "s3ft"), id="sft+s3ft"),
    pytest.param(("sft", "sdft", "s3ft"), id="every-mode", marks=pytest.mark.heavy)])
def compared(request, gsm8k_run, tmp_path_factory) -> dict:
    """``compare`` on a tiny CPU config, reusing the session's 16-row curation, then again."""
    modes = request.param
    root = tmp_path_factory.mktemp("compare")
    curation = root / "curation"
    shutil.copytree(gsm8k_run["out"], curation)
    train_config = root / "train.yaml"
    # A large learning rate on purpose: two steps must move the adapter's greedy answers.
    train_config.write_text("max_steps: 2\nper_device_train_batch_size: 4\nlimit: 8\nlearning_rate: 5.0e-3\n")
    args = ("--task", "gsm8k", "--limit-train", "16", "--shard-size", "8", "--dtype", "float32",
            "--no-paraphrase-all",
            "--run-out", str(curation), "--train-config", str(train_config), "--limit-eval", "4",
            "--limit-general", "5", "--eval-max-tokens", "96", "--benchmarks", "arc_challenge",
            "--scorer", "hf",  # the vLLM scorer's adapter path: tests/evaluation/test_vllm_scorer.py
            "--drift-prompts", "6", "--modes", ",".join(modes),
            "--drift-max-tokens", "32", "--out", str(root / "out"))
    first = _run("pipeline.compare", *args)
    assert first.returncode == 0, first.stderr[-4000:]
    results_first = json.loads((root / "out" / "results.json").read_text())
    second = _run("pipeline.compare", *args)
    assert second.returncode == 0, second.stderr[-4000:]
    return {"out": root / "out", "first": first, "second": second, "results_first": results_first,
            "modes": modes}


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first test pays for compare's two runs (setup)
def test_compare_writes_the_table_chart_and_items(compared):
    out, modes = compared["out"], compared["modes"]
    results = json.loads((out / "results.json").read_text())
    assert results["order"] == ["base", *modes]
    assert set(results["scores"]) == set(results["order"])
    lines = (out / "table.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in lines[2:3 + len(modes)]] == [
        f"| {m}" for m in results["order"]]
    # Five ARC-Challenge items cannot put the base above chance: the table says so, and has no
    # general mean to show (its unit tests: tests/evaluation/test_chance.py).
    assert "arc_challenge (no signal)" in lines[0] and "avg general Δ" not in lines[0]
    assert results["signal_benchmarks"] == [] and results["signal"]["arc_challenge"]["chance"] == 0.25
    assert "so this table cannot show forgetting" in (out / "table.md").read_text()
    assert all("general_mean" not in pair for pair in results["paired"])
    assert (out / "chart.png").read_bytes()[:4] == b"\x89PNG"
    # Paired differences on the same items: each adapter vs base, and S3FT vs SFT.
    assert [(c["a"], c["b"]) for c in results["paired"]] == [
        *((m, "base") for m in modes), ("s3ft", "sft")]
    for pair in results["paired"]:
        for benchmark, n in (("gsm8k", 4), ("arc_challenge", 5)):  # --limit-eval, --limit-general
            d = pair["benchmarks"][benchmark]
            a, b = (results["scores"][m][benchmark]["accuracy"] for m in (pair["a"], pair["b"]))
            assert d["n"] == n and d["delta_pts"] == pytest.approx(100 * (a - b))
            assert d["ci95_pts"][0] <= d["delta_pts"] <= d["ci95_pts"][1]
    assert "| s3ft − sft | arc_challenge | 5 |" in (out / "table.md").read_text()
    assert "(limit 4, general 5)" in (out / "table.md").read_text()
    in_domain = pl.read_parquet(out / "items_in_domain.parquet")
    general = pl.read_parquet(out / "items_general.parquet")
    for model, scores in results["scores"].items():
        rows = in_domain.filter(pl.col("model") == model)
        assert rows.height == scores["gsm8k"]["n"] == 4
        assert scores["gsm8k"]["accuracy"] == pytest.approx(rows["verdict"].fill_null(False).mean())
        assert scores["gsm8k"]["undecided"] == rows["judge_rule"].is_in(UNDECIDED_RULES).sum()
        arc = general.filter(pl.col("model") == model)
        assert arc.height == scores["arc_challenge"]["n"] == 5
        assert 0.0 <= scores["arc_challenge"]["accuracy"] <= 1.0
        assert scores["arc_challenge"]["accuracy"] == pytest.approx(arc["correct"].mean())
        low, high = scores["arc_challenge"]["ci95"]
        assert low <= scores["arc_challenge"]["accuracy"] <= high
    # The three adapters were trained (one per mode) and really served through vLLM's LoRA:
    # at least one answer differs from the base model's.
    for mode in modes:
        assert json.loads((out / "train" / f"{mode}-lora" / "train_metrics.json").read_text())["steps"] == 2
    base = in_domain.filter(pl.col("model") == "base")["candidate"].to_list()
    assert any(in_domain.filter(pl.col("model") == m)["candidate"].to_list() != base for m in modes)
    # Different adapters → different log-likelihoods on the general benchmark too.
    lls = {m: general.filter(pl.col("model") == m)["loglikelihoods"].to_list() for m in results["scores"]}
    assert lls["s3ft"] != lls["base"]
    # Each trained adapter drifted from the base on the held-out prompts, and the table says so.
    drift = results["drift"]
    assert drift["prompts"] == 6 and set(drift["adapters"]) == set(modes)
    for d in drift["adapters"].values():
        assert d["prompts"] == 6 and d["kl_per_token"] > 0 and d["kl_ci95"][0] <= d["kl_per_token"]
    assert drift["s3ft_vs_sft"]["prompts"] == 6
    assert "Drift from the base model on 6 held-out general prompts" in (out / "table.md").read_text()
    # The wall time of each step, apart from results.json (the rerun's: reused steps).
    timings = json.loads((out / "timings.json").read_text())
    steps = [s["step"] for s in timings["steps"]]
    assert steps == ["curation", *(f"training ({m})" for m in modes), "scoring", "drift"]
    assert all(s["seconds"] >= 0 for s in timings["steps"]) and timings["total_seconds"] >= 0
    assert "wall time per step" in compared["second"].stdout


@pytest.mark.slow
def test_compare_rerun_reuses_every_step(compared):
    log = compared["second"].stderr
    assert "starting the vLLM engine" not in log  # in-domain shards reused, curation finished
    assert log.count("reusing the trained model") == len(compared["modes"])
    assert "arc_challenge: reusing" in log
    # the base's answers and each adapter's rows
    assert log.count("drift: reusing") == 1 + len(compared["modes"])
    assert json.loads((compared["out"] / "results.json").read_text()) == compared["results_first"]


@pytest.mark.slow
def test_evaluate_cli_scores_one_adapter(compared, tmp_path):
    """The single-model CLI on an adapter, in a folder of its own: same scores as compare's."""
    out = tmp_path / "eval"
    # Copy compare's finished work for this model, so the CLI reuses it (no second engine).
    shutil.copytree(compared["out"] / "s3ft", out / "s3ft")
    result = _run("pipeline.evaluate", "--model", str(compared["out"] / "train" / "s3ft-lora"),
                  "--name", "s3ft", "--benchmarks", "gsm8k,arc", "--limit", "4", "--limit-general", "5",
                  "--scorer", "hf",
                  "--max-tokens", "96",
                  "--shard-size", "8", "--dtype", "float32", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "starting the vLLM engine" not in result.stderr
    scores = json.loads((out / "results.json").read_text())["scores"]
    assert scores == {"s3ft": compared["results_first"]["scores"]["s3ft"]}
    assert "| s3ft |" in result.stdout and (out / "table.csv").is_file()
