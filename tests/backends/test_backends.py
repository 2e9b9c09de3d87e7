"""The prompt check both vLLM backends (in-process and Ray) run before generating: real
SmolLM2 tokenizer and chat template, no engine."""

from __future__ import annotations

import pytest

from pipeline.backends.base import chat_token_ids, tokenize_within_context


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from pipeline.backends.model import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model().path)


def test_a_prompt_without_room_for_the_answer_becomes_an_error_row(tokenizer):
    short = [{"role": "user", "content": "What is 2 + 3?"}]
    long = [{"role": "user", "content": "seven " * 3000}]
    results, runnable = tokenize_within_context(tokenizer, [short, long, short],
                                                max_model_len=2048, max_tokens=384)
    assert [index for index, _ in runnable] == [0, 2]
    assert results[0] is None and results[2] is None  # left for the engine
    too_long = results[1]
    assert too_long is not None and too_long.text is None and too_long.finish_reason is None
    assert too_long.prompt_tokens > 2048 - 384
    assert too_long.error.startswith(f"prompt_too_long: {too_long.prompt_tokens} prompt tokens "
                                     f"> 1664 allowed (max_model_len 2048 - max_tokens 384)")
    ids = runnable[0][1]
    assert ids == chat_token_ids(tokenizer, short)
    # The chat template's generation prompt: the ids end with the assistant turn's header.
    assert tokenizer.decode(ids).rstrip().endswith("assistant")
    assert "What is 2 + 3?" in tokenizer.decode(ids)


def test_the_limit_is_inclusive(tokenizer):
    conversation = [{"role": "user", "content": "Add 4 and 5."}]
    length = len(chat_token_ids(tokenizer, conversation))
    results, runnable = tokenize_within_context(tokenizer, [conversation], length + 10, 10)
    assert results == [None] and len(runnable) == 1  # exactly fits
    results, runnable = tokenize_within_context(tokenizer, [conversation], length + 9, 10)
    assert runnable == [] and results[0].error.startswith(f"prompt_too_long: {length} ")
