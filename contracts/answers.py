"""What backs an answer: abstentions, quotes found word for word in the context, and an answer
taken from the model's own quotes. Evaluation scores with these, and the gateway checks
grounded answers with the same definitions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from contracts.prompt import UNKNOWN_ANSWER, ContextDoc
from contracts.textmatch import answer_tokens, find_span, normalize_answer

# Containment compares words: any punctuation mark, ASCII or not, separates two ("Empire[1]",
# "“Resign.”"), where SQuAD's normal form (kept for EM and F1) deletes ASCII marks only and so
# glues "Empire[citation" into one word and leaves curly quotes on it.
_MARKS = re.compile(r"[^\w\s]|_")


def quote_is_verbatim(quote: str, docs: Sequence[ContextDoc]) -> bool:
    """Whether `quote` is word for word in one of `docs` (whitespace runs count as one space)."""
    needle = " ".join(quote.split())
    return bool(needle) and any(needle in " ".join(d.text.split()) for d in docs)


def is_abstention(prediction: str) -> bool:
    """Whether the prediction says "I don't know" (in any case or punctuation, with a typographic
    apostrophe too: free decoding writes "I don’t know")."""
    return normalize_answer(prediction.replace("\u2019", "'")) in _ABSTENTIONS


_ABSTENTIONS = {normalize_answer(UNKNOWN_ANSWER), normalize_answer("I do not know")}


def contains_answer(text: str, answer: str) -> bool:
    """Whether `answer` occurs in `text` on word boundaries: the same words in the same order,
    normalised as SQuAD does, with every punctuation mark a word boundary. An answer of marks
    alone (`//!`, `->`) occurs as written."""
    if marks_only(answer):
        return find_span(answer, text, ignore_case=False) is not None
    needle = _words(answer)
    return bool(needle) and f" {needle} " in f" {_words(text)} "


def marks_only(answer: str) -> bool:
    """Whether `answer` has characters but no words once normalised (technical documentation has
    such answers: operators, comment markers)."""
    return bool(answer.strip()) and not _words(answer)


def _words(text: str) -> str:
    return normalize_answer(_MARKS.sub(" ", text))


def answer_in_quotes(answer: str, quotes: Sequence[str]) -> bool:
    """Whether `answer` occurs, on word boundaries after normalisation, in one of `quotes`."""
    return any(contains_answer(q, answer) for q in quotes)


# Words that name nothing on their own: a span starting with one of them is not a new answer.
FUNCTION_WORDS = frozenset(
    "a an the of in on at to for from by with as into about than and or but nor so is are was were be been being has "
    "have had do does did it its this that these those which who whom whose what when where why how not no".split()
)
_CHOICE = re.compile(r"\bor\b", re.IGNORECASE)


def echoes_question(answer: str, question: str) -> bool:
    """Whether `answer` only repeats words of `question` ("What did Mitsubishi rename its Forte
    to?" -> "Forte"), when the question offers no choice between named alternatives ("... A or B?",
    whose answer is one of its own words). Gold answers are such echoes in 6 of 851 questions of
    the squad, sample and rustdocs QA files; of the tuned models' echoes (raft_rag and oracle, the
    last report of each corpus before this test existed) 42 of 44 held no gold answer
    (docs/benchmarks.md)."""
    words = answer_tokens(answer)
    if not words or is_abstention(answer) or _CHOICE.search(question):
        return False
    asked = set(answer_tokens(question))
    return all(w in asked for w in words)
