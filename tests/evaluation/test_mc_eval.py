"""General-benchmark scoring through lm-eval: intervals, the task configs' prompts, an answer-key
("oracle") model through the whole pipeline, and the real SmolLM2 model on a few items."""

from __future__ import annotations

import math

import pytest

from pipeline.evaluation import benchmark_data as bd
from pipeline.evaluation import general as mc_eval
from pipeline.evaluation.lm_eval_tasks import (
    _DATA_KEYS,
    BUILTIN_YAML,
    ID_FIELD,
    MMLU_YAML,
    load_builtin_config,
    task_configs,
)

pytest.importorskip("lm_eval")
from lm_eval.api.model import LM  # noqa: E402

PAPER = ["mmlu", "truthfulqa_mc1", "truthfulqa_mc2", "arc_challenge", "hellaswag"]
SMALL_MODEL = ["arc_easy", "piqa", "lambada_openai", "winogrande", "sciq", "boolq", "openbookqa",
               "commonsense_qa"]
ALL = PAPER + SMALL_MODEL


# --- intervals --------------------------------------------------------------------------------


def test_wilson_interval_known_values():
    low, high = mc_eval.wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert mc_eval.wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert mc_eval.wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    with pytest.raises(ValueError):
        mc_eval.wilson_interval(0, 0)


def test_mean_interval_is_clipped_normal_interval():
    low, high = mc_eval.mean_interval([0.0, 1.0, 0.5, 0.5])
    half = 1.959963984540054 * math.sqrt((0.25 + 0.25) / 3 / 4)
    assert (low, high) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert mc_eval.mean_interval([0.0, 0.0, 0.01])[0] == 0.0  # clipped, not negative


# --- task configs are lm-eval's own, only the data source differs -----------------------------


@pytest.mark.parametrize("benchmark", ALL)
def test_configs_keep_every_lm_eval_field_but_the_data_source(root, benchmark):
    items = bd.select_items(bd.load_benchmark(benchmark, root), 2)
    (name, (config, task_items)), *_ = task_configs(benchmark, items).items()
    if benchmark == "mmlu":
        relative = MMLU_YAML.format(subject=items[0].subject)
    else:
        relative = BUILTIN_YAML[benchmark][0]
    builtin = load_builtin_config(relative)
    assert builtin["doc_to_text"] and (builtin.get("doc_to_choice") is not None
                                       or builtin["output_type"] == "loglikelihood")
    for key, value in builtin.items():
        if key not in _DATA_KEYS and key != "task":
            assert config[key] == value, key
    assert name == config["task"] and name.startswith("s3ft_") and callable(config["custom_dataset"])
    assert not any(k in config for k in ("dataset_path", "dataset_name", "training_split"))


def test_few_shot_only_where_a_local_dev_split_exists(root):
    with pytest.raises(ValueError, match="few-shot needs the benchmark's train split"):
        task_configs("arc_challenge", bd.load_arc_challenge(root)[:1], num_fewshot=5)


# --- the answer-key model: the whole pipeline without a real model ----------------------------


def benchmark_of(task_name: str) -> str:
    name = task_name.removeprefix("s3ft_")
    return "mmlu" if name.startswith("mmlu_") else name


class AnswerKeyLM(LM):
    """Log-likelihood 0 for a true choice and -100 for a false one, read from the loaders' labels
    (``invert``: the other way round). Whatever lm-eval then reports is how it resolves targets."""

    def __init__(self, labels: dict[tuple[str, str], tuple[int, ...]], invert: bool = False) -> None:
        super().__init__()
        self.labels, self.invert = labels, invert
        self.calls = 0

    def loglikelihood(self, requests):
        self.calls += len(requests)
        out = []
        for request in requests:
            labels = self.labels[benchmark_of(request.task_name), request.doc[ID_FIELD]]
            true = bool(labels[request.idx]) != self.invert
            out.append((0.0 if true else -100.0, true))  # -100: LAMBADA perplexity stays finite
        return out

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError

    def generate_until(self, requests):
        raise NotImplementedError


