"""Index benchmark on the sample corpus, every figure against a baseline measured in the same run.

(a) pipeline overhead: full `sync_corpus` into an empty index versus raw
    `SentenceTransformer.encode` of exactly the same chunk texts (goal <= 1.10);
(b) incremental cost: re-index after changing 1 document versus the full index (goal <= 0.05);
plus a re-sync with no change, with an embedding model that is never loaded.

The model is loaded and warmed once before any timing: a long-running indexer (the flows)
keeps it loaded, and loading is not indexing work. Each timing is the median of --repeat runs.

    .venv/bin/python benchmarks/index_bench.py [--corpus examples/corpus] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contracts.settings import QdrantConfig  # noqa: E402
from flows.config import load_config  # noqa: E402
from flows.wiring import index_settings  # noqa: E402
from retrieval.chunking import chunk_document  # noqa: E402
from retrieval.corpus import scan_corpus  # noqa: E402
from retrieval.embedding import Embedder  # noqa: E402
from retrieval.store import open_store  # noqa: E402
from retrieval.sync import load_file, sync_corpus  # noqa: E402


def chunk_texts(corpus: Path, settings, embedder: Embedder) -> list[str]:
    """The exact texts a full sync embeds, built outside any timing."""
    files, _ = scan_corpus(corpus, list(settings.corpus.include))
    texts = []
    for file in files:
        docs, _ = load_file(file, settings)
        for doc in docs:
            chunks = chunk_document(doc, embedder.tokenizer, settings.chunking)
            texts.extend(c.embedding_text(doc.title) for c in chunks)
    return texts


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "examples" / "corpus")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    cfg = load_config(REPO / "raft.yaml", environ={})
    settings = index_settings(cfg)
    embedder = Embedder(cfg.embedding.model, batch_size=cfg.embedding.batch_size)
    embedder.encode(["warm-up"] * 64)
    texts = chunk_texts(args.corpus, settings, embedder)

    raw, full, one, none = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            corpus = Path(shutil.copytree(args.corpus, Path(tmp) / f"corpus{run}"))
            t, _ = timed(lambda: embedder.model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True))
            raw.append(t)
            store = open_store(QdrantConfig(collection="bench"), Path(tmp) / f"qdrant{run}")
            t, report = timed(lambda: sync_corpus(store, embedder, corpus, settings))
            full.append(t)
            docs, chunks = report.added, report.chunks_written
            target = sorted(corpus.rglob("*.md"))[0]
            target.write_text(target.read_text(encoding="utf-8") + f"\n\nAddendum {run}: this paragraph was added by the benchmark.\n", encoding="utf-8")
            t, report = timed(lambda: sync_corpus(store, embedder, corpus, settings))
            assert report.updated == 1, report
            one.append(t)
            cold = Embedder(cfg.embedding.model)
            t, report = timed(lambda: sync_corpus(store, cold, corpus, settings))
            assert report.embeddings_computed == 0 and not cold.loaded
            none.append(t)
            store.close()

    med = statistics.median
    results = {
        "documents": docs,
        "chunks": chunks,
        "raw_encode_s": round(med(raw), 3),
        "full_index_s": round(med(full), 3),
        "overhead_ratio": round(med(full) / med(raw), 3),
        "one_doc_reindex_s": round(med(one), 3),
        "one_doc_ratio": round(med(one) / med(full), 4),
        "no_change_sync_s": round(med(none), 3),
        "repeat": args.repeat,
    }
    print(f"corpus: {args.corpus} ({docs} documents, {chunks} chunks), median of {args.repeat} runs")
    print(f"{'measure':<42}{'seconds':>10}{'ratio':>10}  goal")
    print(f"{'raw SentenceTransformer.encode (baseline)':<42}{results['raw_encode_s']:>10.3f}{1:>10.3f}")
    print(f"{'(a) full index (sync_corpus)':<42}{results['full_index_s']:>10.3f}{results['overhead_ratio']:>10.3f}  <= 1.10 x raw")
    print(f"{'(b) re-index after changing 1 document':<42}{results['one_doc_reindex_s']:>10.3f}{results['one_doc_ratio']:>10.4f}  <= 0.05 x full")
    print(f"{'re-sync with no change (model never loaded)':<42}{results['no_change_sync_s']:>10.3f}{med(none) / med(full):>10.4f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
