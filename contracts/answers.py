"""What backs an answer: abstentions, quotes found word for word in the context, and an answer
taken from the model's own quotes. Evaluation scores with these, and the gateway checks
grounded answers with the same definitions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from contracts.prompt import UNKNOWN_ANSWER, ContextDoc
from contracts.textmatch import find_span, normalize_answer

# Containment compares words: any punctuation mark, ASCII or not, separates two ("Empire[1]",
# "“Resign.”"), where SQuAD's normal form (kept for EM and F1) deletes ASCII marks only and so
# glues "Empire[citation" into one word and leaves curly quotes on it.
_MARKS = re.compile(r"[^\w\s]|_")


def quote_is_verbatim(quote: str, docs: Sequence[ContextDoc]) -> bool:
    """Whether `quote` is word for word in one of `docs` (whitespace runs count as one space)."""
    needle = " ".join(quote.split())
    return bool(needle) and any(needle in " ".join(d.text.split()) for d in docs)


def is_abstention(prediction: str) -> bool:
    """Whether the prediction says "I don't know" (in any case or punctuation)."""
    return normalize_answer(prediction) in _ABSTENTIONS


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
