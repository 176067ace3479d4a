"""The chunk index in Qdrant Edge, Qdrant's in-process engine: HNSW and payload indexes without a server.

An Edge shard is one folder with no collections or aliases, so each version of the index is a
shard folder (`<path>/raft_chunks_v3/`) and `aliases.json` names the live one; moving the alias
is one atomic file replace, so a search never sees a half-built version. The points are the
same as in the qdrant-client backend (retrieval/store.py): a dense and a BM25 vector and the
chunk's payload, searched and fused alike.

Qdrant Edge builds its HNSW graph only when asked (`optimize`): `commit`, which the sync calls
once its writes are done, flushes the shard and builds it, so searches stay fast at any size.
Shards are safe for concurrent reads and writes, so the gateway's request threads search
without a lock of ours; a call into Edge does hold Python's lock until it returns, so their
searches themselves run one at a time (docs/benchmarks.md, "Search at scale"). One process at a
time may open the folder (a file lock, as Qdrant's own local mode); within it every store
shares one handle.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from contracts.atomic import write_text_atomic
from contracts.settings import SearchMode
from retrieval import backend
from retrieval.backend import DENSE, INDEXED_FIELDS, SPARSE, STATE_FIELDS, PerFolder, fusion_depth
from retrieval.index import Hit, IndexedDoc, StoreError, visible_labels
from retrieval.sparse import SparseVector, query_vector

ALIASES = "aliases.json"


class EdgeStore:
    """Chunks of one logical index (`alias`) in Qdrant Edge shards: an IndexWriter (retrieval/index.py)."""

    def __init__(
        self, folder: _Folder, alias: str, mode: SearchMode = "hybrid", local_index: Path | None = None, hnsw_ef: int | None = None,
    ) -> None:
        self.folder = folder
        self.alias = alias
        self.mode = mode
        self.local_index = local_index  # where qdrant.engine local keeps its index: named when this one is empty
        self.effort = qe.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None  # None: Qdrant Edge's default
        self.closed = False

    @classmethod
    def open(
        cls, path: Path, alias: str, mode: SearchMode = "hybrid", local_index: Path | None = None, hnsw_ef: int | None = None,
    ) -> EdgeStore:
        """The index `alias` in the Edge folder `path` (created when missing), its dense searches keeping `hnsw_ef`
        candidates; StoreError when another process has it open."""
        return cls(_folders.acquire(path), alias, mode, local_index, hnsw_ef)

    def close(self) -> None:
        """Let go of the folder (it is unlocked when the last store of this process closes)."""
        if not self.closed:
            self.closed = True
            _folders.release(self.folder.path)

    # --- versions and the alias -----------------------------------------------------------

    def current(self) -> str | None:
        """The version the alias names, or None before the first sync."""
        return self.folder.alias(self.alias)

    def versions(self) -> list[str]:
        """Every version folder of this index (also one a crashed rebuild left), oldest first."""
        return backend.versions_of(self.alias, (p.name for p in self.folder.path.iterdir() if p.is_dir()))

    def create_version(self, dim: int) -> str:
        """A new empty shard for `dim`-dimensional dense vectors (not live yet), with keyword indexes for filters."""
        name = backend.next_version(self.alias, self.versions())
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        self.folder.create(name, config)
        with self.folder.shard(name) as shard:
            for key in INDEXED_FIELDS:
                _call(shard.update, qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
        return name

    def point_alias_to(self, collection: str) -> None:
        """Make `collection` the live version (one atomic file replace)."""
        self.folder.set_alias(self.alias, collection)

    def drop(self, collection: str) -> None:
        """Delete a version (after the searches running on it finish)."""
        self.folder.drop(collection)

    def dim(self, collection: str) -> int:
        """Dense vector size of a version."""
        return int(self.folder.config(collection)["vectors"][DENSE]["size"])

    def is_hybrid(self, collection: str) -> bool:
        """True when the version has the BM25 vector (every Edge version does)."""
        return SPARSE in (self.folder.config(collection).get("sparse_vectors") or {})

    # --- reading state, writing chunks ----------------------------------------------------

    def index_state(self, collection: str) -> dict[str, IndexedDoc]:
        """Per document: its chunk ids and the hashes stored with them (payload only, no vectors)."""
        with self.folder.shard(collection) as shard:
            return backend.index_state((r.id, r.payload) for r in _scroll(shard, STATE_FIELDS))

    def upsert(
        self, collection: str, ids: list[str], vectors: np.ndarray, sparse: list[SparseVector], payloads: list[dict[str, Any]],
        batch: int = 256,
    ) -> None:
        """Write chunks with their dense and BM25 vectors in batches (ids are deterministic: a retried write is harmless)."""
        with self.folder.shard(collection) as shard:
            for i in range(0, len(ids), batch):
                points = [
                    qe.Point(id=pid, vector={DENSE: dense.tolist(), SPARSE: _sparse(bm25)}, payload=payload)
                    for pid, dense, bm25, payload in zip(ids[i : i + batch], vectors[i : i + batch], sparse[i : i + batch], payloads[i : i + batch])
                ]
                _call(shard.update, qe.UpdateOperation.upsert_points(points))

    def delete(self, collection: str, ids: Iterable[str], batch: int = 1024) -> None:
        """Remove chunks by id."""
        ids = list(ids)
        with self.folder.shard(collection) as shard:
            for i in range(0, len(ids), batch):
                _call(shard.update, qe.UpdateOperation.delete_points(ids[i : i + batch]))

    def set_file_hash(self, collection: str, ids: list[str], file_hash: str) -> None:
        """Restamp chunks whose file changed bytes but not content."""
        if ids:
            with self.folder.shard(collection) as shard:
                _call(shard.update, qe.UpdateOperation.set_payload(ids, {"file_hash": file_hash}))

    def copy_points(self, source: str, target: str, ids: list[str], bm25: Callable[[Hit], SparseVector]) -> None:
        """Copy chunks with their vectors between versions; a chunk without a BM25 vector gets one from `bm25`."""
        with self.folder.shard(source) as old, self.folder.shard(target) as new:
            for i in range(0, len(ids), 256):
                records = _call(old.retrieve, ids[i : i + 256], with_payload=True, with_vector=True)
                points = []
                for r in records:
                    vector = dict(r.vector)
                    if SPARSE not in vector:
                        vector[SPARSE] = _sparse(bm25(backend.hit(r.id, 0.0, r.payload)))
                    points.append(qe.Point(id=r.id, vector=vector, payload=r.payload))
                if points:
                    _call(new.update, qe.UpdateOperation.upsert_points(points))

    def commit(self, collection: str) -> None:
        """Make a version's writes durable and build its search index (HNSW for the segments large enough)."""
        with self.folder.shard(collection) as shard:
            _call(shard.flush)
            _call(shard.optimize)

    def documents(self) -> dict[str, IndexedDoc]:
        """Per document of the live index: its chunk ids and stored hashes (empty before the first sync)."""
        current = self.current()
        return self.index_state(current) if current else {}

    def count(self) -> int:
        """Number of chunks in the live version."""
        with self.folder.live(self.alias) as shard:
            return 0 if shard is None else int(_call(shard.count, qe.CountRequest(exact=True)))

    # --- search ---------------------------------------------------------------------------

    def search(self, vector: np.ndarray, question: str, k: int, groups: Iterable[str] = ()) -> list[Hit]:
        """Top-k chunks for `question` (and its embedding `vector`) whose access labels the caller's groups
        allow (public is always allowed), ranked by the store's search mode."""
        allowed = qe.Filter(must=[_access_condition(groups)])
        terms = query_vector(question)
        hybrid = self.mode == "hybrid" and bool(terms.indices)
        depth = fusion_depth(k) if hybrid else k
        requests = [qe.QueryRequest(limit=depth, query=qe.Query.Nearest(vector.tolist(), using=DENSE), filter=allowed, params=self.effort,
                                    with_payload=False)]
        if hybrid:
            requests.append(qe.QueryRequest(limit=depth, query=qe.Query.Nearest(_sparse(terms), using=SPARSE), filter=allowed, with_payload=False))
        with self._live() as shard:
            found = _call(shard.query_batch, qe.QueryBatchRequest(requests))
            rankings = [[(str(p.id), p.score) for p in points] for points in found]
            top = backend.fuse(*rankings, k) if hybrid else backend.ranked(rankings[0], k)
            records = _call(shard.retrieve, [chunk_id for chunk_id, _ in top], with_payload=backend.HIT_FIELDS, with_vector=False)
        return backend.hits_in_order(top, ((r.id, r.payload) for r in records))

    def chunks(self, groups: Iterable[str] = (), doc_ids: Iterable[str] | None = None) -> list[Hit]:
        """Every chunk of the live version that `groups` may see (optionally of `doc_ids` only), score 0."""
        must: list[Any] = [_access_condition(groups)]
        if doc_ids is not None:
            must.append(qe.FieldCondition(key="doc_id", match=qe.MatchAny(any=sorted(set(doc_ids)))))
        with self._live() as shard:
            records = _scroll(shard, backend.HIT_FIELDS, qe.Filter(must=must))
            return backend.in_document_order(backend.hit(r.id, 0.0, r.payload) for r in records)

    @contextmanager
    def _live(self) -> Iterator[qe.EdgeShard]:
        with self.folder.live(self.alias) as shard:
            if shard is None:
                hint = ""
                if self.local_index is not None and self.local_index.exists():
                    hint = (f"; {self.local_index.parent} holds an index of qdrant.engine local, which this engine does not read: "
                            "`raft index` builds it for the edge engine, or set qdrant.engine: local to keep using it")
                raise StoreError(f"the index {self.alias!r} is empty: run `raft index` first{hint}")
            yield shard


