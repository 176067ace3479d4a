"""Retrieval quality on the sample QA file: recall@k and MRR of each question's source document.

Indexes the corpus into a temporary embedded Qdrant, then asks every question through
`retrieval.search.search_many` (the library function behind `raft search`) as a caller in
every access group, so restricted documents count too; once per search mode (search.mode) over
the same index, so the modes are compared on identical chunks.

    .venv/bin/python benchmarks/retrieval_bench.py [--corpus examples/corpus] [--qa examples/qa.jsonl] [--k 1,3,5,10]
                                                   [--modes dense,hybrid]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contracts.settings import QdrantConfig  # noqa: E402
from flows.config import load_config  # noqa: E402
from flows.wiring import index_settings, make_embedder  # noqa: E402
from retrieval.qa import read_qa_file  # noqa: E402
from retrieval.quality import evaluate_retrieval  # noqa: E402
from retrieval.store import open_store  # noqa: E402
from retrieval.sync import sync_corpus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "examples" / "corpus")
    parser.add_argument("--qa", type=Path, default=REPO / "examples" / "qa.jsonl")
    parser.add_argument("--k", default="1,3,5,10")
    parser.add_argument("--modes", default="dense,hybrid", help="search modes to compare, comma-separated")
    args = parser.parse_args()

    cfg = load_config(REPO / "raft.yaml", environ={})
    embedder = make_embedder(cfg)
    items = read_qa_file(args.qa)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(QdrantConfig(collection="bench"), Path(tmp))
        sync_corpus(store, embedder, args.corpus, index_settings(cfg))
        groups = sorted({g for doc in store.index_state(store.current()).values() for g in doc.access})
        for mode in args.modes.split(","):
            searcher = open_store(QdrantConfig(collection="bench"), Path(tmp), mode)  # the same embedded client
            results[mode] = [evaluate_retrieval(searcher, embedder, items, int(k), groups) for k in args.k.split(",")]
            searcher.close()
        store.close()
    print(f"{len(items)} questions, corpus {args.corpus}, chunking size {cfg.chunking.size}/overlap {cfg.chunking.overlap}")
    print(f"{'mode':>8}{'k':>4}{'recall@k':>10}{'MRR':>8}")
    for mode, rows in results.items():
        for r in rows:
            print(f"{mode:>8}{r.k:>4}{r.recall_at_k:>10.3f}{r.mrr:>8.3f}")
    print(json.dumps({mode: {"n": rows[0].n, "recall_at_1": round(rows[0].recall_at_1, 4),
                             **{f"recall_at_{r.k}": round(r.recall_at_k, 4) for r in rows}, **{f"mrr_at_{r.k}": round(r.mrr, 4) for r in rows}}
                      for mode, rows in results.items()}))


if __name__ == "__main__":
    main()
