import random

import pytest

import judges
from judges.gsm8k import extract_answer, extract_gold
from tests.conftest import SWEEP, sweep


@pytest.fixture(scope="module")
def judge():
    return judges.get("gsm8k")


@pytest.mark.slow
@pytest.mark.parametrize("size", SWEEP)
def test_every_gold_solution_is_judged_correct(judge, gsm8k_train, size):
    assert len(gsm8k_train) == 7473
    rows = sweep(gsm8k_train, size)
    wrong = [row["question"][:60] for row in rows if not judge.judge(row["answer"], row).correct]
    assert wrong == []


@pytest.mark.slow
@pytest.mark.parametrize("size", SWEEP)
def test_gold_against_a_shuffled_answer_never_passes_when_numbers_differ(judge, gsm8k_train, size):
    order = list(range(len(gsm8k_train)))
    random.Random(0).shuffle(order)
    pairs = sweep(list(zip(gsm8k_train, order, strict=True)), size)
    false_positives, compared = [], 0
    for row, other_index in pairs:
        other = gsm8k_train[other_index]
        if extract_gold(row["answer"]) == extract_gold(other["answer"]):
            continue
        compared += 1
        if judge.judge(row["answer"], other).correct:
            false_positives.append(row["question"][:60])
    assert compared > 0.95 * len(pairs)
    assert false_positives == []


def example(gold: str) -> dict:
    return {"question": "q", "answer": f"Some reasoning.\n#### {gold}"}


@pytest.mark.parametrize(
    ("response", "gold", "correct", "rule"),
    [
        ("So the total is $1,200.00.\n#### $1,200.00", "1200", True, "strict:hash"),
        ("The answer is \\boxed{42}.", "42", True, "strict:boxed"),
        ("We get \\boxed{42}", "42", True, "strict:boxed"),
        ("She lost 5 dollars, so the change is -5.\n#### -5", "-5", True, "strict:hash"),
        ("#### 5", "-5", False, "strict:hash"),
        ("The final answer is 1/2", "0.5", True, "strict:answer_is"),
        ("#### 0.5", "1/2", True, "strict:hash"),
        ("#### 18.5", "18", False, "strict:hash"),
        ("#### 18", "18.5", False, "strict:hash"),
        ("**Answer: 75%**", "75", True, "strict:answer_is"),
        ("**Final answer:** 1,000", "1000", True, "strict:answer_is"),
        ("It costs 3 dollars each, 4 of them, so 12 dollars in all.", "12", True,
         "flexible:last_number"),
        ("There are 12 apples and 3 pears.", "12", False, "flexible:last_number"),
        ("The answer is 7.\nAfter checking, 3 + 4 = 7 and 10 were used", "7", True,
         "strict:answer_is"),
        ("", "3", False, "empty_response"),
        ("   \n", "3", False, "empty_response"),
        ("I do not know.", "3", False, "no_answer"),
    ],
)
def test_edge_cases(judge, response, gold, correct, rule):
    verdict = judge.judge(response, example(gold))
    assert (verdict.correct, verdict.rule) == (correct, rule)


def test_rule_order_prefers_the_hash_line_over_answer_is():
    assert extract_answer("The answer is 5.\n#### 6") == ("6", "strict:hash")


def test_gold_without_hash_line_is_reported_not_crashed(judge):
    verdict = judge.judge("#### 3", {"question": "q", "answer": "no final line"})
    assert (verdict.correct, verdict.rule) == (False, "bad_gold")


def test_unknown_judge_names_the_available_ones():
    with pytest.raises(KeyError, match="gsm8k"):
        judges.get("nope")
