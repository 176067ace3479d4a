"""Builds stage objects from the config; the CLI and the flows share these."""

from __future__ import annotations

from flows.config import RaftConfig
from retrieval.embedding import Embedder
from retrieval.store import ChunkStore, open_store
from retrieval.sync import IndexSettings


def index_settings(cfg: RaftConfig) -> IndexSettings:
    """The settings that decide chunks and vectors."""
    return IndexSettings(
        embedding_model=cfg.embedding.model,
        chunk_size=cfg.chunking.size,
        chunk_overlap=cfg.chunking.overlap,
        chunk_min_size=cfg.chunking.min_size,
        default_access=tuple(cfg.corpus.default_access),
        include=tuple(cfg.corpus.include),
    )


def make_embedder(cfg: RaftConfig) -> Embedder:
    """The configured embedding model (loaded on first use)."""
    return Embedder(cfg.embedding.model, batch_size=cfg.embedding.batch_size, device=cfg.embedding.device)


def open_index(cfg: RaftConfig) -> ChunkStore:
    """The chunk index: the Qdrant server at qdrant.url, else embedded Qdrant under the work dir."""
    q = cfg.qdrant
    return open_store(q.collection, q.url, cfg.qdrant_path, api_key=q.api_key, timeout_s=q.timeout_s)
