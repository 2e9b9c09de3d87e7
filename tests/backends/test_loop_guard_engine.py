"""The loop guard on the real engine and the embedded model (the session's engine, float32).

The prompts are real GSM8K training rows: LOOPING ones make the embedded model repeat itself
to the 384-token limit without the guard, ENDING ones finish on their own. (Found by
the tuning replay in docs/loop-guard.md; a change of model or prompt may need new rows.)
"""

from __future__ import annotations

import pytest

from pipeline.backends.base import SamplingSettings
from pipeline.backends.loop_guard import LoopGuard

pytestmark = pytest.mark.slow

#: Indexes into the GSM8K train split.
LOOPING = (590, 622, 630)
ENDING = (513, 514)


@pytest.fixture(scope="module")
def backend(engine):
    return engine[1]


@pytest.fixture(scope="module")
def answers(backend, gsm8k_train):
    from pipeline.tasks import load_task

    template = load_task("gsm8k").answer_prompt
    conversations = [template.messages(**gsm8k_train[i]) for i in LOOPING + ENDING]
    unguarded = backend.generate(conversations, SamplingSettings(max_tokens=384))
    guarded = backend.generate(conversations, SamplingSettings(max_tokens=384, loop_guard=LoopGuard()))
    return unguarded, guarded


def test_a_looping_answer_is_stopped_where_the_loop_is_recognised(answers):
    unguarded, guarded = answers
    for without, with_guard in zip(unguarded[:len(LOOPING)], guarded[:len(LOOPING)], strict=True):
        assert without.finish_reason == "length" and without.completion_tokens == 384
        assert with_guard.finish_reason == "repetition"
        # Stopped early (tokens not spent), and everything before the stop is the same text.
        assert with_guard.completion_tokens < 200
        assert without.text.startswith(with_guard.text)


def test_an_answer_that_ends_on_its_own_is_not_touched(answers):
    unguarded, guarded = answers
    for without, with_guard in zip(unguarded[len(LOOPING):], guarded[len(LOOPING):], strict=True):
        assert without.finish_reason == "stop" and with_guard.finish_reason == "stop"
        assert with_guard.text == without.text
        assert with_guard.completion_tokens == without.completion_tokens


def test_a_request_without_the_guard_shares_the_engine_untouched(backend, gsm8k_train, answers):
    """One engine serves guarded and unguarded requests (the LLM judge asks for none)."""
    from pipeline.tasks import load_task

    template = load_task("gsm8k").answer_prompt
    again = backend.generate([template.messages(**gsm8k_train[LOOPING[0]])],
                             SamplingSettings(max_tokens=384))
    assert again[0].finish_reason == "length" and again[0].text == answers[0][0].text
