"""Building a RAFT dataset from questions, the chunk index and (optionally) a teacher LLM.

The steps, each counted in the dataset card:

1. questions, from a QA file and/or written by a teacher from the chunks;
2. each question's oracle: the chunk of its source document that supports the answer (with
   no source, the best-ranked retrieved chunk that does); a question is dropped when no
   chunk supports it or its document lies outside the training audience (restricted text
   never enters the weights);
3. duplicate and near-duplicate questions dropped;
4. a train/eval split by oracle document, so no eval document is seen in training;
5. per example, the context: the oracle kept with probability p, plus distractors retrieved
   with the question (hard negatives: never the oracle's document, never a chunk holding the
   answer, in train never an eval document), optionally some random chunks, shuffled;
6. the answer: chain-of-thought with quotes verified verbatim in the oracle (extractive, or
   from the teacher and repaired), or the direct answer alone;
7. the evidence profile: how well the best sentence of each training context that holds the
   oracle matches its question (`retrieval.evidence`), what the served version's evidence
   floor is calibrated on.

All randomness comes from one generator per example seeded with (seed, example id), so the
same inputs give the same files byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from contracts.prompt import PROMPT_FORMAT, AnswerStyle
from contracts.settings import DatasetConfig
from contracts.textmatch import find_span, jaccard, normalize_answer
from retrieval.embedding import Embedder
from retrieval.index import Hit, IndexReader
from retrieval.qa import QAItem
from training.dataset_folder import DATASET_FORMAT
from training.evidence_profile import dataset_profile
from training.quotes import abstain_answer, check_quotes, evidence_span, extractive_answer
from training.teacher import Teacher


class DatasetError(ValueError):
    """Questions or settings that cannot make a dataset; the message says which and why."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: str
    source: str | None = None  # document path or id, as the QA file names it
    origin: str = "qa"  # qa | teacher
    line: int = 0  # line in the QA file, for error messages
    chunk_id: str | None = None  # the chunk a teacher wrote the question from


@dataclass
class Dataset:
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    card: dict[str, Any]


@dataclass
class _Example:
    question: Question
    oracle: Hit
    hits: list[Hit]
    split: str = "train"
    present: bool = True
    context: list[Hit] = field(default_factory=list)
    answer: str | None = None  # the assistant turn


def questions_from_qa(items: Iterable[QAItem]) -> list[Question]:
    """Questions of a QA file (retrieval/qa.py reads and checks it)."""
    return [Question(i.id, i.question, i.answer, i.source, "qa", i.line) for i in items]


def teacher_questions(
    store: IndexReader, teacher: Teacher, audience: Sequence[str], max_chunks: int | None = None, seed: int = 0, progress: bool = False
) -> list[Question]:
    """Questions a teacher writes from the chunks the audience may see (a seeded sample of them)."""
    chunks = [c for c in store.chunks(audience) if len(c.text) >= 200]  # shorter ones rarely hold a fact
    if max_chunks is not None and len(chunks) > max_chunks:
        chunks = sorted(random.Random(seed).sample(chunks, max_chunks), key=lambda c: (c.doc_id, c.start))
    pairs = teacher.questions([(c.display_title, c.text) for c in chunks], progress)
    return [
        Question(f"t-{c.chunk_id[:8]}-{n}", q, a, c.doc_id, "teacher", chunk_id=c.chunk_id)
        for c, found in zip(chunks, pairs)
        for n, (q, a) in enumerate(found, start=1)
    ]


