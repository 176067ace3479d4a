"""Builds stage objects from the config; the CLI and the flows share these."""

from __future__ import annotations

import string
from pathlib import Path

from contracts.settings import RaftConfig
from flows.config import ConfigError
from retrieval.embedding import Embedder
from retrieval.index import IndexWriter
from retrieval.store import open_store
from retrieval.sync import IndexSettings
from training.teacher import ANSWER_PROMPT, QUESTION_PROMPT, Teacher


def index_settings(cfg: RaftConfig) -> IndexSettings:
    """The config sections that decide chunks and vectors."""
    return IndexSettings(cfg.embedding, cfg.chunking, cfg.corpus, cfg.checks)


def make_embedder(cfg: RaftConfig) -> Embedder:
    """The configured embedding model (loaded on first use)."""
    return Embedder(cfg.embedding.model, batch_size=cfg.embedding.batch_size, device=cfg.embedding.device)


def open_index(cfg: RaftConfig) -> IndexWriter:
    """The chunk index: the Qdrant server at qdrant.url, else embedded Qdrant under the work dir; searched in search.mode."""
    return open_store(cfg.qdrant, cfg.qdrant_path, cfg.search.mode)


def make_teacher(cfg: RaftConfig) -> Teacher | None:
    """The configured teacher LLM, or None when teacher.url is unset (offline)."""
    t = cfg.teacher
    if not t.url:
        return None
    if not t.model:
        raise ConfigError("teacher.url is set but teacher.model is not: name the model the endpoint serves")
    return Teacher(
        t, cfg.work_dir / "teacher" / "cache.jsonl",
        question_prompt=_template(t.question_prompt, "teacher.question_prompt", {"title", "text", "n"}) or QUESTION_PROMPT,
        answer_prompt=_template(t.answer_prompt, "teacher.answer_prompt", {"title", "text", "question", "reference"}) or ANSWER_PROMPT,
    )


def _template(path: Path | None, key: str, fields: set[str]) -> str | None:
    """A prompt template file, checked for placeholders the teacher cannot fill."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
        used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"{key}: {path} is not a valid template ({e}); write literal braces as {{{{ and }}}}") from None
    if used - fields:
        raise ConfigError(
            f"{key}: {path} uses unknown placeholder(s) {', '.join(sorted(used - fields))}; available: {', '.join(sorted(fields))}"
        )
    return text
