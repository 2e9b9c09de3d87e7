"""Admission rules on real rows of ../shared/data: what the curated data may and may not
contain. Each case is a kind of bad target seen in real runs of the embedded model."""

from __future__ import annotations

import json

import pytest

import judges
from judges.base import Verdict
from judges.gsm8k import Gsm8kJudge, arithmetic_errors, extract_answer, final_line_value
from judges.mbpp import code_target, is_copy_of_code
from pipeline.config import data_dir
from pipeline.stages.admission import AdmitStage, admit
from pipeline.tasks import load_task
from tests.conftest import SWEEP, sweep

GSM8K = judges.get("gsm8k")
# The paraphrase rules below are about numbers; by default no GSM8K paraphrase is admitted,
# as its words are never proven (test_a_proven_paraphrase_still_needs_its_words_proven).
GSM8K_WORDS = Gsm8kJudge(admit_unproven_wording=True)


@pytest.fixture(scope="module")
def natalia(gsm8k_train) -> dict:
    """GSM8K train row 0: 48/2 = 24 clips in May, 48 + 24 = 72 in all."""
    row = dict(gsm8k_train[0])
    assert row["answer"].endswith("#### 72")
    return {**row, "gold": load_task("gsm8k").gold_response(row)}


def admit_paraphrase(text: str, row: dict, finish_reason: str = "stop"):
    verdict = GSM8K_WORDS.judge_paraphrase(text, row)
    return verdict, admit(GSM8K_WORDS, text, finish_reason, verdict, row, row["gold"],
                          paraphrase=True)


def admit_answer(text: str, row: dict, finish_reason: str = "stop"):
    verdict = GSM8K.judge(text, row)
    return verdict, admit(GSM8K, text, finish_reason, verdict, row, row["gold"], paraphrase=False)


def test_a_faithful_gsm8k_paraphrase_is_admitted(natalia):
    text = ("In May she sold half of 48, which is 48/2 = 24 clips.\n"
            "Over both months that makes 48 + 24 = 72 clips.\n#### 72")
    verdict, decision = admit_paraphrase(text, natalia)
    assert verdict.correct and verdict.rule == "fidelity:strict:hash"
    assert decision.admitted and decision.rule == "admitted"


def test_a_proven_paraphrase_still_needs_its_words_proven(natalia):
    """#44: on fresh rows 6 of 11 paraphrases whose every calculation was the gold's were
    wrong in words ("5 days of the show" for 5 episodes a day). By default the row keeps its
    gold, and the reason says why and how a task opts in."""
    text = ("In May she sold half of 48, which is 48/2 = 24 clips.\n"
            "Over both months that makes 48 + 24 = 72 clips.\n#### 72")
    verdict = GSM8K.judge_paraphrase(text, natalia)
    assert (verdict.correct, verdict.rule) == (False, "needs_judge")
    assert "judge.admit_unproven_wording: true" in verdict.reason
    decision = admit(GSM8K, text, "stop", verdict, natalia, natalia["gold"], paraphrase=True)
    assert (decision.admitted, decision.rule) == (False, "needs_judge")
    assert GSM8K.judge(text, natalia).correct  # the model's own answer is judged as before
    assert GSM8K_WORDS.settings()["admit_unproven_wording"] and GSM8K.settings() == {}


@pytest.mark.parametrize("text, rule", [
    # the answer alone (33 of 67 "passing" paraphrases in the run)
    ("Natalia sold 72 clips.\n#### 72", "fidelity:too_short"),
    # results stated without being worked out
    ("Natalia sold 24 clips in May, which is half of what she sold in April.\n"
     "Altogether she sold 72 clips in April and May, counting both months.\n#### 72",
     "fidelity:missing_steps"),
    # broken arithmetic that happens to end on the right number
    ("In May, half as many: 48/2 = 26 clips.\nBoth months together: 48+26 = 72 clips.\n#### 72",
     "fidelity:missing_steps"),
    # the wrong final number
    ("In May, half as many: 48/2 = 24 clips.\nBoth months together: 48+24 = 72 clips.\n#### 70",
     "strict:hash"),
])
def test_unfaithful_gsm8k_paraphrases_are_not_admitted(natalia, text, rule):
    verdict, decision = admit_paraphrase(text, natalia)
    assert verdict.rule == rule and not verdict.correct
    assert not decision.admitted and decision.rule == "wrong"


