"""What the Qdrant Edge engine adds to the shared index tests (which run on both engines): its HNSW
index, one process per folder, searches in parallel with a sync that swaps and drops versions,
an index that reopens as it was, searches from many threads at once, and a clear message where
only a local-engine index exists."""

import subprocess
import sys
import textwrap
import threading
import uuid

import numpy as np
import pytest
from conftest import REPO

from contracts.settings import QdrantConfig
from retrieval.index import StoreError
from retrieval.search import search
from retrieval.sparse import SparseVector
from retrieval.store import open_store
from retrieval.sync import sync_corpus

EDGE = QdrantConfig(collection="chunks", engine="edge")


def payload(i: int, access: str = "public") -> dict:
    return {"doc_id": f"doc-{i}", "source": f"doc-{i}.md", "title": "", "text": f"chunk {i}", "headings": [], "start": 0, "end": 0,
            "access": [access]}


def test_commit_builds_the_hnsw_index_and_filtered_search_stays_exact_enough(tmp_path):
    # 8,000 vectors of 384 floats are past Qdrant's indexing threshold (10 MB): commit must build HNSW.
    rng = np.random.default_rng(0)
    n, dim = 8000, 384
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    access = ["public" if i % 3 == 0 else "hr" if i % 3 == 1 else "internal" for i in range(n)]
    store = open_store(EDGE, tmp_path / "qdrant", "dense")
    version = store.create_version(dim)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    store.upsert(version, ids, vectors, [SparseVector([], [])] * n, [payload(i, a) for i, a in enumerate(access)], batch=1000)
    with store.folder.shard(version) as shard:
        assert shard.info().indexed_vectors_count == 0
    store.commit(version)
    store.point_alias_to(version)
    with store.folder.shard(version) as shard:
        assert shard.info().indexed_vectors_count >= n // 2, "commit built the HNSW graph"

    allowed = np.array([a != "internal" for a in access])
    queries = rng.standard_normal((20, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = [{ids[i] for i in np.flatnonzero(allowed)[np.argsort(-(vectors[allowed] @ q))[:10]]} for q in queries]

    def recall(searcher) -> float:
        found = 0
        for q, true in zip(queries, exact):
            hits = searcher.search(q, "", 10, ["hr"])
            assert all(h.access[0] in ("public", "hr") for h in hits), "the access filter holds on the HNSW path"
            found += len(true & {h.chunk_id for h in hits})
        return found / (10 * len(queries))

    assert recall(store) >= 0.95

    # qdrant.hnsw_ef reaches the engine: a search that keeps only 10 candidates finds fewer of the true 10.
    # The caller may see every chunk: Qdrant searches a filter's points exactly below its full-scan
    # threshold (10 MB), which the hr caller's 5,333 are (so recall above is exact, whatever the effort).
    everyone = [{ids[i] for i in np.argsort(-(vectors @ q))[:10]} for q in queries]

    def recall_of_all(searcher) -> float:
        return sum(len(true & {h.chunk_id for h in searcher.search(q, "", 10, ["hr", "internal"])}) for q, true in zip(queries, everyone)) / 200

    narrow = open_store(EDGE.model_copy(update={"hnsw_ef": 10}), tmp_path / "qdrant", "dense")
    assert recall_of_all(narrow) < 0.5 * recall_of_all(store)  # measured: 0.13-0.15 against 0.95 at the default 256
    narrow.close()
    store.close()


def test_the_index_reopens_as_it_was(tmp_path, embedder, corpus, settings):
    store = open_store(EDGE, tmp_path / "qdrant")
    sync_corpus(store, embedder, corpus, settings)
    before = [h.chunk_id for h in search(store, embedder, "How fast does the V10 valve close?", k=3)]
    current, count = store.current(), store.count()
    store.close()
    again = open_store(EDGE, tmp_path / "qdrant")
    assert again.current() == current and again.count() == count
    assert [h.chunk_id for h in search(again, embedder, "How fast does the V10 valve close?", k=3)] == before
    assert sync_corpus(again, embedder, corpus, settings).embeddings_computed == 0
    again.close()


def test_one_process_at_a_time_opens_the_folder(tmp_path):
    folder = tmp_path / "qdrant"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {str(REPO)!r})
            from contracts.settings import QdrantConfig
            from retrieval.store import open_store
            store = open_store(QdrantConfig(collection="chunks", engine="edge"), __import__("pathlib").Path({str(folder)!r}))
            print("open", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match="in use by another process"):
            open_store(EDGE, folder)
    finally:
        holder.kill()
        holder.wait()
    open_store(EDGE, folder).close()  # the lock went with the process


def test_searches_run_while_a_sync_swaps_and_drops_versions(tmp_path, embedder, corpus, settings):
    store = open_store(EDGE, tmp_path / "qdrant")
    sync_corpus(store, embedder, corpus, settings)
    errors, answers = [], []
    done = threading.Event()
    question = "How fast does the V10 valve close?"
    vector = embedder.encode([question])[0]  # embedded once: the searchers spend their time inside the engine

    def ask():
        while not done.is_set():
            try:
                answers.append(store.search(vector, question, 1)[0].doc_id)
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                errors.append(e)

    searchers = [threading.Thread(target=ask) for _ in range(2)]
    for t in searchers:
        t.start()
    try:
        for _ in range(20):  # what a rebuild does to the versions, without the embedding: many more swaps
            old = store.current()
            new = store.create_version(embedder.dim)
            store.copy_points(old, new, [pid for doc in store.index_state(old).values() for pid in doc.point_ids], settings.stored_bm25)
            store.commit(new)
            store.point_alias_to(new)
            store.drop(old)
    finally:
        done.set()
        for t in searchers:
            t.join()
    assert not errors, errors[:3]
    assert len(answers) > 100 and set(answers) == {"guides/valve.md"}
    assert store.versions() == [store.current()] == ["chunks_v21"]
    store.close()


def test_searches_from_many_threads_get_what_they_get_alone(tmp_path):
    # Eight threads searching one shard at once, each with its own query and access filter (hybrid
    # mode), must each get exactly what the same search returns alone.
    rng = np.random.default_rng(1)
    n, dim = 2000, 384
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    access = ["public", "hr", "internal"]
    store = open_store(EDGE, tmp_path / "qdrant")
    version = store.create_version(dim)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    bm25 = [SparseVector([i % 50, 50 + i % 7], [1.0, 0.5]) for i in range(n)]
    store.upsert(version, ids, vectors, bm25, [payload(i, access[i % 3]) for i in range(n)], batch=500)
    store.commit(version)
    store.point_alias_to(version)
    asks = [(vectors[i * 37] + 0.1 * rng.standard_normal(dim, dtype=np.float32), f"chunk {i}", ["hr"] if i % 2 else []) for i in range(40)]
    alone = [[h.chunk_id for h in store.search(v, q, 5, g)] for v, q, g in asks]
    together: dict[int, list[str]] = {}
    start = threading.Barrier(8)

    def ask(worker: int) -> None:
        start.wait()
        for i in range(worker, len(asks), 8):
            together[i] = [h.chunk_id for h in store.search(*asks[i][:2], 5, asks[i][2])]

    threads = [threading.Thread(target=ask, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [together[i] for i in range(len(asks))] == alone
    assert all(len(hits) == 5 for hits in alone)
    store.close()


def test_an_empty_edge_index_beside_a_local_one_says_how_to_go_on(tmp_path, embedder, corpus, settings):
    local = open_store(QdrantConfig(collection="chunks", engine="local"), tmp_path / "qdrant")
    sync_corpus(local, embedder, corpus, settings)
    local.close()
    edge = open_store(EDGE, tmp_path / "qdrant")
    with pytest.raises(StoreError, match="qdrant.engine local") as e:
        search(edge, embedder, "How fast does the V10 valve close?", k=1)
    assert "raft index" in str(e.value)
    report = sync_corpus(edge, embedder, corpus, settings)  # builds the edge index; the local one stays as it was
    assert report.added > 0 and search(edge, embedder, "How fast does the V10 valve close?", k=1)[0].doc_id == "guides/valve.md"
    edge.close()
    local = open_store(QdrantConfig(collection="chunks", engine="local"), tmp_path / "qdrant")
    assert local.count() > 0
    local.close()
