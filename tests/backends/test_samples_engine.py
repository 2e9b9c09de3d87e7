"""--samples on the real engine and the embedded model (the session's engine, float32): k samples
per prompt from one request, each with its log-prob, drawn from the prompt's own seed."""

from __future__ import annotations

import pytest

from pipeline.backends.base import SamplingSettings
from pipeline.backends.loop_guard import LoopGuard
from pipeline.config import RunConfig

pytestmark = pytest.mark.slow

SAMPLED = SamplingSettings(max_tokens=128, temperature=0.7, top_p=0.95, n=4, seed=0,
                           loop_guard=LoopGuard())


@pytest.fixture(scope="module")
def backend(engine):
    return engine[1]


@pytest.fixture(scope="module")
def conversations(gsm8k_train):
    from pipeline.tasks import load_task

    template = load_task("gsm8k").answer_prompt
    return [template.messages(**row) for row in gsm8k_train[:3]]


@pytest.fixture(scope="module")
def sampled(backend, conversations):
    return backend.generate(conversations, SAMPLED)


def test_each_prompt_gets_k_samples_with_their_log_probs(sampled):
    for generation in sampled:
        assert len(generation.samples) == 4
        assert generation.text == generation.samples[0].text
        assert generation.completion_tokens == sum(s.completion_tokens for s in generation.samples)
        assert len({s.text for s in generation.samples}) > 1  # sampled, not greedy
        for sample in generation.samples:
            assert sample.finish_reason in ("stop", "length", "repetition")
            assert sample.mean_logprob is not None and sample.mean_logprob < 0


def test_a_prompt_draws_the_same_samples_in_any_batch(backend, conversations, sampled):
    alone = backend.generate(conversations[2:], SAMPLED)
    assert [s.text for s in alone[0].samples] == [s.text for s in sampled[2].samples]
    again = backend.generate(conversations, SAMPLED)
    assert [[s.text for s in g.samples] for g in again] == [[s.text for s in g.samples] for g in sampled]


def test_another_seed_draws_other_samples(backend, conversations, sampled):
    from dataclasses import replace

    other = backend.generate(conversations[:1], replace(SAMPLED, seed=1))
    assert [s.text for s in other[0].samples] != [s.text for s in sampled[0].samples]


def test_one_greedy_answer_has_no_samples(backend, conversations):
    greedy = backend.generate(conversations[:1], SamplingSettings(max_tokens=64))
    assert greedy[0].samples == () and greedy[0].text


def test_a_resharded_run_picks_the_same_samples(engine, tmp_path):
    """The whole run with --samples 3 on the real engine, twice: once in shards of 2 rows,
    once in one shard of 4. Each prompt's seed is its own, so both draw, judge and pick the
    same samples and export the same rows."""
    import polars as pl

    from pipeline.curate import run

    def curate(shard_size: int) -> pl.DataFrame:
        out = tmp_path / f"shards-of-{shard_size}"
        run(RunConfig(task="nq", limit=4, shard_size=shard_size, samples=3, max_tokens=64,
                      dtype="float32", out=str(out), progress=False), served=engine)
        return pl.read_parquet(out / "train.parquet")

    small, large = curate(2), curate(4)
    assert small["samples"].to_list() == [3] * 4
    columns = ["candidate", "picked_sample", "correct_samples", "source", "target", "sampling"]
    assert small.select(columns).equals(large.select(columns))
    for row in small.iter_rows(named=True):
        # A picked sample is an admitted one: correct and not cut off.
        assert (row["picked_sample"] is None) == (row["source"] != "model")
        assert row["picked_sample"] is None or row["correct_samples"] >= 1


def test_the_model_finds_its_own_greedy_answer_likelier_than_the_gold(backend, gsm8k_train):
    """The distribution-shift measure (pipeline/stages/shift.py) on real rows: the base
    model's mean log-prob per token is higher for its own greedy answer than for the gold."""
    from pipeline.tasks import load_task

    template = load_task("gsm8k").answer_prompt
    rows = gsm8k_train[100:108]
    conversations = [template.messages(**row) for row in rows]
    answers = backend.generate(conversations, SamplingSettings(max_tokens=256))
    own = backend.score(conversations, [a.text for a in answers])
    gold = backend.score(conversations, [row["answer"] for row in rows])
    assert all(s is not None and s.mean_logprob < 0 for s in own + gold)
    assert [s.tokens for s in own] == [len(backend.tokenizer(a.text, add_special_tokens=False)
                                           ["input_ids"]) for a in answers]
    likelier = sum(o.mean_logprob > g.mean_logprob for o, g in zip(own, gold, strict=True))
    assert likelier >= 6, [(o.mean_logprob, g.mean_logprob) for o, g in zip(own, gold, strict=True)]


