"""Hybrid search (dense + BM25, fused by reciprocal rank) against the real embedding model and
both embedded engines; and an index of the first format (dense only, local engine), which is
searched and then rebuilt."""

import pytest
import qdrant_edge as qe
from conftest import write
from qdrant_client import models

from contracts.settings import QdrantConfig
from retrieval import sync as sync_module
from retrieval.backend import DENSE, RRF_K, SPARSE, fuse, hits_in_order
from retrieval.edge_store import EdgeStore
from retrieval.search import search
from retrieval.sparse import K1, B, average_terms, bm25_scores, document_vector, query_vector, terms
from retrieval.store import ChunkStore, open_store
from retrieval.sync import sync_corpus

MODELS = {"PC-220": ("6 bar", "12 litres"), "PC-240": ("8 bar", "15 litres"), "PC-260": ("10 bar", "19 litres"), "PC-280": ("12 bar", "24 litres")}


def test_terms_keep_compounds_and_their_parts_and_drop_stop_words():
    assert terms("What is the inlet pressure of the PC-220 (firmware v1.4)?") == [
        "inlet", "pressure", "pc-220", "pc", "220", "firmware", "v1.4", "v1", "4",
    ]
    assert terms("PC 220") == ["pc", "220"]  # matches the parts of "PC-220"
    assert query_vector("the of and").indices == []


def test_bm25_weights_saturate_with_repeats_and_fall_with_length():
    avg = average_terms(64)
    once, thrice = document_vector("valve", avg), document_vector("valve valve valve", avg)
    assert len(once.indices) == 1 and once.indices == thrice.indices
    assert once.values[0] < thrice.values[0] < K1 + 1, "more occurrences weigh more, up to k1 + 1"
    long = document_vector("valve " + " ".join(f"word{i}" for i in range(int(avg) * 2)), avg)
    short = document_vector("valve seat", avg)
    [valve] = once.indices
    weight = dict(zip(long.indices, long.values))[valve]
    assert weight < dict(zip(short.indices, short.values))[valve], f"b={B}: the same term weighs less in a longer chunk"


def test_bm25_scores_rank_texts_by_rare_query_terms_without_an_index():
    texts = ["The valve closes fast.", "The valve seat is brass.", "Replace the seat every year.", "Nothing here."]
    scores = bm25_scores("How often is the valve seat replaced?", texts)
    assert scores[3] == 0 and scores[1] == max(scores), "both terms, one of them rare"
    assert scores[0] < scores[1] and scores[2] > 0
    assert bm25_scores("the of", texts) == [0.0] * 4 and bm25_scores("valve", []) == []


def top_by_one_vector(store, name: str, query, k: int) -> list[tuple[str, float, str]]:
    """(chunk id, score, doc id) of the top `k` by the vector `name` alone, asked of the engine directly:
    a store itself ranks fused or dense only."""
    if isinstance(store, EdgeStore):
        vector = qe.SparseVector(query.indices, query.values) if name == SPARSE else query.tolist()
        with store.folder.shard(store.current()) as shard:
            points = shard.query(qe.QueryRequest(limit=k, query=qe.Query.Nearest(vector, using=name), with_payload=True))
    else:
        vector = models.SparseVector(indices=query.indices, values=query.values) if name == SPARSE else query.tolist()
        points = store.client.query_points(store.alias, query=vector, using=name, limit=k, with_payload=True).points
    return [(str(p.id), p.score, p.payload["doc_id"]) for p in points]


def test_fusion_adds_reciprocal_ranks_and_gives_ties_to_bm25s_order():
    def ranking(*ids):
        return [(i, 0.5) for i in ids]

    fused = fuse(ranking("a", "b", "c"), ranking("c", "z", "a"), 4)  # embedding's ranking, BM25's ranking
    assert [c for c, _ in fused] == ["c", "a", "z", "b"]
    assert fused[0][1] == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 3)) == fused[1][1]  # a tie: c is first by BM25
    assert fused[2][1] == pytest.approx(1 / (RRF_K + 2)) == fused[3][1]  # z (BM25 2nd) before b (embedding 2nd)
    assert [c for c, _ in fuse(ranking("q", "p"), ranking("p", "q"), 2)] == ["p", "q"]
    assert [c for c, _ in fuse(ranking("x", "y"), [], 3)] == ["x", "y"]


def test_hits_keep_the_ranked_order_whatever_order_payloads_come_in():
    payload = {"doc_id": "d", "source": "d.md", "title": "", "text": "t", "start": 0, "end": 1}
    found = hits_in_order([("b", 0.9), ("a", 0.5), ("gone", 0.4)], [("a", payload), ("b", payload)])
    assert [(h.chunk_id, h.score) for h in found] == [("b", 0.9), ("a", 0.5)]  # a chunk deleted meanwhile is left out


