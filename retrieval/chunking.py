"""Token-aware chunking that keeps each chunk's heading path and character offsets.

Chunks never cross a section boundary. A section longer than `size` tokens is cut into
windows of `size` tokens that share `overlap` tokens, each window ending at a sentence end
when one falls in its last quarter (quotes and citations read better that way). A section
shorter than `min_size` tokens (a heading with a line under it) merges into the next one.
Token counts use the embedding model's own tokenizer, so a chunk fits the model's window.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from contracts.settings import ChunkingConfig
from retrieval.documents import Document, Section, sha256

# Fixed namespace: point ids must be the same on every machine and every run.
_POINT_NAMESPACE = uuid.UUID("7f3c5a9e-2d41-4c1b-9a57-3e0b8f6d2c10")
_SENTENCE_END = re.compile(r"[.!?:;][\"')\]]?$")


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    index: int  # position of the chunk in its document
    start: int  # character offsets in Document.text: text == doc.text[start:end]
    end: int
    text: str
    headings: tuple[str, ...]

    @property
    def point_id(self) -> str:
        """Deterministic Qdrant id: uuid5 of document id, chunk index and content hash."""
        return str(uuid.uuid5(_POINT_NAMESPACE, f"{self.doc_id}\x1f{self.index}\x1f{sha256(self.text.encode())}"))

    def embedding_text(self, title: str) -> str:
        """What gets embedded: the chunk under its title and heading path.

        A chunk deep in a manual rarely names its product; the heading path does, and
        without it near-duplicate documents (two models, two versions) are told apart
        far less often.
        """
        return embedding_text(title, self.headings, self.text)


def embedding_text(title: str, headings: Iterable[str], text: str) -> str:
    """A chunk's text under its title and heading path, as it is embedded and BM25-weighted."""
    path = [title] + [h for h in headings if h != title]
    return " > ".join(path) + "\n" + text


def chunk_document(doc: Document, tokenizer, chunking: ChunkingConfig) -> list[Chunk]:
    """Cut a document into chunks of at most `chunking.size` tokens (see the module docstring)."""
    spans: list[tuple[int, int, tuple[str, ...]]] = []
    for section in _merge_small(doc, tokenizer, chunking.min_size):
        spans.extend(_windows(doc.text, section, tokenizer, chunking.size, chunking.overlap))
    return [Chunk(doc.doc_id, i, s, e, doc.text[s:e], heads) for i, (s, e, heads) in enumerate(spans)]


def _token_offsets(tokenizer, text: str) -> list[tuple[int, int]]:
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
    return [(s, e) for s, e in encoded["offset_mapping"] if e > s]


def _merge_small(doc: Document, tokenizer, min_size: int) -> list[Section]:
    merged: list[Section] = []
    pending: Section | None = None
    for section in doc.sections:
        if pending is not None:
            section = Section(pending.start, section.end, section.headings)
            pending = None
        if min_size and len(_token_offsets(tokenizer, doc.text[section.start : section.end])) < min_size:
            pending = section
            continue
        merged.append(section)
    if pending is not None:  # a short last section joins the one before it
        if merged:
            last = merged.pop()
            pending = Section(last.start, pending.end, last.headings)
        merged.append(pending)
    return merged


def _windows(text: str, section: Section, tokenizer, size: int, overlap: int):
    body = text[section.start : section.end]
    offsets = [(section.start + s, section.start + e) for s, e in _token_offsets(tokenizer, body)]
    if not offsets:
        return
    first = 0
    while True:
        last = min(first + size, len(offsets))  # exclusive
        if last < len(offsets):
            last = _sentence_cut(text, offsets, first, last, size)
        yield offsets[first][0], offsets[last - 1][1], section.headings
        if last >= len(offsets):
            return
        first = max(last - overlap, first + 1)


def _sentence_cut(text: str, offsets: list[tuple[int, int]], first: int, last: int, size: int) -> int:
    """The latest token end in the window's last quarter that closes a sentence, else `last`."""
    for cut in range(last, first + (3 * size) // 4, -1):
        end = offsets[cut - 1][1]
        if _SENTENCE_END.search(text[max(0, end - 2) : end]) or text[end : end + 1] == "\n":
            return cut
    return last
