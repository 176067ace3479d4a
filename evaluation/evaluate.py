"""The evaluation stage: held-out questions asked in every setting, and the promotion gate.

`evaluate` and `gate` ask through the vLLM at vllm.url when one is configured (versions loaded
into it under their names, as the gateway does), else through private vLLM servers on free
ports, serving versions under their version names as production does (LoRA adapters on the
base model, or their merged models when they have one and evaluation.merged is on), which
they stop when the questions are answered. The caller gives a way to open the index (it is
open only while the questions are retrieved) and the embedding model (flows/evaluate.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from contracts.generation import Sampling
from contracts.prompt import PROMPT_FORMAT
from contracts.settings import RaftConfig
from evaluation.gate import Decision, decide, record
from evaluation.plan import BASE, TUNED_SETTINGS, Job, Models, plan_jobs, retrieval_depth
from evaluation.questions import EvalQuestion, EvaluationError, from_dataset, from_qa
from evaluation.run import retrieval_scores, run_jobs, summarize_rows
from retrieval.embedding import Embedder
from retrieval.index import Hit, IndexReader
from retrieval.qa import read_qa_file
from retrieval.search import search_many
from serving.adapters import RUNTIME_LORA_NEEDS, AdapterError, adapter_path, load_adapter, served_models, unload_adapter
from serving.grounding import Grounder, version_floor
from serving.vllm_process import VLLMServer, for_versions, free_port
from training.base_model import BaseModel, resolve_base_model
from training.dataset_folder import check_dataset, dataset_hash, latest_dataset
from training.registry import Version, get_version, list_versions, read_aliases

log = logging.getLogger("raft.evaluate")


def evaluate(
    cfg: RaftConfig,
    open_index: Callable[[], IndexReader],
    embedder: Embedder,
    model: str | None = None,
    qa_file: Path | None = None,
    dataset: Path | None = None,
    settings: list[str] | None = None,
    k_sweep: list[int] | None = None,
    dsf: str | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the evaluation matrix; returns the results (as `raft eval --json`) and per-question rows.

    `model` is a version name, `production`, or `base` (then only the base-model settings run);
    None: production when set, else the newest version.
    """
    e = cfg.evaluation
    settings = list(settings or e.settings)
    tuned = _pick_version(cfg, model)
    if tuned is None:
        dropped = [s for s in settings if s in TUNED_SETTINGS]
        settings = [s for s in settings if s not in TUNED_SETTINGS]
        if not settings:
            raise EvaluationError(f"--model base runs no tuned setting; {', '.join(dropped)} need a trained version")
    dsf_version = get_version(cfg.models_dir, dsf) if dsf else None
    if dsf_version is not None and "dsf" not in settings:
        settings.append("dsf")
    if "dsf" in settings and dsf_version is None:
        raise EvaluationError("the dsf setting needs a model tuned without documents: pass --dsf VERSION")
    ks = sorted(set(k_sweep or e.k_sweep) | {e.k})

    questions, hits, source = _questions_and_hits(cfg, open_index, embedder, qa_file, dataset, retrieval_depth(settings, ks))
    versions = {v.name: v for v in (tuned, dsf_version) if v is not None}
    models = Models(tuned=tuned.name if tuned else None, dsf=dsf_version.name if dsf_version else None)
    jobs = plan_jobs(questions, hits, settings, models, ks)
    sampling = Sampling(max_tokens=e.max_tokens)

    began = time.perf_counter()
    base = _base_for(cfg, list(versions.values()))
    floors = _version_floors(cfg, versions, embedder)
    rows = _ask(cfg, jobs, base, versions, sampling, Grounder.from_config(cfg.generation, embedder.encode), floors, "evaluating", progress)
    by_setting, sweep = summarize_rows(rows, e.k)
    results = {
        "settings": by_setting,
        "k_sweep": sweep if len(ks) > 1 else {},
        "retrieval": {**retrieval_scores(questions, [found[: max(ks)] for found in hits], ks), "k": e.k},
        "model": {"tuned": models.tuned, "dsf": models.dsf, "base": base.name, "base_sha256": base.sha256},
        "dataset": {**source, "n": len(questions)},
        "sampling": asdict(sampling),
        "grounding": cfg.generation.grounding,
        "quote_candidates": cfg.generation.quote_candidates,
        "answer": cfg.generation.answer,
        "evidence_floor": {"quantile": cfg.generation.evidence_quantile, "floors": floors},
        "seconds": round(time.perf_counter() - began, 1),
    }
    recall = results["retrieval"].get("recall_by_k", {})
    results["retrieval"]["recall_at_k"] = recall.get(str(e.k))
    return results, rows


