"""An alias inside an answer proves the name, not the answer: every case here is a real
answer of the embedded model to a real NQ training row (a draw of rows 601 onward), and
each unproven one names its alias but is wrong, garbled or unverifiable."""

from __future__ import annotations

import pytest

from judges.alias_proof import alias_verdict, several_answers, why_unproven
from judges.nq import NqJudge

PROVEN = [
    ("when did the cowboys start playing on thanksgiving day", ["In 1966", "1966"],
     "The Cowboys started playing on Thanksgiving Day in 1966."),
    ("when was the first horrid henry book written", ["published in 1994", "1994"],
     "The first Horrid Henry book was written in 1994."),
    ("who is the number one ranked golfer in the world right now", ["Dustin Johnson"],
     "Dustin Johnson is the number one ranked golfer in the world right now."),
    # an irregular past tense of the question's verb
    ("where did the titanic sink at what ocean", ["North Atlantic Ocean"],
     "The Titanic sank in the North Atlantic Ocean."),
    # "and" is a hedge word, but here the question's own
    ("when did the soviet union first gain control of parts of poland and the baltic republics",
     ["14 June 1940"],
     "The soviet union first gained control of parts of poland and baltic republics in 14 June "
     "1940"),
    ("what is the name of the chief justice of ghana", ["Sophia Akuffo"],
     "Sophia Akuffo is the name of the chief justice of Ghana."),
    # a word of both the question and the answer, said once for each
    ("when does the 2017 college football season end", ["December 9, 2017"],
     "The 2017 college football season ends on December 9, 2017."),
    # a date straight after the question's verb; the question's closing "in" kept
    ("when does the 2017 college football season end", ["December 9, 2017"],
     "The 2017 college football season ends December 9, 2017."),
    ("who was the song hallelujah written about", ["Bathsheba"],
     "The song Hallelujah was written about Bathsheba."),
]


@pytest.mark.parametrize("question, aliases, text", PROVEN)
def test_the_question_restated_around_the_alias_is_proven(question, aliases, text):
    verdict = alias_verdict(text, aliases, question)
    assert verdict is not None and verdict.correct and verdict.rule == "heuristic:proven"


UNPROVEN = [
    # a false claim built around the right name: another actor from the passage
    ("who plays the main character in hacksaw ridge", ["Andrew Garfield"],
     "The main character in the film is Andrew Garfield, played by Sam Worthington.",
     "worthington"),
    # one unsupported detail
    ("who proposed the virginia plan at the constitutional convention", ["James Madison"],
     "James Madison proposed the Virginia Plan at the Constitutional Convention of 1787, "
     "during a meeting with the Virginia delegation.", "1787"),
    # the question pasted in front of the answer
    ("who sang the song i wanna be sedated", ["the Ramones"],
     "who sang the song i wanna be sedated: Ramones", "colon"),
    ("who sang the song i wanna be sedated", ["the Ramones"],
     "Who sang the song I wanna be sedated: Ramones", "colon"),
    # a stray label
    ("an influential religion to enter china along the silk route during the han dynasty was",
     ["Buddhism"], "A: Chinese Buddhism", "colon"),
    # a wrong month (another draw's answer said April)
    ("when did the last volcano erupt in iceland", ["2010"],
     "The last volcano erupted in Iceland during October 2010.", "october"),
    # a false relation from words of the question and the alias alone
    ("which is the ring finger for male in india", ["left ring finger"],
     "The left ring finger is still worn on the right ring finger.", "right"),
    # the alias said twice around a garble
    ("who does the voice of mrs. wolowitz on the big bang theory", ["Carol Ann Susi"],
     "Carol Ann Susi, better known as Carol Ann Susi, the voice of Mrs. Wolowitz on The Big "
     "Bang Theory.", "better"),
    # several lines
    ("when did the first ninja turtles come out", ["1984"],
     "The first ninja turtles came out in 1984.\nThey came out in 1984.", "lines"),
]