@pytest.mark.parametrize("copies", [1, 3])
def test_the_gold_copied_is_not_a_paraphrase(natalia, copies):
    text = "\n".join([natalia["gold"]] * copies)
    _, decision = admit_paraphrase(text, natalia)
    assert decision.rule == "copy_of_gold" and not decision.admitted


def test_a_near_verbatim_copy_is_a_copy(natalia):
    text = natalia["gold"].replace("altogether", "in all")
    assert admit_paraphrase(text, natalia)[1].rule == "copy_of_gold"


@pytest.mark.parametrize("build", [
    # the gold with one line inserted (seen on fresh rows)
    lambda gold: gold.replace("\n", "\nShe keeps every clip she makes.\n", 1),
    # a sentence of prose followed by the gold's lines verbatim (seen on fresh rows)
    lambda gold: ("We can do this by dividing the total amount by the total amount she has "
                  "sold back.\n" + gold),
])
def test_a_paraphrase_with_most_of_the_golds_lines_verbatim_is_a_copy(natalia, build):
    text = build(natalia["gold"])
    assert GSM8K_WORDS.judge_paraphrase(text, natalia).correct  # right, every step worked out
    assert admit_paraphrase(text, natalia)[1].rule == "copy_of_gold"


@pytest.fixture(scope="module")
def julie(gsm8k_train) -> dict:
    """GSM8K train row 3: 12 x 2 = 24, 12 + 24 = 36, 120 - 36 = 84, 84/2 = 42."""
    row = dict(gsm8k_train[3])
    assert row["answer"].endswith("#### 42")
    return {**row, "gold": load_task("gsm8k").gold_response(row)}


def test_a_paraphrase_that_skips_a_step_is_refused(julie):
    """The line that computes 36 is gone, so 36 appears from nowhere; 3 of the gold's 4
    results are still worked out (75 %) and the length passes: only the derivation sees it."""
    skipped = ("Today she read twice as much: 12 x 2 = 24 pages.\n"
               "That leaves 120 - 36 = 84 pages of the book.\n"
               "Half of what is left is 84/2 = 42 pages for tomorrow.\n#### 42")
    verdict, decision = admit_paraphrase(skipped, julie)
    assert (verdict.rule, decision.rule) == ("fidelity:underived", "wrong")
    assert "36" in verdict.reason
    whole = skipped.replace("That leaves", "So far she has read 12 + 24 = 36 pages.\nThat leaves")
    assert admit_paraphrase(whole, julie)[1].admitted


def test_a_cut_off_answer_is_never_admitted_even_if_correct(natalia):
    text = "48/2 = 24 clips in May, and 48 + 24 = 72 in all.\n#### 72"
    verdict, decision = admit_answer(text, natalia, finish_reason="length")
    assert verdict.correct
    assert decision.rule == "truncated" and not decision.admitted
    assert admit_paraphrase(text, natalia, finish_reason="repetition")[1].rule == "truncated"


def test_a_paraphrase_with_a_step_that_leads_nowhere_is_refused(julie):
    """#44: "20 pounds / 5 rocks = 5 rocks" after the right steps: a result the gold never
    computes and nothing later uses (and false arithmetic the unit words hid)."""
    right = ("Today she read twice as much: 12 x 2 = 24 pages.\n"
             "So far she has read 12 + 24 = 36 pages.\n"
             "That leaves 120 - 36 = 84 pages of the book.\n"
             "Half of what is left is 84/2 = 42 pages for tomorrow.\n#### 42")
    assert admit_paraphrase(right, julie)[1].admitted
    extra = right.replace("#### 42", "Each chapter then has 42 pages / 6 chapters = 7 pages.\n#### 42")
    verdict, decision = admit_paraphrase(extra, julie)
    assert (verdict.rule, decision.rule) == ("fidelity:extra_step", "wrong")
    assert "computes 7," in verdict.reason
    # Another route through the problem is not the gold's solution: its steps cannot be
    # proven against the gold's (on fresh rows "2 * 3 = 6 games" stood for 2 + 4).
    other_route = right.replace("That leaves 120 - 36 = 84", "After yesterday 120 - 12 = 108 "
                                "pages were left, and after today 108 - 24 = 84")
    assert admit_paraphrase(other_route, julie)[0].rule == "fidelity:other_calculation"
    wrong_units = right.replace("#### 42", "The see-saw: 20 pounds / 5 rocks = 5 rocks.\n#### 42")
    assert admit_paraphrase(wrong_units, julie)[1].rule in ("arithmetic", "wrong")


