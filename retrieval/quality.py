"""Retrieval quality on questions whose source document is known: recall@k and MRR."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from retrieval.embedding import Embedder
from retrieval.index import IndexReader
from retrieval.qa import QAItem
from retrieval.search import search_many


@dataclass(frozen=True)
class RetrievalScores:
    recall_at_k: float  # share of questions whose source document is among the top k chunks
    recall_at_1: float
    mrr: float  # mean reciprocal rank of the first chunk of the source document (0 when absent)
    k: int
    n: int
    misses: tuple[str, ...] = ()  # ids of the questions whose source was not retrieved


def evaluate_retrieval(
    store: IndexReader, embedder: Embedder, items: Iterable[QAItem], k: int = 5, groups: Iterable[str] = (), progress: bool = False
) -> RetrievalScores:
    """Score retrieval on the items that name a `source` (the others cannot be judged)."""
    judged = [item for item in items if item.source]
    if not judged:
        raise ValueError("no question names its source document: recall cannot be measured")
    results = search_many(store, embedder, [item.question for item in judged], k, groups, progress=progress)
    hits_at_k = hits_at_1 = 0
    reciprocal = 0.0
    misses = []
    for item, hits in zip(judged, results):
        ranks = [rank for rank, hit in enumerate(hits, start=1) if item.source in (hit.doc_id, hit.source)]
        if ranks:
            hits_at_k += 1
            hits_at_1 += ranks[0] == 1
            reciprocal += 1 / ranks[0]
        else:
            misses.append(item.id)
    n = len(judged)
    return RetrievalScores(hits_at_k / n, hits_at_1 / n, reciprocal / n, k, n, tuple(misses))
