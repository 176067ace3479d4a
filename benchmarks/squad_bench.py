"""RAFT on a corpus nobody here wrote: the squad benchmark end to end (or any corpus and QA files).

Indexes `../shared/bench/squad/corpus`, builds the RAFT dataset from `train.jsonl`, trains
(merged model), and evaluates `test.jsonl` in every setting (closed_book, rag, raft_rag,
oracle) with grounding constrained and again with free decoding (raft_rag only, unless
`--free-settings` says more), through vLLM as `raft eval` does. Dataset
and training run as the pipeline's Prefect flows, cached on content hashes: a rerun with the
same data and settings reuses them and only evaluates again. Prints a Markdown table (the
one in docs/benchmarks.md) and the latency ratio of constrained to free decoding, measured
on the same prompts in the same run.

    .venv/bin/python benchmarks/squad_bench.py [--work-dir .raft-squad] [--set training.max_seq_len=1536] [--json OUT]
    .venv/bin/python benchmarks/squad_bench.py --corpus examples/corpus --train examples/qa.jsonl --test split  # sample domain

With `--test split` the questions are the dataset's own eval split (held out by document),
as the gate uses them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flows.cli import prefect_defaults  # noqa: E402

prefect_defaults()  # before Prefect is imported (below): it reads its settings then

from flows.config import load_config  # noqa: E402
from flows.evaluate import evaluate  # noqa: E402
from flows.pipeline import build_dataset, finetune, index_corpus  # noqa: E402

SQUAD = REPO.parent / "shared" / "bench" / "squad"
COLUMNS = (("n", "n"), ("f1", "F1"), ("em", "EM"), ("answer_contained", "contained"), ("quote_faithfulness", "faithfulness"),
           ("answer_in_quote", "answer in quote"), ("wrong_idk", "wrong IDK"), ("idk_without_answer", "IDK w/o answer"),
           ("latency_s", "latency s"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=SQUAD / "corpus")
    parser.add_argument("--train", type=Path, default=SQUAD / "train.jsonl", help="QA file the dataset is built from")
    parser.add_argument("--test", default=str(SQUAD / "test.jsonl"), help="QA file of unseen questions, or 'split' (the dataset's eval split)")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".raft-squad")
    parser.add_argument("--groundings", default="constrained,free")
    parser.add_argument(
        "--free-settings", default="raft_rag",
        help="settings asked again with grounding free (closed_book has no documents, so it is the same request in both; "
        "the goals compare raft_rag across groundings)",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override (repeatable)")
    parser.add_argument("--json", type=Path, help="also write every result here, and the per-question outputs to OUT.outputs.jsonl")
    args = parser.parse_args()

    overrides = {"work_dir": str(args.work_dir.resolve()), "corpus.path": str(args.corpus.resolve()), "dataset.qa_file": str(args.train.resolve())}
    overrides.update(dict(item.split("=", 1) for item in args.set))
    config = str(REPO / "raft.yaml")
    began = time.perf_counter()
    index_corpus(config, overrides)
    dataset = build_dataset(config, overrides)
    trained = finetune(config, overrides, dataset["path"])
    steps = {"dataset": dataset, "training": trained, "seconds_to_model": round(time.perf_counter() - began, 1)}

    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for grounding in args.groundings.split(","):
        cfg = load_config(config, {**overrides, "generation.grounding": grounding})
        qa = None if args.test == "split" else Path(args.test)
        settings = args.free_settings.split(",") if grounding == "free" else None
        results[grounding], answered = evaluate(
            cfg, trained["version"], qa_file=qa, dataset=Path(dataset["path"]) if qa is None else None, settings=settings
        )
        rows += [{**row, "grounding": grounding} for row in answered]

    print(table(results))
    out = {"steps": steps, "overrides": overrides, "results": results, "latency_ratio": latency_ratio(results)}
    print(json.dumps({"latency_ratio": out["latency_ratio"], "steps": steps}))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        # Per-question outputs beside it, for reading what the model got wrong.
        args.json.with_suffix(".outputs.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def table(results: dict[str, dict[str, Any]]) -> str:
    """One Markdown table: a row per grounding and setting."""
    lines = ["| grounding | setting | " + " | ".join(title for _, title in COLUMNS) + " |", "| --- | --- |" + " ---: |" * len(COLUMNS)]
    for grounding, result in results.items():
        for setting, m in result["settings"].items():
            cells = [_cell(m.get(key)) for key, _ in COLUMNS]
            lines.append(f"| {grounding} | {setting} | " + " | ".join(cells) + " |")
    retrieval = next(iter(results.values()))["retrieval"]
    if retrieval.get("n"):
        lines.append(f"\nretrieval: recall@{retrieval['k']} {retrieval['recall_at_k']}, MRR {retrieval['mrr']} ({retrieval['n']} questions)")
    return "\n".join(lines)


def latency_ratio(results: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """Mean latency of constrained over free decoding, per setting that ran both."""
    if not {"constrained", "free"} <= set(results):
        return None
    c, f = results["constrained"]["settings"], results["free"]["settings"]
    return {s: round(c[s]["latency_s"] / f[s]["latency_s"], 2) for s in c if s in f and f[s]["latency_s"]}


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