def test_a_right_answer_without_the_final_line_is_not_a_target(natalia):
    verdict, decision = admit_answer("48/2 = 24 and 48 + 24 = 72. The answer is 72.", natalia)
    assert verdict.correct and verdict.rule == "strict:answer_is"
    assert decision.rule == "format:no_final_line"


def test_a_right_answer_through_wrong_arithmetic_is_not_a_target(natalia):
    verdict, decision = admit_answer("She sold 48/2 = 25 clips in May, so 48 + 24 = 72.\n#### 72",
                                     natalia)
    assert verdict.correct
    assert decision.rule == "arithmetic" and "48/2 = 25" in decision.reason


def test_a_right_worked_answer_is_admitted(natalia):
    _, decision = admit_answer("She sold 48/2 = 24 clips in May, so 48 + 24 = 72.\n#### 72", natalia)
    assert decision.admitted


@pytest.mark.parametrize("text, rule", [
    # the number by chance, every calculation true (held4: "10 x 10" for rows of 12 and 8 bricks)
    ("She sold 36 * 2 = 72 clips.\n#### 72", "own_answer:missing_steps"),
    # the gold's steps, then one of its own that nothing uses
    ("She sold 48/2 = 24 clips in May, so 48 + 24 = 72. Also 72 - 24 = 48.\n#### 72",
     "own_answer:extra_step"),
    # the final number stated, not worked out
    ("She sold 48/2 = 24 clips in May and 72 in all.\n#### 72", "own_answer:missing_steps"),
])
def test_an_own_answer_must_do_the_golds_calculations(natalia, text, rule):
    """#44 held4: 7 of 7 own answers with the gold's number were unsound, 3 of them with no
    arithmetic slip; the right number, the format and true arithmetic prove nothing alone."""
    verdict, decision = admit_answer(text, natalia)
    assert verdict.correct  # the number is right: the judge's verdict is unchanged
    assert (decision.admitted, decision.rule) == (False, rule)
    assert decision.reason.startswith("the right number, but not by the gold's calculations")
    number_only = Gsm8kJudge(prove_own_answers=False)
    assert admit(number_only, text, "stop", number_only.judge(text, natalia), natalia, natalia["gold"],
                 paraphrase=False).admitted
    assert number_only.settings()["prove_own_answers"] is False
    # the admit stage's key follows the option: a rerun with it changed admits again
    assert AdmitStage(number_only).settings() != AdmitStage(GSM8K).settings()


@pytest.mark.slow
@pytest.mark.parametrize("size", SWEEP)
def test_gold_solutions_pass_as_own_answers(gsm8k_train, size):
    """An own answer as good as the gold is admitted: the proof refuses the gold itself on
    under 2 % of rows (133 of all 7,473, the golds the paraphrase rules refuse as their own
    rewrite too); 22 more are the gold's own arithmetic slips, refused before the proof."""
    gold = load_task("gsm8k").gold_response
    rows = [{**row, "gold": gold(row)} for row in sweep(gsm8k_train, size)]
    rules = [admit_answer(row["gold"], row)[1].rule for row in rows]
    assert sum(rule.startswith("own_answer:") for rule in rules) <= 0.02 * len(rows)
    assert rules.count("admitted") >= 0.97 * len(rows)


@pytest.mark.parametrize("text, value", [
    ("#### 72", "72"), ("Thus:\n####  $1,200.\n", "1200"), ("#### 72\nmore text", None),
    ("The answer is 72", None),
])
def test_final_line(text, value):
    assert final_line_value(text) == value