def gate(
    cfg: RaftConfig, open_index: Callable[[], IndexReader], embedder: Embedder, candidate: str | None = None, dataset: Path | None = None,
    progress: bool = False,
) -> Decision:
    """Evaluate `candidate` (default: the newest version) against production and record the decision.

    The baseline is production's `raft_rag`, or the base model's `rag` before any promotion;
    both are asked the same eval questions through one vLLM in the same run.
    """
    folder = cfg.models_dir
    version = get_version(folder, candidate) if candidate else _newest(cfg)
    production = read_aliases(folder)["production"]
    if production == version.name:
        raise EvaluationError(f"{version.name} is already production; train a new version to gate")
    e = cfg.evaluation
    questions, hits, source = _questions_and_hits(cfg, open_index, embedder, None, dataset or _trained_on(version), e.k)
    versions = {version.name: version}
    jobs = plan_jobs(questions, hits, ["raft_rag"], Models(tuned=version.name), [e.k])
    if production is None:
        baseline_name = "base:rag"
        jobs += plan_jobs(questions, hits, ["rag"], Models(tuned=None), [e.k])
    else:
        baseline_name = f"production:{production}"
        versions[production] = get_version(folder, production)
        jobs += plan_jobs(questions, hits, ["raft_rag"], Models(tuned=production), [e.k])
    base = _base_for(cfg, list(versions.values()))
    grounder = Grounder.from_config(cfg.generation, embedder.encode)
    rows = _ask(cfg, jobs, base, versions, Sampling(max_tokens=e.max_tokens), grounder, _version_floors(cfg, versions, embedder), "gate", progress)
    mine = [r for r in rows if r["model"] == version.name]
    theirs = [r for r in rows if r["model"] != version.name]
    candidate_scores = summarize_rows(mine, e.k)[0]["raft_rag"]
    baseline_scores = next(iter(summarize_rows(theirs, e.k)[0].values()))
    decision = decide(
        version.name, candidate_scores, baseline_name, baseline_scores,
        e.gate,
        {**source, "n": len(questions), "k": e.k},
    )
    record(folder, decision)
    return decision


def _trained_on(version: Version) -> Path | None:
    """The dataset `version` was trained on, while its folder is there: the gate asks its eval split,
    which no training question of it came from (another dataset's eval split may hold some)."""
    path = version.metadata.get("dataset", {}).get("path")
    return Path(path) if path and (Path(path) / "dataset_card.json").is_file() else None


def _questions_and_hits(
    cfg: RaftConfig, open_index: Callable[[], IndexReader], embedder: Embedder, qa_file: Path | None, dataset: Path | None, depth: int
) -> tuple[list[EvalQuestion], list[list[Hit]], dict[str, Any]]:
    """Held-out questions (a QA file when given, else the eval split of a dataset, default the
    latest; the first evaluation.limit), their top-`depth` chunks, and where they came from."""
    store = open_index()  # closed before the vLLMs start: embedded Qdrant admits one process at a time
    try:
        if qa_file is not None:
            questions = from_qa(read_qa_file(qa_file), store, embedder, cfg.dataset.audience, cfg.evaluation.k)
            source: dict[str, Any] = {"kind": "qa", "path": str(qa_file)}
        else:
            folder = check_dataset(dataset) if dataset else latest_dataset(cfg.datasets_dir)
            questions = from_dataset(folder, store)
            source = {"kind": "dataset eval split", "path": str(folder), "sha256": dataset_hash(folder)}
        questions = questions[: cfg.evaluation.limit] if cfg.evaluation.limit else questions
        hits = search_many(store, embedder, [q.question for q in questions], depth, cfg.dataset.audience)
    finally:
        store.close()
    return questions, hits, source


def _pick_version(cfg: RaftConfig, model: str | None) -> Version | None:
    if model == BASE:
        return None
    folder = cfg.models_dir
    if model is not None:
        return get_version(folder, model)
    production = read_aliases(folder)["production"]
    return get_version(folder, production) if production else _newest(cfg)


def _newest(cfg: RaftConfig) -> Version:
    versions = list_versions(cfg.models_dir)
    if not versions:
        raise EvaluationError(f"no model versions in {cfg.models_dir}: run `raft train` first, or evaluate --model base")
    return versions[-1]


def _base_for(cfg: RaftConfig, versions: list[Version]) -> BaseModel:
    """The configured base model, checked to be the one every version was trained on, and every
    version checked to read the prompt format this code writes."""
    base = resolve_base_model(cfg.training.base_model, cfg.work_dir)
    for v in versions:
        if v.metadata.get("prompt_format") != PROMPT_FORMAT:
            raise EvaluationError(
                f"{v.name} was trained on prompt format {v.metadata.get('prompt_format')}, but this code asks in prompt "
                f"format {PROMPT_FORMAT} (contracts/prompt.py changed since): retrain it (`raft dataset`, then `raft train`)"
            )
        trained_on = v.metadata.get("base_model", {})
        if trained_on.get("sha256") != base.sha256:
            raise EvaluationError(
                f"{v.name} was trained on base model {trained_on.get('name')!r} ({trained_on.get('sha256', '?')[:12]}), "
                f"but training.base_model is {base.name!r} ({base.sha256[:12]}): set training.base_model to the version's base"
            )
    return base