@pytest.mark.parametrize("question, aliases, text, why", UNPROVEN)
def test_an_alias_inside_an_unproven_claim_needs_a_judge(question, aliases, text, why):
    verdict = alias_verdict(text, aliases, question)
    assert verdict is not None and not verdict.correct and verdict.rule == "needs_judge"
    assert why in verdict.reason


@pytest.mark.parametrize("question, aliases, text", [
    # half of a two-part answer (seen on fresh rows): the gold alias alone is half too
    ("what is the main source of nutrients in an estuary", ["sea water", "fresh water"],
     "The main source of nutrients in an estuary is sea water"),
    # an alias that lists two others: the answer is both
    ("who wrote the song rainy days and mondays",
     ["Paul Williams", "Roger Nichols", "Roger Nichols and Paul Williams"],
     'The song "Rainy Days and Mondays" was written by Paul Williams.'),
    # NQ disagrees with itself: an exact alias proves nothing either
    ("who represents the insured in the investigation of a claim",
     ["Public adjusters", "Claims adjuster"], "Claims adjuster."),
])
def test_one_of_several_different_answers_is_not_proven(question, aliases, text):
    verdict = alias_verdict(text, aliases, question)
    assert verdict.rule == "needs_judge" and "different answers" in verdict.reason


@pytest.mark.parametrize("aliases, expected", [
    (["Texas A&M", "Texas A&M University", "Texas A&M Aggies"], []),  # one answer, through a third
    (["In 1966", "1966"], []),
    (["Microfilaments", "microfilament"], []),
    (["In 1966", "1966", "1978"], ["In 1966", "1978"]),
])
def test_aliases_are_one_answer_when_they_hold_each_other(aliases, expected):
    assert several_answers(aliases) == expected


@pytest.mark.parametrize("question, alias, text, why", [
    # a fragment (seen on fresh rows)
    ("which is the ring finger for male in india", "the left ring finger",
     "The left ring finger for male in India.", "no verb"),
    ("how many national parks are present in india", "103", "103 National Parks in India",
     "no verb"),
    # the alias twice, around a wrong name
    ("where is the university of wisconsin madison located", "Madison, Wisconsin",
     "The University of Madison, Wisconsin, is located in Madison, Wisconsin.", "twice"),
    # the question's "was" dropped: no sentence
    ("when was the death penalty reinstated in oregon", "1984",
     "The death penalty reinstated in Oregon in 1984", "drops the question's was"),
    # ... and its "has": another claim ("what flag is red and has a gold star")
    ("what flag is red and has a gold star", "Vietnam",
     "The flag of Vietnam is a red and gold star.", "drops the question's has"),
    # the question's "bailey" left out: Jenna Boyd did not play the film
    ("who played bailey in the sisterhood of the traveling pants", "Jenna Boyd",
     "Jenna Boyd played the sisterhood of the traveling pants", "leaves out bailey"),
    # a relative clause, no statement
    ("who sang our god is an awesome god", "Rich Mullins",
     "Rich Mullins, who sings our god is an awesome god", "relative clause"),
    # a bracket closed alone
    ("who sang the songs in the movie beyond the sea", "Kevin Spacey", "Kevin Spacey sang.)",
     "do not pair up"),
    # the question's words copied from its lower-case start
    ("who does the voice of alistair in dragon age", "Steve Valentine",
     "the voice of alistair in dragon age is Steve Valentine", "lower case"),
    # the doer stated as the one it was done to
    ("who sold out jesus for 30 pieces of silver", "Judas Iscariot",
     "Judas Iscariot was sold out for 30 pieces of silver", "the answer was sold"),
    # another question answered: "back" and "telugu" left out, "by" makes Tagore a director
    ("gabbar is back is a remake of which telugu movie", "Tagore",
     "Gabbar is a remake of a movie by Tagore.", "drops the question's is"),
    # right, but half of the question left out: it may answer another one
    ("who plays the voice of homer simpson", "Dan Castellaneta",
     "Homer is voiced by Dan Castellaneta.", "leaves out play, simpson"),
    # the question's closing preposition changed: another relation (a fresh NQ draw, audit300)
    ("who was the declaration of independence written for", "the Second Continental Congress",
     "The Declaration of Independence was written by the Second Continental Congress.",
     "closing 'for'"),
    # "who did X" answered "<alias> was X": the singer stated as the song
    ("who did the original spirit in the sky", "Norman Greenbaum",
     "Norman Greenbaum was the original spirit in the sky", "the answer was something"),
    # a name of the question spelt as another word through the verb table (drew → draw)
    ("who played nicky on the drew carey show", "Kate Walsh",
     "Kate Walsh played Nicky on the Draw Carey Show", "spells the question's name"),
    # the question's verb turned into an ongoing state
    ("when did the first episode of that 70s show air", "August 23, 1998",
     "The first episode of the 70s show was airing on August 23, 1998.", "'airing'"),
    # a date after a word that cannot lead one
    ("when did the first ice age come out", "2002", "The first ice age came out of 2002",
     "after 'of'"),
    ("who wrote the song", "Bob Dylan", "Bob Dylan wrote the song, the song.", "repeats"),
    ("who wrote the song", "Bob Dylan", "Bob Dylan wrote the song? ", "question"),
    ("who wrote the song hurricane", "Bob Dylan", "Who wrote the song hurricane Bob Dylan",
     "repeats the question"),
    (" ".join(f"w{i}" for i in range(40)), "Bob Dylan",
     "Bob Dylan " + " ".join(f"w{i}" for i in range(5, 40)), "longer"),
])
def test_each_check_of_the_proof_can_fail(question, alias, text, why):
    assert why in why_unproven(text, alias, question)