@pytest.mark.parametrize("text, errors", [
    ("3 x 4 = 12 and 12 + 3 = 15", []),
    ("8 * 24 = 160 pages", ["8 * 24 = 160"]),
    ("2 * 23 - 4 = 46 - 4 = 42", []),  # a chain
    ("10 / 3 = 3.33 each", []),  # rounded
    ("60 students x 2/3 = 40 students", []),  # a quantity in words: not checked
    ("20% of 50 = 10", []),
    ("He has 1 1/2 cups, and 8 x 1 1/2 = 12 rolls", []),  # mixed numbers: not checked
    ("6:00+48=6:48 PM", []),
    ("$4200+$3000 = $8600", ["$4200+$3000 = $8600"]),
    ("17/3 = 5 and 2/3 loads", []),  # a mixed number
    ("13 / 6 = 2 full cycles", []),  # a whole quotient
    ("$1 / 2 = 50 cents", []),
    ("he ate .25*24 = 6 slices", []),
    ("Marco gets 28 / 1/5 = 28 * 5 = 140 cups", []),  # divided by a fraction: not read
    ("i.e. 0900-0130 = 0730 hours", []),
    ("30 − 19 = 11", []),  # Unicode minus
    ("30 + 19 = 58 situps", ["30 + 19 = 58"]),
    # percents read as /100, either way round (#44)
    ("So 216/600*100% = 24% were left.", ["216/600*100% = 24%"]),
    ("216/600*100 = 36%", []), ("216/600 = 36%", []), ("100% - 40% = 60%", []),
    ("So its height was 1.2 x 100% = 120 inches.", []),  # 100 of "each 1 %"
    ("5 % 3 = 2", []),  # not a percent: not read
    # unit words set aside (#44)
    ("the see-saw: 20 pounds / 5 rocks = 5 rocks.", ["20 / 5 = 5"]),
    ("20 pounds / 4 pound/rock = 5 rocks", []),
    ("3 hours * 60 minutes = 180 minutes", []),
    ("3 hours * 60 minutes = 200 minutes", ["3 * 60 = 200"]),
    ("$5/hour x 3 hours = $16", ["$5 x 3 = $16"]),
    ("4 pounds - 6 ounces = 58 ounces", []),  # a sum of different units: not read
    ("2 hours and 30 minutes * 2 = 5 hours", []),  # a compound quantity
    ("1/2 a cup = 4 ounces", []), ("2 dozen * 3 = 72 eggs", []),
    ("Multiplying by 1/3 gives b = (1/3)*180 = 60", []),  # "b" is a name, not a unit
    ("so 8/3 = 24/Y.", []),
    ("Therefore X = 9 because - 18/-2 = 9", []),
])
def test_arithmetic_check(text, errors):
    assert arithmetic_errors(text) == errors


@pytest.mark.slow
@pytest.mark.parametrize("size", SWEEP)
def test_arithmetic_check_flags_almost_no_gold_solution(gsm8k_train, size):
    """The check errs towards passing: on the 7,473 gold solutions it flags 22, nearly all
    real slips of the gold itself (``192*100=$1920``, ``2*8 = 24``; reading unit words added
    two more: row 1817's "1550 cubic inches / 50 ... = 29", row 5350's "13 marbles + 4
    marbles + 16 marbles = 45"): at most 25 of 7,473, and at most 5 in a sample of 500."""
    gold = load_task("gsm8k").gold_response
    rows = sweep(gsm8k_train, size)
    flagged = [row for row in rows if arithmetic_errors(gold(row))]
    assert len(flagged) <= (25 if size is None else 5)


# -- #44: a paraphrase is the gold's solution calculation by calculation --------------------

JULIE_RIGHT = ("Today she read twice as much: 12 x 2 = 24 pages.\n"
               "So far she has read 12 + 24 = 36 pages.\n"
               "That leaves 120 - 36 = 84 pages of the book.\n"
               "Half of what is left is 84/2 = 42 pages for tomorrow.\n#### 42")


@pytest.mark.parametrize("edit, rule, named", [
    # a calculation pasted into a right step ("which is $40 / 2 = $20" on fresh rows): its
    # result is given and used later, so neither underived nor extra_step saw it
    (("12 x 2 = 24 pages.", "12 x 2 = 24 pages, which is 24 / 2 = 12 a day."),
     "fidelity:other_calculation", "24 / 2 = 12"),
    # a result stated, not calculated ("D2 = 625" on fresh rows): the "=" made it known
    (("So far she has read 12 + 24 = 36 pages.", "So far she has read pages = 36."),
     "fidelity:skipped_calculation", "12 + 24 = 36"),
    # a number from nowhere, in prose ("can fill 208 gallons" on fresh rows)
    (("That leaves", "The book has 170 words a page.\nThat leaves"),
     "fidelity:unsupported_number", "170"),
])
def test_a_paraphrase_is_the_golds_solution_calculation_by_calculation(julie, edit, rule, named):
    assert admit_paraphrase(JULIE_RIGHT, julie)[1].admitted
    text = JULIE_RIGHT.replace(*edit)
    assert text != JULIE_RIGHT
    verdict, decision = admit_paraphrase(text, julie)
    assert (verdict.rule, decision.rule) == (rule, "wrong")
    assert named in verdict.reason


