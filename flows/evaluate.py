"""`raft eval` and `raft gate` wired from the config: open the index and the embedding model,
run the evaluation stage (evaluation/evaluate.py), close the index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.settings import RaftConfig
from evaluation import evaluate as stage
from evaluation.gate import Decision
from flows.wiring import make_embedder, open_index


def evaluate(
    cfg: RaftConfig,
    model: str | None = None,
    qa_file: Path | None = None,
    dataset: Path | None = None,
    settings: list[str] | None = None,
    k_sweep: list[int] | None = None,
    dsf: str | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The evaluation matrix as `raft eval --json` reports it, and the per-question rows."""
    store = open_index(cfg)
    try:
        return stage.evaluate(cfg, store, make_embedder(cfg), model, qa_file, dataset, settings, k_sweep, dsf, progress)
    finally:
        store.close()


def gate(cfg: RaftConfig, candidate: str | None = None, dataset: Path | None = None, progress: bool = False) -> Decision:
    """Gate `candidate` (default: the newest version) against production and record the decision."""
    store = open_index(cfg)
    try:
        return stage.gate(cfg, store, make_embedder(cfg), candidate, dataset, progress)
    finally:
        store.close()
