"""NQ: the heuristic judge (normalisation, alias matching, near-misses that must not match),
the LLM judge path against the local fake server, and the data helpers on the real file."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from judges.nq import VERDICT_SCHEMA, NqJudge, heuristic_verdict, normalize, parse_llm_verdict
from judges.templates import template
from pipeline.backends.openai_backend import OpenAIBackend
from pipeline.config import data_dir
from pipeline.tasks.nq_data import (
    NQ_FILE,
    NqRowError,
    gold_response,
    nq_row_fields,
    nq_row_id,
    prepare_row,
    split_of,
)
from tests.fake_openai_server import FakeOpenAIServer, grading_judge

# -- normalisation ------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("The Beatles!", "beatles"),
    ("  An   apple a day ", "apple day"),
    ("Wilhelm Conrad Röntgen", "wilhelm conrad rontgen"),
    ("Jay-Z", "jay z"),
    ("Destiny’s Child", "destinys child"),
    ("1,000", "1000"),
    ("3.5 million", "3.5 million"),  # a decimal point is not punctuation
    ("U.S.", "us"),
    ("9:30 a.m.", "9:30 am"),
    ("theatre", "theatre"),  # articles only as whole words
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


# -- heuristic ------------------------------------------------------------------------------


@pytest.mark.parametrize("response, answers, rule", [
    ("Wilhelm Conrad Röntgen", ["Wilhelm Conrad Röntgen"], "heuristic:exact"),
    ("the Indian Ocean.", ["the Indian Ocean"], "heuristic:exact"),
    ("Wilhelm Conrad Rontgen", ["Wilhelm Conrad Röntgen"], "heuristic:exact"),
    ("291", ["291 episodes", "291"], "heuristic:exact"),
    ("The first Nobel Prize in Physics went to Wilhelm Conrad Röntgen in 1901.",
     ["Wilhelm Conrad Röntgen"], "heuristic:contains"),
    ("OPEC has 14 member countries.", ["14"], "heuristic:contains"),
    ("It is set in Tulsa, Oklahoma.", ["Tulsa, Oklahoma"], "heuristic:contains"),
    ("The dog is called Spike.", ["Tom", "Spike"], "heuristic:contains"),
    ("The next Deadpool movie comes out in the United States on May 18, 2018.",
     ["May 18, 2018"], "heuristic:contains"),
    ("The Eagles won Super Bowl LII in 2017.", ["Super Bowl LII,", "2017"], "heuristic:contains"),
])
def test_clear_matches_are_correct(response, answers, rule):
    verdict = heuristic_verdict(response, answers, question="some question")
    assert verdict is not None and verdict.correct and verdict.rule == rule
    assert verdict.extracted in answers


@pytest.mark.parametrize("response, answers, question", [
    ("It was founded in 1990.", ["1"], ""),  # a number inside a longer number
    ("Johnson", ["John"], ""),  # a name inside a longer name
    ("He was born in 1999.", ["99"], ""),
    ("About 3.5 million people.", ["35"], ""),  # decimal point kept
    ("It aired on May 18, 2017.", ["18"], ""),  # a number glued to a date
    ("It is not Spike.", ["Spike"], ""),  # negation
    ("Either Spike or Tyke.", ["Spike"], ""),  # hedging between answers
    ("Spike, but only in later episodes; before that Butch.", ["Spike"], ""),
    ("The main mineral in lithium batteries is cobalt.", ["Lithium"],
     "what is the main mineral in lithium batteries"),  # the alias is in the question
    ("Roentgen", ["Wilhelm Conrad Röntgen"], ""),  # a partial answer: for the LLM to judge
    (" ".join(["word"] * 45) + " Spike", ["Spike"], ""),  # an essay, not a short answer
    ("The Beatles", ["The"], ""),  # an alias that normalises to nothing matches nothing
    # Real SmolLM2-135M answers: one name in a list of wrong ones; a competing year; two counts.
    ("The first Nobel Prize in Physics was awarded to John Bardeen, along with his co-workers, "
     "Maria Skłodowska-Curie, and Wilhelm Conrad Röntgen.", ["Wilhelm Conrad Röntgen"], ""),
    ("The last time the Philadelphia Eagles won the Super Bowl LII was 1960.",
     ["Super Bowl LII,", "2017"], "when is the last time the philadelphia won the superbowl"),
    ("There are 291 episodes in the original series, and 276 episodes in the anime adaptation.",
     ["291 episodes", "291"], "how many episodes are there in dragon ball z"),
    # (conservative: a year next to a count also goes to the LLM)
    ("OPEC had 14 members in 2018.", ["14"], "how many countries are a part of opec"),
    # A sampled answer (k=8) that disowns itself.
    ("Philippe Petit, a French high-wire artist; this answer is incorrect.", ["Philippe Petit"],
     "who is the guy who walked across the twin towers"),
])
def test_near_misses_are_left_to_the_llm(response, answers, question):
    assert heuristic_verdict(response, answers, question) is None


def test_an_alias_in_the_question_still_counts_when_the_response_is_exactly_it():
    verdict = heuristic_verdict("Lithium.", ["Lithium"], "what is the main mineral in lithium batteries")
    assert verdict is not None and verdict.rule == "heuristic:exact"


@pytest.mark.parametrize("response", ["", "   ", "...", "The"])
def test_an_empty_response_is_wrong(response):
    verdict = heuristic_verdict(response, ["Spike"])
    assert verdict is not None and not verdict.correct and verdict.rule == "empty_response"


# -- parsing the LLM judge's reply ----------------------------------------------------------


@pytest.mark.parametrize("reply, expected", [
    ('{"reason": "same person", "correct": true}', (True, "same person")),
    ('{"correct": false, "reason": "different year"}', (False, "different year")),
    ('```json\n{"reason": "ok", "correct": true}\n```', (True, "ok")),
    ('Verdict: {"reason": "r", "correct": "false"} done', (False, "r")),
    ('{"correct": true}', (True, "")),
    ('{"reason": "no verdict"}', None),
    ('{"reason": "x", "correct": "maybe"}', None),
    ('{"reason": "cut off', None),
    ("yes it is correct", None),
    ("[true]", None),
])
def test_parse_llm_verdict(reply, expected):
    assert parse_llm_verdict(reply) == expected


# -- the judge, end to end ------------------------------------------------------------------

EXAMPLE = {"question": "what's the dog's name on tom and jerry", "answers": ["Spike"]}


def reply(correct: bool | str, reason: str = "because") -> str:
    """A response the heuristic cannot decide (no alias in it), telling the fake server how
    to answer."""
    payload = correct if isinstance(correct, str) else json.dumps(
        {"reason": reason, "correct": correct})
    return f"The bulldog [[reply:{payload}]]"


@pytest.fixture
def fake():
    with FakeOpenAIServer() as server:
        yield server


class CountingBackend(OpenAIBackend):
    """The real backend, counting how often the judge calls it."""

    calls = 0

    def generate(self, conversations, sampling):
        self.calls += 1
        return super().generate(conversations, sampling)


def judge_for(server: FakeOpenAIServer, tmp_path: Path) -> tuple[NqJudge, CountingBackend]:
    backend = CountingBackend(server.base_url, server.served_model, api_key="k", timeout=2,
                              max_retries=1, backoff_base=0.01, cache_path=tmp_path / "c.sqlite")
    return NqJudge(chat=backend), backend


def test_judge_many_sends_only_undecided_rows_in_one_batch(fake, tmp_path):
    judge, backend = judge_for(fake, tmp_path)
    responses = [
        "Spike",  # exact
        "The dog's name on Tom and Jerry is Spike.",  # contains, the question restated
        # contains, but "chases" is not proven: a trusted judge decides
        'Spike chases Tom [[reply:{"reason": "the same dog", "correct": true}]]',
        reply(True, "names the same bulldog"),
        reply(False, "names the wrong dog"),
        reply("this is not json"),
        reply('{"reason": "no verdict field"}'),
        "[[fail:500]] The bulldog",
        None,  # generation failed upstream
    ]
    verdicts = judge.judge_many(responses, [EXAMPLE] * len(responses))
    rules = [v.rule for v in verdicts]
    assert rules == ["heuristic:exact", "heuristic:proven", "llm:correct", "llm:correct",
                     "llm:incorrect", "judge_unparsed", "judge_unparsed", "llm_error", "no_response"]
    assert [v.correct for v in verdicts] == [True, True, True, True] + [False] * 5
    assert verdicts[2].reason == "the same dog" and verdicts[3].reason == "names the same bulldog"
    assert "not the JSON verdict" in verdicts[5].reason and "this is not json" in verdicts[5].reason
    assert "http_500" in verdicts[7].reason
    # One backend call for the six undecided rows; the failing one was retried once.
    assert backend.calls == 1
    assert fake.request_count == 6 + 1
    sent = fake.bodies[0]
    assert sent["response_format"]["json_schema"]["schema"] == VERDICT_SCHEMA
    assert sent["temperature"] == 0.0
    prompt = sent["messages"][-1]["content"]
    assert "what's the dog's name on tom and jerry" in prompt and "- Spike" in prompt
    # Usage: the four answered requests' tokens as the server counted them.
    answered = [b for b in fake.bodies if "[[fail" not in b["messages"][-1]["content"]]
    assert judge.usage["llm_requests"] == 6
    assert judge.usage["llm_prompt_tokens"] == sum(
        len(b["messages"][-1]["content"].split()) for b in answered)
    assert judge.usage["llm_completion_tokens"] > 0
    assert judge.usage["heuristic:exact"] == 1 and judge.usage["judge_unparsed"] == 2


def test_all_decided_by_the_heuristic_means_no_llm_call(fake, tmp_path):
    judge, backend = judge_for(fake, tmp_path)
    verdicts = judge.judge_many(["Spike", "It's Spike."], [EXAMPLE, EXAMPLE])
    assert all(v.correct for v in verdicts)
    assert backend.calls == 0 and fake.request_count == 0


def test_single_judge_call_uses_the_llm_too(fake, tmp_path):
    judge, _ = judge_for(fake, tmp_path)
    verdict = judge.judge(reply(True, "ok"), EXAMPLE)
    assert verdict.correct and verdict.rule == "llm:correct"


def test_without_an_llm_undecided_rows_are_not_correct():
    verdicts = NqJudge().judge_many(["Spike", "The bulldog"], [EXAMPLE, EXAMPLE])
    assert [v.rule for v in verdicts] == ["heuristic:exact", "heuristic:no_match"]
    assert [v.correct for v in verdicts] == [True, False]


def test_a_row_without_aliases_is_a_clear_error():
    with pytest.raises(NqRowError, match="line 7.*answers"):
        NqJudge().judge("Spike", {"question": "q", "answers": [], "_line": 7})


def test_settings_name_the_judge_model_and_prompt(fake, tmp_path):
    judge, _ = judge_for(fake, tmp_path)
    settings = judge.settings()
    assert settings["judge_model"] == "fake-model"
    assert re.fullmatch(r"nq/judge\.jinja@[0-9a-f]{12}", settings["judge_prompt"])


# -- data helpers on the real file -----------------------------------------------------------


@pytest.fixture(scope="module")
def nq_rows() -> list[dict]:
    path = data_dir() / NQ_FILE
    if not path.is_file():
        pytest.fail(f"NQ data not found at {path}: set S3FT_DATA_DIR to the datasets folder "
                    f"(here: ../shared/data)")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_every_nq_row_has_a_passage_an_alias_and_a_unique_id(nq_rows):
    assert len(nq_rows) == 2655
    fields = [nq_row_fields(row) for row in nq_rows]
    assert all(f["passage"].strip() and f["question"] and f["answers"] for f in fields)
    assert nq_rows[0]["ctxs"][0]["title"] in fields[0]["passage"]
    assert nq_rows[0]["ctxs"][0]["text"] in fields[0]["passage"]
    ids = [nq_row_id(row) for row in nq_rows]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"nq-[0-9a-f]{16}", i) for i in ids)


def test_the_split_is_fixed(nq_rows):
    splits = [split_of(nq_row_id(row)) for row in nq_rows]
    # Pinned on purpose: if these move, rows changed sides between train and test.
    assert splits.count("test") == 514 and splits.count("train") == 2141
    assert split_of("nq-c6e6747373d81b71") == "train" and split_of("nq-f8ef9f63cf6099d1") == "test"
    # The split depends on the question only, not on the row's position or other fields.
    shuffled = list(reversed(nq_rows))
    assert [split_of(nq_row_id({"question": r["question"]})) for r in shuffled] == splits[::-1]


def test_gold_response_is_the_first_alias_without_a_stray_comma(nq_rows):
    golds = [gold_response(row) for row in nq_rows]
    assert all(g and not g.endswith((",", ";")) for g in golds)
    assert golds[0] == nq_rows[0]["answers"][0]
    assert gold_response({"question": "q", "answers": ["Super Bowl LII,", "2017"]}) == "Super Bowl LII"


def test_every_template_renders_for_every_row(nq_rows):
    answer, paraphrase, judge = (template("nq", n) for n in ("answer", "paraphrase", "judge"))
    for row in nq_rows:
        prepared = prepare_row(row)
        gold = gold_response(row)
        assert prepared["passage"] in answer.render(**prepared)
        assert gold in paraphrase.render(**prepared, gold=gold)
        assert row["question"] in judge.render(**prepared, response="x")
    assert prepare_row(nq_rows[0])["nq_id"] == nq_row_id(nq_rows[0])[3:]


def test_on_real_rows_the_heuristic_takes_the_gold_and_refuses_other_rows_gold(nq_rows):
    def judged(response: str, row: dict):
        return heuristic_verdict(response, row["answers"], row["question"])

    assert all(judged(gold_response(row), row).rule == "heuristic:exact" for row in nq_rows)
    wrapped = [judged(f"The answer is {gold_response(row)}.", row) for row in nq_rows]
    # Left undecided only where the alias is part of the question ("Oak Island" for "...
    # the curse of oak island filmed"): measured 30 of 2,655.
    assert sum(v is not None and v.correct for v in wrapped) >= 0.95 * len(nq_rows)
    for row, previous in zip(nq_rows, [nq_rows[-1], *nq_rows[:-1]], strict=True):
        other_gold = gold_response(previous)
        verdict = judged(f"The answer is {other_gold}.", row)
        if verdict is not None and verdict.correct:  # only when the two rows share an answer
            assert normalize(verdict.extracted) in normalize(other_gold)


# -- the judge's reply read robustly, and the judge proven before it is used ----------------


def test_a_looped_reply_is_unparsed_even_if_it_holds_json():
    from pipeline.backends.base import Generation

    looped = Generation(text='{"reason": "same", "correct": true} same same same',
                        finish_reason="length", prompt_tokens=5, completion_tokens=128)
    assert NqJudge._read(looped).rule == "judge_unparsed"


@pytest.mark.parametrize("payload, rule", [
    ({"reason": "The answer is incorrect.", "correct": True}, "judge_inconsistent"),
    ({"reason": "The response does not match any reference.", "correct": True},
     "judge_inconsistent"),
    ({"reason": "The response matches the reference.", "correct": False}, "judge_inconsistent"),
    ({"reason": "Same person as the reference.", "correct": True}, "llm:correct"),
    ({"reason": "A different dog.", "correct": False}, "llm:incorrect"),
])
def test_a_flag_that_contradicts_its_reason_is_not_a_verdict(fake, tmp_path, payload, rule):
    judge, _ = judge_for(fake, tmp_path)
    verdict = judge.judge(reply(json.dumps(payload)), EXAMPLE)
    assert verdict.rule == rule
    assert verdict.correct == (rule == "llm:correct")


def yes_man(prompt: str) -> str | None:
    """The embedded 135M model's habit: "correct" for almost anything."""
    return json.dumps({"reason": "Looks fine.", "correct": True})


