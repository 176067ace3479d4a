"""The chunk index in Qdrant through qdrant-client: versioned collections behind one alias, on a
Qdrant server or in qdrant-client's embedded local mode (`qdrant.engine: local`; the default
embedded engine is Qdrant Edge, retrieval/edge_store.py).

Searches always go through the alias (`raft_chunks`); the data lives in collections named
`raft_chunks_v1`, `raft_chunks_v2`, … A rebuild fills the next version and then moves the
alias in one operation, so a search never sees a half-built index. Qdrant runs embedded
(`path`, one process at a time) or as a server (`url`).

Every chunk has two vectors: `dense` (the embedding model's) and `bm25` (sparse, exact terms,
retrieval/sparse.py). Hybrid search fuses the two rankings by reciprocal rank; dense search
uses the first alone. Collections of the first index format hold one unnamed dense vector:
they are searched dense, and the next sync rebuilds them (retrieval/sync.py).

Local mode allows one client per folder, so within a process every store on the same folder
shares one client, and calls on it are serialized: that engine is not safe for concurrent threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from contracts.settings import QdrantConfig, SearchMode
from retrieval import backend
from retrieval.backend import DENSE, INDEXED_FIELDS, SPARSE, STATE_FIELDS, PerFolder, fusion_depth
from retrieval.edge_store import EdgeStore
from retrieval.index import Hit, IndexedDoc, IndexWriter, StoreError, visible_labels
from retrieval.sparse import SparseVector, query_vector


def open_store(config: QdrantConfig, path: Path, mode: SearchMode = "hybrid") -> IndexWriter:
    """The index `config.collection` on the Qdrant server at `config.url` when set, else embedded at `path`
    by `config.engine` (edge: Qdrant Edge, local: qdrant-client's local mode); searches rank by `mode`
    (hybrid: dense and BM25 fused, dense: the embedding alone) with `config.hnsw_ef` (local mode searches
    exhaustively)."""
    if config.url:
        client = QdrantClient(url=config.url, api_key=config.api_key, timeout=int(config.timeout_s))
        return ChunkStore(client, config.collection, local=False, layout=config, mode=mode)
    if config.engine == "edge":
        return EdgeStore.open(path / "edge", config.collection, mode, local_index=path / "meta.json", hnsw_ef=config.hnsw_ef)
    return ChunkStore(_local_clients.acquire(path), config.collection, local=True, path=path, mode=mode)


class ChunkStore:
    """Chunks of one logical index (`alias`) in Qdrant: an IndexWriter (retrieval/index.py)."""

    def __init__(
        self, client: QdrantClient, alias: str, local: bool, path: Path | None = None, layout: QdrantConfig = QdrantConfig(),
        mode: SearchMode = "hybrid",
    ) -> None:
        self.client = client
        self.alias = alias
        self.local = local  # embedded Qdrant: payload indexes and the layout have no effect there
        self.path = path
        self.layout = layout  # a server's shards, replication and on_disk for new collection versions
        # A server's HNSW search effort; local mode searches exhaustively (and warns when given one).
        self.effort = models.SearchParams(hnsw_ef=layout.hnsw_ef) if layout.hnsw_ef and not local else None
        self.mode = mode
        self.closed = False
        self._hybrid: dict[str, bool] = {}  # collection -> whether it has the sparse vector

    def close(self) -> None:
        """Release the client (embedded Qdrant: the folder is unlocked when its last store closes)."""
        if self.closed:
            return
        self.closed = True
        if self.local and self.path is not None:
            _local_clients.release(self.path)
        else:
            self.client.close()

    # --- collections and the alias --------------------------------------------------------

    def current(self) -> str | None:
        """The collection the alias points at, or None before the first sync."""
        for alias in self.client.get_aliases().aliases:
            if alias.alias_name == self.alias:
                return alias.collection_name
        return None

    def versions(self) -> list[str]:
        """All collections of this index, oldest first."""
        return backend.versions_of(self.alias, (c.name for c in self.client.get_collections().collections))

    def create_version(self, dim: int) -> str:
        """Create the next empty collection version (not yet behind the alias)."""
        name = backend.next_version(self.alias, self.versions())
        on_disk = self.layout.on_disk or None
        vectors = {DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE, on_disk=on_disk)}
        sparse = {SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF, index=models.SparseIndexParams(on_disk=on_disk))}
        if self.local:
            self.client.create_collection(name, vectors_config=vectors, sparse_vectors_config=sparse)
        else:
            self.client.create_collection(
                name, vectors_config=vectors, sparse_vectors_config=sparse, shard_number=self.layout.shards,
                replication_factor=self.layout.replication_factor, write_consistency_factor=self.layout.write_consistency_factor,
            )
            for key in INDEXED_FIELDS:
                self.client.create_payload_index(name, key, field_schema=models.PayloadSchemaType.KEYWORD)
        self._hybrid[name] = True
        return name

    def point_alias_to(self, collection: str) -> None:
        """Move the alias to `collection` in one operation."""
        ops: list[Any] = []
        if self.current() is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.alias)))
        ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=self.alias)))
        self.client.update_collection_aliases(change_aliases_operations=ops)

    def drop(self, collection: str) -> None:
        """Delete a collection version."""
        self.client.delete_collection(collection)
        self._hybrid.pop(collection, None)

    def dim(self, collection: str) -> int:
        """Dense vector size of a collection."""
        vectors = self.client.get_collection(collection).config.params.vectors
        return int(vectors[DENSE].size if isinstance(vectors, dict) else vectors.size)

    def is_hybrid(self, collection: str) -> bool:
        """True when `collection` has the BM25 vector (False: the first index format, dense only)."""
        if collection not in self._hybrid:
            sparse = self.client.get_collection(collection).config.params.sparse_vectors or {}
            self._hybrid[collection] = SPARSE in sparse
        return self._hybrid[collection]

    # --- reading state, writing chunks ----------------------------------------------------

    def index_state(self, collection: str) -> dict[str, IndexedDoc]:
        """Per document: its chunk ids and the hashes stored with them (payload only, no vectors)."""
        return backend.index_state((point.id, point.payload) for point in self._scroll(collection, STATE_FIELDS))

    def upsert(
        self, collection: str, ids: list[str], vectors: np.ndarray, sparse: list[SparseVector], payloads: list[dict[str, Any]],
        batch: int = 256,
    ) -> None:
        """Write points with their dense and BM25 vectors in batches (ids are deterministic, so a retried write is harmless)."""
        for i in range(0, len(ids), batch):
            dense = vectors[i : i + batch].tolist()
            bm25 = [_sparse(v) for v in sparse[i : i + batch]]
            self.client.upsert(
                collection,
                points=models.Batch(ids=ids[i : i + batch], vectors={DENSE: dense, SPARSE: bm25}, payloads=payloads[i : i + batch]),
                wait=True,
            )

    def delete(self, collection: str, ids: Iterable[str], batch: int = 1024) -> None:
        """Remove points by id."""
        ids = list(ids)
        for i in range(0, len(ids), batch):
            self.client.delete(collection, points_selector=models.PointIdsList(points=ids[i : i + batch]), wait=True)

    def set_file_hash(self, collection: str, ids: list[str], file_hash: str) -> None:
        """Restamp chunks whose file changed bytes but not content."""
        self.client.set_payload(collection, payload={"file_hash": file_hash}, points=ids, wait=True)

    def copy_points(self, source: str, target: str, ids: list[str], bm25: Callable[[Hit], SparseVector]) -> None:
        """Copy points with their vectors from one collection to another (kept documents on rebuild). Points of
        the first index format get their BM25 vector from `bm25` (a stored chunk -> its vector)."""
        upgrade = not self.is_hybrid(source)
        for i in range(0, len(ids), 256):
            points = self.client.retrieve(source, ids=ids[i : i + 256], with_vectors=True, with_payload=True)
            if upgrade:
                for p in points:
                    p.vector = {DENSE: p.vector, SPARSE: _sparse(bm25(_hit(p)))}
            if points:
                self.client.upsert(target, points=[models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points], wait=True)

    def commit(self, collection: str) -> None:
        """Nothing to do: a server indexes in the background, local mode searches exhaustively."""

    def documents(self) -> dict[str, IndexedDoc]:
        """Per document of the live index: its chunk ids and stored hashes (empty before the first sync)."""
        current = self.current()
        return self.index_state(current) if current else {}

    def count(self) -> int:
        """Number of chunks behind the alias."""
        return self.client.count(self.alias, exact=True).count if self.current() else 0

    # --- search ---------------------------------------------------------------------------

    def search(self, vector: np.ndarray, question: str, k: int, groups: Iterable[str] = ()) -> list[Hit]:
        """Top-k chunks for `question` (and its embedding `vector`) whose access labels the caller's groups
        allow (public is always allowed), ranked by the store's search mode."""
        current = self.current()
        if current is None:
            raise StoreError(f"the index {self.alias!r} is empty: run `raft index` first")
        allowed = models.Filter(must=[_access_condition(groups)])
        named = self.is_hybrid(current)  # False: the first index format, one unnamed dense vector
        terms = query_vector(question)
        hybrid = named and self.mode == "hybrid" and bool(terms.indices)
        depth = fusion_depth(k) if hybrid else k
        requests = [models.QueryRequest(query=vector.tolist(), using=DENSE if named else None, filter=allowed, limit=depth,
                                        params=self.effort, with_payload=False)]
        if hybrid:
            requests.append(models.QueryRequest(query=_sparse(terms), using=SPARSE, filter=allowed, limit=depth, with_payload=False))
        found = self.client.query_batch_points(self.alias, requests=requests)
        rankings = [[(str(point.id), point.score) for point in response.points] for response in found]
        top = backend.fuse(*rankings, k) if hybrid else backend.ranked(rankings[0], k)
        records = self.client.retrieve(self.alias, ids=[chunk_id for chunk_id, _ in top], with_payload=backend.HIT_FIELDS, with_vectors=False)
        return backend.hits_in_order(top, ((r.id, r.payload) for r in records))

    def chunks(self, groups: Iterable[str] = (), doc_ids: Iterable[str] | None = None) -> list[Hit]:
        """Every chunk behind the alias that `groups` may see (optionally of `doc_ids` only), score 0."""
        if self.current() is None:
            raise StoreError(f"the index {self.alias!r} is empty: run `raft index` first")
        must = [_access_condition(groups)]
        if doc_ids is not None:
            must.append(models.FieldCondition(key="doc_id", match=models.MatchAny(any=sorted(set(doc_ids)))))
        return backend.in_document_order(_hit(p) for p in self._scroll(self.alias, backend.HIT_FIELDS, models.Filter(must=must)))

    def _scroll(self, collection: str, fields: list[str], where: models.Filter | None = None) -> Iterator[models.Record]:
        offset = None
        while True:
            points, offset = self.client.scroll(
                collection, scroll_filter=where, limit=1024, offset=offset, with_payload=fields, with_vectors=False
            )
            yield from points
            if offset is None:
                return


def _open_local(path: Path) -> _Serialized:
    path.mkdir(parents=True, exist_ok=True)
    try:
        return _Serialized(QdrantClient(path=str(path)))
    except RuntimeError as e:
        if "already accessed" in str(e):
            raise StoreError(
                f"embedded Qdrant at {path} is in use by another process (it allows one at a time): "
                "stop it, or run a Qdrant server and set qdrant.url"
            ) from None
        raise


class _Serialized:
    """A client whose method calls run one at a time."""

    def __init__(self, client: QdrantClient) -> None:
        self._client = client
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


def _sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=vector.indices, values=vector.values)


def _access_condition(groups: Iterable[str]) -> models.FieldCondition:
    return models.FieldCondition(key="access", match=models.MatchAny(any=visible_labels(groups)))


def _hit(point: models.ScoredPoint | models.Record) -> Hit:
    return backend.hit(point.id, getattr(point, "score", 0.0), point.payload)  # a Record (scroll, retrieve) has no score


_local_clients: PerFolder[_Serialized] = PerFolder(_open_local, lambda client: client.close())
