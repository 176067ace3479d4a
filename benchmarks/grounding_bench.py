"""Grounded decoding's cost and effect: `raft eval` of one version, grounding free then constrained,
on the same questions in the same run (repeated, alternating), one request at a time so latency
is per answer and not queueing.

    .venv/bin/python benchmarks/grounding_bench.py --work-dir .raft --model VERSION [--dataset DIR] [--repeats 2]

Prints each run's raft_rag scores and the latency ratio constrained / free.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flows.config import load_config  # noqa: E402
from flows.evaluate import evaluate  # noqa: E402

KEYS = ("n", "f1", "answer_contained", "quote_faithfulness", "quotes_per_answer", "answer_in_quote", "answer_parse_rate",
        "latency_s", "output_tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / ".raft")
    parser.add_argument("--model", help="a version name (default: production, else the newest)")
    parser.add_argument("--dataset", type=Path, help="a dataset folder whose eval split is asked (default: the latest)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    runs: dict[str, list[dict]] = {"free": [], "constrained": []}
    for _ in range(args.repeats):
        for grounding in runs:
            overrides = {"work_dir": str(args.work_dir), "generation.grounding": grounding, "evaluation.concurrency": "1",
                         "evaluation.max_tokens": str(args.max_tokens), **dict(item.split("=", 1) for item in args.set)}
            results, _ = evaluate(load_config(REPO / "raft.yaml", overrides), args.model, dataset=args.dataset, settings=["raft_rag"])
            scores = {k: results["settings"]["raft_rag"][k] for k in KEYS}
            runs[grounding].append(scores)
            print(grounding, json.dumps(scores), flush=True)
    mean = {g: sum(r["latency_s"] for r in rs) / len(rs) for g, rs in runs.items()}
    print(json.dumps({"latency_ratio_constrained_over_free": round(mean["constrained"] / mean["free"], 3), "runs": runs}))


if __name__ == "__main__":
    main()