def test_an_exact_alias_needs_no_proof():
    verdict = alias_verdict("Jonathan Cheban.", ["Jonathan Cheban"],
                            "who is the guy on keeping up with the kardashians")
    assert verdict.rule == "heuristic:exact" and verdict.correct


def test_without_a_judge_an_unproven_answer_is_not_correct_and_says_why():
    judge = NqJudge()
    row = {"question": "who plays the main character in hacksaw ridge",
           "answers": ["Andrew Garfield"], "passage": "Hacksaw Ridge ... Andrew Garfield ..."}
    [verdict] = judge.judge_many(
        ["The main character in the film is Andrew Garfield, played by Sam Worthington."], [row])
    assert (verdict.correct, verdict.rule) == (False, "needs_judge")
    paraphrase = judge.judge_paraphrase(
        "Andrew Garfield plays the main character in Hacksaw Ridge, an Australian film.", row)
    assert (paraphrase.correct, paraphrase.rule) == (False, "paraphrase:unproven")
    assert judge.judge_paraphrase("Andrew Garfield plays the main character in Hacksaw Ridge.",
                                  row).correct


def test_a_paraphrase_that_wraps_the_answer_is_not_a_statement():
    row = {"question": "who sang the song i wanna be sedated", "answers": ["the Ramones"]}
    verdict = NqJudge().judge_paraphrase("The correct answer is the Ramones.", row)
    assert (verdict.correct, verdict.rule) == (False, "paraphrase:not_a_statement")


def test_an_exact_alias_with_a_stray_bracket_is_not_proven():
    verdict = alias_verdict("Kevin Spacey.)", ["Kevin Spacey"],
                            "who sang the songs in the movie beyond the sea")
    assert verdict.rule == "needs_judge" and "do not pair up" in verdict.reason


# Found on the second held-out draw (H2), after its precision was measured: the rules here
# came later, so H2 is tuning data now.
@pytest.mark.parametrize("question, aliases, text, why", [
    # an article and a colon dropped by normalising make "A: 2" the alias "2"
    ("how many indian astronauts have gone to space", ["2"], "A: 2", "colon"),
    # a wrapper, not a statement: "answer" is no word of the question
    ("when did red bull come to the united states", ["1997"], 'The answer is "1997"', "answer"),
    ("the art and science of making objects from clay is called", ["Ceramic Art"],
     "The art and science of making objects from clay is called **Ceramic Art**", "markdown"),
])
def test_a_wrapper_label_or_markup_around_the_answer_is_not_proven(question, aliases, text, why):
    verdict = alias_verdict(text, aliases, question)
    assert verdict.rule == "needs_judge" and why in verdict.reason
