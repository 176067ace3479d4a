"""Evaluation on held-out questions: closed-book vs RAG vs RAFT, through the serving path.

Every setting asks vLLM (base model, or a registry version served as a LoRA adapter) with
messages from the shared prompt module, so the numbers describe what production serves:

    closed_book  base model, no documents
    rag          base model, top-k retrieved chunks
    raft_rag     tuned model, top-k retrieved chunks (the product)
    oracle       tuned model, the oracle chunk among distractors (upper bound; oracle known)
    dsf          a model tuned without documents, asked without documents (when given)

`rag` and `raft_rag` are repeated for every k of a sweep. Retrieval is scored too (recall@k
of the source document, MRR), since an answer can only be as good as its context.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.embedding import Embedder
from retrieval.qa import QAItem
from retrieval.search import search_many
from retrieval.store import ChunkStore, Hit
from serving.generation import Completion, Sampling, complete, model_client
from serving.grounding import Grounding, request_fields
from training.dataset import find_oracle, resolve_sources
from training.dataset import questions_from_qa as qa_questions
from training.dataset_folder import check_format, read_examples
from training.metrics import AnswerScore, score_output, summarize
from training.prompt import ContextDoc, build_messages, context_doc, example_docs

SETTINGS = ("closed_book", "rag", "raft_rag", "oracle", "dsf")
TUNED_SETTINGS = ("raft_rag", "oracle")  # need a tuned model
BASE = "base"  # the served name of the base model


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


@dataclass(frozen=True)
class Models:
    """Served model names: the base model, the tuned version, an optional DSF version."""

    tuned: str | None
    dsf: str | None = None
    base: str = BASE


@dataclass(frozen=True)
class Job:
    setting: str
    k: int | None
    question: EvalQuestion
    model: str
    docs: tuple[ContextDoc, ...]


def questions_from_dataset(dataset_dir: Path, store: ChunkStore) -> list[EvalQuestion]:
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
            docs = _insert(docs[1:], context_doc(oracle), r["id"]) if oracle is not None else None
        questions.append(EvalQuestion(r["id"], r["question"], r["answer"], (r["oracle_doc_id"],), None if docs is None else tuple(docs)))
    return questions


def questions_from_qa(
    items: Sequence[QAItem], store: ChunkStore, embedder: Embedder, groups: Sequence[str], k: int, candidates: int = 20
) -> list[EvalQuestion]:
    """Questions of a QA file; where `source` names a document, its chunk that holds the answer
    is the oracle, shown with the top-ranked chunks of other documents as distractors."""
    questions = qa_questions(items)
    sources = resolve_sources(questions, store.index_state(store.current() or ""))
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
            distractors = [context_doc(h) for h in hits if h.doc_id != oracle.doc_id][: k - 1]
            context = tuple(_insert(distractors, context_doc(oracle), q.id))
        out.append(EvalQuestion(q.id, q.question, q.answer, docs, context, item.answers))
    return out


def plan_jobs(
    questions: Sequence[EvalQuestion], hits: Sequence[Sequence[Hit]], settings: Sequence[str], models: Models, ks: Sequence[int]
) -> list[Job]:
    """The requests of an evaluation: each setting (and k, for rag and raft_rag) for each question."""
    jobs = []
    for q, found in zip(questions, hits):
        for setting in settings:
            if setting == "closed_book":
                jobs.append(Job(setting, None, q, models.base, ()))
            elif setting == "dsf":
                jobs.append(Job(setting, None, q, models.dsf or "", ()))
            elif setting == "oracle":
                if q.oracle_context is not None:
                    jobs.append(Job(setting, len(q.oracle_context), q, models.tuned or "", q.oracle_context))
            else:
                model = models.base if setting == "rag" else models.tuned or ""
                jobs.extend(Job(setting, k, q, model, tuple(context_doc(h) for h in found[:k])) for k in ks)
    return jobs


def run_jobs(
    jobs: Sequence[Job], base_url: str, sampling: Sampling, concurrency: int, grounding: Grounding = "constrained",
    on_done: Callable[[], None] = lambda: None,
) -> list[dict[str, Any]]:
    """Ask the server every job (`concurrency` at a time) with `grounding`, as the gateway asks;
    one scored row per job, in job order."""

    def ask(job: Job) -> dict[str, Any]:
        messages = build_messages(job.question.question, job.docs)
        done = complete(client, job.model, messages, sampling, request_fields(job.docs, grounding) or None)
        on_done()
        return _row(job, done, score_output(done.text, job.question.references, job.docs))

    with model_client(base_url) as client, ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(ask, jobs))


def summarize_rows(rows: Sequence[dict[str, Any]], k: int) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Metrics per setting (rag and raft_rag at `k`), and per k of the sweep for rag and raft_rag.

    Only rag and raft_rag are grouped by k: an oracle row's k is the size of its own context,
    which differs between questions, and every setting's row covers all of its questions.
    """
    groups: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    for row in rows:
        swept = row["setting"] in ("rag", "raft_rag")
        groups.setdefault((row["setting"], row["k"] if swept else None), []).append(row)
    settings: dict[str, Any] = {}
    sweep: dict[str, dict[str, Any]] = {}
    for (setting, row_k), group in groups.items():
        summary = {**_summary(group), "k": row_k}
        if setting in ("rag", "raft_rag"):
            sweep.setdefault(setting, {})[str(row_k)] = summary
            if row_k == k:
                settings[setting] = summary
        else:
            settings[setting] = summary
    order = {name: n for n, name in enumerate(SETTINGS)}
    settings = dict(sorted(settings.items(), key=lambda item: order[item[0]]))
    sweep = {name: dict(sorted(by_k.items(), key=lambda item: int(item[0]))) for name, by_k in sorted(sweep.items(), key=lambda item: order[item[0]])}
    return settings, sweep


