"""The pipeline's expensive steps, wired from the config; the CLI commands and the Prefect flows
both call these, so `raft dataset` and the flow's dataset step are the same code."""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from contracts.settings import RaftConfig
from flows.wiring import index_settings, make_embedder, make_teacher, open_index
from retrieval.documents import sha256
from retrieval.qa import read_qa_file
from retrieval.sync import SyncReport, sync_corpus
from training.base_model import resolve_base_model
from training.dataset import Dataset, build_dataset, questions_from_qa, teacher_questions
from training.dataset_folder import write_dataset
from training.registry import Version
from training.run import run_training
from training.teacher import Teacher

# One sync at a time: the corpus watcher and a pipeline run may both re-index in one process,
# and a gateway's watcher and a worker's schedule in two (the work dir is their shared volume).
_INDEX_LOCK = threading.Lock()


class NoQuestionSource(ValueError):
    """Neither a QA file nor a teacher is configured."""


@dataclass
class BuiltDataset:
    path: Path
    digest: str
    dataset: Dataset
    teacher: Teacher | None


def sync_index(cfg: RaftConfig, force: bool = False, rebuild: bool = False, progress: bool = False) -> SyncReport:
    """Bring the index in line with the corpus (raises SyncStopped when a data check fails)."""
    with _one_sync_at_a_time(cfg.work_dir):
        store = open_index(cfg)
        try:
            return sync_corpus(
                store, make_embedder(cfg), cfg.corpus.path, index_settings(cfg),
                max_deleted_share=cfg.checks.max_deleted_share, max_skipped_share=cfg.checks.max_skipped_share,
                force=force, rebuild=rebuild, progress=progress,
            )
        finally:
            store.close()


@contextmanager
def _one_sync_at_a_time(work_dir: Path) -> Iterator[None]:
    lock = work_dir / "state" / "index.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with _INDEX_LOCK, open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # waits for a sync in another process
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def make_dataset(cfg: RaftConfig, out: Path | None = None, progress: bool = False) -> BuiltDataset:
    """Build a RAFT dataset from the index and the configured question sources; write it."""
    teacher = make_teacher(cfg)
    qa_file = cfg.dataset.qa_file
    if qa_file is None and teacher is None:
        raise NoQuestionSource("no question source: set dataset.qa_file (--qa FILE) or a teacher (--teacher-url, --teacher-model)")
    questions = questions_from_qa(read_qa_file(qa_file)) if qa_file else []
    store = open_index(cfg)
    try:
        if teacher is not None and cfg.teacher.questions_per_chunk > 0:
            questions += teacher_questions(store, teacher, cfg.dataset.audience, cfg.dataset.max_teacher_chunks, cfg.dataset.seed, progress)
        sources = {"qa_file": None if qa_file is None else {"path": str(qa_file), "sha256": sha256(qa_file.read_bytes())}}
        dataset = build_dataset(store, make_embedder(cfg), questions, cfg.dataset, teacher, sources, progress=progress)
    finally:
        store.close()
    path, digest = write_dataset(dataset, cfg.datasets_dir, out)
    return BuiltDataset(path, digest, dataset, teacher)


def train_version(
    cfg: RaftConfig, dataset: Path, resume: bool = False, continue_interrupted: bool = False, progress: bool = False
) -> Version | None:
    """Fine-tune the configured base model on `dataset` and register the version (None on
    non-main processes of a multi-process launch); see `run_training` for the two resumes."""
    base = resolve_base_model(cfg.training.base_model, cfg.work_dir)
    return run_training(
        base, dataset, cfg.models_dir, cfg.runs_dir, cfg.training, merge=cfg.training.merge, resume=resume,
        continue_interrupted=continue_interrupted, progress=progress,
    )