@pytest.fixture(scope="module")
def nq_train(nq_rows) -> list[dict]:
    return [{**prepare_row(row), "gold": gold_response(row)} for row in nq_rows[:60]]


def calibrated(responder, nq_train, tmp_path, responses=None):
    with FakeOpenAIServer(responder=responder) as server:
        judge, backend = judge_for(server, tmp_path)
        calibration = judge.calibrate(nq_train, responses or [None] * len(nq_train))
        requests = server.request_count
        later = judge.judge_many(["The bulldog"], [EXAMPLE])[0]
        return calibration, requests, later, server.request_count - requests


def test_a_capable_llm_judge_is_trusted(nq_train, tmp_path):
    calibration, requests, later, later_requests = calibrated(grading_judge, nq_train, tmp_path)
    assert calibration.positives == 40 and calibration.negatives >= 35
    assert requests == calibration.positives + calibration.negatives
    assert calibration.tpr == 1.0 and calibration.tnr == 1.0 and calibration.trusted
    assert "trusted" in calibration.describe() and "NOT" not in calibration.describe()
    assert later.rule == "llm:incorrect" and later_requests == 1  # it decides rows


def test_a_judge_that_says_yes_to_everything_is_not_trusted_and_asks_nothing_more(
        nq_train, tmp_path):
    calibration, _, later, later_requests = calibrated(yes_man, nq_train, tmp_path)
    assert calibration.tpr == 1.0 and calibration.tnr == 0.0 and not calibration.trusted
    assert "--judge-base-url" in calibration.describe()
    assert later.rule == "judge_untrusted" and not later.correct and later_requests == 0


