"""Comparing a paraphrase's calculations with its gold's (judges/gsm8k_alignment.py)."""

from __future__ import annotations

from judges.gsm8k import calculations
from judges.gsm8k_alignment import (
    names,
    other_calculations,
    same_step,
    skipped_calculations,
    unsupported_numbers,
)


def one(text: str):
    (calculation,) = calculations(text)
    return calculation


def test_the_same_step_whatever_the_writing():
    gold = one("Hannah got $170 x 10/100 = $17 discount.")
    assert same_step(one("The discount was 170 x 10% = 17 dollars."), gold)  # % and order
    assert same_step(one("so 10 / 3 = 3.33 each"), one("10/3 = 3.333 cups"))  # rounding
    assert not same_step(one("2 * 3 = 6 games"), one("2 + 4 = 6 games"))  # the same result
    assert not same_step(one("12 + 24 = 36"), one("12 + 24 + 0.5 = 36.5"))


def test_other_and_skipped_calculations_name_the_steps():
    gold = calculations("He made 17 + 5 = 22 points.\nThen 22 - 13 = 9.\nSo 9 / 3 = 3.\n#### 3")
    own = calculations("He made 17 + 5 = 22 points.\nThen 22 - 13 = 9.\nAnd 9 x 1 = 9.\n#### 3")
    assert other_calculations(own, gold) == ["9 x 1 = 9"]
    assert skipped_calculations(own, gold) == ["9 / 3 = 3"]
    assert other_calculations(gold, gold) == skipped_calculations(gold, gold) == []


def test_a_gold_slip_is_not_asked_of_the_paraphrase():
    gold = calculations("2 * 8 = 24 tiles\n#### 16")
    assert not gold[0].right
    assert skipped_calculations([], gold) == []


def test_unsupported_numbers_in_prose():
    question = "A truck fills 20 cans of 8 gallons in 3 hours. How long for 25 cans?"
    gold = "Each can holds 8 gallons, 20*8=<<20*8=160>>160 gallons.\n#### 5"
    own = calculations("20 * 8 = 160 gallons")
    text = "The truck can fill 208 gallons.\n20 * 8 = 160 gallons in 3 hours."
    assert unsupported_numbers(text, question, gold, own) == ["208"]
    assert unsupported_numbers("It costs 16,000 cents, or 160 dollars.", question, gold, own) == []


def test_names_are_the_questions_people_and_days_not_its_sentence_openers():
    question = ("Every Monday Daniel delivers 20 yards. If Ana helps him on Tuesday, how much "
                "do they deliver? Going by the price, Yvonne pays.")
    assert names(question, "then every day") == {"Monday", "Daniel", "Ana", "Tuesday",
                                                  "Going", "Yvonne"}