def test_a_step_credited_to_someone_else_is_refused():
    """#44, seen on fresh rows: "Cassandra collected 5000 - 276 = 4724" where the gold says
    James has them. A row written for this test, not a dataset row."""
    row = {"question": "Ana has 30 stamps. Ben has 12 fewer stamps than Ana. How many stamps "
                       "do they have together?",
           "answer": "Ben has 30 - 12 = <<30-12=18>>18 stamps.\n"
                     "Together they have 30 + 18 = <<30+18=48>>48 stamps.\n#### 48"}
    row["gold"] = load_task("gsm8k").gold_response(row)
    sound = "Ben has 12 fewer, so he has 30 - 12 = 18 stamps.\nAll in all 30 + 18 = 48.\n#### 48"
    assert admit_paraphrase(sound, row)[1].admitted
    swapped = "Ana has 30 - 12 = 18 stamps.\nAna and Ben have 30 + 18 = 48 stamps.\n#### 48"
    verdict, decision = admit_paraphrase(swapped, row)
    assert (verdict.rule, decision.rule) == ("fidelity:other_person", "wrong")
    assert verdict.reason.endswith("Ana: 30 - 12 = 18")


@pytest.mark.slow
@pytest.mark.parametrize("size", SWEEP)
def test_gold_solutions_pass_their_own_fidelity_check(gsm8k_train, size):
    """A rewrite as faithful as the gold itself passes: >= 98 % of gold solutions do."""
    gold = load_task("gsm8k").gold_response
    rows = sweep(gsm8k_train, size)
    passed = sum(GSM8K_WORDS.judge_paraphrase(gold(row), row).correct for row in rows)
    assert passed >= 0.98 * len(rows)


# -- GSM8K extraction: LaTeX and typography through Math-Verify ------------------------------

@pytest.mark.parametrize("response, gold, rule", [
    ("The answer is $\\frac{1}{2}$.", "0.5", "strict:answer_is"),
    ("So we get \\boxed{\\frac{3}{4}}", "0.75", "strict:boxed"),
    ("The answer is \\boxed{\\dfrac{10}{2}} apples, 3 more than 2", "5", "strict:boxed"),
    ("We get \\boxed{\\frac{10}{2}} apples, 3 more than 2", "5", "strict:boxed"),
    ("She is 5 short.\n#### \u22125", "-5", "strict:hash"),
    ("The answer is \u22123.", "-3", "strict:answer_is"),
    ("#### \uff14\uff12", "42", "strict:hash"),  # full-width digits
])
def test_latex_and_typographic_answers(response, gold, rule):
    row = {"question": "q", "answer": f"Steps.\n#### {gold}"}
    verdict = GSM8K.judge(response, row)
    assert (verdict.correct, verdict.rule) == (True, rule), verdict


def test_a_latex_answer_is_not_read_as_its_last_number():
    # Before Math-Verify read LaTeX, "\frac{1}{2}" fell through to the last number: 2.
    assert extract_answer("The answer is $\\frac{1}{2}$")[0] == "\\frac{1}{2}"
    assert not GSM8K.judge("The answer is $\\frac{1}{2}$", {"answer": "#### 2"}).correct


# -- MBPP: one target format, copies by AST --------------------------------------------------

@pytest.fixture(scope="module")
def mbpp_602() -> dict:
    with (data_dir() / "mbpp" / "mbpp.jsonl").open() as handle:
        row = next(r for r in map(json.loads, handle) if r["task_id"] == 602)
    assert "\r\n" in row["code"]
    return row


def test_every_mbpp_target_has_one_format(mbpp_602):
    judge = judges.get("mbpp")
    fenced = "Here you go:\n```python\n" + mbpp_602["code"].replace("\r\n", "\n") + "\n```\nDone."
    verdict = judge.judge(fenced, mbpp_602)
    assert verdict.correct
    target = judge.format_target(fenced, verdict, mbpp_602)
    assert target == code_target(mbpp_602["code"]) == load_task("mbpp").gold_response(mbpp_602)
    assert target.startswith("[BEGIN]\ndef first_repeated_char") and target.endswith("\n[DONE]")
    assert "\r" not in target


