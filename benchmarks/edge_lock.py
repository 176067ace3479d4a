"""Does a search in Qdrant Edge let other Python threads run? And what does batching buy?

Why threads do not add queries/s on the embedded engine (docs/benchmarks.md, "Search at scale"):
on N synthetic chunks (retrieval_scale.py's clustered data and access labels), a pure-Python
counter thread counts for 3 s alone and then for 3 s beside back-to-back `query_batch` calls of
200 filtered queries; the share it keeps is near 1 (on a second core) when the engine lets go of
Python's lock during a call and near 0 when it holds it. Then the same 200 queries as one call
each against one call for all, and `EdgeStore.search` from 1 and 2 threads.

    .venv/bin/python benchmarks/edge_lock.py [--chunks 20000]

Prints one JSON object: {"chunks", "counter_share_beside_search", "qps_one_call_each",
"qps_one_call_for_all", "qps_search_1_thread", "qps_search_2_threads"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import qdrant_edge as qe

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contracts.settings import QdrantConfig  # noqa: E402
from retrieval.backend import DENSE, visible_labels  # noqa: E402
from retrieval.store import open_store  # noqa: E402
from retrieval_scale import CALLER, build_index, synthetic_corpus  # noqa: E402  (benchmarks/, beside this script)

SECONDS = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20000)
    args = parser.parse_args()

    corpus = synthetic_corpus(np.random.default_rng(0), args.chunks, 200, clustered=True)
    allowed = qe.Filter(must=[qe.FieldCondition(key="access", match=qe.MatchAny(any=visible_labels(CALLER)))])
    requests = [qe.QueryRequest(limit=10, query=qe.Query.Nearest(q.tolist(), using=DENSE), filter=allowed, with_payload=False)
                for q in corpus.queries]

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(QdrantConfig(collection="lock", engine="edge"), Path(tmp) / "qdrant", "dense")
        build_index(store, corpus)

        with store.folder.live(store.alias) as shard:
            alone = _count(SECONDS)
            stop = threading.Event()
            searcher = threading.Thread(target=lambda: _until(stop, lambda: shard.query_batch(qe.QueryBatchRequest(requests))))
            searcher.start()
            beside = _count(SECONDS)
            stop.set()
            searcher.join()
            one_each = _rate(lambda: [shard.query_batch(qe.QueryBatchRequest([r])) for r in requests], len(requests))
            one_for_all = _rate(lambda: shard.query_batch(qe.QueryBatchRequest(requests)), len(requests))

        threaded = {}
        for n in (1, 2):
            with ThreadPoolExecutor(n) as pool:
                threaded[n] = _rate(lambda: list(pool.map(lambda q: store.search(q, "", 10, CALLER), corpus.queries)), len(corpus.queries))
        store.close()

    print(json.dumps({
        "chunks": args.chunks, "counter_share_beside_search": round(beside / alone, 3),
        "qps_one_call_each": round(one_each), "qps_one_call_for_all": round(one_for_all),
        "qps_search_1_thread": round(threaded[1]), "qps_search_2_threads": round(threaded[2]),
    }))


def _count(seconds: float) -> int:
    """How far a pure-Python loop counts in `seconds` (it needs Python's lock all the time)."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += 1
    return n


def _until(stop: threading.Event, work) -> None:
    while not stop.is_set():
        work()


def _rate(work, per_call: int) -> float:
    """Calls of `work` (each `per_call` queries) for SECONDS after one warm-up call: queries/s."""
    work()
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < SECONDS:
        work()
        calls += 1
    return calls * per_call / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