def test_shift_scores_compute_each_prompt_once_and_match_one_prefill_per_text(backend, gsm8k_train):
    """``VllmBackend.score`` (each prompt once, its texts from the prefix cache) gives the scores
    of one full prefill per (prompt, text) with ``prompt_logprobs`` (the stage's earlier path)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from pipeline.backends.base import scoring_requests
    from pipeline.tasks import load_task

    template = load_task("gsm8k").answer_prompt
    rows = gsm8k_train[200:206]
    conversations = [template.messages(**row) for row in rows] * 2  # a target and a gold each
    texts = [row["answer"] for row in rows] + [f"The answer is {row['answer'][-3:]}." for row in rows]
    before = dict(backend.counters)
    scores = backend.score(conversations, texts)
    sent = {k: backend.counters[k] - before[k] for k in before}
    todo = scoring_requests(backend.tokenizer, conversations, texts, backend.max_model_len)
    # Each prompt of at least one KV block is computed once (a shorter one has nothing the
    # cache could hold); every text is one request reading it.
    block = backend.engine.llm_engine.vllm_config.cache_config.block_size
    assert sent["context_requests"] == len({tuple(ids[:start]) for _, start, ids in todo
                                            if start >= block}) > 0
    assert sent["continuation_requests"] == len(texts)
    assert sent["cached_tokens"] > 0 and sent["uncached_retries"] == 0
    backend.engine.reset_prefix_cache()
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
    outputs = backend.engine.generate([TokensPrompt(prompt_token_ids=ids) for _, _, ids in todo],
                                      params, use_tqdm=False)
    for (index, start, ids), output in zip(todo, outputs, strict=True):
        whole = [output.prompt_logprobs[p][ids[p]].logprob for p in range(start, len(ids))]
        assert scores[index].tokens == len(whole)
        assert scores[index].mean_logprob == pytest.approx(sum(whole) / len(whole), abs=1e-4)


def one_prefill_each(backend, conversations, texts) -> list:
    """The reference: one full prefill per (conversation, text), prompt log-probs at every
    position, nothing read from the prefix cache (the shift stage's first path)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from pipeline.backends.base import scoring_requests

    todo = scoring_requests(backend.tokenizer, conversations, texts, backend.max_model_len)
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0,
                            skip_reading_prefix_cache=True)
    outputs = backend.engine.generate([TokensPrompt(prompt_token_ids=ids) for _, _, ids in todo],
                                      params, use_tqdm=False)
    scores = [None] * len(texts)
    for (index, start, ids), output in zip(todo, outputs, strict=True):
        whole = [output.prompt_logprobs[p][ids[p]].logprob for p in range(start, len(ids))]
        scores[index] = (sum(whole) / len(whole), len(whole))
    return scores


@pytest.mark.parametrize("sampling", [SamplingSettings(max_tokens=96, token_logprobs=True),
                                      SamplingSettings(
                                          max_tokens=96, temperature=0.7, n=2, seed=3,
                                          token_logprobs=True)],
                         ids=["greedy", "two-samples"])
def test_texts_scored_right_after_generation_match_one_prefill_per_text(backend, gsm8k_train, sampling):
    """``score_generated`` (the generate stage's scores for the shift figures): prompts read from
    the prefix cache generation left, an answer's tokens from generation's log-probs. The same
    mean log-probs as one full prefill per text (float32), for each row's gold, its own answers
    (scored without a request), and a text that starts as an answer and then departs from it."""
    from pipeline.tasks import load_task

    template = load_task("gsm8k").answer_prompt
    rows = gsm8k_train[300:304]
    conversations = [template.messages(**row) for row in rows]
    generations = backend.generate(conversations, sampling)
    assert all(len(g.generated) == sampling.n for g in generations)
    answers = [[s.text for s in g.samples] if g.samples else [g.text] for g in generations]
    texts, owners = [], []
    for row, generation, own in zip(rows, generations, answers, strict=True):
        departing = own[0][: len(own[0]) // 2] + " So the answer is 12 apples."
        for text in (row["answer"], *own, departing):
            texts.append(text)
            owners.append((row, generation))
    # A row whose target is its gold: the gold generated word for word is scored as an answer.
    first = generations[0]
    texts.append(first.text)
    owners.append((rows[0], first))
    before = dict(backend.counters)
    scores = backend.score_generated([template.messages(**row) for row, _ in owners], texts,
                                     [g for _, g in owners])
    sent = {k: backend.counters[k] - before[k] for k in before}
    reference = one_prefill_each(backend, [template.messages(**row) for row, _ in owners], texts)
    for score, (mean, tokens), text in zip(scores, reference, texts, strict=True):
        assert score.tokens == tokens, text
        assert score.mean_logprob == pytest.approx(mean, abs=2e-4), text
    def unknown(text, generation):  # tokens of a text that no generated text of its row starts with
        tokens = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
        return len(tokens) - max(len(g.known_prefix(tokens)) for g in generation.generated)

    # A request per text with tokens generation did not produce: the golds, the departing
    # texts, and a sampled answer whose tokens its text does not spell again (sampling may pick
    # a tokenization the tokenizer would not); each reads its prompt from the cache.
    requests = sum(unknown(t, g) > 0 for t, (_, g) in zip(texts, owners, strict=True))
    assert sent["context_requests"] == 0 and sent["continuation_requests"] == requests
    assert 2 * len(rows) <= requests <= 2 * len(rows) + (len(rows) if sampling.n > 1 else 0)
    assert sent["tokens_from_generation"] == sum(
        len(backend.tokenizer(t, add_special_tokens=False)["input_ids"]) - unknown(t, g)
        for t, (_, g) in zip(texts, owners, strict=True))
    assert sent["cached_tokens"] > 0.8 * sum(len(backend.encode(c)) for c in conversations) * 2
