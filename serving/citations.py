"""Citations: which documents of the context a model's quotes come from.

A quote is attributed to the first document of the context that holds it word for word
(whitespace runs count as one space). A quote found in no document is still returned,
marked `verbatim: false`, so a client can tell a citation from a made-up one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from contracts.answers import quote_is_verbatim
from contracts.prompt import ContextDoc


@dataclass(frozen=True)
class SourceDoc:
    """A document of the context with where it comes from (a retrieved chunk, or a caller's document)."""

    doc: ContextDoc
    doc_id: str = ""
    chunk_id: str = ""
    access: tuple[str, ...] = ()  # the groups that may see it


@dataclass(frozen=True)
class Citation:
    document: int | None  # 1-based position in the context; None when no document holds the quote
    doc_id: str
    chunk_id: str
    source: str
    title: str
    quote: str
    verbatim: bool

    def to_dict(self) -> dict[str, object]:
        """Plain JSON values."""
        return asdict(self)


def cite(quotes: Sequence[str], context: Sequence[SourceDoc]) -> list[Citation]:
    """One citation per distinct quote, in the order the model quoted them."""
    out = []
    for quote in dict.fromkeys(quotes):
        n = next((i for i, s in enumerate(context, start=1) if quote_is_verbatim(quote, [s.doc])), None)
        if n is None:
            out.append(Citation(None, "", "", "", "", quote, False))
        else:
            s = context[n - 1]
            out.append(Citation(n, s.doc_id, s.chunk_id, s.doc.source, s.doc.title, quote, True))
    return out
