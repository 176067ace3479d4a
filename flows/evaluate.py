"""`raft eval` and `raft gate` wired from the config: the evaluation stage (evaluation/evaluate.py)
with the configured index (opened only while the questions are retrieved) and embedding model."""

from __future__ import annotations

from functools import partial
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
    return stage.evaluate(cfg, partial(open_index, cfg), make_embedder(cfg), model, qa_file, dataset, settings, k_sweep, dsf, progress)


def gate(cfg: RaftConfig, candidate: str | None = None, dataset: Path | None = None, progress: bool = False) -> Decision:
    """Gate `candidate` (default: the newest version) against production and record the decision."""
    return stage.gate(cfg, partial(open_index, cfg), make_embedder(cfg), candidate, dataset, progress)
