"""The loop guard's rule and its vLLM processor, without an engine (the engine tests are in
tests/backends/test_loop_guard_engine.py)."""

from __future__ import annotations

import pytest
import torch

from pipeline.backends.loop_guard import (
    LoopGuard,
    RepetitionWatch,
    loop_start,
    stopped_by_guard,
    trips_at_end,
)

#: Small settings, so the sequences below stay readable.
EXACT = LoopGuard(max_period=8, repeats=3, similarity=1.0, min_span=8)


def test_an_exact_loop_trips_after_repeats_plus_one_turns():
    loop = [7, 8, 9, 10]
    tokens = [1, 2] + loop * 20
    assert loop_start(tokens, EXACT) == 2 + 4 * len(loop)


def test_a_run_of_one_token_trips_once_min_span_tokens_are_compared():
    assert loop_start([5] * 40, EXACT) == EXACT.min_span + 1


def test_a_loop_with_a_counter_trips_at_its_similarity():
    tokens = []
    for step in range(12):
        tokens += [40, 41, 42, 43, 44, 45, 46, 47, 48, 100 + step]  # "Step k: the same words"
    assert loop_start(tokens, LoopGuard(max_period=16, repeats=3, similarity=0.9, min_span=8)) == 40
    assert loop_start(tokens, LoopGuard(max_period=16, repeats=3, similarity=1.0, min_span=8)) is None


def test_a_phrase_used_again_and_again_between_other_words_is_not_a_loop():
    phrase = list(range(500, 512))
    tokens = []
    for step in range(6):
        tokens += phrase + list(range(100 * step, 100 * step + 20))
    assert loop_start(tokens, LoopGuard()) is None
    assert loop_start([], LoopGuard()) is None and loop_start([1], LoopGuard()) is None


def test_the_watch_reads_any_number_of_new_tokens_per_call():
    tokens = [9, 9, 1, 2, 3] * 10
    one_by_one = RepetitionWatch(EXACT)
    fired = [one_by_one.catch_up(tokens[:n]) for n in range(1, len(tokens) + 1)]
    in_chunks = RepetitionWatch(EXACT)
    assert in_chunks.catch_up(tokens[:7]) is False and in_chunks.catch_up(tokens) is True
    assert fired.index(True) + 1 == loop_start(tokens, EXACT)
    assert one_by_one.matches == in_chunks.matches


def test_the_end_check_agrees_with_the_watch_at_every_length():
    tokens = [3, 1, 4, 1, 5, 9, 2, 6] + [5, 3, 5, 8] * 6 + [9, 7, 9]
    start = loop_start(tokens, EXACT)
    assert start is not None
    assert [trips_at_end(tokens[:n], EXACT) for n in range(1, start + 1)] == [False] * (start - 1) + [True]


def test_a_stop_is_the_guards_only_when_the_rule_holds_on_the_token_before_it():
    eos = 0
    loop = [5] * 9  # trips at 9 tokens
    assert stopped_by_guard(loop + [eos], EXACT, {eos})
    assert not stopped_by_guard([1, 2, 3, eos], EXACT, {eos})  # a natural end
    assert not stopped_by_guard(loop, EXACT, {eos})  # no stop token: cut, or a stop string
    assert not stopped_by_guard([], EXACT, {eos}) and not stopped_by_guard([eos], EXACT, {eos})


def test_settings_travel_as_flat_extra_args():
    guard = LoopGuard(max_period=10, repeats=5, similarity=0.8, min_span=20)
    assert LoopGuard.from_extra_args(guard.extra_args()) == guard
    assert LoopGuard.from_extra_args(None) is None and LoopGuard.from_extra_args({}) is None
    assert all(isinstance(v, int | float) for v in guard.extra_args().values())  # vllm_xargs-safe


@pytest.mark.parametrize("settings", [{"max_period": 0}, {"similarity": 1.5}, {"repeats": 0}])
def test_impossible_settings_are_refused(settings):
    with pytest.raises(ValueError, match="loop guard"):
        LoopGuard(**settings)


class _Params:
    def __init__(self, guard: LoopGuard | None, eos: int | None = 0):
        self.extra_args = guard.extra_args() if guard else None
        self.eos_token_id = eos


def test_the_processor_forces_the_end_only_on_guarded_looping_rows():
    from vllm.v1.sample.logits_processor import BatchUpdate

    from pipeline.backends.loop_guard_vllm import LoopGuardProcessor

    guard = LoopGuard(max_period=8, repeats=3, similarity=1.0, min_span=4)
    processor = LoopGuardProcessor(None, torch.device("cpu"), False)
    assert processor.is_argmax_invariant() is False
    looping, fine, unguarded = [], [], []
    processor.update_state(BatchUpdate(batch_size=3, removed=[], moved=[], added=[
        (0, _Params(guard), None, looping), (1, _Params(guard), None, fine),
        (2, _Params(None), None, unguarded)]))
    for step in range(8):
        looping.append(4)
        fine.append(10 + step)
        unguarded.append(4)
        processor.update_state(None)
        logits = processor.apply(torch.zeros(3, 8))
        stopped = logits[0].argmax().item() == 0 and torch.isinf(logits[0, 1:]).all().item()
        assert stopped == (len(looping) >= 5), step  # 4 comparisons of period 1 from 5 tokens
        assert torch.equal(logits[1:], torch.zeros(2, 8))
    # A removed request is forgotten.
    processor.update_state(BatchUpdate(batch_size=2, removed=[0], moved=[], added=[]))
    assert set(processor.watched) == {1}


def test_a_request_without_an_end_token_is_not_watched():
    from vllm.v1.sample.logits_processor import BatchUpdate

    from pipeline.backends.loop_guard_vllm import LoopGuardProcessor

    processor = LoopGuardProcessor(None, torch.device("cpu"), False)
    processor.update_state(BatchUpdate(batch_size=1, removed=[], moved=[], added=[
        (0, _Params(EXACT, eos=None), None, [])]))
    assert processor.watched == {}


@pytest.mark.parametrize("extra", [{"s3ft_loop_max_period": "x"}, {"s3ft_loop_repeats": 3}])
def test_malformed_settings_are_refused_when_the_request_is_made(extra):
    from pipeline.backends.loop_guard_vllm import LoopGuardProcessor

    params = _Params(None)
    params.extra_args = extra
    with pytest.raises(ValueError, match="loop guard"):
        LoopGuardProcessor.validate_params(params)