@pytest.fixture
def controllers(tmp_path):
    """Four near-duplicate controller sheets that differ in their model number and figures."""
    root = tmp_path / "controllers"
    for model, (pressure, flow) in MODELS.items():
        write(root, f"{model.lower()}.md", f"# Controller {model} data sheet\n\nThe {model} pump controller accepts a maximum "
              f"inlet pressure of {pressure}. It regulates a flow of up to {flow} per minute.\n")
    return root


def test_hybrid_search_tells_near_duplicates_apart_by_their_model_number(store, embedder, controllers, settings):
    sync_corpus(store, embedder, controllers, settings)
    assert store.mode == "hybrid" and store.is_hybrid(store.current())
    for model, (pressure, _) in MODELS.items():
        question = f"What is the maximum inlet pressure of the {model} controller?"
        [(_, _, alone)] = top_by_one_vector(store, SPARSE, query_vector(question), 1)
        assert alone == f"{model.lower()}.md", "every chunk carries its BM25 vector"
        [hit] = search(store, embedder, question, k=1)
        assert hit.doc_id == f"{model.lower()}.md" and pressure in hit.text


def test_dense_mode_ranks_by_the_embedding_alone(store, engine, embedder, controllers, settings, tmp_path):
    sync_corpus(store, embedder, controllers, settings)
    dense = open_store(QdrantConfig(collection="chunks", engine=engine), tmp_path / "qdrant", "dense")  # the same embedded handle
    question = "Which controller regulates 19 litres per minute?"
    vector = embedder.encode([question])[0]
    expected = top_by_one_vector(store, DENSE, vector, 3)
    hits = search(dense, embedder, question, k=3)
    assert [h.chunk_id for h in hits] == [chunk_id for chunk_id, _, _ in expected]
    assert [h.score for h in hits] == pytest.approx([score for _, score, _ in expected], abs=1e-5)  # cosine, not fused ranks
    dense.close()


class FirstFormatStore(ChunkStore):
    """Writes collections as the first index format did: one unnamed dense vector, no BM25."""

    def create_version(self, dim):
        versions = self.versions()
        name = f"{self.alias}_v{len(versions) + 1}"
        self.client.create_collection(name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
        return name

    def upsert(self, collection, ids, vectors, sparse, payloads, batch=256):
        self.client.upsert(collection, points=models.Batch(ids=ids, vectors=vectors.tolist(), payloads=payloads), wait=True)


@pytest.fixture
def local_store(tmp_path):
    s = open_store(QdrantConfig(collection="chunks", engine="local"), tmp_path / "qdrant")
    yield s
    s.close()


def test_an_index_of_the_first_format_is_searched_dense_then_rebuilt_once(local_store, embedder, corpus, settings, monkeypatch):
    """Only qdrant-client's engine had the first format (the Edge engine came with the second)."""
    store = local_store
    old = FirstFormatStore(store.client, store.alias, local=True)
    with monkeypatch.context() as m:
        m.setattr(sync_module, "INDEX_FORMAT", 1)
        sync_corpus(old, embedder, corpus, settings)
    assert not store.is_hybrid("chunks_v1")
    assert search(store, embedder, "How fast does the V10 valve close?", k=1)[0].doc_id == "guides/valve.md"

    path = corpus / "kb/articles.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:40]  # kb-2 unreadable now: its chunks are kept through the rebuild
    path.write_text("\n".join(lines) + "\n")
    report = sync_corpus(store, embedder, corpus, settings)
    assert report.rebuilt and report.collection == "chunks_v2" == store.current() and store.versions() == ["chunks_v2"]
    assert store.is_hybrid("chunks_v2") and report.added == 8
    assert "kb-2" in store.index_state("chunks_v2")
    [(_, _, kept)] = top_by_one_vector(store, SPARSE, query_vector("Firmware images published Monday"), 1)
    assert kept == "kb-2", "a kept chunk got its BM25 vector in the rebuild"
    again = sync_corpus(store, embedder, corpus, settings)
    assert not again.rebuilt and again.embeddings_computed == 0


def test_a_search_gives_the_same_chunks_every_time_and_on_both_engines(tmp_path, embedder, corpus, settings):
    """Fused scores tie often; Edge orders ties differently from one call to the next, so the stores break
    ties by chunk id (a dataset's hard negatives must not change between runs or engines)."""
    questions = ["How fast does the V10 valve close?", "What is the maximum pressure of the pump?", "firmware Monday", "reset the LED"]
    results = {}
    for engine in ("edge", "local"):
        store = open_store(QdrantConfig(collection="chunks", engine=engine), tmp_path / engine)
        sync_corpus(store, embedder, corpus, settings)
        runs = [[(h.chunk_id, round(h.score, 6)) for q in questions for h in search(store, embedder, q, k=6)] for _ in range(5)]
        assert all(run == runs[0] for run in runs), f"{engine}: the same search gave different lists"
        results[engine] = runs[0]
        store.close()
    assert results["edge"] == results["local"]
