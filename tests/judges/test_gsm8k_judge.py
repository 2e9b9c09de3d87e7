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


# -- every number a solution calculates with comes from somewhere (judges/gsm8k_steps.py) ----

@pytest.mark.parametrize("solution, missing", [
    # the line computing 240 deleted: 240 appears from nowhere
    ("He has 4 hours to read because 16 x .25 = 4\nHe will read 3 books because 240 / 80 = 3\n"
     "#### 3", ["240"]),
    # the May step deleted: the final answer is never computed
    ("She earned $40 x 2 = $80 in April.\n#### 160", ["160"]),
    # every number given or computed first
    ("He has 4 hours to read because 16 x .25 = 4\nThat is 4 x 60 = 240 minutes\n"
     "He will read 3 books because 240 / 80 = 3\n#### 3", []),
    # number words, "half" and percents are given by the question
    ("Half of 48 is 48 / 2 = 24.\n20% of 24 is 24 x 0.2 = 4.8\n#### 4.8", []),
])
def test_a_solution_calculates_only_with_what_it_was_given_or_derived(solution, missing):
    from judges.gsm8k_steps import underived_numbers

    question = ("He reads 80 pages an hour for 16 quarter hours and earns $40 in March; she "
                "keeps half of 48 and gives 20% away.")
    assert underived_numbers(solution, question) == missing


def test_a_paraphrase_works_out_its_answer_even_where_the_gold_says_it_in_prose():
    # Held-out GSM8K row (Maddy's eggs): the gold ends "40 eggs / 10 eggs each week, they will
    # last 4 weeks" (no "="), and a paraphrase that stopped at 10 eggs a week and wrote
    # "#### 4" was admitted: 4 counted as an everyday constant, and as the gold's own given.
    from judges.gsm8k_steps import gold_givens, underived_numbers

    question = ("Maddy was given 40 chocolate eggs for Easter. She likes to eat two each day "
                "after school. If Maddy has two chocolate eggs after school each day, how many "
                "weeks will they last?")
    gold = ("Maddy is eating 2 eggs each day after school and there are 5 school days in a "
            "week, so she eats 2 x 5 = <<2*5=10>>10 eggs each week.\nSince Maddy has 40 eggs / "
            "10 eggs each week, they will last 4 weeks.\n#### 4")
    skipped = ("Maddy is eating 2 eggs each day after school and there are 5 school days in a "
               "week, so she eats 2 x 5 = 10 eggs each week.\n#### 4")
    assert underived_numbers(skipped, question, gold_givens(gold, question)) == ["4"]
    worked = skipped.replace("\n#### 4", "\nThey last 40 / 10 = 4 weeks.\n#### 4")
    assert underived_numbers(worked, question, gold_givens(gold, question)) == []


def test_a_paraphrase_may_take_as_given_what_its_gold_does():
    from judges.gsm8k_steps import gold_givens, underived_numbers

    question = "Ravi has 6 nickels and 8 quarters. How many cents does he have?"
    gold = "6 x 5 = 30 cents\n8 x 25 = 200 cents\n30 + 200 = 230\n#### 230"
    assert underived_numbers(gold, question) == ["25"]  # a quarter's worth: not in the question
    paraphrase = "The quarters are 8 x 25 = 200 cents, the nickels 6 x 5 = 30.\n200 + 30 = 230\n#### 230"
    assert underived_numbers(paraphrase, question, gold_givens(gold, question)) == []
