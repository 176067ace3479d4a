"""Keeping the index in step with a live corpus, re-embedding only what changed.

One sync:
1. Scan: hash every corpus file. A file whose hash, and the index settings, equal what the
   index stored costs nothing more: it is not even parsed.
2. Parse the other files; compare each document's version hash with the stored one.
3. Check, before anything is written: unreadable files, duplicates, a corpus that shrank.
   Bad files are skipped and reported, and what the index holds of their last good version
   stays. Too many bad files, or too many documents gone, stop the sync unless forced.
4. Write: chunk and embed new and changed documents, upsert their chunks, then delete the
   chunks they replace and those of deleted documents.

A rebuild writes everything into a new collection version and moves the alias to it only
when it is complete.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from contracts.settings import ChecksConfig, ChunkingConfig, CorpusConfig, EmbeddingConfig
from retrieval.chunking import Chunk, chunk_document, embedding_text
from retrieval.corpus import CorpusError, CorpusFile, Skipped, scan_corpus
from retrieval.documents import Document, LoadError, NotADocument, parse_file, parse_jsonl, read_sidecar, sha256
from retrieval.embedding import Embedder
from retrieval.index import Hit, IndexedDoc, IndexWriter, StoreError
from retrieval.sparse import SparseVector, average_terms, document_vector

# Bump when a loader, the chunk layout or the vectors change in a way that changes stored chunks.
# 2: every chunk has a BM25 vector beside the dense one (retrieval/sparse.py).
# 3: the HTML loader drops ARIA landmark chrome and heading permalinks, and reads role="main" (retrieval/html_text.py).
# 4: the HTML loader keeps a table row on one line when its cells hold paragraphs, lists or <br>,
#    drops icon-font permalinks, footnotes' back-links and code blocks' line-number gutters, and
#    gives content tabs' labels their own lines; an id marks chrome only as a whole word, never on
#    a heading or a section ("shared-cache" was dropped as a share button); headings read as written.
# 5: a list item whose text is in a <p> (Markdown's loose lists, Sphinx) keeps its "- ", as one without does;
#    javadoc's summary grids (<div> cells laid out by CSS) read as tables, a row per line; a table row
#    with text in one cell only lays the page out (pydoc's indents) and keeps its lines; footers by
#    class are chrome; Doxygen's page heading is one, its title area chrome, its signature tables one line;
#    a heading is never chrome by class (Docusaurus' "anchorWithStickyNavbar"); a <br> in a <pre> ends a line.
# 6: rustdoc's API pages: a redirect page is no document, nor a site's 404.html; "Source" and "Read more" links and the
#    "Expand description" toggle are chrome; a block inside a heading parts words ("for T where T: …"),
#    one inside a <pre> is a line of its own ("#[non_exhaustive]" above "pub enum …"); a <section> reads its
#    heading first (rustdoc's method versions, written before it); rustdoc's versions read as their tooltips;
#    <details> and <summary> are blocks (VitePress).
# 7: content tabs: each panel opens with its tab's label (the ARIA pattern: Bootstrap, so Hugo's Doks, and Docusaurus;
#    MkDocs Material); a footnote's bare number is dropped ("daily1."); AsciiDoc's sidebar blocks are text; an <aside>
#    in the page's main content is text (Sphinx's footnotes and topics, Starlight's notes); text for screen readers
#    only, links to edit the page or to the previous/next page, Asciidoctor's footer (id "footer") and TypeDoc's member
#    index, pdoc's "View Source" listings and mdBook's hidden lines of Rust examples are chrome; a badge in a heading
#    is a word of its own ("Optional maxWorkers").
INDEX_FORMAT = 7


@dataclass(frozen=True)
class IndexSettings:
    """The config sections that decide chunks and vectors, besides a document's own content."""

    embedding: EmbeddingConfig = EmbeddingConfig()
    chunking: ChunkingConfig = ChunkingConfig()
    corpus: CorpusConfig = CorpusConfig()
    # checks.unknown_metadata is not part of the signature: a file it matters for is skipped or
    # stamped as unsettled (see _unsettled), so it is parsed again on every sync anyway.
    checks: ChecksConfig = ChecksConfig()

    @property
    def signature(self) -> str:
        """Stored with every chunk: a different signature means the chunk must be redone."""
        c = self.chunking
        parts = [INDEX_FORMAT, self.embedding.model, c.size, c.overlap, c.min_size, sorted(self.corpus.default_access)]
        return sha256(json.dumps(parts).encode())[:16]

    def bm25(self, text: str) -> SparseVector:
        """The BM25 vector of a chunk's embedded text."""
        return document_vector(text, average_terms(self.chunking.size))

    def stored_bm25(self, chunk: Hit) -> SparseVector:
        """The BM25 vector of a chunk read back from the index (what a format-1 chunk lacks)."""
        return self.bm25(embedding_text(chunk.title, chunk.headings, chunk.text))


