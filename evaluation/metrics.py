"""Answer metrics: SQuAD-style exact match and token F1, answer containment, quote faithfulness,
whether the answer comes from the model's own quotes, and how it abstains.

A model output is scored through the shared parser (contracts/prompt.py): the prediction is
the text after `<ANSWER>:`, or, when the model never wrote that line, its whole output (so
a base model that answers in free text still gets credit for what it says; the parse rate
reports the format separately). With several gold answers (SQuAD), each score is the best
over them, as SQuAD's own script does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from contracts.answers import answer_in_quotes, contains_answer, is_abstention, marks_only, quote_is_verbatim
from contracts.prompt import ContextDoc, parse_output
from contracts.textmatch import answer_tokens, normalize_answer


@dataclass(frozen=True)
class AnswerScore:
    prediction: str
    parsed: bool  # the output had an <ANSWER>: line
    em: float
    f1: float
    contained: float  # the reference answer occurs in the prediction
    quotes: int
    quotes_verbatim: int  # quotes found word for word in the documents the model was given
    answer_in_quote: bool = False  # the prediction occurs in one of the output's own quotes
    abstained: bool = False  # the prediction is "I don't know"
    answer_in_context: bool = False  # a gold answer occurs in the documents the model was given


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when both normalise to the same text (a reference of marks alone, such as `//!`, must be
    matched as written: SQuAD's normal form would erase it and let any empty answer match)."""
    if marks_only(reference):
        return float(" ".join(prediction.split()) == " ".join(reference.split()))
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall over the normalised texts (exact match for a
    reference of marks alone)."""
    if marks_only(reference):
        return exact_match(prediction, reference)
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def answer_contained(prediction: str, reference: str) -> float:
    """1.0 when the normalised reference occurs, on word boundaries, in the normalised prediction."""
    return float(contains_answer(prediction, reference))


def score_output(output: str, references: Sequence[str], docs: Sequence[ContextDoc]) -> AnswerScore:
    """Score one model output against the gold answers (the best of them) and the documents it was shown."""
    parsed = parse_output(output)
    prediction = parsed.answer if parsed.answer is not None else output.strip()
    verbatim = sum(quote_is_verbatim(q, docs) for q in parsed.quotes)
    return AnswerScore(
        prediction=prediction,
        parsed=parsed.answer is not None,
        em=max(exact_match(prediction, r) for r in references),
        f1=max(token_f1(prediction, r) for r in references),
        contained=max(answer_contained(prediction, r) for r in references),
        quotes=len(parsed.quotes),
        quotes_verbatim=verbatim,
        answer_in_quote=answer_in_quotes(prediction, parsed.quotes),
        abstained=is_abstention(prediction),
        answer_in_context=any(answer_contained(d.text, r) for d in docs for r in references),
    )


def summarize(scores: Sequence[AnswerScore]) -> dict[str, float | int | None]:
    """Means over questions; quote faithfulness over all quotes (None when no output quoted).

    Besides the answer scores: `answer_in_quote`, the share of answers (abstentions left out)
    that occur in one of the output's own quotes; `wrong_idk`, the share of all answers that
    say "I don't know" although a gold answer was in the documents; `idk_without_answer`,
    where no gold answer was in the documents, the share of "I don't know" among the
    answers that were not right (abstaining instead of guessing wrong).
    """
    n = len(scores)
    quotes = sum(s.quotes for s in scores)

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    answered = [s for s in scores if not s.abstained]
    unanswerable_misses = [s for s in scores if not s.answer_in_context and not s.contained]
    return {
        "n": n,
        "em": mean([s.em for s in scores]),
        "f1": mean([s.f1 for s in scores]),
        "answer_contained": mean([s.contained for s in scores]),
        "answer_parse_rate": mean([float(s.parsed) for s in scores]),
        "quote_faithfulness": round(sum(s.quotes_verbatim for s in scores) / quotes, 4) if quotes else None,
        "quotes_per_answer": mean([float(s.quotes) for s in scores]),
        "answer_in_quote": mean([float(s.answer_in_quote) for s in answered]) if quotes else None,
        "answer_in_context": mean([float(s.answer_in_context) for s in scores]),
        "idk": mean([float(s.abstained) for s in scores]),
        "wrong_idk": mean([float(s.abstained and s.answer_in_context) for s in scores]),
        "idk_without_answer": mean([float(s.abstained) for s in unanswerable_misses]),
    }
