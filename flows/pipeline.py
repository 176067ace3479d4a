"""The pipeline as Prefect flows: index_corpus -> build_dataset -> finetune -> evaluate_and_gate -> deploy,
chained by raft_pipeline.

Every flow takes the config file and overrides (plain values a deployment can store) and
reads the config itself; the stages stay free of Prefect. The expensive steps are cached on
content hashes, persisted under <work dir>/flows/cache, so a rerun with an unchanged corpus,
dataset and config skips them:
- the dataset on the indexed corpus's digest, the QA file's hash, the search mode and the dataset settings;
- training on the dataset's hash, the training settings and the base model's hash;
- the gate is not repeated for a version it already judged (decisions live in the registry).
Only one raft_pipeline runs per work dir at a time (a file lock; flows.watch coalesces
triggers that arrive during a run into one follow-up).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE, CacheKeyFnPolicy
from prefect.events import emit_event

from contracts.prompt import PROMPT_FORMAT
from contracts.settings import RaftConfig
from evaluation.gate import decisions
from flows.changes import Snapshot, index_snapshot, now_stamp, read_ledger, record_sync, record_training, retrain_due, snapshot_digest
from flows.config import load_config_once
from flows.evaluate import gate
from flows.steps import make_dataset, sync_index, train_version
from flows.wiring import index_settings, open_index
from retrieval.documents import sha256
from retrieval.index import StoreError
from serving.vllm_process import VLLMError
from training.base_model import resolve_base_model
from training.dataset_folder import check_dataset, dataset_hash, latest_dataset
from training.quotes import EXTRACTIVE_TEACHER
from training.registry import get_version, list_versions, read_aliases

CORPUS_CHANGED = "raft.corpus.changed"
RETRAIN_DUE = "raft.retrain.due"


class PipelineBusy(RuntimeError):
    """Another process is running the pipeline on this work dir."""


class DeployError(RuntimeError):
    """The running gateway did not start serving the promoted version in time."""


def load(config: str | None, overrides: dict[str, Any] | None) -> RaftConfig:
    """The config a flow run works with (file, then RAFT_* variables, then overrides), validated
    once per process. Flows take the file and overrides rather than the config object because
    Prefect stores every flow run's parameters in its database, and the config holds API keys."""
    return load_config_once(config, overrides or {})


def _progress() -> bool:
    return sys.stderr.isatty()  # progress bars for a person at a terminal (raft run), not in logs


def _snapshot(cfg: RaftConfig) -> Snapshot:
    """What the index holds now, per document (see flows.changes)."""
    store = open_index(cfg)
    try:
        return index_snapshot(store)
    finally:
        store.close()


# --- index ----------------------------------------------------------------------------------


def _retry_on(error: type[Exception]) -> Any:
    """A retry condition: retry only a failure of an outside service (`error`); bad input or a
    data check fails the same way every time."""

    def condition(task: Any, task_run: Any, state: Any) -> bool:
        try:
            state.result()
        except error:
            return True
        except Exception:
            return False
        return False

    return condition


@task(name="sync-index", retries=2, retry_delay_seconds=10, retry_condition_fn=_retry_on(StoreError), cache_policy=NONE)
def _sync(cfg: RaftConfig, force: bool) -> tuple[dict[str, Any], Snapshot]:
    report = sync_index(cfg, force=force, progress=_progress())
    return report.to_dict(), _snapshot(cfg)