def build_dataset(
    store: IndexReader,
    embedder: Embedder,
    questions: list[Question],
    settings: DatasetConfig,
    teacher: Teacher | None = None,
    sources: dict[str, Any] | None = None,
    progress: bool = False,
) -> Dataset:
    """The RAFT dataset for `questions` over the index; `sources` (input hashes) go into the card."""
    if not questions:
        raise DatasetError("no questions: give a QA file or configure a teacher")
    indexed = store.documents()
    allowed = store.chunks(settings.audience)
    by_doc: dict[str, list[Hit]] = defaultdict(list)
    for chunk in allowed:
        by_doc[chunk.doc_id].append(chunk)
    source_docs = resolve_sources(questions, indexed)
    dropped: Counter[str] = Counter()

    vectors = embedder.encode([q.question for q in questions], progress=progress)
    examples = []
    for q, vector in zip(questions, vectors):
        hits = store.search(vector, q.question, settings.candidates, settings.audience)
        oracle, reason = find_oracle(q, hits, by_doc, source_docs.get(q.source, ()))
        if oracle is None:
            dropped[reason] += 1
        else:
            examples.append(_Example(q, oracle, hits))
    examples = _deduplicate(examples, settings.near_duplicate, dropped)
    if not examples:
        raise DatasetError(f"every question was dropped ({_describe(dropped)}): check that the QA file matches the indexed corpus")

    eval_docs = _split_by_document(examples, settings.eval_share, settings.seed)
    stats: Counter[str] = Counter()
    for ex in examples:
        ex.split = "eval" if ex.oracle.doc_id in eval_docs else "train"
        _assemble_context(ex, allowed, eval_docs, settings, stats)
    _write_answers(examples, settings, teacher, stats, dropped, progress)

    kept = [ex for ex in examples if ex.answer is not None]
    records = {split: [_record(ex, settings.style) for ex in kept if ex.split == split] for split in ("train", "eval")}
    card = _card(questions, records, settings, dropped, stats, indexed, teacher, sources or {})
    # How well a training context's best sentence matches its question on this corpus, where the
    # context holds the answer: what serving's evidence floor is calibrated on.
    card["evidence"] = dataset_profile(records["train"], embedder.encode, embedder.name)
    return Dataset(records["train"], records["eval"], card)


# --- oracles ---------------------------------------------------------------------------------


