"""The chunk index as the stages see it: what a search returns, and the read and write sides
every backend implements.

Training, evaluation, flows and serving read through `IndexReader`; the sync writes through
`IndexWriter`. Two backends implement both: `retrieval/edge_store.py` (Qdrant Edge, embedded,
the default) and `retrieval/store.py` (a Qdrant server, or qdrant-client's local mode); how a
backend keeps its own calls safe between threads is its own business, not its callers'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from contracts.prompt import ContextDoc
from retrieval.sparse import SparseVector


PUBLIC = "public"  # the access label every caller may read


def visible_labels(groups: Iterable[str]) -> list[str]:
    """The access labels a caller in `groups` may read: a chunk is visible when any of its labels
    is among them (public always is)."""
    return sorted({PUBLIC, *groups})


class StoreError(RuntimeError):
    """Qdrant cannot be reached, or holds something this version cannot use."""


@dataclass
class IndexedDoc:
    """What the index holds for one document, read back from its chunks' payloads."""

    doc_id: str
    source: str
    content_hash: str
    access: tuple[str, ...] = ()
    point_ids: list[str] = field(default_factory=list)
    file_hashes: set[str] = field(default_factory=set)
    version_hashes: set[str] = field(default_factory=set)
    index_sigs: set[str] = field(default_factory=set)
    n_chunks: int = -1

    def matches(self, version_hash: str, index_sig: str) -> bool:
        """True when the stored chunks are complete and of exactly this version."""
        return (
            self.version_hashes == {version_hash}
            and self.index_sigs == {index_sig}
            and len(self.point_ids) == self.n_chunks
        )


@dataclass(frozen=True)
class Hit:
    """One search result: a chunk, its score and where it comes from."""

    chunk_id: str
    score: float
    doc_id: str
    source: str
    title: str
    text: str
    headings: list[str]
    start: int
    end: int
    access: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return dict(self.__dict__)

    @property
    def display_title(self) -> str:
        """Document title and section headings, as the model sees them in the context."""
        return " > ".join([self.title] + [h for h in self.headings if h != self.title])

    def context_doc(self) -> ContextDoc:
        """This chunk as a document of the prompt: training, evaluation and serving build contexts alike."""
        return ContextDoc(self.text, self.display_title, self.source)


class IndexReader(Protocol):
    """The read side: searches, chunks and what the live index holds."""

    def search(self, vector: np.ndarray, question: str, k: int, groups: Iterable[str] = ()) -> list[Hit]:
        """Top-k chunks for `question` (embedded as `vector`) that the caller's `groups` may see."""
        ...

    def chunks(self, groups: Iterable[str] = (), doc_ids: Iterable[str] | None = None) -> list[Hit]:
        """Every chunk `groups` may see (optionally of `doc_ids` only), in document order."""
        ...

    def documents(self) -> dict[str, IndexedDoc]:
        """Per document of the live index: its chunk ids and stored hashes (empty before the first sync)."""
        ...

    def count(self) -> int:
        """Number of chunks in the live index."""
        ...

    def close(self) -> None:
        """Release the backend (embedded: unlock its folder)."""
        ...


class IndexWriter(IndexReader, Protocol):
    """The write side, for the sync: versions behind an alias, filled and then swapped in."""

    def current(self) -> str | None:
        """The version searches go to, or None before the first sync."""
        ...

    def versions(self) -> list[str]:
        """Every version of this index, oldest first."""
        ...

    def create_version(self, dim: int) -> str:
        """A new empty version for `dim`-dimensional dense vectors (not live yet)."""
        ...

    def point_alias_to(self, collection: str) -> None:
        """Make the version `collection` the live one, in one step."""
        ...

    def drop(self, collection: str) -> None:
        """Delete a version."""
        ...

    def dim(self, collection: str) -> int:
        """Dense vector size of a version."""
        ...

    def is_hybrid(self, collection: str) -> bool:
        """Whether a version holds BM25 vectors (index format 2 and later)."""
        ...

    def index_state(self, collection: str) -> dict[str, IndexedDoc]:
        """Per document of the version `collection`: its chunk ids and stored hashes."""
        ...

    def upsert(
        self, collection: str, ids: list[str], vectors: np.ndarray, sparse: list[SparseVector], payloads: list[dict[str, Any]],
        batch: int = 256,
    ) -> None:
        """Write chunks with their dense and BM25 vectors."""
        ...

    def delete(self, collection: str, ids: Iterable[str], batch: int = 1024) -> None:
        """Remove chunks by id."""
        ...

    def set_file_hash(self, collection: str, ids: list[str], file_hash: str) -> None:
        """Restamp chunks whose file changed bytes but not content."""
        ...

    def copy_points(self, source: str, target: str, ids: list[str], bm25: Callable[[Hit], SparseVector]) -> None:
        """Copy chunks with their vectors between versions (adding BM25 vectors to format-1 chunks)."""
        ...

    def commit(self, collection: str) -> None:
        """Make the writes to a version durable and fast to search (called once a sync's writes are done)."""
        ...