@flow(name="index-corpus", log_prints=True)
def index_corpus(config: str | None = None, overrides: dict[str, Any] | None = None, force: bool = False) -> dict[str, Any]:
    """Sync the corpus into the index; record the change since the last training; emit
    `raft.corpus.changed` when documents changed and `raft.retrain.due` when a retrain is due."""
    cfg = load(config, overrides)
    sync, snapshot = _sync(cfg, force)
    ledger, change = record_sync(cfg.work_dir, sync, snapshot)
    due, why = retrain_due(ledger, cfg.flows.retrain)
    resource = {"prefect.resource.id": f"raft.corpus.{cfg.qdrant.collection}", "prefect.resource.name": str(cfg.corpus.path)}
    counts = {k: sync[k] for k in ("added", "updated", "deleted", "chunks_written", "chunks_deleted")}
    if counts["added"] or counts["updated"] or counts["deleted"]:
        emit_event(CORPUS_CHANGED, resource=resource, payload={**counts, "since_training": change.to_dict()})
    if due:
        emit_event(RETRAIN_DUE, resource=resource, payload={"reason": why, "since_training": change.to_dict()})
    get_run_logger().info(
        "index: %d added, %d updated, %d deleted, %d chunks written, %d removed; since training: %s; retrain %s",
        counts["added"], counts["updated"], counts["deleted"], counts["chunks_written"], counts["chunks_deleted"],
        why, "due" if due else "not due",
    )
    return {"sync": sync, "digest": ledger["last_sync"]["digest"], "since_training": change.to_dict(), "retrain_due": due, "why": why}


# --- dataset and training: cached on content hashes ---------------------------------------------


def _cache(cfg: RaftConfig) -> CacheKeyFnPolicy:
    """Cache records keyed by the task's `key` argument, stored in the work dir."""
    return CacheKeyFnPolicy(cache_key_fn=lambda _ctx, params: params["key"]).configure(key_storage=cfg.work_dir / "flows" / "cache")


def _run_cached(cached_task: Any, cfg: RaftConfig, args: tuple[Any, ...], still_valid: Callable[[Any], bool]) -> tuple[Any, bool]:
    """Run `cached_task` (its last argument is the cache key) through the work dir's cache; a
    cached result that no longer holds (its folder or version was removed since) is computed
    again. Returns the result and whether it came from the cache."""
    run = cached_task.with_options(cache_policy=_cache(cfg))
    state = run(*args, return_state=True)
    if not still_valid(state.result()):
        state = run.with_options(refresh_cache=True)(*args, return_state=True)
    return state.result(), state.name == "Cached"


def _key(kind: str, parts: dict[str, Any]) -> str:
    return f"{kind}-" + hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def dataset_key(cfg: RaftConfig, corpus_digest: str) -> str:
    """The dataset's cache key: everything that decides its examples. The hard negatives are what
    search ranks near each question, so the search mode, the engine and its HNSW effort count. The
    evidence measure does not: it changes no example, and a version's profile is measured again
    from its dataset when it changes (`training.evidence_profile`)."""
    qa = cfg.dataset.qa_file
    engine = "server" if cfg.qdrant.url else cfg.qdrant.engine
    return _key("dataset", {
        "corpus": corpus_digest, "index": index_settings(cfg).signature, "qa": sha256(qa.read_bytes()) if qa else None,
        "search": {"mode": cfg.search.mode, "engine": engine, "hnsw_ef": cfg.qdrant.hnsw_ef},
        "dataset": cfg.dataset.model_dump(mode="json"), "teacher": cfg.teacher.model_dump(mode="json", exclude={"api_key"}),
        "teacher_prompts": [sha256(p.read_bytes()) if p and p.is_file() else str(p) for p in (cfg.teacher.question_prompt, cfg.teacher.answer_prompt)],
        "prompt_format": PROMPT_FORMAT, "extractive_teacher": EXTRACTIVE_TEACHER, "work_dir": str(cfg.work_dir.resolve()),
    })


@task(name="make-dataset", persist_result=True)
def _dataset(cfg: RaftConfig, key: str) -> dict[str, str]:
    built = make_dataset(cfg, progress=_progress())
    return {"path": str(built.path), "hash": built.digest}


@flow(name="build-dataset", log_prints=True)
def build_dataset(config: str | None = None, overrides: dict[str, Any] | None = None, corpus_digest: str | None = None) -> dict[str, Any]:
    """RAFT examples from the index; skipped when the indexed corpus, QA file and settings are unchanged."""
    cfg = load(config, overrides)
    key = dataset_key(cfg, corpus_digest or snapshot_digest(_snapshot(cfg)))
    result, cached = _run_cached(_dataset, cfg, (cfg, key), lambda made: Path(made["path"]).is_dir())
    return {**result, "cached": cached}


