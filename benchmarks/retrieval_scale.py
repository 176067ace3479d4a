"""Search at scale: build time, filtered-search latency, recall against exact search, queries/s
by thread count and memory, on synthetic chunks (no embedding model needed).

N unit vectors of 384 dimensions (all-MiniLM-L6-v2's size) with chunk payloads; a third of the
chunks are public, the others carry the access label `hr` or `internal`, and every query
searches as a caller in `hr` (the access filter the gateway applies). Recall@10 compares the
engine's top 10 with exact search in numpy over the same allowed chunks; queries/s runs the
same queries from 1, 2, 4 and 8 threads through one store, as the gateway's request threads do.

`--data clustered` (default) draws chunks as real embeddings lie: in topics of 50, each chunk
its topic's direction plus as much random noise (cosine about 0.5 between chunks of a topic,
about 0 between topics), queries alike. `--data uniform` draws every vector at random: no
structure at all, the worst case for any graph index (docs/benchmarks.md has both).

    .venv/bin/python benchmarks/retrieval_scale.py --chunks 100000 [--engine edge|local] [--data clustered|uniform] [--queries 200]
        [--hnsw-ef 128,256,512] [--json]

Engines: `edge` (Qdrant Edge, the default: HNSW, built by the store's commit, which the build
time includes) and `local` (qdrant-client's embedded mode: exhaustive search). Prints one JSON object:
{"chunks", "engine", "build_s", "p50_ms", "p95_ms", "recall_at_10", "qps": {"1", "2", "4", "8"}, "rss_mb"}, the search
figures at the default `qdrant.hnsw_ef`; with `--hnsw-ef`, also "by_hnsw_ef": {EF: {"p50_ms", "p95_ms", "recall_at_10"}},
the same queries over the same index with `qdrant.hnsw_ef` set to each EF.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contracts.settings import QdrantConfig  # noqa: E402
from retrieval.index import IndexWriter  # noqa: E402
from retrieval.sparse import SparseVector  # noqa: E402
from retrieval.store import open_store  # noqa: E402

DIM = 384
LABELS = (["public"], ["hr"], ["internal"])
CALLER = ["hr"]
THREADS = (1, 2, 4, 8)
TOPIC_SIZE = 50
QPS_SECONDS = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, required=True)
    parser.add_argument("--engine", choices=["edge", "local"], default="edge")
    parser.add_argument("--data", choices=["clustered", "uniform"], default="clustered")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--hnsw-ef", default="", help="comma-separated qdrant.hnsw_ef values to measure search with besides the default")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args()
    efforts = [int(ef) for ef in args.hnsw_ef.split(",") if ef.strip()]

    corpus = synthetic_corpus(np.random.default_rng(0), args.chunks, args.queries, clustered=args.data == "clustered")
    vectors, queries, labels, ids = corpus.vectors, corpus.queries, corpus.labels, corpus.ids

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "qdrant"
        store = open_store(QdrantConfig(collection="scale", engine=args.engine), folder, "dense")
        began = time.perf_counter()
        build_index(store, corpus)
        build_s = time.perf_counter() - began

        allowed = np.flatnonzero(np.isin(labels, [LABELS.index(["public"]), LABELS.index(CALLER)]))
        exact = [set(np.array(ids)[allowed[np.argsort(-(vectors[allowed] @ q))[:10]]]) for q in queries]
        searches = search_figures(store, queries, exact)
        by_effort = {}
        for ef in efforts:
            tuned = open_store(QdrantConfig(collection="scale", engine=args.engine, hnsw_ef=ef), folder, "dense")
            by_effort[str(ef)] = search_figures(tuned, queries, exact)
            tuned.close()

        # Each thread count asks the queries again until 3 s have passed: one pass of 200 queries
        # can take a few tenths of a second, too short to time against this machine's noise.
        qps = {}
        for n in THREADS:
            with ThreadPoolExecutor(n) as pool:
                list(pool.map(lambda q: store.search(q, "", 10, CALLER), queries[: 4 * n]))  # threads started and warm
                asked, t = 0, time.perf_counter()
                while asked == 0 or time.perf_counter() - t < QPS_SECONDS:
                    list(pool.map(lambda q: store.search(q, "", 10, CALLER), queries))
                    asked += len(queries)
                qps[str(n)] = round(asked / (time.perf_counter() - t), 1)
        store.close()

    result = {
        "chunks": args.chunks, "engine": args.engine, "data": args.data, "build_s": round(build_s, 1), **searches,
        "qps": qps, "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if by_effort:
        result["by_hnsw_ef"] = by_effort
    if not args.json:
        print(f"{args.chunks} chunks ({args.data}), engine {args.engine}: build {result['build_s']} s, p50 {result['p50_ms']} ms, "
              f"p95 {result['p95_ms']} ms, recall@10 {result['recall_at_10']}, queries/s by threads {qps}, peak RSS {result['rss_mb']} MB")
        for ef, figures in by_effort.items():
            print(f"  hnsw_ef {ef}: p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, recall@10 {figures['recall_at_10']}")
    print(json.dumps(result))


def search_figures(store: IndexWriter, queries: np.ndarray, exact: list[set[str]]) -> dict[str, float]:
    """p50 and p95 latency of searching each query as the caller, and recall@10 against `exact`."""
    latencies, found = [], []
    for q in queries:
        t = time.perf_counter()
        hits = store.search(q, "", 10, CALLER)
        latencies.append(time.perf_counter() - t)
        found.append({h.chunk_id for h in hits})
    return {
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2), "p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 2),
        "recall_at_10": round(float(np.mean([len(f & e) / 10 for f, e in zip(found, exact)])), 4),
    }


class SyntheticCorpus(NamedTuple):
    vectors: np.ndarray  # one unit vector per chunk
    queries: np.ndarray
    labels: np.ndarray  # per chunk, its index in LABELS
    ids: list[str]
    payloads: list[dict[str, Any]]


def synthetic_corpus(rng: np.random.Generator, chunks: int, queries: int, clustered: bool) -> SyntheticCorpus:
    """`chunks` chunks with payloads and access labels, and `queries` queries drawn alike (in topics of
    TOPIC_SIZE when `clustered`, else uniformly)."""
    topics = unit_rows(rng.standard_normal((chunks // TOPIC_SIZE + 1, DIM), dtype=np.float32)) if clustered else None
    vectors, asked = synthetic_vectors(rng, chunks, topics), synthetic_vectors(rng, queries, topics)
    labels = rng.integers(0, len(LABELS), chunks)
    payloads = [
        {"doc_id": f"doc-{i // 4}", "source": f"doc-{i // 4}.md", "title": "", "text": "", "headings": [], "start": 0, "end": 0,
         "access": LABELS[label]}
        for i, label in enumerate(labels)
    ]
    return SyntheticCorpus(vectors, asked, labels, [str(uuid.UUID(int=i + 1)) for i in range(chunks)], payloads)


def build_index(store: IndexWriter, corpus: SyntheticCorpus) -> None:
    """What a sync does with the chunks: write them as a new version, build its index, make it live."""
    version = store.create_version(DIM)
    store.upsert(version, corpus.ids, corpus.vectors, [SparseVector([], [])] * len(corpus.ids), corpus.payloads, batch=1024)
    store.commit(version)
    store.point_alias_to(version)


def synthetic_vectors(rng: np.random.Generator, n: int, topics: np.ndarray | None) -> np.ndarray:
    """n unit vectors: each a random topic's direction plus as much noise, or noise alone without topics."""
    noise = unit_rows(rng.standard_normal((n, DIM), dtype=np.float32))
    return noise if topics is None else unit_rows(topics[rng.integers(0, len(topics), n)] + noise)


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


if __name__ == "__main__":
    main()