@pytest.fixture(scope="module")
def answer_key(root) -> dict[tuple[str, str], tuple[int, ...]]:
    return {(name, item.id): item.labels for name in ALL for item in bd.load_benchmark(name, root)}


@pytest.mark.slow
def test_answer_key_model_scores_100_percent(root, answer_key):
    """The first 100 items of every benchmark, plus every ARC item keyed 1-4 or with 3/5 choices:
    lm-eval's targets agree with the loaders' gold, so the key model gets every item right
    (TruthfulQA MC2: all probability mass on the true answers)."""
    lm = AnswerKeyLM(answer_key)
    results = mc_eval.score_benchmarks(lm, ALL, limit=100)
    arc = bd.load_arc_challenge(root)
    unusual = [i for i in arc[100:] if i.doc["answerKey"].isdigit() or len(i.choices) != 4]
    assert len(unusual) >= 25
    records, _ = mc_eval._run_lm_eval(lm, "arc_challenge", unusual, 0, root)
    results["arc_unusual"] = {**mc_eval.summarise("arc_challenge", records), "items": records}
    assert {name: r["n"] for name, r in results.items()} == {**{name: 100 for name in ALL},
                                                             "arc_unusual": len(unusual)}
    for name, result in results.items():
        assert result["accuracy"] == pytest.approx(1.0, abs=1e-12), name
        assert all(value == pytest.approx(1.0) for value in result["metrics"].values()), name
        assert all(r["predicted"] == r["gold"] for r in result["items"]), name
        if name != "truthfulqa_mc2":
            n = result["n"]
            assert result["ci95"][1] == 1.0 and 0.85 < result["ci95"][0] == mc_eval.wilson_interval(n, n)[0]
    assert len({r["subject"] for r in results["mmlu"]["items"]}) == 57
    assert lm.calls == sum(len(r["continuations"]) for result in results.values() for r in result["items"])


@pytest.mark.slow
def test_inverted_answer_key_model_scores_0_percent(root, answer_key):
    lm = AnswerKeyLM(answer_key, invert=True)
    results = mc_eval.score_benchmarks(lm, ALL, limit=50)
    for name, result in results.items():
        assert result["n"] == 50 and result["accuracy"] == pytest.approx(0.0, abs=1e-12), name
        assert all(r["predicted"] != r["gold"] for r in result["items"]), name


def test_prompts_are_lm_eval_formats(root, answer_key):
    """The contexts and continuations lm-eval builds from the local docs, for known items."""
    lm = AnswerKeyLM(answer_key)
    results = mc_eval.score_benchmarks(lm, ["mmlu", "arc_challenge", "hellaswag"], limit=2)
    first = {name: result["items"][0] for name, result in results.items()}
    assert first["mmlu"]["context"] == (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
        "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:")
    assert first["mmlu"]["continuations"] == [" A", " B", " C", " D"]
    assert first["mmlu"]["choice_chars"] == [1, 1, 1, 1]  # acc_norm divides by len("A")
    assert results["mmlu"]["items"][1]["subject"] == "anatomy"  # round-robin
    assert first["arc_challenge"]["context"] == (
        "Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is "
        "the most likely effect of this increase in rotation?\nAnswer:")
    assert first["arc_challenge"]["continuations"][2] == " Planetary days will become shorter."
    assert first["arc_challenge"]["choice_chars"][2] == len("Planetary days will become shorter.")
    assert first["hellaswag"]["context"] == ("Pole vault: Pole vault is a sport where you run with a pole "
                                             "and stop and swing your body. A few women")
    assert first["hellaswag"]["continuations"][0] == " go down a rock and stop."
    frame = mc_eval.items_frame(results)
    assert frame.height == 6 and frame["loglikelihoods"].list.len().to_list() == [4] * 6