def test_mbpp_copies_are_found_by_their_ast(mbpp_602):
    code = mbpp_602["code"]
    reformatted = code.replace("\r\n", "\n").replace("index,c", "index, c") + "  # same"
    assert is_copy_of_code(reformatted, code)
    assert is_copy_of_code("\n\n".join([code] * 3), code)
    renamed = code.replace("str1", "text").replace("index", "i")
    assert not is_copy_of_code(renamed, code)
    judge = judges.get("mbpp")
    gold = load_task("mbpp").gold_response(mbpp_602)
    verdict = judge.judge(f"[BEGIN]\n{reformatted}\n[DONE]", mbpp_602)
    decision = admit(judge, f"[BEGIN]\n{reformatted}\n[DONE]", "stop", verdict, mbpp_602, gold,
                     paraphrase=True)
    assert verdict.correct and decision.rule == "copy_of_gold"
    verdict = judge.judge(f"[BEGIN]\n{renamed}\n[DONE]", mbpp_602)
    assert admit(judge, f"[BEGIN]\n{renamed}\n[DONE]", "stop", verdict, mbpp_602, gold,
                 paraphrase=True).admitted


# -- NQ: a paraphrase states an alias; untrusted verdicts are not admitted ------------------

NQ_ROW = {"question": "who plays the voice of homer simpson", "answers": ["Dan Castellaneta"],
          "gold": "Dan Castellaneta"}


def test_an_nq_paraphrase_must_state_a_gold_alias():
    judge = judges.get("nq")
    assert judge.judge_paraphrase("Dan Castellaneta plays the voice of Homer Simpson.",
                                  NQ_ROW).correct
    verdict = judge.judge_paraphrase("The voice actor of the Simpsons' father.", NQ_ROW)
    assert (verdict.correct, verdict.rule) == (False, "heuristic:no_match")


def test_a_verdict_of_an_untrusted_judge_is_not_admitted():
    verdict = Verdict(False, "judge_untrusted", reason="failed calibration")
    decision = admit(judges.get("nq"), "Castellaneta, I think", "stop", verdict, NQ_ROW,
                     NQ_ROW["gold"], paraphrase=False)
    assert decision.rule == "judge_untrusted" and not decision.admitted


def test_the_gold_alias_restated_alone_is_a_copy():
    judge = judges.get("nq")
    verdict = judge.judge_paraphrase("Dan Castellaneta.", NQ_ROW)
    assert verdict.correct
    assert admit(judge, "Dan Castellaneta.", "stop", verdict, NQ_ROW, NQ_ROW["gold"],
                 paraphrase=True).rule == "copy_of_gold"


def test_a_pasted_repeat_is_written_once_and_demo_code_is_not_a_target(mbpp_602):
    from judges.mbpp import target_problem, without_repeats

    code = mbpp_602["code"].replace("\r\n", "\n")
    assert without_repeats(f"{code}\n\n{code}\n\n{code}") == code
    assert code_target(f"{code}\n\n{code}") == code_target(code)
    assert target_problem(f"{code}\n\n{code}") is None  # the same function twice: written once
    demo = f"{code}\n\n# Test the function\nprint(first_repeated_char('abcabc'))  # 'b'"
    assert target_problem(demo)[0] == "format:top_level_code"
    other = code.replace('return "None"', 'return None')
    assert target_problem(f"{code}\n\n{other}")[0] == "format:redefined"
    judge = judges.get("mbpp")
    gold = load_task("mbpp").gold_response(mbpp_602)
    verdict = judge.judge(f"[BEGIN]\n{demo}\n[DONE]", mbpp_602)
    assert verdict.correct  # it passes the tests ...
    decision = admit(judge, f"[BEGIN]\n{demo}\n[DONE]", "stop", verdict, mbpp_602, gold,
                     paraphrase=False)
    assert decision.rule == "format:top_level_code"  # ... and is still not a target


@pytest.mark.parametrize("tail, refused", [
    # #43: test code after the function passed the target check
    ("assert first_repeated_char('abcabc') == 'a'", "test code"),
    ("result = first_repeated_char('abc')", "result ="),
    ("if __name__ == '__main__':\n    print(first_repeated_char('abc'))", "__main__"),
    # the solution's own constants and helpers stay
    ("MAX = 10**9 + 7", None),
])
def test_a_target_is_the_solution_only(mbpp_602, tail, refused):
    from judges.mbpp import target_problem

    code = mbpp_602["code"].replace("\r\n", "\n")
    problem = target_problem(f"{code}\n{tail}\n")
    if refused is None:
        assert problem is None
    else:
        assert problem[0] == "format:top_level_code" and refused in problem[1], problem