@task(name="train-version", persist_result=True)
def _train(cfg: RaftConfig, dataset: str, key: str) -> str:
    version = train_version(cfg, Path(dataset), continue_interrupted=True, progress=_progress())
    assert version is not None  # flows train in one process
    return version.name


@flow(name="finetune", log_prints=True)
def finetune(config: str | None = None, overrides: dict[str, Any] | None = None, dataset: str | None = None) -> dict[str, Any]:
    """LoRA fine-tuning into a new registry version; skipped (the earlier version returned) when
    the dataset, training settings and base model are unchanged."""
    cfg = load(config, overrides)
    folder = check_dataset(Path(dataset)) if dataset else latest_dataset(cfg.datasets_dir)
    base = resolve_base_model(cfg.training.base_model, cfg.work_dir)
    key = _key("train", {
        "dataset": dataset_hash(folder), "settings": cfg.training.model_dump(mode="json"), "base": base.sha256,
        "merge": cfg.training.merge, "prompt_format": PROMPT_FORMAT, "models": str(cfg.models_dir.resolve()),
    })

    def registered(name: str) -> bool:  # asked after the task ran, so a version it just trained counts
        return name in {v.name for v in list_versions(cfg.models_dir)}

    name, cached = _run_cached(_train, cfg, (cfg, str(folder), key), registered)
    return {"version": name, "trained": not cached, "dataset": str(folder)}


# --- gate and deploy ------------------------------------------------------------------------


@task(name="gate", retries=1, retry_delay_seconds=30, retry_condition_fn=_retry_on(VLLMError), cache_policy=NONE)
def _gate(cfg: RaftConfig, version: str) -> dict[str, Any]:
    return gate(cfg, version, progress=_progress()).to_dict()


@flow(name="evaluate-and-gate", log_prints=True)
def evaluate_and_gate(config: str | None = None, overrides: dict[str, Any] | None = None, version: str | None = None) -> dict[str, Any]:
    """Evaluate `version` (default: the newest) against production; promote it if it passes.
    A version already judged keeps its decision. The comparison is published as artifacts."""
    cfg = load(config, overrides)
    folder = cfg.models_dir
    name = get_version(folder, version).name if version else list_versions(folder)[-1].name
    production = read_aliases(folder)["production"]
    earlier = decisions(folder, name)
    if production == name:
        return {"candidate": name, "promoted": True, "reasons": ["already production"], "fresh": False}
    if earlier and still_holds(earlier[-1], production):
        decision, fresh = earlier[-1], False
    else:
        decision, fresh = _gate(cfg, name), True
    if fresh:
        _publish(decision)
    return {**decision, "fresh": fresh}


def still_holds(decision: dict[str, Any], production: str | None) -> bool:
    """Whether a recorded refusal still answers the question it answered: production is still the
    baseline it lost to. A promotion holds only while its candidate is production (asked before),
    so it does not: a version promoted once, then replaced, is judged again against the new
    production (a rerun on data reverted to an older corpus reuses the older version), and so is
    one whose promotion a killed run recorded without moving the alias."""
    return not decision["promoted"] and decision["baseline"] == ("base:rag" if production is None else f"production:{production}")


def gate_table(decision: dict[str, Any]) -> list[dict[str, Any]]:
    """The gate's comparison as table rows: candidate and baseline, one column per score."""
    keys = ("n", "f1", "em", "answer_contained", "quote_faithfulness", "answer_parse_rate", "latency_s")
    rows = []
    for who, name, scores in (("candidate", decision["candidate"], decision["candidate_scores"]),
                              ("baseline", decision["baseline"], decision["baseline_scores"])):
        rows.append({"role": who, "model": name, **{k: scores.get(k) for k in keys}})
    return rows


def _publish(decision: dict[str, Any]) -> None:
    verdict = "promoted to production" if decision["promoted"] else "not promoted"
    create_table_artifact(gate_table(decision), key="raft-gate", description=f"{decision['candidate']}: {verdict}")
    lines = [f"# Gate: {decision['candidate']} {verdict}", "", f"Baseline: `{decision['baseline']}`, "
             f"evaluated on {decision['evaluation'].get('n')} questions at k={decision['evaluation'].get('k')}.", ""]
    lines += [f"- {reason}" for reason in decision["reasons"]]
    create_markdown_artifact("\n".join(lines), key="raft-gate-decision", description=verdict)


