"""BM25 as Qdrant sparse vectors: the exact-term half of hybrid search.

Dense embeddings blur near-duplicates that differ in one exact term (PC-220 against PC-240,
firmware 3.1 against 3.2); BM25 separates them. A chunk's sparse vector holds BM25's
term-frequency part per term; Qdrant multiplies in each term's inverse document frequency at
query time (the collection's sparse vector has the IDF modifier), so the index needs no
corpus-wide statistics of its own and an incremental sync stays exact.

Terms are lower-cased words and numbers; a compound such as `pc-220`, `v1.4` or `e31` is a
term of its own and also gives its parts, so "PC 220" still matches "PC-220". A term's index
in the sparse vector is the CRC-32 of its text: stable across processes and versions.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

# BM25's usual constants: k1 saturates repeated terms, b weighs a chunk's length against the average.
K1 = 1.2
B = 0.75
# Chunks are cut to a size in embedding-model tokens; about this many BM25 terms come per token
# of English text once stop words are gone. Gives the average chunk length BM25 normalizes by.
TERMS_PER_TOKEN = 0.55

_COMPOUND = re.compile(r"[a-z0-9]+(?:[._/-][a-z0-9]+)*")
_PART = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    "a an and are as at be by can do does for from has have how i if in into is it its of on or should "
    "so than that the their then there these this to was were what when where which who why will with "
    "you your".split()
)


@dataclass(frozen=True)
class SparseVector:
    """Term indices (CRC-32 of the term) and their weights, indices ascending."""

    indices: list[int]
    values: list[float]


def terms(text: str) -> list[str]:
    """The BM25 terms of `text`, in order, stop words left out."""
    out: list[str] = []
    for match in _COMPOUND.finditer(text.lower()):
        word = match.group()
        parts = _PART.findall(word)
        if len(parts) > 1:
            out.append(word)
        out.extend(p for p in parts if p not in STOP_WORDS)
    return out


def document_vector(text: str, avg_terms: float) -> SparseVector:
    """A chunk's BM25 term weights, normalized by its length against `avg_terms`."""
    return _vector(_term_weights(Counter(terms(text)), avg_terms))


def query_vector(text: str) -> SparseVector:
    """A question's terms, each weighted 1 (Qdrant's IDF weighs them against the collection)."""
    return _vector(dict.fromkeys(terms(text), 1.0))


def bm25_scores(query: str, texts: Sequence[str], b: float = B) -> list[float]:
    """BM25 of `query` against each of `texts`, with document frequencies and the average length
    taken over `texts` themselves: for ranking a handful of passages (the sentences of a prompt)
    without an index. `b` weighs a text's length against the average (0: not at all)."""
    counts = [Counter(terms(t)) for t in texts]
    avg = sum(sum(c.values()) for c in counts) / max(len(counts), 1)
    df = Counter(term for c in counts for term in c)
    idf = {t: math.log(1 + (len(counts) - df[t] + 0.5) / (df[t] + 0.5)) for t in set(terms(query))}
    weights = [_term_weights(c, avg, b) for c in counts]
    return [sum(idf[t] * w[t] for t in idf if t in w) for w in weights]


def _term_weights(counts: Counter[str], avg_terms: float, b: float = B) -> dict[str, float]:
    """BM25's term-frequency part per term of a text with these term `counts`, against texts of `avg_terms` on average."""
    length_norm = K1 * (1 - b + b * sum(counts.values()) / max(avg_terms, 1.0))
    return {term: tf * (K1 + 1) / (tf + length_norm) for term, tf in counts.items()}


def average_terms(chunk_size: int) -> float:
    """The average chunk length BM25 normalizes by, for chunks of `chunk_size` tokens."""
    return chunk_size * TERMS_PER_TOKEN


def _vector(weights: dict[str, float]) -> SparseVector:
    by_index: dict[int, float] = {}
    for term, weight in weights.items():
        index = zlib.crc32(term.encode())
        by_index[index] = by_index.get(index, 0.0) + weight  # a CRC collision adds up, never fails
    indices = sorted(by_index)
    return SparseVector(indices, [by_index[i] for i in indices])