def _ask(
    cfg: RaftConfig, jobs: list[Job], base: BaseModel, versions: dict[str, Version], sampling: Sampling, grounder: Grounder,
    floors: dict[str, float], desc: str, progress: bool,
) -> list[dict[str, Any]]:
    """Ask every job; rows in job order.

    With vllm.url, through that server, every version loaded under its name for the run. Else
    through private vLLMs, one per way of serving, started one after another: the base model
    without LoRA (vLLM-CPU compiles only then: about 2.5x faster), versions as their merged
    models when they have one (evaluation.merged; vLLM-CPU runs LoRA about 11x slower), else
    as LoRA adapters on the base model. Each version answers with its evidence floor (`floors`), as served.
    """
    if cfg.vllm.url:
        servers = [(_external(cfg, versions, needs_base=any(job.model == BASE for job in jobs)), jobs)]
    else:
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            groups.setdefault(_server_for(cfg, job.model, versions), []).append(job)
        servers = [(_private(cfg, base, key, versions), group) for key, group in groups.items()]
    rows: dict[int, dict[str, Any]] = {}
    with tqdm(total=len(jobs), desc=desc, unit="answer", disable=not progress) as bar:
        for server, group in servers:
            with server as url:
                asked = run_jobs(group, url, sampling, cfg.evaluation.concurrency, grounder, bar.update, floors)
                for job, row in zip(group, asked):
                    rows[id(job)] = row
    return [rows[id(job)] for job in jobs]


def _version_floors(cfg: RaftConfig, versions: dict[str, Version], embedder: Embedder) -> dict[str, float]:
    """The evidence floor of each of `versions` that has one (the base model has none)."""
    floors = {name: version_floor(v, cfg.generation, embedder.encode, embedder.name) for name, v in versions.items()}
    return {name: floor for name, floor in floors.items() if floor is not None}


@contextmanager
def _external(cfg: RaftConfig, versions: dict[str, Version], needs_base: bool) -> Iterator[str]:
    """The vLLM at vllm.url with every version served under its name; the adapters this run loaded
    are unloaded after it (what the server already served, e.g. production, stays)."""
    url = str(cfg.vllm.url).rstrip("/")
    try:
        served = served_models(url)
    except AdapterError as e:
        raise EvaluationError(f"{e}: start it, or unset vllm.url to let the evaluation start its own vLLMs") from None
    if needs_base and BASE not in served:
        raise EvaluationError(f"the vLLM at vllm.url {url} serves {sorted(served)}, but no base model named {BASE!r}: "
                              f"start it with --served-model-name {BASE}")
    loaded: list[str] = []
    try:
        for name, version in versions.items():
            try:
                if load_adapter(url, name, adapter_path(cfg.vllm, version)):
                    loaded.append(name)
            except AdapterError as e:
                raise EvaluationError(f"{e}; the vLLM at vllm.url needs {RUNTIME_LORA_NEEDS}, with a --max-lora-rank "
                                      "that fits the adapter") from None
        yield url
    finally:
        for name in loaded:
            try:
                unload_adapter(url, name)
            except AdapterError as e:  # the answers are in; a leftover adapter only holds a slot
                log.warning("%s", e)


def _server_for(cfg: RaftConfig, model: str, versions: dict[str, Version]) -> str:
    if model == BASE:
        return BASE
    if versions[model].merged_dir is not None and (cfg.vllm.merged or cfg.evaluation.merged):
        return model
    if cfg.vllm.merged:
        raise EvaluationError(f"{model} has no merged model, and vllm.merged is true: train it with --merge, or set vllm.merged false")
    return "adapters"


@contextmanager
def _private(cfg: RaftConfig, base: BaseModel, key: str, versions: dict[str, Version]) -> Iterator[str]:
    """A private vLLM for one serving group (the base model alone, base + every adapter, or one
    merged version) for as long as the group is asked; its URL."""
    adapters = versions if key == "adapters" else {}
    merged = versions[key].merged_dir if key not in (BASE, "adapters") else None
    settings = for_versions(cfg.vllm, str(merged or base.path), key if merged else BASE, adapters, free_port(), False, cfg.training.lora.rank)
    log_file = cfg.work_dir / "logs" / f"vllm-eval-{key}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    with VLLMServer(settings, log_file) as server:
        yield server.url
