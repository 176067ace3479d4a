"""What matching a context's sentences to the question costs per request (`Grounder.request_fields`):
the evidence floor's share of it, and what the embedding cache saves, on the same retrieved contexts
in the same run.

For each question of a QA file the raft_rag context is retrieved as `raft eval` retrieves it (the
top `evaluation.k` chunks of the work dir's index), then the gateway's grounding fields are built
for it with the configured quote candidates:

- `without_floor` / `with_floor`: the embedding model called on every request, without a floor and
  with one that every context passes (so both give the same quote grammar and only the floor's
  own work differs), alternating, `--repeats` times;
- `cached_first_pass`: as the gateway and evaluation build them (`Grounder.from_config`, which keeps
  the vectors it embedded: `retrieval.evidence.CachedEmbed`), starting empty, one pass over the
  questions: what is saved is only what their contexts share;
- `cached_again`: the same questions once more (every sentence known: the question is embedded).

Prints one JSON object: milliseconds per request and the ratios against `without_floor`.

    .venv/bin/python benchmarks/evidence_cost.py --work-dir WORK_DIR --qa QA_FILE [--limit N] [--repeats 3] [--set KEY=VALUE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flows.config import load_config  # noqa: E402
from flows.wiring import make_embedder, open_index  # noqa: E402
from retrieval.qa import read_qa_file  # noqa: E402
from retrieval.search import search_many  # noqa: E402
from serving.grounding import Grounder, abstained  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--qa", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, help="the first N questions only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    cfg = load_config(REPO / "raft.yaml", {"work_dir": str(args.work_dir.resolve()), **dict(s.split("=", 1) for s in args.set)})
    embedder, store = make_embedder(cfg), open_index(cfg)
    try:
        questions = [item.question for item in read_qa_file(args.qa)][: args.limit]
        contexts = [[h.context_doc() for h in hits] for hits in search_many(store, embedder, questions, cfg.evaluation.k, cfg.dataset.audience)]
    finally:
        store.close()
    g = cfg.generation
    uncached = Grounder(g.grounding, g.quote_candidates, embedder.encode, g.answer, g.reask_echoes)
    grounders = {"without_floor": uncached, "with_floor": uncached.with_floor(float("-inf"))}
    expected = [uncached.request_fields(q, docs) for q, docs in zip(questions, contexts)]
    floored = [grounders["with_floor"].request_fields(q, docs) for q, docs in zip(questions, contexts)]
    assert floored == expected and not any(abstained(f) for f in floored)  # the same grammar: only the floor's work differs

    def one_pass(grounder: Grounder) -> float:
        began = time.perf_counter()
        for question, docs in zip(questions, contexts):
            grounder.request_fields(question, docs)
        return time.perf_counter() - began

    seconds = dict.fromkeys(grounders, 0.0)
    for _ in range(args.repeats):
        for name, grounder in grounders.items():
            seconds[name] += one_pass(grounder) / args.repeats
    cached = Grounder.from_config(g, embedder.encode)
    seconds["cached_first_pass"] = one_pass(cached)
    seconds["cached_again"] = one_pass(cached)
    same = sum(cached.request_fields(q, docs) == e for q, docs, e in zip(questions, contexts, expected))
    ms = {name: round(1000 * s / len(questions), 2) for name, s in seconds.items()}
    print(json.dumps({
        "requests": len(questions), "repeats": args.repeats, "quote_candidates": g.quote_candidates, "ms_per_request": ms,
        "ratio_to_without_floor": {name: round(v / ms["without_floor"], 3) for name, v in ms.items() if name != "without_floor"},
        "cached_fields_identical": f"{same}/{len(questions)}",
    }))


if __name__ == "__main__":
    main()
