"""Builds stage objects from the config; the CLI and the flows share these."""

from __future__ import annotations

import string
from pathlib import Path

from flows.config import ConfigError, RaftConfig
from retrieval.embedding import Embedder
from retrieval.store import ChunkStore, Layout, open_store
from retrieval.sync import IndexSettings
from serving.vllm_process import VLLMSettings
from training.dataset import DatasetSettings
from training.registry import Version
from training.trainer import TrainSettings
from training.teacher import ANSWER_PROMPT, QUESTION_PROMPT, Teacher, TeacherSettings


def index_settings(cfg: RaftConfig) -> IndexSettings:
    """The settings that decide chunks and vectors."""
    return IndexSettings(
        embedding_model=cfg.embedding.model,
        chunk_size=cfg.chunking.size,
        chunk_overlap=cfg.chunking.overlap,
        chunk_min_size=cfg.chunking.min_size,
        default_access=tuple(cfg.corpus.default_access),
        include=tuple(cfg.corpus.include),
        unknown_metadata=cfg.checks.unknown_metadata,
    )


def make_embedder(cfg: RaftConfig) -> Embedder:
    """The configured embedding model (loaded on first use)."""
    return Embedder(cfg.embedding.model, batch_size=cfg.embedding.batch_size, device=cfg.embedding.device)


def open_index(cfg: RaftConfig) -> ChunkStore:
    """The chunk index: the Qdrant server at qdrant.url, else embedded Qdrant under the work dir."""
    q = cfg.qdrant
    layout = Layout(q.shards, q.replication_factor, q.write_consistency_factor, q.on_disk)
    return open_store(q.collection, q.url, cfg.qdrant_path, api_key=q.api_key, timeout_s=q.timeout_s, layout=layout)


def dataset_settings(cfg: RaftConfig) -> DatasetSettings:
    """How `raft dataset` builds examples."""
    d = cfg.dataset
    return DatasetSettings(
        p=d.p, k=d.k, random_share=d.random_share, seed=d.seed, eval_share=d.eval_share, style=d.style,
        audience=tuple(d.audience), no_oracle=d.no_oracle, candidates=d.candidates, near_duplicate=d.near_duplicate,
    )


def datasets_dir(cfg: RaftConfig) -> Path:
    """Where datasets live under the work dir."""
    return cfg.work_dir / "datasets"


def train_settings(cfg: RaftConfig) -> TrainSettings:
    """How `raft train` trains."""
    t = cfg.training
    return TrainSettings(
        lora_rank=t.lora.rank, lora_alpha=t.lora.alpha, lora_dropout=t.lora.dropout, lora_targets=tuple(t.lora.targets),
        learning_rate=t.learning_rate, schedule=t.schedule, warmup_ratio=t.warmup_ratio, weight_decay=t.weight_decay,
        epochs=t.epochs, max_steps=t.max_steps, batch_size=t.batch_size, grad_accum=t.grad_accum, max_seq_len=t.max_seq_len,
        eval_every=t.eval_every, save_every=t.save_every, seed=t.seed, device=t.device, bf16=t.bf16,
        gradient_checkpointing=t.gradient_checkpointing,
    )


def models_dir(cfg: RaftConfig) -> Path:
    """The model registry under the work dir."""
    return cfg.work_dir / "models"


def runs_dir(cfg: RaftConfig) -> Path:
    """Where training runs keep checkpoints until their version is registered."""
    return cfg.work_dir / "runs"


def vllm_settings(
    cfg: RaftConfig, model: str, served_name: str, adapters: dict[str, Version], port: int, runtime_lora_updating: bool
) -> VLLMSettings:
    """vLLM serving `model` as `served_name`, plus `adapters` (version name -> version) as LoRA."""
    v = cfg.vllm
    rank = max([ver.metadata.get("serving", {}).get("max_lora_rank", 16) for ver in adapters.values()] + [cfg.training.lora.rank])
    return VLLMSettings(
        model=model, served_name=served_name, adapters={name: str(ver.adapter_dir) for name, ver in adapters.items()},
        lora_rank=rank, max_loras=max(v.max_loras, len(adapters)), port=port, max_model_len=v.max_model_len,
        max_num_seqs=v.max_num_seqs, dtype=v.dtype, tensor_parallel_size=v.tensor_parallel_size,
        gpu_memory_utilization=v.gpu_memory_utilization, cpu_kv_cache_gib=v.cpu_kv_cache_gib,
        runtime_lora_updating=runtime_lora_updating, extra_args=tuple(v.extra_args),
    )


def make_teacher(cfg: RaftConfig) -> Teacher | None:
    """The configured teacher LLM, or None when teacher.url is unset (offline)."""
    t = cfg.teacher
    if not t.url:
        return None
    if not t.model:
        raise ConfigError("teacher.url is set but teacher.model is not: name the model the endpoint serves")
    settings = TeacherSettings(
        base_url=t.url, model=t.model, api_key=t.api_key, concurrency=t.concurrency, max_retries=t.max_retries,
        timeout_s=t.timeout_s, temperature=t.temperature, max_tokens=t.max_tokens, questions_per_chunk=t.questions_per_chunk,
        question_prompt=_template(t.question_prompt, "teacher.question_prompt", {"title", "text", "n"}) or QUESTION_PROMPT,
        answer_prompt=_template(t.answer_prompt, "teacher.answer_prompt", {"title", "text", "question", "reference"}) or ANSWER_PROMPT,
    )
    return Teacher(settings, cfg.work_dir / "teacher" / "cache.jsonl")


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
