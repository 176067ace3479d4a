"""Which sentence grounded decoding lets the model quote: how often the one ranked first holds a gold answer.

With `generation.quote_candidates` 1 (the default) a quote can only be the context sentence that
`retrieval.evidence.closest_sentences` ranks first, so this rate bounds how often the tuned model
can quote the answer. For each question of a QA file, the raft_rag context is rebuilt as
`raft eval` builds it (the top `evaluation.k` chunks of the work dir's index), and its quotable
sentences are ranked by:

- `embedding`: the cosine of the bare sentence's embedding to the question's (the ranking before 28ab403);
- `title`: the same with the document's title in front of the sentence;
- `title+bm25 0.2, length-weighted`: that plus 0.2 x the sentence's BM25 score among the
  context's sentences, scaled to the best, with BM25's usual length weight (b 0.75): the ranking
  before the length weight went;
- `title+bm25 W`: the same with W and without the length weight (W = TERM_WEIGHT is
  `closest_sentences`).

A sentence "holds a gold answer" when one of the question's `answers` is in it (whole words).
Prints one row per ranker: the share of answerable questions whose first (and first three)
sentences hold one. No model and no vLLM needed; the work dir needs an index (`raft index`).

    .venv/bin/python benchmarks/quote_ranking.py WORK_DIR:QA_FILE [WORK_DIR:QA_FILE ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contracts.answers import contains_answer  # noqa: E402
from flows.config import load_config  # noqa: E402
from flows.wiring import make_embedder, open_index  # noqa: E402
from retrieval.qa import read_qa_file  # noqa: E402
from retrieval.search import search_many  # noqa: E402
from retrieval.evidence import TERM_WEIGHT, match_sentences, quotable, titled  # noqa: E402
from retrieval.sparse import bm25_scores  # noqa: E402

WEIGHTS = (0.2, TERM_WEIGHT, 0.4)


def rankings(question: str, docs, embed) -> dict[str, list[str]]:
    """Each ranker's order of the context's quotable sentences (best first); the signals are
    grounding's own (`match_sentences`), so the TERM_WEIGHT row is `closest_sentences`' ranking."""
    match = match_sentences(question, docs, embed)
    found, with_title, terms = match.sentences, match.cosines, match.terms
    vectors = embed([question, *found])

    def order(scores) -> list[str]:
        return [found[i] for i in sorted(range(len(found)), key=lambda i: (-float(scores[i]), i))]

    length_weighted = np.array(bm25_scores(question, titled(found, docs)))
    length_weighted /= length_weighted.max(initial=0.0) or 1.0
    out = {"embedding": order(vectors[1:] @ vectors[0]), "title": order(with_title)}
    out["title+bm25 0.2, length-weighted"] = order(with_title + 0.2 * length_weighted)
    out.update({f"title+bm25 {w}": order(with_title + w * terms) for w in WEIGHTS})
    return out


def main() -> None:
    if len(sys.argv) < 2 or any(":" not in a for a in sys.argv[1:]):
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        work_dir, qa_file = arg.split(":", 1)
        cfg = load_config(REPO / "raft.yaml", {"work_dir": str(Path(work_dir).resolve())})
        embedder, store = make_embedder(cfg), open_index(cfg)
        try:
            items = read_qa_file(Path(qa_file))
            hits = search_many(store, embedder, [i.question for i in items], cfg.evaluation.k, cfg.dataset.audience)
        finally:
            store.close()
        first: dict[str, int] = {}
        three: dict[str, int] = {}
        answerable = 0
        for item, retrieved in zip(items, hits):
            docs = [h.context_doc() for h in retrieved]

            def holds(sentence: str) -> bool:
                return any(contains_answer(sentence, a) for a in item.answers)

            found = quotable(docs)
            if not any(holds(s) for s in found):
                continue
            answerable += 1
            for name, ranked in rankings(item.question, docs, embedder.encode).items():
                first[name] = first.get(name, 0) + holds(ranked[0])
                three[name] = three.get(name, 0) + any(holds(s) for s in ranked[:3])
        print(f"\n{qa_file}: {len(items)} questions, {answerable} with a gold answer in a context sentence (k {cfg.evaluation.k})")
        print("| ranker | first holds an answer | one of the first 3 |\n| --- | ---: | ---: |")
        for name in first:
            print(f"| {name} | {first[name] / answerable:.3f} | {three[name] / answerable:.3f} |")


if __name__ == "__main__":
    main()