def resolve_sources(questions: list[Question], indexed: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Document ids for each `source` named by a question (a document id or a file path).

    `indexed` is what the index holds (IndexReader.documents); an unknown source is an error.
    """
    by_source: dict[str, list[str]] = defaultdict(list)
    for doc in indexed.values():
        by_source[doc.source].append(doc.doc_id)
    resolved, unknown = {}, []
    for q in questions:
        if q.source is None or q.source in resolved:
            continue
        docs = (q.source,) if q.source in indexed else tuple(sorted(by_source.get(q.source, ())))
        if docs:
            resolved[q.source] = docs
        else:
            unknown.append(f"line {q.line}: field 'source' names {q.source!r}, which is not in the index")
    if unknown:
        shown = "; ".join(unknown[:20]) + (f"; and {len(unknown) - 20} more" if len(unknown) > 20 else "")
        raise DatasetError(f"{len(unknown)} question(s) name an unknown source document: {shown} (run `raft index`, or fix the paths)")
    return resolved


def find_oracle(q: Question, hits: list[Hit], by_doc: dict[str, list[Hit]], source_docs: tuple[str, ...]) -> tuple[Hit | None, str]:
    """The chunk that supports the answer, or (None, why not).

    `by_doc` holds the chunks the audience may see, per document; `source_docs` the
    question's source documents (from resolve_sources).
    """
    if q.chunk_id is not None:
        candidates = [c for chunks in by_doc.values() for c in chunks if c.chunk_id == q.chunk_id]
    elif q.source is not None:
        if not any(d in by_doc for d in source_docs):
            return None, "restricted"
        rank = {h.chunk_id: n for n, h in enumerate(hits)}
        chunks = [c for d in source_docs for c in by_doc.get(d, [])]
        # Among the document's chunks that hold the answer, prefer the one retrieval ranks best.
        candidates = sorted(chunks, key=lambda c: rank.get(c.chunk_id, len(rank)))
    else:
        candidates = hits
    for chunk in candidates:
        if evidence_span(q.answer, chunk.text) is not None:
            return chunk, ""
    return None, "unsupported" if q.source is not None or q.chunk_id is not None else "not_found"


def _deduplicate(examples: list[_Example], threshold: float, dropped: Counter[str]) -> list[_Example]:
    """First of each group of equal questions, and of same-answer, same-document look-alikes."""
    seen: set[str] = set()
    by_doc: dict[str, list[_Example]] = defaultdict(list)
    kept = []
    for ex in examples:
        key = normalize_answer(ex.question.question)
        if key in seen:
            dropped["duplicate"] += 1
            continue
        answer = normalize_answer(ex.question.answer)
        if any(
            normalize_answer(other.question.answer) == answer and jaccard(other.question.question, ex.question.question) >= threshold
            for other in by_doc[ex.oracle.doc_id]
        ):
            dropped["near_duplicate"] += 1
            continue
        seen.add(key)
        by_doc[ex.oracle.doc_id].append(ex)
        kept.append(ex)
    return kept


def _split_by_document(examples: list[_Example], eval_share: float, seed: int) -> set[str]:
    """Oracle documents whose questions form the eval split (about eval_share of all questions)."""
    per_doc = Counter(ex.oracle.doc_id for ex in examples)
    docs = sorted(per_doc)
    random.Random(seed).shuffle(docs)
    eval_docs: set[str] = set()
    n = 0
    for doc in docs[:-1]:  # at least one document stays for training
        if n >= eval_share * len(examples):
            break
        eval_docs.add(doc)
        n += per_doc[doc]
    return eval_docs


# --- contexts --------------------------------------------------------------------------------


def _assemble_context(ex: _Example, allowed: list[Hit], eval_docs: set[str], s: DatasetConfig, stats: Counter[str]) -> None:
    rng = random.Random(f"{s.seed}:{ex.question.id}")
    ex.present = rng.random() < s.p
    excluded = {ex.oracle.doc_id} | (eval_docs if ex.split == "train" else set())
    slots = s.k + (0 if ex.present else 1)  # same number of documents either way
    n_random = round(s.k * s.random_share)

    def usable(chunk: Hit) -> bool:
        # A chunk that holds the answer is another oracle, not a distractor.
        return chunk.doc_id not in excluded and find_span(ex.question.answer, chunk.text) is None

    ranked = [h for h in ex.hits if h.doc_id not in excluded]
    negatives = [h for h in ranked if usable(h)]
    stats["skipped_positive"] += len(ranked) - len(negatives)
    hard = negatives[: slots - n_random]
    taken = {h.chunk_id for h in hard}
    extra = _sample(rng, allowed, slots - len(hard), lambda c: c.chunk_id not in taken and usable(c))
    stats["hard"] += len(hard)
    stats["random"] += len(extra)
    stats["short_hard"] += len(hard) < slots - n_random  # retrieval ran out: random chunks fill in
    stats["short_context"] += len(hard) + len(extra) < slots
    ex.context = hard + extra + ([ex.oracle] if ex.present else [])
    rng.shuffle(ex.context)


def _sample(rng: random.Random, chunks: list[Hit], n: int, accept: Callable[[Hit], bool]) -> list[Hit]:
    """n distinct chunks drawn at random among those `accept` allows (fewer when there are not enough)."""
    if n <= 0:
        return []
    order = list(range(len(chunks)))
    rng.shuffle(order)
    picked = []
    for i in order:
        if accept(chunks[i]):
            picked.append(chunks[i])
            if len(picked) == n:
                break
    return picked


# --- answers ---------------------------------------------------------------------------------


def _write_answers(examples: list[_Example], s: DatasetConfig, teacher: Teacher | None, stats: Counter[str], dropped: Counter[str], progress: bool) -> None:
    """Set each example's assistant turn, or leave it None (dropped) when its quotes fail."""
    needs_reasoning = []
    for ex in examples:
        if ex.present or s.no_oracle == "memorize":
            needs_reasoning.append(ex)
        else:
            ex.answer = abstain_answer(s.style)
    if teacher is not None and s.style == "cot":
        items = [(ex.question.question, ex.oracle.display_title, ex.oracle.text, ex.question.answer) for ex in needs_reasoning]
        outputs = teacher.reasoning(items, progress)
    else:
        outputs = [
            extractive_answer(ex.question.answer, ex.oracle.text, _position(ex), ex.oracle.display_title, s.style) for ex in needs_reasoning
        ]
    for ex, output in zip(needs_reasoning, outputs):
        if output is None:
            dropped["unsupported"] += 1
            continue
        checked = check_quotes(output, ex.oracle.text, s.style)
        stats["quotes_verbatim"] += checked.verbatim
        stats["quotes_repaired"] += checked.repaired
        if checked.output is None:
            dropped[f"teacher_{checked.reason}"] += 1
        else:
            ex.answer = checked.output


def _position(ex: _Example) -> int | None:
    return next((n for n, c in enumerate(ex.context, start=1) if c.chunk_id == ex.oracle.chunk_id), None)


# --- output ----------------------------------------------------------------------------------


def _record(ex: _Example, style: AnswerStyle) -> dict[str, Any]:
    distractors = [c for c in ex.context if c.chunk_id != ex.oracle.chunk_id]
    rank = {h.chunk_id: n for n, h in enumerate(ex.hits, start=1)}
    return {
        "id": ex.question.id,
        "question": ex.question.question,
        "answer": ex.question.answer,
        # The example as data; training and evaluation render the prompt from it (contracts/prompt.py).
        "context": [{"chunk_id": c.chunk_id, "doc_id": c.doc_id, **asdict(c.context_doc())} for c in ex.context],
        "oracle_position": _position(ex) if ex.present else None,
        "style": style,
        "target": ex.answer,
        "oracle_id": ex.oracle.chunk_id,
        "oracle_doc_id": ex.oracle.doc_id,
        "oracle_source": ex.oracle.source,
        "oracle_present": ex.present,
        "distractor_ids": [c.chunk_id for c in distractors],
        "distractor_doc_ids": [c.doc_id for c in distractors],
        # Retrieval rank of each distractor for this question (1 = top); None: drawn at random.
        "distractor_ranks": [rank.get(c.chunk_id) for c in distractors],
        "origin": ex.question.origin,
    }


def _card(
    questions: list[Question],
    records: dict[str, list[dict[str, Any]]],
    s: DatasetConfig,
    dropped: Counter[str],
    stats: Counter[str],
    indexed: dict[str, Any],
    teacher: Teacher | None,
    sources: dict[str, Any],
) -> dict[str, Any]:
    origins = Counter(q.origin for q in questions)

    def present_share(rows: list[dict[str, Any]]) -> float | None:
        return round(sum(r["oracle_present"] for r in rows) / len(rows), 4) if rows else None

    index_blob = json.dumps(sorted((d.doc_id, sorted(d.version_hashes)) for d in indexed.values()))
    return {
        "format": DATASET_FORMAT,
        "counts": {
            "questions": len(questions),
            "from_qa": origins["qa"],
            "from_teacher": origins["teacher"],
            "train": len(records["train"]),
            "eval": len(records["eval"]),
            "train_documents": len({r["oracle_doc_id"] for r in records["train"]}),
            "eval_documents": len({r["oracle_doc_id"] for r in records["eval"]}),
            "oracle_present_share": {"train": present_share(records["train"]), "eval": present_share(records["eval"])},
        },
        "settings": s.model_dump(mode="json"),
        "dropped": dict(sorted(dropped.items())),
        "quotes": {"verbatim": stats["quotes_verbatim"], "repaired": stats["quotes_repaired"]},
        "distractors": {k: stats[k] for k in ("hard", "random", "skipped_positive", "short_hard", "short_context")},
        "sources": {
            **sources,
            "index": hashlib.sha256(index_blob.encode()).hexdigest(),
            "prompt_format": PROMPT_FORMAT,
            "teacher": None if teacher is None else {"model": teacher.config.model, "base_url": teacher.config.url},
        },
    }


def _describe(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {why}" for why, n in sorted(counts.items())) or "none"