def test_calibration_negatives_pair_answers_with_other_questions(nq_train):
    from judges.nq import calibration_cases

    responses = [f"It is {row['gold']}." for row in nq_train]
    cases = calibration_cases(nq_train, responses)
    positives = [c for c in cases if c[2]]
    negatives = [c for c in cases if not c[2]]
    assert len(positives) == 40
    for response, example, _ in positives:  # a right answer of that very row
        assert heuristic_verdict(response, example["answers"], example["question"]).correct
    for response, example, _ in negatives:  # another row's answer: none of its aliases in it
        check = heuristic_verdict(response, example["answers"], example["question"])
        assert not (check and check.correct)
    assert cases == calibration_cases(nq_train, responses)  # a fixed order, not random


def test_a_closed_book_paraphrase_may_not_add_claims():
    """Without a passage, only the question's and the gold's words can be checked: seen in
    a real closed-book run, paraphrases that state the alias inside an invented claim."""
    judge = NqJudge()
    row = {"question": "who wrote he ain't heavy he's my brother lyrics",
           "answers": ["Bobby Scott", "Bob Russell"]}
    invented = judge.judge_paraphrase('Bobby Scott is a songwriter who wrote "He\'s ain\'t Heavy '
                                      'at All" by the band "The Black Eyre Society."', row)
    assert (invented.correct, invented.rule) == (False, "paraphrase:unsupported_words")
    # Two co-writers: one of them alone is half the answer, however well restated.
    half = judge.judge_paraphrase("Bobby Scott wrote the lyrics of He Ain't Heavy, He's My "
                                  "Brother.", row)
    assert not half.correct and "different answers" in half.reason
    assert judge.judge_paraphrase("Bobby Scott wrote the lyrics of He Ain't Heavy, He's My "
                                  "Brother.", {**row, "answers": ["Bobby Scott"]}).correct
    homer = {"question": "who plays the voice of homer simpson", "answers": ["Dan Castellaneta"]}
    assert judge.judge_paraphrase("Dan Castellaneta plays the voice of Homer Simpson.", homer).correct
    # right, but half the question is left out ("plays", "simpson"): not proven
    assert not judge.judge_paraphrase("Homer is voiced by Dan Castellaneta.", homer).correct
    seasons = {"question": "how many seasons of vampire diaries r there", "answers": ["eight"]}
    assert judge.judge_paraphrase("There are eight seasons of vampire diaries.", seasons).correct
    # A passage is no evidence either: a second name or a false relation is made of its words.
    with_passage = {**row, "answers": ["Bobby Scott"],
                    "passage": "Bobby Scott, a songwriter, wrote the song with Bob Russell."}
    unproven = judge.judge_paraphrase("Bobby Scott, a songwriter, wrote it.", with_passage)
    assert (unproven.correct, unproven.rule) == (False, "paraphrase:unproven")
    assert "songwriter" in unproven.reason


