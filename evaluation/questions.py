"""Held-out questions for evaluation: a dataset's eval split, or a QA file resolved against the index.

Each question knows its gold answers, the documents that hold the answer, and where known
an oracle context: the chunk that holds the answer among distractors, as training shows it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts.prompt import ContextDoc, example_docs
from retrieval.embedding import Embedder
from retrieval.index import Hit, IndexReader
from retrieval.qa import QAItem
from retrieval.search import search_many
from training.dataset import find_oracle, questions_from_qa, resolve_sources
from training.dataset_folder import check_format, read_examples


class EvaluationError(ValueError):
    """The evaluation cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    question: str
    answer: str
    source_docs: tuple[str, ...]  # document ids that hold the answer (empty when unknown)
    oracle_context: tuple[ContextDoc, ...] | None  # the oracle among distractors; None when unknown
    answers: tuple[str, ...] = ()  # every gold answer (scores take the best); () means (answer,)

    @property
    def references(self) -> tuple[str, ...]:
        """The gold answers a prediction is scored against."""
        return self.answers or (self.answer,)


def from_dataset(dataset_dir: Path, store: IndexReader) -> list[EvalQuestion]:
    """The eval split of a RAFT dataset; the oracle context is the example's own documents.

    Where the example left the oracle out (probability 1 - P), the oracle chunk is fetched
    from the index and put in place of one distractor.
    """
    records = read_examples(check_format(dataset_dir), "eval")
    if not records:
        raise EvaluationError(f"{dataset_dir}/eval.jsonl has no examples: build the dataset with dataset.eval_share > 0")
    missing = {r["oracle_doc_id"] for r in records if not r["oracle_present"]}
    chunks = {c.chunk_id: c for c in store.chunks(doc_ids=sorted(missing))} if missing else {}
    questions = []
    for r in records:
        docs = example_docs(r)
        if not r["oracle_present"]:
            oracle = chunks.get(r["oracle_id"])
            docs = _insert(docs[1:], oracle.context_doc(), r["id"]) if oracle is not None else None
        questions.append(EvalQuestion(r["id"], r["question"], r["answer"], (r["oracle_doc_id"],), None if docs is None else tuple(docs)))
    return questions


def from_qa(
    items: Sequence[QAItem], store: IndexReader, embedder: Embedder, groups: Sequence[str], k: int, candidates: int = 20
) -> list[EvalQuestion]:
    """Questions of a QA file; where `source` names a document, its chunk that holds the answer
    is the oracle, shown with the top-ranked chunks of other documents as distractors."""
    questions = questions_from_qa(items)
    sources = resolve_sources(questions, store.documents())
    allowed = store.chunks(groups)
    by_doc: dict[str, list[Hit]] = {}
    for chunk in allowed:
        by_doc.setdefault(chunk.doc_id, []).append(chunk)
    results = search_many(store, embedder, [q.question for q in questions], candidates, groups)
    out = []
    for item, q, hits in zip(items, questions, results):
        docs = sources.get(q.source, ()) if q.source else ()
        oracle, _ = find_oracle(q, hits, by_doc, docs) if docs else (None, "")
        context = None
        if oracle is not None:
            distractors = [h.context_doc() for h in hits if h.doc_id != oracle.doc_id][: k - 1]
            context = tuple(_insert(distractors, oracle.context_doc(), q.id))
        out.append(EvalQuestion(q.id, q.question, q.answer, docs, context, item.answers))
    return out


def _insert(docs: Sequence[ContextDoc], oracle: ContextDoc, seed: str) -> list[ContextDoc]:
    """`docs` with the oracle at a position drawn from `seed` (the same on every run)."""
    out = list(docs)
    out.insert(random.Random(f"oracle:{seed}").randint(0, len(out)), oracle)
    return out
