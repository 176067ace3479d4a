"""Which sentences of a context match a question, and how well the best one does.

A quote may only be a sentence of the context (`quotable`), and grounded decoding narrows it to
those that best match the question (`SentenceMatch.closest`). How well the best one matches
(`SentenceMatch.evidence`: its embedding's cosine to the question's, plus a share of the
question's terms that it holds) is the evidence that the context answers the question at all:
measured on the sample domain, squad and rustdocs, it tells a context that holds the answer from
one that does not with an AUC of 0.84-0.87, where the tuned model's own "I don't know" followed
the question rather than the documents (docs/benchmarks.md). The level differs by corpus, so a
dataset keeps the scores of its own training contexts (`evidence_profile`) and the floor below
which an answer is "I don't know" is a low quantile of them (`evidence_floor`).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from contracts.prompt import ContextDoc
from contracts.textmatch import statements
from retrieval.sparse import bm25_scores, terms

Embed = Callable[[list[str]], np.ndarray]  # texts -> unit-length vectors, one row per text

_HEADING = re.compile(r"\s*#{1,6}(\s|$)")
# How much exact terms count beside the embedding when quote candidates are chosen, and BM25's
# length weight among a context's sentences: none, since a sentence with a term line joined to it
# ("Range 0 to 4 m, ...") or a long one is not the less relevant for it, while a short sentence
# that shares one word of the question rose above it. Measured over the raft_rag contexts of the
# squad, sample-domain and rustdocs questions (benchmarks/quote_ranking.py, docs/benchmarks.md): the
# sentence ranked first holds a gold answer 0.729 -> 0.825 (squad train), 0.576 -> 0.828 (sample),
# 0.582 -> 0.716 (rustdocs train) against the embedding of the bare sentence; 0.807, 0.814 and 0.701
# with the length weight and terms at 0.2.
TERM_WEIGHT = 0.3
TERM_LENGTH_WEIGHT = 0.0
# How much the question's own terms count in the evidence beside the embedding: a sentence of the
# same topic that does not hold the answer matches the embedding nearly as well as the one that
# does, but repeats fewer of the question's words. Chosen on squad and the sample domain (the
# AUC 0.78 -> 0.86 and 0.81 -> 0.84; at the default quantile no more answering contexts below the
# floor, and 44% instead of 28% of the sample's non-answering ones), checked on rustdocs (0.77 ->
# 0.87): docs/benchmarks.md.
COVERAGE_WEIGHT = 0.3
# What the scores of a profile are; a profile of another measure (or embedding model) sets no floor.
MEASURE = f"best quotable sentence: cosine read with its document's title + {COVERAGE_WEIGHT} x share of the question's terms it holds, v2"


class CachedEmbed:
    """`embed` with the vectors of the last `max_texts` texts kept: a corpus's chunks come back in
    request after request, so their sentences are embedded once, not on every request (about
    280 ms of CPU per raft_rag context otherwise: docs/benchmarks.md). Only the texts it does not
    hold are embedded, in one call. Threads may share it (the gateway's requests do). A text is
    kept by a 16-byte digest, not itself, so the bound holds in bytes too: callers may bring
    documents of their own, with sentences as long as they like."""

    def __init__(self, embed: Embed, max_texts: int = 50_000) -> None:  # 50,000 MiniLM vectors: 77 MB
        self.embed, self.max_texts = embed, max_texts
        self._vectors: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        keys = [hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts]
        with self._lock:
            found = {k: self._vectors[k] for k in keys if k in self._vectors}
            for k in found:
                self._vectors.move_to_end(k)
        missing = {k: t for k, t in zip(keys, texts) if k not in found}  # a repeated text once
        if missing:
            found.update(zip(missing, self.embed(list(missing.values()))))
            with self._lock:
                for k in missing:
                    self._vectors[k] = found[k]
                while len(self._vectors) > self.max_texts:
                    self._vectors.popitem(last=False)
        return np.stack([found[k] for k in keys]) if texts else self.embed([])


def quotable(docs: Sequence[ContextDoc]) -> list[str]:
    """The sentences a quote may be: each statement of each document (a sentence, or term lines with
    the sentence below them: `statements`), as it stands in the prompt, but no Markdown heading while
    the documents hold any other sentence (a heading names a topic, it states nothing to quote as
    evidence)."""
    found = {doc.text[s.start : s.end] for doc in docs for s in statements(doc.text)}
    found = {s for s in found if s.strip()}
    prose = {s for s in found if not _HEADING.match(s)}
    return _longest_first(prose or found)


@dataclass(frozen=True)
class SentenceMatch:
    """The quotable sentences of a context and how each matches the question: the cosine of its
    embedding (read with its document's title) to the question's, its BM25 score against the
    question among them, scaled to the best (all 0 when no term matches), and the share of the
    question's terms it holds (`coverage`)."""

    sentences: list[str]
    cosines: np.ndarray
    terms: np.ndarray
    coverage: np.ndarray

    @property
    def evidence(self) -> float:
        """How well the best sentence matches: the most of cosine plus COVERAGE_WEIGHT times coverage
        over the sentences (the measure a profile's scores are in); 0.0 when there is nothing to quote."""
        return _evidence(self.cosines, self.coverage)

    def closest(self, n: int) -> list[str]:
        """The `n` sentences that match best: cosine plus TERM_WEIGHT times the term score (ties to
        the longer one; all of them when there are no more than `n`)."""
        if n >= len(self.sentences):
            return self.sentences
        scores = self.cosines + TERM_WEIGHT * self.terms
        best = sorted(range(len(self.sentences)), key=lambda i: (-float(scores[i]), i))[:n]
        return _longest_first(self.sentences[i] for i in best)


def match_sentences(question: str, docs: Sequence[ContextDoc], embed: Embed) -> SentenceMatch:
    """How each quotable sentence of `docs` matches `question`.

    Each sentence is read with its document's title in front ("PC-220 manual: It takes 24 V."),
    since a sentence alone often lacks the subject the question names; BM25 adds the exact terms
    (model numbers, setting names) that the embedding blurs."""
    return _match(question, quotable(docs), docs, embed)


def closest_sentences(question: str, docs: Sequence[ContextDoc], n: int, embed: Embed) -> list[str]:
    """The `n` quotable sentences of `docs` that best match `question` (`SentenceMatch.closest`; all of
    them, without embedding, when there are no more than `n`)."""
    found = quotable(docs)
    return found if n >= len(found) else _match(question, found, docs, embed).closest(n)


def evidence_profile(contexts: Iterable[tuple[str, Sequence[ContextDoc]]], embed: Embed, embedding_model: str) -> dict[str, Any]:
    """The evidence scores of `contexts` (question, documents that answer it), sorted, with the
    measure and embedding model they were taken with: what `evidence_floor` calibrates on.
    `SentenceMatch.evidence` of each, but every distinct text is embedded once, in one call: a
    dataset's contexts share their chunks (the sample domain's 210 hold about a tenth as many
    distinct sentences as sentences)."""
    asked = [(question, found, titled(found, docs)) for question, docs in contexts for found in [quotable(docs)]]
    texts = sorted({question for question, _, _ in asked} | {s for _, _, read in asked for s in read})
    vectors = dict(zip(texts, embed(texts))) if texts else {}
    scores = sorted(
        round(_evidence(np.array([vectors[s] @ vectors[q] for s in read]), _coverage(q, found)), 4) for q, found, read in asked
    )
    return {"measure": MEASURE, "embedding_model": embedding_model, "scores": scores}


def evidence_floor(profile: Mapping[str, Any] | None, quantile: float, embedding_model: str) -> float | None:
    """The evidence score below which a context is taken not to answer: the `quantile` of the
    profile's scores. None (no floor) for quantile 0, or a profile that is missing, empty, or taken
    with another measure or embedding model (its scores would mean something else)."""
    if not quantile or not profile or not profile.get("scores"):
        return None
    if profile.get("measure") != MEASURE or profile.get("embedding_model") != embedding_model:
        return None
    return float(np.quantile(np.asarray(profile["scores"], dtype=np.float64), quantile))


def _match(question: str, found: list[str], docs: Sequence[ContextDoc], embed: Embed) -> SentenceMatch:
    if not found:
        return SentenceMatch([], np.zeros(0), np.zeros(0), np.zeros(0))
    read = titled(found, docs)
    vectors = embed([question, *read])
    scores = np.array(bm25_scores(question, read, b=TERM_LENGTH_WEIGHT), dtype=np.float64)
    return SentenceMatch(found, vectors[1:] @ vectors[0], scores / (scores.max(initial=0.0) or 1.0), _coverage(question, found))


def _coverage(question: str, found: Sequence[str]) -> np.ndarray:
    """The share of `question`'s terms (BM25's: words and numbers, stop words out) that each of
    `found` holds; all 0 for a question without terms."""
    asked = set(terms(question))
    return np.array([len(asked & set(terms(s))) / len(asked) if asked else 0.0 for s in found], dtype=np.float64)


def _evidence(cosines: np.ndarray, coverage: np.ndarray) -> float:
    return float((cosines + COVERAGE_WEIGHT * coverage).max(initial=0.0))


def titled(found: Sequence[str], docs: Sequence[ContextDoc]) -> list[str]:
    """Each of `found` as it is embedded and ranked: with the title of the document that holds it in front."""
    return [f"{title}: {s}" if (title := _title_of(s, docs)) else s for s in found]


def _title_of(sentence: str, docs: Sequence[ContextDoc]) -> str:
    return next((d.title.strip() for d in docs if sentence in d.text), "")


def _longest_first(found: Iterable[str]) -> list[str]:
    # Deterministic order (a request's grammar, and so vLLM's grammar cache, depends on it only through the set).
    return sorted(set(found), key=lambda s: (-len(s), s))