# Real sampled answers of the embedded model (NQ train, k=8, T 0.7) that the alias rules call
# correct, read by hand; the passages are shortened to the sentences that matter.
CHAMPIONS = {
    "question": "who won the ncaa women's championship last year 2017",
    "answers": ["South Carolina Gamecocks", "South Carolina"],
    "passage": "2017 NCAA Division I Women's Basketball Tournament\nThe South Carolina "
               "Gamecocks won their first national championship, defeating the Mississippi "
               "State Bulldogs 67-55 in the final in Dallas, Texas."}
CANNES = {
    "question": "when does the cannes film festival take place",
    "answers": ["Cannes, France", "usually in May"],
    "passage": "Cannes Film Festival\nThe Cannes Festival, until 2003 called the International "
               "Film Festival, is an annual film festival held in Cannes, France, which "
               "previews new films of all genres. It is held annually, usually in May, at the "
               "Palais des Festivals et des Congres."}
WRINKLE = {
    "question": "where does a wrinkle in time take place",
    "answers": ["Connecticut"],
    "passage": "A Wrinkle in Time\nMeg Murry lives with her family in a small town in "
               "Connecticut."}


@pytest.mark.parametrize("text, example, rule", [
    # It names the answer as the loser ("1. The Women's College World Championships ... /"
    # before it: a list number, caught as a number).
    ("North Carolina State defeated South Carolina to win the NCAA Women's Division I "
     "Basketball Tournament 2017", CHAMPIONS, "unsupported:words"),
    ("The Cannes Film Festival is a yearly event held in Cannes, France, during the Fall of 2022.",
     CANNES, "unsupported:number"),
    ("A wrinkle in time takes place in Connecticut.", WRINKLE, None),
    ("Connecticut.", WRINKLE, None),
    ("A Wrinkle in Time is set in Connecticut.", WRINKLE, None),  # one new word ("set"): allowed
    ("A Wrinkle in Time is set in beautiful Connecticut.", WRINKLE, "unsupported:words"),
    # Closed book (no passage): nothing to check a claim against, so the judge decides alone.
    ("The festival is held in Cannes, France, in the Fall of 2022.",
     {k: v for k, v in CANNES.items() if k != "passage"}, None),
])
def test_a_right_answer_with_claims_its_passage_does_not_hold_is_no_target(text, example, rule):
    """What a trusted LLM judge calls correct is still checked against the passage. (Without
    a judge, these texts are not proven by the alias rules at all: ``needs_judge``.)"""
    from judges.base import Verdict
    from pipeline.stages.admission import admit

    judge = NqJudge()
    if normalize(text) != normalize(example["answers"][0]):
        assert judge.judge(text, example).rule in ("needs_judge", "heuristic:proven")
    verdict = Verdict(True, "llm:correct", reason="a trusted judge says it names the answer")
    problem = judge.check_target(text, verdict, example)
    assert (problem.rule if problem else None) == rule
    admission = admit(judge, text, "stop", verdict, example, example["answers"][0], paraphrase=False)
    assert (admission.admitted, admission.rule) == ((True, "admitted") if rule is None else (False, rule))
    assert rule is None or "found in neither the question, the passage nor the gold" in admission.reason
    assert isinstance(verdict, Verdict)
