"""When an alias match proves a whole answer right, and when it only proves a name is there.

An alias found inside an answer shows that the answer *names* the right thing, not that what
it says about it is right: "The main character is Andrew Garfield, played by Sam
Worthington", "Johnny Manziel, Texas A&M, played college football for Texas A&M", "who sang
i wanna be sedated: Ramones" all contain their alias. Without a trusted LLM judge, such an
answer is a target only when the rest of it is proven too, and the proof is deliberately
narrow: **the answer is the question restated around the alias**. Every content word is the
alias's or the question's, so the one claim it makes is "<the alias> is the answer to
<the question>", which the alias match has proven. Concretely (:func:`why_unproven`):

* one plain line: no colon (a label "A:", an echoed "question: answer", "The answer is:
  X"), no markup, no stray bracket or quote, no question mark, a capital first letter, at
  most :data:`MAX_PROVEN_TOKENS` words (these form checks apply to an exact alias too:
  "A: 2" normalises to the alias "2");
* not the question pasted in (its first four words in a row, when it opens with a question
  word), and not "<alias>, who ..." (a relative clause, no statement);
* no content word found in neither the question nor the alias (an irregular verb form of a
  question word counts as it, "sank" for "sink"; a few words that only place a fact, such as
  "located", are allowed; "answer" is not), and so no new number: the passage is
  deliberately not evidence, since a second name or a false relation is built from its words;
* no content word said more often than the question and the alias say it, and the alias
  once (a repeated span, a tautology "X ... was X");
* a sentence: a verb, the question's is/was and has kept, and every content word of the
  question kept, less its "how many" words (it answers *this* question: "Jenna Boyd played
  the sisterhood of the traveling pants" dropped "bailey"); no "<alias> was sold out" for
  "who sold out ..." (the doer stated as the one it was done to);
* a row whose aliases are different answers ("sea water" and "fresh water") proves nothing
  by one of them, even one said exactly: the question wants several, or NQ disagrees with
  itself.

What fails is ``needs_judge``: a trusted judge (``--judge-base-url``) decides it; without
one it is not a target, and the row goes on to a paraphrase, then the gold.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from judges.base import Verdict
from judges.nq_rules import FUNCTION_WORDS, _find_span, heuristic_verdict, normalize, stem

#: Longest answer the proof reads: a restated question is a sentence, not a paragraph.
MAX_PROVEN_TOKENS = 30
#: Question words in a row that make an answer an echo of the question.
ECHO_TOKENS = 4
#: How a question that asks (rather than a fill-in-the-blank one) opens: such an opening in
#: an answer is the question pasted in, while "the part of the cytoskeleton made from actin
#: is called microfilaments" restates a fill-in-the-blank question as it should.
_OPENER_TEXT = "who whom whose what when where which why how is are was were do does did can could"
QUESTION_OPENERS = frozenset(_OPENER_TEXT.split())
MARKUP = re.compile(r"[*#`<>|]|__")
_COLON = re.compile(r":(?!\d)|(?<!\d):")  # a colon, except inside a time ("9:30")
#: Irregular verb forms and their base: "where did the titanic sink" is answered "The
#: Titanic sank in ...", which the suffix stem cannot see.
_IRREGULAR_TEXT = """
sank sink sunk sink sang sing sung sing won win wrote write written write began begin
begun begin came come became become made make took take taken take gave give given give
found find held hold built build led lead met meet ran run sold sell told tell brought bring
bought buy caught catch taught teach fought fight drew draw drawn draw flew fly flown fly
grew grow grown grow knew know threw throw thrown throw saw see seen see went go gone go
spoke speak spoken speak stood stand struck strike swam swim rose rise risen rise fell fall
fallen fall broke break broken break chose choose chosen choose drove drive driven drive
ate eat eaten eat wore wear worn wear sent send spent spend lost lose paid pay said say
shot shoot sat sit felt feel kept keep heard hear got get gotten get stole steal stolen steal
forgot forget forgotten forget rang ring rung ring drank drink bore bear born bear
"""
_IRREGULAR_WORDS = _IRREGULAR_TEXT.split()
IRREGULAR = dict(zip(_IRREGULAR_WORDS[::2], _IRREGULAR_WORDS[1::2], strict=True))
#: Words that place or time a stated fact without adding one ("is located in", "is set
#: in", "the current chief justice"): a restated question may use them.
_RESTATING_TEXT = "located situated set based current currently directly"
RESTATING_WORDS = frozenset(_RESTATING_TEXT.split())


#: Words of a question's "how many", "what kind of", "which year": the answer takes their
#: place, so a restatement need not keep them.
_ASKING_TEXT = "many much long old far often kind type sort year whats whos wheres whens hows"
ASKING_WORDS = frozenset(_ASKING_TEXT.split())
#: The function words a restatement may add: "answer" and "correct" are not among them
#: ("The answer is "1997"" is a wrapper around the answer, not a statement of it).
PROOF_FUNCTION_WORDS = FUNCTION_WORDS - {"answer", "correct"}
#: Forms of be: a restated question keeps as many as the question has ("when *was* the
#: death penalty reinstated" is not answered by "The death penalty reinstated in 1984").
BE_FORMS = frozenset(["is", "are", "was", "were", "be", "been"])
HAVE_FORMS = frozenset(["has", "have", "had"])
#: "Rich Mullins, who sings ...": the answer followed by a relative clause and nothing else.
RELATIVE_PRONOUNS = frozenset(["who", "which", "that"])
#: Prepositions a question may end on ("who was the declaration written *for*"): the
#: relation it asks about, which a restatement keeps ("... was written *by* the Congress"
#: answers another question).
_STRANDED_TEXT = "for by to from about with on in of at after into"
STRANDED_PREPOSITIONS = frozenset(_STRANDED_TEXT.split())
#: Forms of be, have and do: with one of them, a restated question is a sentence.
_AUXILIARY_TEXT = "is are was were be been has have had do does did"
AUXILIARIES = frozenset(_AUXILIARY_TEXT.split())


def _root(token: str) -> str:
    return stem(IRREGULAR.get(token, token))


def _roots(text: str) -> list[str]:
    return [_root(t) for t in normalize(text).split()]


def several_answers(aliases: Sequence[str]) -> list[str]:
    """Two aliases of the row that are different answers, or []. Aliases are one answer when
    one holds the other ("1966", "In 1966"), directly or through a third ("Texas A&M
    University" and "Texas A&M Aggies" both hold "Texas A&M"); "sea water" and "fresh
    water", or "England" and "Scotland", are two: the question asks for several things or
    NQ disagrees with itself, and naming one of them may be half the answer."""
    named = [(a, _roots(a)) for a in aliases if normalize(a)]
    for _, whole in named:  # "Roger Nichols and Paul Williams": a list of two answers
        parts = [(alias, len(roots), spans) for alias, roots in named if roots != whole
                 and (spans := _find_span(roots, whole))]
        for i, (first, size, at) in enumerate(parts):
            for second, other_size, other in parts[i + 1:]:
                if all(abs(a - b) >= max(size, other_size) for a in at for b in other):
                    return [first, second]
    group = list(range(len(named)))

    def find(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i, (_, a) in enumerate(named):
        for j in range(i + 1, len(named)):
            b = named[j][1]
            if _find_span(a, b) or _find_span(b, a):
                group[find(j)] = find(i)
    leaders: dict[int, str] = {}
    for i, (alias, _) in enumerate(named):
        leaders.setdefault(find(i), alias)
    return list(leaders.values())[:2] if len(leaders) > 1 else []


def _has_verb(tokens: list[str], question_tokens: list[str]) -> bool:
    """A verb, roughly: a form of be/have/do, an irregular past, an "-ed" form, the word
    after the question's "who"/"what" ("who *plays* the doc"), or another form of a question
    word ending in "s" ("comes" for "come"; "parks" for "parks" is the noun). "The left ring
    finger for male in India" and "103 National Parks in India" have none: fragments."""
    asked = question_tokens[1:2] if question_tokens[:1] in (["who"], ["what"]) else []
    roots = {_root(t) for t in question_tokens}
    return any(t in AUXILIARIES or t in IRREGULAR or t.endswith("ed") or t in asked
               or (t.endswith("s") and t not in question_tokens and _root(t) in roots)
               for t in tokens)


def why_unproven(response: str, alias: str, question: str) -> str | None:
    """Why ``response``, which contains ``alias``, is not proven right by it; None: proven."""
    tokens = normalize(response).split()
    question_tokens = normalize(question).split()
    problem = _form_problem(response.strip(), tokens, question_tokens)
    if problem:
        return problem
    alias_tokens = normalize(alias).split()
    alias_roots = set(map(_root, alias_tokens))
    question_roots = [_root(t) for t in question_tokens if t not in FUNCTION_WORDS]
    words = [t for t in tokens if t not in PROOF_FUNCTION_WORDS and t not in RESTATING_WORDS]
    content = list(map(_root, words))
    extra = [t for t, r in zip(words, content, strict=True)
             if r not in alias_roots and r not in question_roots]
    if extra:
        return (f"it says {', '.join(dict.fromkeys(extra[:4]))}, found in neither the question "
                "nor the answer")
    # A word of both the question and the answer ("the 2017 season ended December 9, 2017")
    # may be said once for each.
    allowed = Counter(question_roots) + Counter(map(_root, alias_tokens))
    repeated = [t for t, n in Counter(content).items() if n > max(1, allowed[t])]
    if repeated:
        return f"it repeats {repeated[0]!r}"
    if len(_find_span(alias_tokens, tokens)) > 1:
        return "it says the answer twice"
    if all(r in alias_roots for r in content):
        return None  # the answer alone in a few function words: "It's Spike."
    changed = (_changed_name(response, alias_tokens, question_tokens)
               or _changed_tense(tokens, question_tokens)
               or _date_without_preposition(tokens, alias_tokens, question_tokens))
    if changed:
        return changed
    reversed_ = (_passive_agent(tokens, alias_tokens, question_tokens)
                 or _identity_for_deed(tokens, alias_tokens, question_tokens))
    if reversed_:
        return reversed_
    if not _has_verb([t for t in tokens if _root(t) not in alias_roots], question_tokens):
        return "it has no verb (a fragment, not a statement)"
    for forms in (BE_FORMS, HAVE_FORMS):
        if sum(t in forms for t in tokens) < sum(t in forms for t in question_tokens):
            return (f"it drops the question's {'/'.join(sorted(forms & set(question_tokens)))} "
                    "(not a sentence: \"the penalty reinstated in\", \"a red and gold star\")")
    after_alias = tokens[len(alias_tokens):len(alias_tokens) + 1]
    if tokens[:len(alias_tokens)] == alias_tokens and RELATIVE_PRONOUNS.intersection(after_alias):
        return "it is a relative clause (\"X, who sings ...\"), not a statement"
    # Every content word of the question is kept, less "how many" and the like: "Jenna Boyd
    # played the sisterhood of the traveling pants" drops "bailey" and says something else.
    asked = {_root(t) for t in question_tokens
             if t not in FUNCTION_WORDS and t not in ASKING_WORDS and len(t) > 1}
    left_out = sorted(asked - set(content))
    if left_out:
        return (f"it leaves out {', '.join(left_out[:4])} of the question: it may answer "
                "another question")
    last = question_tokens[-1:]
    if last and last[0] in STRANDED_PREPOSITIONS and last[0] not in tokens:
        return (f"it drops the question's closing {last[0]!r}, the relation asked about "
                "(\"written for\" answered \"written by\")")
    return None


def _changed_name(response: str, alias: list[str], question_tokens: list[str]) -> str | None:
    """A capitalised word inside the answer that is a question word only by its stem or
    verb table ("the *Draw* Carey Show" for "drew carey"): a name is copied letter for
    letter, or it names something else."""
    words = response.split()[1:]  # the first word is capitalised as a sentence's
    roots = {_root(t) for t in question_tokens}
    for word in words:
        if not word[:1].isupper():
            continue
        for token in normalize(word).split():
            if token not in question_tokens and token not in alias and _root(token) in roots:
                return f"it spells the question's name as {word.strip('.,;')!r}"
    return None


def _changed_tense(tokens: list[str], question_tokens: list[str]) -> str | None:
    """A question verb turned into its "-ing" form ("when did the show *air*" → "the show
    was *airing* on ..."): an ongoing state, not the event asked about."""
    for token in tokens:
        if token.endswith("ing") and token not in question_tokens:
            base = token[:-3]
            if base in question_tokens or base + "e" in question_tokens:
                return f"it says {token!r} where the question says {base!r} (another tense)"
    return None


#: The function words that may stand before the date answering a "when" question: "in
#: 1997", "on May 19", "was 1997", "since 2002"; "came out *of* 2002" is no date statement
#: (a verb before it is fine: "ended March 5, 2015").
_DATE_LEAD_TEXT = ("in on at since during around until till by from was is were between circa "
                   "about early late mid")
DATE_LEADS = frozenset(_DATE_LEAD_TEXT.split())


def _date_without_preposition(tokens: list[str], alias: list[str],
                              question_tokens: list[str]) -> str | None:
    """A "when" question whose answer puts the date after a word that cannot lead a date."""
    if question_tokens[:1] != ["when"] or not any(t.isdigit() for t in alias):
        return None
    for start in _find_span(alias, tokens):
        before = tokens[start - 1] if start else ""
        if before in FUNCTION_WORDS and before not in DATE_LEADS:
            return f"it puts the date after {before!r}, not \"in\" or \"on\""
    return None


def _identity_for_deed(tokens: list[str], alias: list[str],
                       question_tokens: list[str]) -> str | None:
    """A "who did X" question (no form of be in it) answered "<alias> was X": the doer
    stated as the thing done ("who did the original spirit in the sky" → "Norman Greenbaum
    was the original spirit in the sky")."""
    if question_tokens[:1] != ["who"] or BE_FORMS.intersection(question_tokens):
        return None
    for start in _find_span(alias, tokens):
        after = tokens[start + len(alias):start + len(alias) + 1]
        if after and after[0] in BE_FORMS:
            return (f"it says the answer {after[0]} something, where the question asks who "
                    f"{question_tokens[1] if len(question_tokens) > 1 else 'did'} it")
    return None


def _passive_agent(tokens: list[str], alias: list[str], question_tokens: list[str]) -> str | None:
    """A "who did X" question answered "<alias> was done X": the one who did it stated as the
    one it was done to ("who sold out jesus" → "Judas Iscariot was sold out for 30 pieces of
    silver"), unless a "by" names the doer."""
    if question_tokens[:1] != ["who"] or len(question_tokens) < 2 or "by" in tokens:
        return None
    verb = _root(question_tokens[1])
    for start in _find_span(alias, tokens):
        after = tokens[start + len(alias):start + len(alias) + 2]
        if len(after) == 2 and after[0] in AUXILIARIES and _root(after[1]) == verb:
            return (f"it says the answer {after[0]} {after[1]}, where the question asks who "
                    f"{question_tokens[1]}")
    return None


def unbalanced(text: str) -> str | None:
    """A bracket or double quote left open or closed alone ("Kevin Spacey.)"), or None."""
    for opening, closing in ("()", "[]"):
        if text.count(opening) != text.count(closing):
            return f"its {opening}{closing} do not pair up"
    if (text.count('"') + text.count("\u201c") + text.count("\u201d")) % 2:
        return "a quotation mark is left open"
    return None


def _form_problem(text: str, tokens: list[str], question_tokens: list[str],
                  sentence: bool = True) -> str | None:
    """What makes a text no single plain line (several lines, markup, a label, a stray
    bracket) or, with ``sentence``, no plain sentence (a lower-case start, a question, an
    echo, too long)."""
    if len([line for line in text.splitlines() if line.strip()]) > 1:
        return "it runs over several lines"
    broken = unbalanced(text)
    if broken:
        return broken
    if MARKUP.search(text):
        return "it has markdown or markup (\"**Ceramic Art**\")"
    if _COLON.search(text):
        return "it has a colon (a label, an echoed question or an 'answer is:' wrapper)"
    if not sentence:
        return None
    first = next((c for c in text if c.isalpha()), "")
    if first.islower():
        return "it starts in lower case (the question's words copied, not a sentence)"
    if "?" in text:
        return "it asks a question"
    if len(tokens) > MAX_PROVEN_TOKENS:
        return f"it is longer than {MAX_PROVEN_TOKENS} words"
    opening = question_tokens[:ECHO_TOKENS]
    asks = len(opening) == ECHO_TOKENS and opening[0] in QUESTION_OPENERS
    if asks and any(tokens[i:i + ECHO_TOKENS] == opening for i in range(len(tokens))):
        return "it repeats the question"
    return None


def alias_verdict(response: str, answers: Sequence[str], question: str = "") -> Verdict | None:
    """The alias rules' verdict: ``heuristic:exact`` (the answer is an alias),
    ``heuristic:proven`` (an alias inside a restated question), ``needs_judge`` (an alias is
    there but nothing proves the rest: not correct unless a trusted judge says so),
    ``empty_response``, or None (no alias found: only a judge can decide)."""
    verdict = heuristic_verdict(response, answers, question)
    if verdict is None or not verdict.correct:
        return verdict
    alias = verdict.extracted or ""
    others = several_answers(answers)
    if others:
        why = (f"the row's aliases are different answers ({others[0]!r}, {others[1]!r}), and "
               "one of them may be half the answer")
    elif verdict.rule == "heuristic:exact":
        # "A: 2" is the alias "2" once normalised (an article and a colon dropped): the form
        # of the text is checked even when its words are only the alias
        why = _form_problem(response.strip(), normalize(response).split(), [], sentence=False)
        if why is None:
            return verdict
    else:
        why = why_unproven(response, alias, question)
    if why is None:
        return Verdict(True, "heuristic:proven", alias, f"the response states the answer "
                       f"{alias!r} and otherwise only words of the question")
    return Verdict(False, "needs_judge", alias, f"names the answer {alias!r}, but {why}: "
                   "nothing proves the rest of it right")
