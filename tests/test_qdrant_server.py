"""The Qdrant server path. No Qdrant server can be installed on these machines, so its settings
are checked against a recording stand-in for the client (a mock: the server cannot run here),
and the integration test runs only against a real server named by QDRANT_URL."""

from __future__ import annotations

import os
import uuid

import pytest
from qdrant_client import models

from contracts.settings import QdrantConfig
from flows.config import load_config
from flows.wiring import open_index
from retrieval.store import ChunkStore
from tests.conftest import REPO


class RecordingClient:
    """Stands in for QdrantClient(url=…): records the calls create_version makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def get_collections(self):
        from qdrant_client import models

        return models.CollectionsResponse(collections=[])

    def create_collection(self, *args, **kwargs):
        self.calls.append(("create_collection", args, kwargs))

    def create_payload_index(self, *args, **kwargs):
        self.calls.append(("create_payload_index", args, kwargs))


def test_new_collections_get_the_configured_sharding_and_replication():
    client = RecordingClient()
    store = ChunkStore(client, "raft_chunks", local=False, layout=QdrantConfig(shards=6, replication_factor=2, write_consistency_factor=2, on_disk=True))
    assert store.create_version(384) == "raft_chunks_v1"
    (_, args, kwargs), *indexes = client.calls
    assert args == ("raft_chunks_v1",)
    assert (kwargs["shard_number"], kwargs["replication_factor"], kwargs["write_consistency_factor"]) == (6, 2, 2)
    dense, bm25 = kwargs["vectors_config"]["dense"], kwargs["sparse_vectors_config"]["bm25"]
    assert dense.size == 384 and dense.on_disk is True
    assert bm25.modifier == models.Modifier.IDF and bm25.index.on_disk is True  # Qdrant weighs BM25 terms by IDF
    assert sorted(a[1] for _, a, _ in indexes) == ["access", "doc_id", "source"]  # filtered search stays fast


def test_config_reaches_the_server_client(monkeypatch):
    monkeypatch.setenv("RAFT_QDRANT_API_KEY", "s3cret")
    cfg = load_config(REPO / "raft.yaml", {"qdrant.url": "http://127.0.0.1:1", "qdrant.shards": "3", "qdrant.replication_factor": "2",
                                           "qdrant.hnsw_ef": "128"})
    store = open_index(cfg)  # the client connects lazily: nothing listens on port 1
    try:
        assert not store.local and (store.layout.shards, store.layout.replication_factor, store.layout.on_disk) == (3, 2, False)
        assert store.effort is not None and store.effort.hnsw_ef == 128  # sent with every dense search
        assert store.client._client.rest_uri.startswith("http://127.0.0.1:1")
        assert store.client._client._rest_headers["api-key"] == "s3cret"  # what every REST request sends
    finally:
        store.close()


@pytest.mark.skipif(not os.environ.get("QDRANT_URL"), reason="no Qdrant server here: set QDRANT_URL (and QDRANT_API_KEY) to run against one")
def test_sync_and_search_against_a_real_server(tmp_path, corpus):
    from flows.cli import main

    alias = f"raft_test_{uuid.uuid4().hex[:8]}"
    argv = ["--config", str(REPO / "raft.yaml"), "--work-dir", str(tmp_path), "--set", f"qdrant.url={os.environ['QDRANT_URL']}",
            "--set", f"qdrant.collection={alias}"]
    if os.environ.get("QDRANT_API_KEY"):
        argv += ["--set", f"qdrant.api_key={os.environ['QDRANT_API_KEY']}"]
    cfg = load_config(REPO / "raft.yaml", {"work_dir": str(tmp_path), "qdrant.url": os.environ["QDRANT_URL"], "qdrant.collection": alias,
                                            "qdrant.api_key": os.environ.get("QDRANT_API_KEY")})
    try:
        assert main(["index", "--corpus", str(corpus), *argv]) == 0
        assert main(["index", "--corpus", str(corpus), "--rebuild", *argv]) == 0
        assert main(["search", "What voltage does the PC-250 take?", *argv]) == 0
    finally:
        store = open_index(cfg)
        for name in store.versions():
            store.drop(name)
        store.close()
