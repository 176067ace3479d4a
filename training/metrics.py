"""Answer metrics: SQuAD-style exact match and token F1, answer containment, quote faithfulness.

A model output is scored through the shared parser (training/prompt.py): the prediction is
the text after `<ANSWER>:`, or, when the model never wrote that line, its whole output (so
a base model that answers in free text still gets credit for what it says; the parse rate
reports the format separately).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from training.prompt import ContextDoc, parse_output
from training.textmatch import answer_tokens, normalize_answer


@dataclass(frozen=True)
class AnswerScore:
    prediction: str
    parsed: bool  # the output had an <ANSWER>: line
    em: float
    f1: float
    contained: float  # the reference answer occurs in the prediction
    quotes: int
    quotes_verbatim: int  # quotes found word for word in the documents the model was given


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when both normalise to the same text."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall over the normalised texts."""
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
    ref = normalize_answer(reference)
    return float(bool(ref) and f" {ref} " in f" {normalize_answer(prediction)} ")


def quote_is_verbatim(quote: str, docs: Sequence[ContextDoc]) -> bool:
    """Whether `quote` is word for word in one of `docs` (whitespace runs count as one space)."""
    needle = " ".join(quote.split())
    return bool(needle) and any(needle in " ".join(d.text.split()) for d in docs)


def score_output(output: str, reference: str, docs: Sequence[ContextDoc]) -> AnswerScore:
    """Score one model output against the reference answer and the documents it was shown."""
    parsed = parse_output(output)
    prediction = parsed.answer if parsed.answer is not None else output.strip()
    verbatim = sum(quote_is_verbatim(q, docs) for q in parsed.quotes)
    return AnswerScore(
        prediction=prediction,
        parsed=parsed.answer is not None,
        em=exact_match(prediction, reference),
        f1=token_f1(prediction, reference),
        contained=answer_contained(prediction, reference),
        quotes=len(parsed.quotes),
        quotes_verbatim=verbatim,
    )


def summarize(scores: Sequence[AnswerScore]) -> dict[str, float | int | None]:
    """Means over questions; quote faithfulness over all quotes (None when no output quoted)."""
    n = len(scores)
    quotes = sum(s.quotes for s in scores)

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / n, 4) if n else None

    return {
        "n": n,
        "em": mean([s.em for s in scores]),
        "f1": mean([s.f1 for s in scores]),
        "answer_contained": mean([s.contained for s in scores]),
        "answer_parse_rate": mean([float(s.parsed) for s in scores]),
        "quote_faithfulness": round(sum(s.quotes_verbatim for s in scores) / quotes, 4) if quotes else None,
        "quotes_per_answer": mean([float(s.quotes) for s in scores]),
    }
