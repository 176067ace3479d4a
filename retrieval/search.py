"""Answering questions from the index: the top chunks a caller is allowed to see."""

from __future__ import annotations

from collections.abc import Iterable

from retrieval.embedding import Embedder
from retrieval.index import Hit, IndexReader


def search(store: IndexReader, embedder: Embedder, question: str, k: int = 5, groups: Iterable[str] = ()) -> list[Hit]:
    """Top-k chunks for one question, among those whose access labels `groups` allow."""
    return search_many(store, embedder, [question], k, groups)[0]


def search_many(
    store: IndexReader, embedder: Embedder, questions: list[str], k: int = 5, groups: Iterable[str] = (), progress: bool = False
) -> list[list[Hit]]:
    """Top-k chunks for each question; the questions are embedded together in batches."""
    for i, question in enumerate(questions):
        if not question or not question.strip():
            raise ValueError(f"question {i + 1} is empty")
    groups = list(groups)
    vectors = embedder.encode(questions, progress=progress)
    return [store.search(vector, question, k, groups) for question, vector in zip(questions, vectors)]