def test_small_model_benchmark_prompts_are_lm_eval_formats(root, answer_key):
    """What lm-eval's own YAMLs make of the local docs: the prompt, the choices, and (WinoGrande)
    one context per choice with the sentence's end as the shared continuation."""
    results = mc_eval.score_benchmarks(AnswerKeyLM(answer_key), SMALL_MODEL, limit=1)
    first = {name: result["items"][0] for name, result in results.items()}
    assert first["piqa"]["context"].startswith("Question: How do I ready a guinea pig cage")
    assert first["piqa"]["context"].endswith("?\nAnswer:") and len(first["piqa"]["continuations"]) == 2
    assert first["lambada_openai"]["continuations"] == [" signs"]
    assert first["lambada_openai"]["context"].endswith("I don't care about")
    assert first["winogrande"]["context"] == "Sarah was a much better surgeon than Maria so Sarah"
    assert first["winogrande"]["continuations"] == [" always got the easier cases."] * 2
    assert first["sciq"]["context"].endswith("\nQuestion: Compounds that are capable of accepting "
                                             "electrons, such as o 2 or f2, are called what?\nAnswer:")
    assert first["sciq"]["continuations"][3] == " oxidants"
    assert first["boolq"]["context"].startswith("Ethanol fuel -- All biomass")
    assert first["boolq"]["context"].endswith("\nQuestion: does ethanol take more energy make that "
                                              "produces?\nAnswer:")
    assert first["boolq"]["continuations"] == [" no", " yes"]
    assert first["openbookqa"]["context"].startswith("A person wants to start saving money")
    assert first["commonsense_qa"]["context"].endswith("\nA. bank\nB. library\nC. department store\n"
                                                       "D. mall\nE. new york\nAnswer:")
    assert first["commonsense_qa"]["continuations"] == [" A", " B", " C", " D", " E"]
    # Every item right under the answer key, each with a chance level from its choices.
    assert all(r["accuracy"] == 1.0 for r in results.values())
    assert results["lambada_openai"]["chance"] == 0.0 and results["winogrande"]["chance"] == 0.5


def test_truthfulqa_prompt_and_mmlu_five_shot(root, answer_key):
    lm = AnswerKeyLM(answer_key)
    item = mc_eval.score_benchmarks(lm, ["truthfulqa_mc1"], limit=1)["truthfulqa_mc1"]["items"][0]
    assert item["context"].startswith("Q: What is human life expectancy in the United States?\nA: Human life")
    assert item["context"].endswith("Barcelona, Spain.\n\nQ: What happens if you eat a pomegranate?\nA:")
    assert item["continuations"][0] == " Nothing in particular happens when you eat a pomegranate."

    five_shot = mc_eval.score_benchmarks(lm, ["mmlu"], limit=1, num_fewshot=5)["mmlu"]
    context = five_shot["items"][0]["context"]
    assert five_shot["num_fewshot"] == 5 and five_shot["accuracy"] == 1.0
    # lm-eval's first_n sampler: the subject's first dev rows, each with its answer letter.
    assert context.startswith("The following are multiple choice questions (with answers) about abstract "
                              "algebra.\n\nFind all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\n"
                              "A. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n")
    assert context.count("\nAnswer:") == 6


def test_limit_zero_and_unknown_names(root, answer_key):
    result = mc_eval.score_benchmarks(AnswerKeyLM(answer_key), ["arc"], limit=0)["arc_challenge"]
    assert result["n"] == 0 and result["accuracy"] is None and result["items"] == []
    with pytest.raises(bd.BenchmarkDataError, match="unknown benchmark"):
        mc_eval.score_benchmarks(AnswerKeyLM(answer_key), ["arc", "mmlu_pro"], limit=1)
    with pytest.raises(ValueError, match="listed twice"):
        mc_eval.score_benchmarks(AnswerKeyLM(answer_key), ["truthfulqa_mc", "truthfulqa_mc1"], limit=1)


def test_model_spec_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        mc_eval.hflm_source(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="neither config.json"):
        mc_eval.hflm_source(tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"base_model_name_or_path": "/nowhere/base"}')
    with pytest.raises(FileNotFoundError, match="base model '/nowhere/base' is not a local folder"):
        mc_eval.hflm_source(tmp_path)
    base = tmp_path / "base"
    base.mkdir()
    assert mc_eval.hflm_source(tmp_path, base_model=str(base)) == {
        "pretrained": str(base), "peft": str(tmp_path), "tokenizer": str(base)}
    (tmp_path / "tokenizer_config.json").write_text("{}")  # a tokenizer saved with the adapter wins
    assert mc_eval.hflm_source(tmp_path, base_model=str(base))["tokenizer"] == str(tmp_path)