@flow(name="deploy", log_prints=True)
def deploy(config: str | None = None, overrides: dict[str, Any] | None = None, version: str | None = None) -> dict[str, Any]:
    """Confirm that the running gateway serves the production version (it swaps it in without
    downtime); with no gateway running there is nothing to swap: the next `raft serve` serves it."""
    cfg = load(config, overrides)
    version = version or read_aliases(cfg.models_dir)["production"]
    s = cfg.serving
    url = f"http://{s.host}:{s.port}/health"
    if s.model != "production":
        return {"deployed": False, "version": version, "why": f"serving.model is {s.model!r}, not production: nothing to swap"}
    if cfg.vllm.merged:
        return {"deployed": False, "version": version, "why": "vllm.merged serves one merged model: restart `raft serve` to serve it"}
    deadline = time.monotonic() + cfg.flows.deploy_timeout_s
    while True:
        try:
            health = httpx.get(url, timeout=5).json()
        except httpx.HTTPError:
            return {"deployed": False, "version": version, "why": f"no gateway at {url}: `raft serve` will serve {version}"}
        if health.get("production") == version:
            get_run_logger().info("the gateway at %s serves %s", url, version)
            return {"deployed": True, "version": version, "url": url}
        swap = health.get("last_swap") or {}
        if swap.get("version") == version and swap.get("ok") is False:
            raise DeployError(f"the gateway could not load {version}: {swap.get('error')}; it keeps serving {health.get('production')}")
        if time.monotonic() > deadline:
            raise DeployError(f"the gateway at {url} still serves {health.get('production')} after {cfg.flows.deploy_timeout_s:.0f} s, not {version}")
        time.sleep(1)


# --- the whole pipeline ---------------------------------------------------------------------


@contextmanager
def pipeline_lock(work_dir: Path) -> Iterator[None]:
    """Hold the work dir's pipeline lock, or raise PipelineBusy."""
    file = work_dir / "state" / "pipeline.lock"
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineBusy(f"another raft pipeline is running on {work_dir} (lock {file})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@flow(name="raft-pipeline", log_prints=True)
def raft_pipeline(
    config: str | None = None, overrides: dict[str, Any] | None = None, only_if_due: bool = False, force_index: bool = False,
) -> dict[str, Any]:
    """Index, build the dataset, fine-tune, gate, deploy; unchanged inputs skip their steps.

    only_if_due: stop after indexing unless the change since the last training calls for a
    retrain (what change triggers and the scheduled check use).
    """
    cfg = load(config, overrides)
    with pipeline_lock(cfg.work_dir):
        indexed = index_corpus(config, overrides, force_index)
        result: dict[str, Any] = {"index": indexed, "dataset": None, "training": None, "gate": None, "deploy": None}
        if only_if_due and not indexed["retrain_due"]:
            get_run_logger().info("no retrain: %s", indexed["why"])
            return {**result, "skipped": indexed["why"]}
        started = now_stamp()
        snapshot = _snapshot(cfg)
        digest = snapshot_digest(snapshot)
        result["dataset"] = build_dataset(config, overrides, digest)
        result["training"] = finetune(config, overrides, result["dataset"]["path"])
        version = result["training"]["version"]
        result["gate"] = evaluate_and_gate(config, overrides, version)
        # Only once judged: a gate that fails or is killed leaves the change pending, so the next run trains (from
        # its cache) and judges again instead of leaving the version unjudged for good.
        trained_on = read_ledger(cfg.work_dir)["trained_on"]
        if result["training"]["trained"] or trained_on is None or trained_on["digest"] != digest:
            record_training(cfg.work_dir, snapshot, started, version, _snapshot(cfg))
        if result["gate"]["promoted"]:
            result["deploy"] = deploy(config, overrides, version)
        return result