@pytest.mark.slow
def test_no_mbpp_reference_breaks_a_target_rule():
    from judges.mbpp import target_problem

    with (data_dir() / "mbpp" / "mbpp.jsonl").open() as handle:
        rows = [json.loads(line) for line in handle]
    assert len(rows) == 974
    assert [r["task_id"] for r in rows if target_problem(r["code"].replace("\r\n", "\n"))] == []
    from judges.mbpp_technique import REFERENCES_WITHOUT_TECHNIQUE, technique_problem

    named = [r for r in rows if technique_problem(r["text"], "pass") is not None]
    assert len(named) == 86  # tasks that name a technique the empty program lacks
    assert [r["task_id"] for r in rows if technique_problem(
        r["text"], r["code"].replace("\r\n", "\n"))] == list(REFERENCES_WITHOUT_TECHNIQUE)


@pytest.mark.parametrize("task_id, code, missing", [
    (887, "def is_odd(n):\n    return n % 2 == 1", "a bitwise operator"),  # #43's example
    (887, "def is_odd(n):\n    return n & 1 == 1", None),
    (None, "def sort_it(xs):\n    return sorted(xs)", "the sorting algorithm written out"),
])
def test_the_technique_a_task_names_is_in_the_code(task_id, code, missing):
    from judges.mbpp_technique import technique_problem

    with (data_dir() / "mbpp" / "mbpp.jsonl").open() as handle:
        rows = {r["task_id"]: r for r in map(json.loads, handle)}
    text = rows[task_id]["text"] if task_id else "Write a function to sort a list using heap sort."
    problem = technique_problem(text, code)
    assert (problem is None) if missing is None else (problem[0] == "technique:missing"
                                                     and missing in problem[1]), problem
    if task_id:  # and through the judge, as admission asks it
        judge = judges.get("mbpp")
        verdict = judge.judge(f"[BEGIN]\n{code}\n[DONE]", rows[task_id])
        assert verdict.correct
        refused = judge.check_target(code, verdict, rows[task_id])
        assert (refused is None) if missing is None else refused.rule == "technique:missing"


@pytest.mark.parametrize("text, example, rule", [
    # real paraphrases of the embedded model that name an alias and are still wrong
    ("The correct answer is the middle cranial fossa, which is the part of the brain that "
     "contains the pituitary gland.",
     {"question": "what part of the brain is in the middle cranial fossa",
      "answers": ["pituitary gland", "the temporal lobes"], "passage": "The middle cranial fossa "
      "houses the temporal lobes and the pituitary gland."}, "paraphrase:answer_is_other"),
    ("Rocky (2013)", {"question": "who won the oscar for best picture in 1976",
                      "answers": ["Rocky"], "passage": "Rocky won Best Picture in 1977."},
     "paraphrase:new_number"),
    ('Oliver Conant, the voice actor who played Hermie in the movie "Summer of 42" was '
     'Katherine Allentuck.', {"question": "who starred in the movie summer of 42",
                              "answers": ["Oliver Conant", "Gary Grimes", "Katherine Allentuck"],
                              "passage": "Summer of '42 stars Gary Grimes, Oliver Conant."},
     "paraphrase:several_answers"),
])
def test_an_nq_paraphrase_that_names_an_alias_can_still_be_wrong(text, example, rule):
    verdict = judges.get("nq").judge_paraphrase(text, example)
    assert (verdict.correct, verdict.rule) == (False, rule)


@pytest.mark.parametrize("text, ok", [
    ("There are 291 episodes of the outsiders.", True),
    ("The outsiders takes place in Tulsa, Oklahoma.", True),
    # the paraphrase prompt's own words, not a statement (seen in 12 of 24 admitted paraphrases)
    ("The correct answer is 291.", False),
    ("The answer is Tulsa, Oklahoma, Oklahoma", False),
])
def test_an_nq_paraphrase_is_the_question_restated_around_the_answer(text, ok):
    answers, question = ((["291"], "how many episodes of the outsiders are there") if "291" in text
                         else (["Tulsa, Oklahoma"], "where does the outsiders take place"))
    example = {"question": question, "answers": answers, "passage": "The Outsiders is set in Tulsa."}
    assert judges.get("nq").judge_paraphrase(text, example).correct is ok