# --- the real model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_path() -> str:
    from pipeline.backends.model import resolve_model

    return str(resolve_model().path)


def direct_loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """Sum of the continuation's token log-probs, computed with plain transformers."""
    import torch

    context_ids = tokenizer(context, add_special_tokens=False).input_ids
    full_ids = tokenizer(context + continuation, add_special_tokens=False).input_ids
    assert full_ids[: len(context_ids)] == context_ids  # the continuation starts on a token boundary
    with torch.inference_mode():
        logits = model(torch.tensor([full_ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(logprobs[pos - 1, full_ids[pos]].item() for pos in range(len(context_ids), len(full_ids)))


@pytest.fixture(scope="module")
def real_results(root, model_path):
    lm = mc_eval.make_lm(model_path, batch_size=8)
    results = mc_eval.score_benchmarks(lm, ["mmlu", "arc_challenge", "hellaswag"], limit=4, threads=1)
    results |= mc_eval.score_benchmarks(lm, ["truthfulqa_mc1", "truthfulqa_mc2"], limit=1, threads=1)
    return results


@pytest.mark.slow
def test_real_model_scores_are_consistent(real_results):
    for name, result in real_results.items():
        n = 1 if name.startswith("truthfulqa") else 4
        assert result["n"] == n and len(result["items"]) == n
        assert 0.0 <= result["accuracy"] <= 1.0
        assert result["ci95"][0] <= result["accuracy"] <= result["ci95"][1]
        assert result["items_per_s"] > 0
        for task_name, metrics in result["lm_eval_results"].items():  # our mean == lm-eval's
            task_records = [r for r in result["items"] if r["task"] == task_name]
            our_mean = sum(r["acc"] for r in task_records) / len(task_records)
            assert metrics["acc,none"] == pytest.approx(our_mean)
        for record in result["items"]:
            lls = record["loglikelihoods"]
            assert len(lls) == len(record["continuations"]) and all(ll < 0 for ll in lls)
            if name != "truthfulqa_mc2":
                assert record["correct"] == float(record["predicted"] == record["gold"])
    mc1, mc2 = real_results["truthfulqa_mc1"]["items"][0], real_results["truthfulqa_mc2"]["items"][0]
    # The same (context, continuation) scores the same in either task (true answer: first in both).
    assert mc1["loglikelihoods"][0] == pytest.approx(mc2["loglikelihoods"][0], abs=1e-3)
    assert 0.0 < real_results["truthfulqa_mc2"]["accuracy"] < 1.0


@pytest.mark.slow
def test_real_loglikelihoods_match_transformers(real_results, model_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    torch.set_num_threads(1)
    for name in ("arc_challenge", "mmlu"):
        record = real_results[name]["items"][0]
        for continuation, ll in zip(record["continuations"], record["loglikelihoods"], strict=True):
            direct = direct_loglikelihood(model, tokenizer, record["context"], continuation)
            assert ll == pytest.approx(direct, abs=2e-3), (name, continuation)


@pytest.mark.slow
def test_peft_adapter_folder_is_loaded_with_its_base(tmp_path, model_path, real_results):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    # init_lora_weights=False: a non-zero adapter, so scores must change if (and only if) it is applied.
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapted = get_peft_model(base, lora)
    adapted.save_pretrained(tmp_path)
    assert mc_eval.hflm_source(tmp_path)["peft"] == str(tmp_path)

    result = mc_eval.score_benchmarks(str(tmp_path), ["arc_challenge"], limit=1, threads=1)
    record = result["arc_challenge"]["items"][0]
    merged = adapted.merge_and_unload().eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    expected = [direct_loglikelihood(merged, tokenizer, record["context"], continuation)
                for continuation in record["continuations"]]
    assert record["loglikelihoods"] == pytest.approx(expected, abs=2e-3)
    base_lls = real_results["arc_challenge"]["items"][0]["loglikelihoods"]
    assert max(abs(a - b) for a, b in zip(record["loglikelihoods"], base_lls, strict=True)) > 0.05
