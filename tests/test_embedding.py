"""One embedder shared by the gateway's request threads."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import sentence_transformers

from retrieval.embedding import Embedder
from tests.conftest import MODEL


def test_threads_share_one_embedder_and_the_model_loads_once(embedder, monkeypatch):
    loads = []

    class CountingModel(sentence_transformers.SentenceTransformer):  # the real model, its loads counted
        def __init__(self, *args, **kwargs):
            loads.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", CountingModel)
    fresh = Embedder(MODEL)
    batches = [[f"how hot does the H{t} heater get at setting {i}?" for i in range(12)] for t in range(8)]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(fresh.encode, batches))  # eight first requests at once
    assert len(loads) == 1
    for batch, vectors in zip(batches, parallel):
        np.testing.assert_allclose(vectors, embedder.encode(batch), atol=1e-5)