@dataclass(frozen=True)
class IndexWarning:
    """A file indexed although part of its metadata could not be read with certainty, and how it was read."""

    source: str
    message: str


@dataclass
class SyncReport:
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[IndexWarning] = field(default_factory=list)
    chunks_written: int = 0
    chunks_deleted: int = 0
    embeddings_computed: int = 0
    collection: str | None = None
    rebuilt: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The `raft index --json` object."""
        out = dataclasses.asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out


class SyncStopped(RuntimeError):
    """The checks found the corpus unsafe to sync; nothing was written. `report` says what was found."""

    def __init__(self, message: str, report: SyncReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class _Plan:
    """What a sync will do, worked out before anything is written."""

    to_index: list[Document] = field(default_factory=list)
    present: set[str] = field(default_factory=set)  # doc ids found in the corpus and kept
    kept: set[str] = field(default_factory=set)  # indexed docs of files that failed to load now
    file_hash: dict[str, str] = field(default_factory=dict)  # source -> hash of the file now
    refresh: dict[str, list[str]] = field(default_factory=dict)  # file hash -> unchanged chunks to restamp
    bad_files: int = 0


def sync_corpus(
    store: IndexWriter,
    embedder: Embedder,
    corpus: Path,
    settings: IndexSettings,
    *,
    max_deleted_share: float = 0.3,
    max_skipped_share: float = 0.25,
    force: bool = False,
    rebuild: bool = False,
    progress: bool = False,
) -> SyncReport:
    """Bring the index in line with the corpus folder (see the module docstring).

    Raises SyncStopped when a check fails and `force` is off, CorpusError when the folder is
    missing or holds no documents at all, StoreError when the index cannot take the vectors.
    """
    started = time.perf_counter()
    report = SyncReport()
    files, report.skipped = scan_corpus(corpus, list(settings.corpus.include))
    unreadable = len(report.skipped)
    current = store.current()
    if current is not None and not store.is_hybrid(current):
        rebuild = True  # written by the first index format (no BM25 vectors): rebuilt in full, once
    report.rebuilt = rebuild
    old_state = store.index_state(current) if current else {}
    state = {} if rebuild else old_state
    if not files and not old_state:
        raise CorpusError(f"no documents in {corpus} (looked for {', '.join(settings.corpus.include)})")

    unreadable_sources = {s.source for s in report.skipped}
    plan = _plan(files, state, old_state, settings, report, progress)
    # A file that cannot be read now (permissions, a flaky mount) is no deleted file: its last good version stays.
    plan.kept.update(doc_id for doc_id, doc in old_state.items() if doc.source in unreadable_sources)
    report.unchanged = len(plan.present) - len(plan.to_index)
    report.added = sum(1 for d in plan.to_index if d.doc_id not in state)
    report.updated = len(plan.to_index) - report.added
    gone = [doc_id for doc_id in old_state if doc_id not in plan.present and doc_id not in plan.kept]
    report.deleted = len(gone)
    problems = _check(plan.bad_files + unreadable, len(files) + unreadable, len(gone), len(old_state), max_deleted_share, max_skipped_share)
    if problems and not force:
        raise SyncStopped("sync stopped, nothing written: " + "; ".join(problems), report)

    target = current
    if rebuild or current is None:
        for leftover in store.versions():
            if leftover != current:  # a rebuild that died half-way
                store.drop(leftover)
        target = store.create_version(embedder.dim)
    report.collection = target

    chunks = _write_new(store, embedder, target, plan.to_index, plan.file_hash, settings, progress)
    report.chunks_written = report.embeddings_computed = len(chunks)
    if rebuild and current:
        store.copy_points(current, target, [pid for doc_id in plan.kept for pid in old_state[doc_id].point_ids], settings.stored_bm25)
    if not rebuild:
        for file_hash, ids in plan.refresh.items():
            store.set_file_hash(target, ids, file_hash)
        new_ids = {c.point_id for c in chunks}
        stale = [pid for d in plan.to_index if d.doc_id in state for pid in state[d.doc_id].point_ids if pid not in new_ids]
        stale += [pid for doc_id in gone for pid in state[doc_id].point_ids]
        store.delete(target, stale)
        report.chunks_deleted = len(stale)
    store.commit(target)
    if target != current:
        store.point_alias_to(target)
        if current:
            store.drop(current)
    report.seconds = time.perf_counter() - started
    return report


def _plan(
    files: list[CorpusFile],
    state: dict[str, IndexedDoc],
    old_state: dict[str, IndexedDoc],
    settings: IndexSettings,
    report: SyncReport,
    progress: bool,
) -> _Plan:
    plan = _Plan()
    signature = settings.signature
    by_source: dict[str, list[IndexedDoc]] = defaultdict(list)
    for doc in state.values():
        by_source[doc.source].append(doc)
    unchanged: dict[str, str] = {}  # doc id -> content hash of documents whose file is unchanged
    parsed: list[Document] = []
    for file in tqdm(files, desc="scanning", unit="file", disable=not progress, leave=False):
        plan.file_hash[file.source] = file.file_hash
        indexed = by_source.get(file.source, [])
        if indexed and not _is_jsonl(file.source) and all(_unchanged_file(d, file, signature) for d in indexed):
            unchanged.update((d.doc_id, d.content_hash) for d in indexed)
            continue
        try:
            docs, bad_lines = load_file(file, settings)
        except NotADocument as e:
            # Nothing to index, and nothing wrong: what an earlier version of the file indexed goes.
            docs, bad_lines = [], []
            report.skipped.append(Skipped(file.source, str(e)))
        except LoadError as e:
            docs, bad_lines = [], [Skipped(file.source, str(e) + _still_served(file.source, old_state))]
            plan.bad_files += 1
        report.skipped.extend(bad_lines)
        report.warnings.extend(IndexWarning(file.source, w) for d in docs for w in d.warnings)
        if any(d.warnings for d in docs):
            plan.file_hash[file.source] = _unsettled(file.file_hash)
        if bad_lines:
            # Keep what the index holds from this file's last good version.
            loaded = {d.doc_id for d in docs}
            plan.kept.update(d.doc_id for d in old_state.values() if d.source == file.source and d.doc_id not in loaded)
        parsed.extend(docs)

    # Duplicates: an already indexed document wins over a new copy, then the first by path.
    candidates: list[tuple[str, str, Document | None]] = [(i, h, None) for i, h in unchanged.items()]
    candidates += [(d.doc_id, d.content_hash, d) for d in parsed]
    candidates.sort(key=lambda c: (c[0] not in state, c[2].source if c[2] else state[c[0]].source, c[0]))
    first_with_hash: dict[str, str] = {}
    for doc_id, content_hash, doc in candidates:
        source = doc.source if doc else state[doc_id].source
        label = source if doc_id == source else f"{source} (id {doc_id})"
        if doc_id in plan.present:
            report.skipped.append(Skipped(label, f"duplicate document id {doc_id!r}: ids must be unique in a corpus"))
        elif content_hash in first_with_hash:
            report.skipped.append(Skipped(label, f"exact duplicate of {first_with_hash[content_hash]}: remove one copy"))
        else:
            first_with_hash[content_hash] = doc_id
            plan.present.add(doc_id)
            if doc is None:
                continue
            indexed_doc = state.get(doc_id)
            if indexed_doc is None or not indexed_doc.matches(doc.version_hash, signature):
                plan.to_index.append(doc)
            elif indexed_doc.file_hashes != {plan.file_hash[source]}:
                # Same content, new bytes (e.g. whitespace in HTML): restamp so the next sync skips parsing.
                plan.refresh.setdefault(plan.file_hash[source], []).extend(indexed_doc.point_ids)
    plan.to_index.sort(key=lambda d: (d.source, d.doc_id))
    return plan


def _is_jsonl(source: str) -> bool:
    # A .jsonl file holds many documents: always parsed (cheap), compared record by record.
    return source.lower().endswith(".jsonl")


def _unsettled(file_hash: str) -> str:
    # A hash the file's bytes never have: the next sync parses the file again, so its warnings
    # repeat until it is fixed, and a switch to checks.unknown_metadata=error reaches it.
    return sha256(f"unsettled:{file_hash}".encode())


def _unchanged_file(doc: IndexedDoc, file: CorpusFile, signature: str) -> bool:
    return doc.file_hashes == {file.file_hash} and len(doc.version_hashes) == 1 and doc.index_sigs == {signature} and len(doc.point_ids) == doc.n_chunks


def _still_served(source: str, old_state: dict[str, IndexedDoc]) -> str:
    """What a skipped file's last good version, which stays in the index, is readable by: a user
    who restricted a file with a typo must learn that its old labels still hold."""
    kept = [d for d in old_state.values() if d.source == source]
    if not kept:
        return ""
    groups = sorted({g for d in kept for g in d.access})
    return f" (its last indexed version stays searchable, readable by [{', '.join(groups)}], until this is fixed)"


def load_file(file: CorpusFile, settings: IndexSettings) -> tuple[list[Document], list[Skipped]]:
    """The documents of one corpus file and, for .jsonl, its bad lines. LoadError when nothing can be used."""
    try:
        raw = file.path.read_bytes()
    except OSError as e:
        raise LoadError(f"unreadable ({e.strerror or e}): check the file's permissions") from None
    bad_lines: list[Skipped] = []
    try:
        if _is_jsonl(file.source):
            docs, problems = parse_jsonl(raw, file.source, tuple(settings.corpus.default_access), settings.checks.unknown_metadata)
            bad_lines = [Skipped(f"{file.source}:{lineno}", message) for lineno, message in problems]
            if problems and not docs:
                raise LoadError(f"no usable line: {problems[0][1]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        else:
            docs = parse_file(raw, file.source, read_sidecar(file.path), tuple(settings.corpus.default_access), settings.checks.unknown_metadata)
    except RecursionError:
        # Elements, YAML or JSON nested some thousand levels deep: one such file must not stop the whole sync.
        raise LoadError("nested too deeply to read (elements or metadata some thousand levels deep): flatten it, or leave it out of corpus.include") from None
    return [dataclasses.replace(d, modified=file.modified) for d in docs], bad_lines


def _check(bad: int, total: int, gone: int, indexed: int, max_deleted_share: float, max_skipped_share: float) -> list[str]:
    problems = []
    if total and bad / total > max_skipped_share:
        problems.append(f"{bad} of {total} corpus files cannot be read (limit {max_skipped_share:.0%}); fix them or pass --force")
    if indexed and gone / indexed > max_deleted_share:
        problems.append(
            f"the corpus shrank: {gone} of {indexed} indexed documents are gone (limit {max_deleted_share:.0%}); "
            "if that is intended pass --force"
        )
    return problems


def _write_new(
    store: IndexWriter,
    embedder: Embedder,
    collection: str,
    docs: list[Document],
    file_hash: dict[str, str],
    settings: IndexSettings,
    progress: bool,
) -> list[Chunk]:
    if not docs:
        return []
    pairs: list[tuple[Document, Chunk]] = []
    for doc in tqdm(docs, desc="chunking", unit="doc", disable=not progress, leave=False):
        chunks = chunk_document(doc, embedder.tokenizer, settings.chunking)
        pairs.extend((doc, chunk) for chunk in chunks)
    if store.dim(collection) != embedder.dim:
        raise StoreError(
            f"collection {collection} holds {store.dim(collection)}-dim vectors but {embedder.name} makes {embedder.dim}: "
            "run `raft index --rebuild`"
        )
    texts = [chunk.embedding_text(doc.title) for doc, chunk in pairs]
    vectors = embedder.encode(texts, progress=progress)
    sparse = [settings.bm25(text) for text in texts]
    counts = defaultdict(int)
    for doc, _ in pairs:
        counts[doc.doc_id] += 1
    payloads = [_payload(doc, chunk, counts[doc.doc_id], file_hash[doc.source], settings.signature) for doc, chunk in pairs]
    store.upsert(collection, [chunk.point_id for _, chunk in pairs], vectors, sparse, payloads)
    return [chunk for _, chunk in pairs]


def _payload(doc: Document, chunk: Chunk, n_chunks: int, file_hash: str, signature: str) -> dict[str, Any]:
    return {
        "text": chunk.text,
        "doc_id": doc.doc_id,
        "source": doc.source,
        "title": doc.title,
        "headings": list(chunk.headings),
        "start": chunk.start,
        "end": chunk.end,
        "chunk_index": chunk.index,
        "n_chunks": n_chunks,
        "access": list(doc.access),
        "modified": doc.modified,
        "content_hash": doc.content_hash,
        "version_hash": doc.version_hash,
        "file_hash": file_hash,
        "index_sig": signature,
        "meta": doc.metadata,
    }