class _Folder:
    """An Edge folder opened by this process: its lock, its alias file and its open shards.

    Searches hold a shard only while they run (`shard`), so a version can be dropped while the
    gateway searches: `drop` waits for the searches on it to finish, and later ones go to the
    version the alias names now."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock_file = open(path / ".lock", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise StoreError(
                f"the embedded index at {path} is in use by another process (one at a time may open it): "
                "stop it, or run a Qdrant server and set qdrant.url"
            ) from None
        self._changed = threading.Condition()
        self._shards: dict[str, qe.EdgeShard] = {}
        self._users: dict[str, int] = {}
        self._configs: dict[str, dict[str, Any]] = {}
        aliases = path / ALIASES
        self._aliases: dict[str, str] = json.loads(aliases.read_text(encoding="utf-8")) if aliases.exists() else {}

    def alias(self, alias: str) -> str | None:
        """The version `alias` names, or None."""
        with self._changed:
            return self._aliases.get(alias)

    def set_alias(self, alias: str, collection: str) -> None:
        """Point `alias` at `collection`, on disk first."""
        with self._changed:
            if not (self.path / collection).is_dir():
                raise StoreError(f"no index version {collection} in {self.path}")
            aliases = {**self._aliases, alias: collection}
            write_text_atomic(self.path / ALIASES, json.dumps(aliases, indent=2, sort_keys=True) + "\n")
            self._aliases = aliases

    def create(self, name: str, config: qe.EdgeConfig) -> None:
        """Create the shard folder `name`."""
        with self._changed:
            self._shards[name] = _call(qe.EdgeShard.create, str(self.path / name), config)

    def config(self, name: str) -> dict[str, Any]:
        """The shard's stored configuration (vector sizes and names)."""
        if name not in self._configs:
            try:
                self._configs[name] = json.loads((self.path / name / "edge_config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise StoreError(f"cannot read the configuration of index version {self.path / name}: {e}") from None
        return self._configs[name]

    @contextmanager
    def shard(self, name: str) -> Iterator[qe.EdgeShard]:
        """The open shard `name` (loaded on first use), held until the block ends."""
        with self._changed:
            shard = self._hold(name)
        try:
            yield shard
        finally:
            self._let_go(name)

    @contextmanager
    def live(self, alias: str) -> Iterator[qe.EdgeShard | None]:
        """The shard `alias` names (None when it names none), held until the block ends: the alias is read
        and the shard held in one step, so a version swapped out meanwhile is dropped only after the block."""
        with self._changed:
            name = self._aliases.get(alias)
            shard = self._hold(name) if name else None
        try:
            yield shard
        finally:
            if name:
                self._let_go(name)

    def _hold(self, name: str) -> qe.EdgeShard:  # with self._changed held
        shard = self._shards.get(name)
        if shard is None:
            if not (self.path / name).is_dir():
                raise StoreError(f"no index version {name} in {self.path}")
            shard = self._shards[name] = _call(qe.EdgeShard.load, str(self.path / name))
        self._users[name] = self._users.get(name, 0) + 1
        return shard

    def _let_go(self, name: str) -> None:
        with self._changed:
            self._users[name] -= 1
            self._changed.notify_all()

    def drop(self, name: str) -> None:
        """Close and delete the shard `name` once nobody uses it."""
        with self._changed:
            self._changed.wait_for(lambda: self._users.get(name, 0) == 0)
            shard = self._shards.pop(name, None)
            if shard is not None:
                _call(shard.close)
            self._configs.pop(name, None)
            shutil.rmtree(self.path / name, ignore_errors=True)

    def close(self) -> None:
        """Close every shard and unlock the folder."""
        with self._changed:
            for shard in self._shards.values():
                _call(shard.close)
            self._shards.clear()
        self._lock_file.close()  # releases the lock


def _call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # Qdrant Edge raises plain Exceptions ("Service runtime error: ..."): one kind for callers.
    try:
        return method(*args, **kwargs)
    except Exception as e:
        raise StoreError(f"Qdrant Edge: {e}") from e


def _scroll(shard: qe.EdgeShard, fields: list[str], where: qe.Filter | None = None) -> Iterator[qe.Record]:
    offset = None
    while True:
        records, offset = _call(shard.scroll, qe.ScrollRequest(offset=offset, limit=1024, filter=where, with_payload=fields, with_vector=False))
        yield from records
        if offset is None:
            return


def _sparse(vector: SparseVector) -> qe.SparseVector:
    return qe.SparseVector(indices=vector.indices, values=vector.values)


def _access_condition(groups: Iterable[str]) -> qe.FieldCondition:
    return qe.FieldCondition(key="access", match=qe.MatchAny(any=visible_labels(groups)))


_folders: PerFolder[_Folder] = PerFolder(_Folder, _Folder.close)
