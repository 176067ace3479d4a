"""Finding answers and quotes in document text, and comparing short answers.

Documents reach us with their own line breaks and spacing (PDF extraction, HTML tables), so
a match treats any run of whitespace as one space; what we return is always the exact span
of the original text, which is what a verbatim quote must be.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
# A sentence ends at . ! ? followed by whitespace, or at a line break (list items, table rows)...
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# ...but not after an initial or an abbreviation ("William E. Simon", "U.S. troops", "Dr. Smith"),
# nor before a lower-case word ("e.g. the"): a quote cut there would hold half a sentence.
_NOT_AN_END = re.compile(r"(?:\b[A-Z]|\b(?:[A-Za-z]\.)+[A-Za-z]|\b(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|No|vs|Fig|Inc|Ltd|Co))\.$")

# Documentation often states a term on a line of its own and what it means on the next: an HTML
# heading or definition term ("--include-ignored" / "Runs both ignored and non-ignored tests."), a
# setting's "Default: 30". Asked "which flag runs both ...", the ranking finds the description, and
# the answer is the term; so grounded decoding quotes such label lines only with the sentence below them.
_LABEL = re.compile(r".{1,80}(?<![.!?:;,])")  # short, without a sentence end...
_NOT_PROSE = re.compile(r"#{1,6}(\s|$)|\||[-*+] |\d+[.)] ")  # ...and neither a label nor what one describes: heading, table row, list item
_MAX_LABELS = 4  # label lines read with one sentence
_MAX_UNIT_CHARS = 400  # labels that would make a statement longer stand alone


@dataclass(frozen=True)
class Span:
    start: int
    end: int


def find_span(needle: str, text: str, ignore_case: bool = True) -> Span | None:
    """The first span of `text` equal to `needle` up to whitespace (and case), on word edges.

    "4 bar" matches "4\\nbar" but not "14 bar": a short answer must not match inside a longer
    number or word.
    """
    words = needle.split()
    if not words:
        return None
    pattern = r"\s+".join(re.escape(w) for w in words)
    if words[0][0].isalnum():
        pattern = r"(?<![\w])" + pattern
    if words[-1][-1].isalnum():
        pattern += r"(?![\w])"
    match = re.search(pattern, text, re.IGNORECASE if ignore_case else 0)
    return Span(match.start(), match.end()) if match else None


def sentences(text: str) -> list[Span]:
    """Sentence spans of `text` (stripped of surrounding whitespace), in order."""
    spans, start = [], 0
    for cut in [*filter(lambda c: _ends_sentence(text, c), _SENTENCE_END.finditer(text)), None]:
        end = cut.start() if cut else len(text)
        piece = text[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            spans.append(Span(start + lead, start + len(piece.rstrip())))
        if cut:
            start = cut.end()
    return spans


def _ends_sentence(text: str, cut: re.Match[str]) -> bool:
    if "\n" in cut.group():
        return True
    following = text[cut.end() : cut.end() + 1]
    return not (following.islower() or _NOT_AN_END.search(text, max(0, cut.start() - 12), cut.start()))


def statements(text: str) -> list[Span]:
    """The spans a quote may be: the sentences of `text` in order, but each run of label lines (at most
    _MAX_LABELS whole lines, short and without a sentence end: see _LABEL) joined to the sentence of
    prose that follows it."""
    units: list[Span] = []
    labels: list[Span] = []
    for span in sentences(text):
        if _is_label(text, span):
            labels.append(span)
            continue
        describes = _starts_line(text, span) and not _NOT_PROSE.match(text, span.start)
        joined = labels[-_MAX_LABELS:] if describes else []
        while joined and span.end - joined[0].start > _MAX_UNIT_CHARS:
            joined = joined[1:]
        units += labels[: len(labels) - len(joined)]
        units.append(Span((joined[0] if joined else span).start, span.end))
        labels = []
    return units + labels


def _is_label(text: str, span: Span) -> bool:
    # A whole line of its own, short, without a sentence end.
    line_end = text.find("\n", span.end)
    whole_line = _starts_line(text, span) and not text[span.end : len(text) if line_end < 0 else line_end].strip()
    return whole_line and not _NOT_PROSE.match(text, span.start) and _LABEL.fullmatch(text, span.start, span.end) is not None


def _starts_line(text: str, span: Span) -> bool:
    # Unindented: indented lines are code or a program's output, neither terms nor their descriptions.
    return span.start == 0 or text[span.start - 1] == "\n"


def statement_around(text: str, span: Span, max_chars: int = 400) -> Span:
    """The statement(s) holding `span` (the units a quote may be: `statements`), cut to about
    `max_chars` around it at word edges."""
    parts = [s for s in statements(text) if s.end > span.start and s.start < span.end]
    if not parts:
        return span
    start, end = parts[0].start, parts[-1].end
    if end - start > max_chars:
        room = max(0, max_chars - (span.end - span.start)) // 2
        start = _word_edge(text, max(start, span.start - room), forward=True, limit=span.start)
        end = _word_edge(text, min(end, span.end + room), forward=False, limit=span.end)
    return Span(start, end)


def _word_edge(text: str, at: int, forward: bool, limit: int) -> int:
    # Move to the nearest whitespace so a cut never splits a word, never past the answer.
    if forward:
        while at < limit and at > 0 and not text[at - 1].isspace():
            at += 1
    else:
        while at > limit and at < len(text) and not text[at].isspace():
            at -= 1
    return at


def normalize_answer(text: str) -> str:
    """SQuAD-style normal form: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    """Tokens of the normal form (what token F1 and support checks count)."""
    return normalize_answer(text).split()


def token_recall(answer: str, text: str) -> float:
    """Share of the answer's tokens that occur in `text` (1.0 for an empty answer)."""
    wanted = answer_tokens(answer)
    have = set(answer_tokens(text))
    return sum(t in have for t in wanted) / len(wanted) if wanted else 1.0


def jaccard(a: str, b: str) -> float:
    """Overlap of two texts' token sets (for near-duplicate questions)."""
    x, y = set(answer_tokens(a)), set(answer_tokens(b))
    return len(x & y) / len(x | y) if x | y else 1.0
