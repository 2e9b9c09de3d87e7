"""The chance check: chance levels, "no signal" in the table and the general mean, the one-line
warning, and ``--benchmarks auto`` picking by signal and caching its check."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest

from pipeline.backends.model import ResolvedModel
from pipeline.errors import UsageError
from pipeline.evaluation import scoring
from pipeline.evaluation import signal as auto
from pipeline.evaluation.chance import above_chance, chance_level, signal_of
from pipeline.evaluation.config import EvaluateConfig
from pipeline.evaluation.models import ModelUnderTest
from pipeline.evaluation.scoreboard import general_change, markdown_table, signal_text

pytest.importorskip("lm_eval")
from lm_eval.api.model import LM  # noqa: E402

# --- chance levels ----------------------------------------------------------------------------


def test_chance_is_uniform_over_choices_or_the_majority_answer_where_every_item_has_the_same_choices():
    assert chance_level("arc_easy", [(1, 0, 0, 0)] * 3 + [(0, 1, 0)]) == pytest.approx((0.75 + 1 / 3) / 4)
    # TruthfulQA MC2: a uniform model puts (true answers / answers) of its mass on the truth.
    assert chance_level("truthfulqa_mc2", [(1, 1, 0, 0), (1, 0, 0, 0, 0)]) == pytest.approx((0.5 + 0.2) / 2)
    # BoolQ offers no/yes on every item: always "yes" gets the share of yes.
    assert chance_level("boolq", [(0, 1)] * 62 + [(1, 0)] * 38) == pytest.approx(0.62)
    assert chance_level("boolq", [(0, 1)] * 40 + [(1, 0)] * 60) == pytest.approx(0.60)
    # PIQA's two solutions differ per item: "always the second" is not a strategy, chance is 50 %.
    assert chance_level("piqa", [(0, 1)] * 62 + [(1, 0)] * 38) == pytest.approx(0.5)
    assert chance_level("lambada_openai", [(1,)] * 10) == 0.0  # open vocabulary
    assert chance_level("piqa", []) is None


def test_above_chance_needs_the_whole_interval_above():
    assert above_chance({"ci95": [0.26, 0.31], "chance": 0.25}) is True
    assert above_chance({"ci95": [0.213, 0.262], "chance": 0.25}) is False  # MMLU at 135M
    assert above_chance({"ci95": None, "chance": 0.25}) is None
    assert above_chance({"ci95": [0.3, 0.4]}) is None  # saved before chance levels existed


def _score(accuracy: float, low: float, high: float, chance: float) -> dict:
    return {"n": 1000, "accuracy": accuracy, "ci95": [low, high], "chance": chance}


SCORES = {
    "base": {"mmlu": _score(0.236, 0.213, 0.262, 0.25), "piqa": _score(0.62, 0.59, 0.65, 0.5),
             "arc_easy": _score(0.47, 0.44, 0.50, 0.25)},
    "sft": {"mmlu": _score(0.30, 0.27, 0.33, 0.25), "piqa": _score(0.58, 0.55, 0.61, 0.5),
            "arc_easy": _score(0.45, 0.42, 0.48, 0.25)},
}


def _results() -> dict:
    general = ["mmlu", "piqa", "arc_easy"]
    signal = signal_of(SCORES["base"], general, "base")
    return {"limit": 1000, "in_domain_tasks": [], "general_benchmarks": general, "scores": SCORES,
            "signal": signal, "signal_benchmarks": [b for b in general if signal[b]["signal"]],
            "signal_warning": None}


def test_a_benchmark_at_chance_is_marked_and_left_out_of_the_general_mean():
    results = _results()
    assert results["signal_benchmarks"] == ["piqa", "arc_easy"]
    # (-4 - 2) / 2 over the two with signal; MMLU's +6.4 (noise at chance) is left out.
    assert general_change(results, "sft", "base") == pytest.approx(-3.0)
    header = markdown_table(results, "base").splitlines()[0]
    assert header == "| model | mmlu (no signal) | piqa | arc_easy | avg general Δ vs base (pts) |"
    note = signal_text(results)
    assert "mmlu: base 23.6 % [21.3, 26.2], chance 25.0 %" in note
    assert note.endswith("over the 2 benchmarks with signal: piqa, arc_easy.")


def test_results_from_before_the_chance_check_keep_every_benchmark_in_the_mean():
    old = {k: v for k, v in _results().items() if not k.startswith("signal")}
    assert general_change(old, "sft", "base") == pytest.approx((6.4 - 4 - 2) / 3)
    assert signal_text(old) == ""


# --- --benchmarks auto, on a fake model --------------------------------------------------------

KNOWN = {"piqa", "arc_easy"}  # the fake model answers these from the key; the rest at random


class KnowsTwoLM(LM):
    def __init__(self, labels: dict[tuple[str, str], tuple[int, ...]]) -> None:
        super().__init__()
        self.labels = labels

    def loglikelihood(self, requests):
        out = []
        for request in requests:
            name = request.task_name.removeprefix("s3ft_")
            name = "mmlu" if name.startswith("mmlu_") else name
            if name in KNOWN:
                true = bool(self.labels[name, request.doc["s3ft_id"]][request.idx])
                out.append((0.0 if true else -100.0, true))
            # No knowledge: a fixed pseudo-random choice (a lucky 95 % interval above chance comes
            # one benchmark in 40; this fixed one is lucky nowhere). LAMBADA's word is never greedy.
            else:
                key = f"{request.doc['s3ft_id']}/{request.idx}".encode()
                out.append((-float(zlib.crc32(key) % 89), False))
        return out

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError

    def generate_until(self, requests):
        raise NotImplementedError


@pytest.fixture
def fake_scoring(monkeypatch, tmp_path):
    from pipeline.evaluation import benchmark_data as bd
    from pipeline.evaluation import general

    monkeypatch.setenv("S3FT_CACHE_DIR", str(tmp_path / "cache"))
    labels = {(name, item.id): item.labels for name in KNOWN for item in bd.load_benchmark(name)}
    calls: list[str] = []

    def score(model, benchmarks, limit, **_kwargs):
        calls.extend(benchmarks)
        return general.score_benchmarks(KnowsTwoLM(labels), benchmarks, limit)

    fake = ResolvedModel(spec="tiny", path=str(tmp_path / "tiny"), fingerprint="weights-1")
    monkeypatch.setattr(scoring, "score_benchmarks", score)
    monkeypatch.setattr(scoring, "resolve_model", lambda spec: fake)
    monkeypatch.setattr(auto, "resolve_model", lambda spec: fake)
    return calls


def test_auto_keeps_the_benchmarks_above_chance_and_scores_them_only_once(fake_scoring, tmp_path):
    settings = EvaluateConfig(signal_items=40, scorer="hf")
    assert auto.pick_signal_benchmarks("tiny", settings) == ["arc_easy", "piqa"]
    assert sorted(fake_scoring) == sorted(auto.CANDIDATES)
    record = json.loads(next((Path(auto.cache_dir()) / "signal").glob("*/signal.json")).read_text())
    assert record["items"] == 40 and record["fingerprint"] == "weights-1"
    assert record["benchmarks"]["boolq"]["signal"] is False and record["benchmarks"]["piqa"]["signal"]
    fake_scoring.clear()
    assert auto.pick_signal_benchmarks("tiny", settings) == ["arc_easy", "piqa"]
    assert fake_scoring == []  # cached: nothing scored again
    # auto among named benchmarks: the picked ones, each once, in order.
    assert auto.expand_auto(["piqa", "auto", "mmlu"], "tiny", settings) == ["piqa", "arc_easy", "mmlu"]
    assert fake_scoring == []
    # A table of the base at the check's size reuses the check's scores.
    base = ModelUnderTest("SmolLM", "tiny", "tiny")
    auto.share_check_scores("tiny", settings, [base], tmp_path / "eval")
    table = EvaluateConfig(limit_general=40, scorer="hf")
    scores, _ = scoring.evaluate_general([base], ["piqa", "boolq"], table, tmp_path / "eval")
    assert fake_scoring == [] and scores["SmolLM"]["piqa"]["accuracy"] == 1.0
    # The check is keyed by its size: another size is another check.
    auto.pick_signal_benchmarks("tiny", EvaluateConfig(signal_items=41, scorer="hf"))
    assert sorted(fake_scoring) == sorted(auto.CANDIDATES)


def test_a_table_of_benchmarks_at_chance_says_it_cannot_show_forgetting(fake_scoring):
    at_chance = {"mmlu": {"read_on": "base", "accuracy": 0.236, "ci95": [0.213, 0.262], "chance": 0.25,
                          "signal": False}}
    before = auto.no_signal_warning(at_chance, "tiny")
    assert "cannot show forgetting; --benchmarks auto finds the ones that would" in before
    auto.pick_signal_benchmarks("tiny", EvaluateConfig(signal_items=40, scorer="hf"))
    after = auto.no_signal_warning(at_chance, "tiny")
    assert after == ("no general benchmark here reads tiny above chance (mmlu: base 23.6 % [21.3, 26.2], "
                     "chance 25.0 %), so this table cannot show forgetting; benchmarks that would: "
                     "arc_easy, piqa")
    assert "\n" not in after
    assert auto.no_signal_warning({**at_chance, "piqa": {"signal": True}}, "tiny") is None


def test_auto_with_nothing_above_chance_is_a_usage_error(fake_scoring, monkeypatch):
    monkeypatch.setattr(auto, "CANDIDATES", ("mmlu", "boolq"))
    with pytest.raises(UsageError, match=r"--benchmarks auto: tiny is at chance on every candidate \(mmlu: "):
        auto.pick_signal_benchmarks("tiny", EvaluateConfig(signal_items=20, scorer="hf"))


def test_auto_is_a_benchmark_name_and_the_default():
    assert scoring.split_benchmarks("gsm8k,auto") == (["gsm8k"], ["auto"])
    assert EvaluateConfig().benchmarks == "gsm8k,auto"
    with pytest.raises(UsageError, match="--signal-items 0"):
        from pipeline.config import parse_config

        parse_config(EvaluateConfig, ["--signal-items", "0"], "evaluate")
