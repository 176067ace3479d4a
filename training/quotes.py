"""Chain-of-thought answers whose quotes are verbatim in the oracle chunk.

Two sources of reasoning: the extractive teacher here (offline: the oracle statement that
holds the reference answer, quoted), and a teacher LLM (training/teacher.py) whose quotes
`check_quotes` verifies against the oracle and repairs by snapping to the closest exact span.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass

from contracts.prompt import QUOTE_PATTERN, UNKNOWN_ANSWER, AnswerStyle, format_answer, parse_output, quote
from contracts.textmatch import Span, find_span, sentences, statement_around, statements, token_recall

MIN_SUPPORT = 0.8  # share of answer tokens a statement must hold when the answer is not verbatim
MIN_SIMILARITY = 0.85  # how close a teacher's quote must be to an exact span to be repaired


@dataclass(frozen=True)
class QuoteCheck:
    """A teacher output after checking its quotes: the repaired text, or None when unusable."""

    output: str | None
    verbatim: int = 0
    repaired: int = 0
    reason: str = ""  # why output is None


def evidence_span(answer: str, text: str, max_chars: int = 400) -> Span | None:
    """The statement of `text` that supports `answer`, or None when none does.

    First the statement holding the answer verbatim; else the one holding most of the answer's
    tokens (at least MIN_SUPPORT of them), for answers phrased apart from the text. Statements
    are what grounded decoding lets the served model quote (a sentence, or a term line with the
    sentence that describes it), so training quotes the same units.
    """
    span = find_span(answer, text)
    if span is not None:
        return statement_around(text, span, max_chars)
    best = max(statements(text), key=lambda s: token_recall(answer, text[s.start : s.end]), default=None)
    if best is not None and token_recall(answer, text[best.start : best.end]) >= MIN_SUPPORT:
        return statement_around(text, best, max_chars)
    return None


def extractive_answer(answer: str, oracle_text: str, doc_number: int, title: str, style: AnswerStyle) -> str | None:
    """The assistant turn built from the reference answer and the oracle statement that holds it.

    `doc_number` is the oracle's position in the context, so the reasoning cites the document
    the way the model sees it. None when the oracle does not support the answer.
    """
    span = evidence_span(answer, oracle_text)
    if span is None:
        return None
    if style == "direct":
        return format_answer(answer, style="direct")
    name = f' ("{title}")' if title else ""
    reasoning = (
        f"The question is answered by document {doc_number}{name}, which says: "
        f"{quote(oracle_text[span.start : span.end])} So the answer is {answer}."
    )
    return format_answer(answer, reasoning)


def abstain_answer(style: AnswerStyle) -> str:
    """The assistant turn when no document in the context answers the question."""
    return format_answer(UNKNOWN_ANSWER, "None of the documents answers this question.", style)


def check_quotes(output: str, oracle_text: str, style: AnswerStyle) -> QuoteCheck:
    """Verify every quote of a teacher's output against the oracle; repair near misses.

    A quote that is not verbatim is replaced by the closest exact span of the oracle (same
    words up to whitespace and case, else the most similar run of sentences, similarity at
    least MIN_SIMILARITY); one that matches nothing makes the whole output unusable.
    """
    parsed = parse_output(output)
    if not parsed.well_formed:
        return QuoteCheck(None, reason="malformed")
    if style == "cot" and not parsed.quotes:
        return QuoteCheck(None, reason="no_quote")
    counts = {"verbatim": 0, "repaired": 0, "failed": 0}

    def exact(match: re.Match[str]) -> str:
        text = match.group(1).strip()
        if text in oracle_text:
            counts["verbatim"] += 1
            return quote(text)
        span = find_span(text, oracle_text) or _closest_span(text, oracle_text)
        if span is None:
            counts["failed"] += 1
            return match.group(0)
        counts["repaired"] += 1
        return quote(oracle_text[span.start : span.end])

    fixed = QUOTE_PATTERN.sub(exact, output)
    if counts["failed"]:
        return QuoteCheck(None, reason="unrepairable_quote")
    return QuoteCheck(fixed, counts["verbatim"], counts["repaired"])


def _closest_span(needle: str, text: str) -> Span | None:
    # Candidates: runs of one to three consecutive sentences; chunks are short, so this is cheap.
    spans = sentences(text)
    best, best_ratio = None, 0.0
    for i in range(len(spans)):
        for j in range(i, min(i + 3, len(spans))):
            candidate = text[spans[i].start : spans[j].end]
            ratio = difflib.SequenceMatcher(None, needle.lower(), candidate.lower(), autojunk=False).ratio()
            if ratio > best_ratio:
                best, best_ratio = Span(spans[i].start, spans[j].end), ratio
    return best if best_ratio >= MIN_SIMILARITY else None


def _teacher_fingerprint() -> str:
    """A hash of what the extractive teacher writes for fixed probes (an answer inside a sentence, a
    term on its own line, answers phrased apart from the text with enough support and without,
    no oracle, a quote to repair): a change to how it picks or writes evidence changes it, a
    change to comments does not."""
    text = ("Overview\nThe PC-220 runs on 24 V DC. Dr. Smith wrote it in 2021.\n"
            "--no-deps\nBuilds only this package, not its dependencies.\n")
    probes = [extractive_answer(answer, text, 2, "Title", "cot") for answer in ("24 V DC", "--no-deps", "Smith, 2021", "Smith in 1999", "absent")]
    probes += [abstain_answer("cot"), check_quotes(f"{quote('the pc-220 runs on 24 V DC')}\n<ANSWER>: 24 V", text, "cot").output]
    return hashlib.sha256(repr(probes).encode()).hexdigest()[:16]


# Part of the dataset's cache key (flows/pipeline.py): a work dir builds its examples again when
# the teacher's evidence changes, instead of training on quotes an earlier version chose.
EXTRACTIVE_TEACHER = _teacher_fingerprint()