def retrieval_scores(questions: Sequence[EvalQuestion], hits: Sequence[Sequence[Hit]], ks: Sequence[int]) -> dict[str, Any]:
    """Recall@k of the source document for each k, and MRR over the deepest k (judged questions only)."""
    judged = [(q, found) for q, found in zip(questions, hits) if q.source_docs]
    if not judged:
        return {"n": 0}
    ranks = [next((n for n, h in enumerate(found, start=1) if h.doc_id in q.source_docs), None) for q, found in judged]
    return {
        "n": len(judged),
        "recall_by_k": {str(k): round(sum(r is not None and r <= k for r in ranks) / len(ranks), 4) for k in sorted(ks)},
        "mrr": round(sum(1 / r for r in ranks if r is not None) / len(ranks), 4),
    }


def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    scores = [
        AnswerScore(r["prediction"], r["parsed"], r["em"], r["f1"], r["contained"], r["quotes"], r["quotes_verbatim"],
                    r["answer_in_quote"], r["abstained"], r["answer_in_context"])
        for r in rows
    ]
    n = len(rows)
    return {
        **summarize(scores),
        "latency_s": round(sum(r["latency_s"] for r in rows) / n, 3),
        "output_tokens": round(sum(r["completion_tokens"] for r in rows) / n, 1),
        "truncated_outputs": sum(r["finish_reason"] == "length" for r in rows),
    }


def _row(job: Job, done: Completion, score: AnswerScore) -> dict[str, Any]:
    return {
        "setting": job.setting, "k": job.k, "model": job.model, "id": job.question.id,
        "question": job.question.question, "reference": job.question.answer, "output": done.text,
        "prediction": score.prediction, "parsed": score.parsed, "em": score.em, "f1": round(score.f1, 4),
        "contained": score.contained, "quotes": score.quotes, "quotes_verbatim": score.quotes_verbatim,
        "answer_in_quote": score.answer_in_quote, "abstained": score.abstained, "answer_in_context": score.answer_in_context,
        "references": list(job.question.references),
        "context_sources": [d.source for d in job.docs],
        "latency_s": round(done.latency_s, 3), "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens, "finish_reason": done.finish_reason,
    }


def _insert(docs: Sequence[ContextDoc], oracle: ContextDoc, seed: str) -> list[ContextDoc]:
    """`docs` with the oracle at a position drawn from `seed` (the same on every run)."""
    out = list(docs)
    out.insert(random.Random(f"oracle:{seed}").randint(0, len(out)), oracle)
    return out
