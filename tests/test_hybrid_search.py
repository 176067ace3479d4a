"""Hybrid search (dense + BM25, fused by reciprocal rank) against the real embedding model and
embedded Qdrant; and an index of the first format (dense only), which is searched and then rebuilt."""

import pytest
from conftest import write
from qdrant_client import models

from contracts.settings import QdrantConfig
from retrieval import sync as sync_module
from retrieval.search import search
from retrieval.sparse import K1, B, average_terms, document_vector, query_vector, terms
from retrieval.store import DENSE, SPARSE, ChunkStore, open_store
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
        bm25 = query_vector(question)
        alone = store.client.query_points(store.alias, query=models.SparseVector(indices=bm25.indices, values=bm25.values),
                                          using=SPARSE, limit=1, with_payload=True).points
        assert alone[0].payload["doc_id"] == f"{model.lower()}.md", "every chunk carries its BM25 vector"
        [hit] = search(store, embedder, question, k=1)
        assert hit.doc_id == f"{model.lower()}.md" and pressure in hit.text


def test_dense_mode_ranks_by_the_embedding_alone(store, embedder, controllers, settings, tmp_path):
    sync_corpus(store, embedder, controllers, settings)
    dense = open_store(QdrantConfig(collection="chunks"), tmp_path / "qdrant", "dense")  # the same embedded client
    question = "Which controller regulates 19 litres per minute?"
    vector = embedder.encode([question])[0]
    expected = store.client.query_points(store.alias, query=vector.tolist(), using=DENSE, limit=3).points
    hits = search(dense, embedder, question, k=3)
    assert [h.chunk_id for h in hits] == [str(p.id) for p in expected]
    assert [h.score for h in hits] == pytest.approx([p.score for p in expected])  # cosine, not fused ranks
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


def test_an_index_of_the_first_format_is_searched_dense_then_rebuilt_once(store, embedder, corpus, settings, monkeypatch):
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
    bm25 = query_vector("Firmware images published Monday")
    kept = store.client.query_points(store.alias, query=models.SparseVector(indices=bm25.indices, values=bm25.values),
                                     using=SPARSE, limit=1, with_payload=True).points
    assert kept[0].payload["doc_id"] == "kb-2", "a kept chunk got its BM25 vector in the rebuild"
    again = sync_corpus(store, embedder, corpus, settings)
    assert not again.rebuilt and again.embeddings_computed == 0
