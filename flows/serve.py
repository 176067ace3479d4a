"""`raft serve`: vLLM and the RAG gateway together, wired from the config, kept running.

Two background threads keep the stack current and alive:
- the registry watcher: when `production` names a new version, the gateway loads it into the
  running vLLM and switches to it after a probe (serving.engine.Engine.swap); with
  vllm.merged (one merged model, no LoRA: the fast single-tenant path) there is no runtime
  swap, and a new production version is served after a restart;
- the vLLM supervisor: if vLLM exits, it is started again on the same port with the
  versions it served (the gateway answers 503 meanwhile).

With vllm.url the gateway uses a vLLM run by someone else (compose, Kubernetes): it starts
none and supervises none; it loads the production adapter into that server at start and on
every promotion, by its path under vllm.adapter_root (where that server mounts the models).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.settings import RaftConfig
from flows.wiring import make_embedder, open_index
from retrieval.embedding import Embedder
from retrieval.index import IndexReader
from retrieval.search import search
from serving.adapters import RUNTIME_LORA_NEEDS, adapter_path
from serving.chat_service import GatewaySettings, Retriever
from serving.citations import SourceDoc
from serving.engine import BASE, Engine, SwapError
from serving.gateway import create_app
from serving.grounding import version_floor
from serving.vllm_process import VLLMServer, VLLMSettings, for_versions
from training.base_model import resolve_base_model
from training.registry import RegistryError, Version, get_version, read_aliases

log = logging.getLogger("raft.serve")


class ServeError(RuntimeError):
    """The stack cannot start as configured; the message says what to change."""


@dataclass
class Stack:
    """A running vLLM, the engine handle on it, the gateway app, and the threads that keep them."""

    cfg: RaftConfig
    vllm: VLLMServer | None  # None: an external vLLM (vllm.url)
    engine: Engine
    app: object
    retrieve: Retriever
    store: IndexReader
    base_path: str  # the base model's checkpoint (resolved and verified once, at start)
    stop_event: threading.Event
    floors: dict[str, float]  # served version -> evidence floor, which the gateway reads per request
    trained_on: dict[str, tuple[str, ...]]  # served version -> the groups whose documents it was trained on
    embedder: Embedder  # the retrieval's, which quote candidates and the evidence floor are measured with

    def stop(self) -> None:
        """Stop the background threads and vLLM (its whole process group), close the index."""
        self.stop_event.set()  # first: the supervisor must not start a vLLM that nobody would stop
        try:
            if self.vllm is not None:
                self.vllm.stop()
        finally:
            self.store.close()


def start_stack(cfg: RaftConfig, vllm_log: Path | None = None) -> Stack:
    """Start vLLM with the configured version, build the gateway app, start watcher and supervisor."""
    s = cfg.serving
    folder = cfg.models_dir
    version = _configured_version(cfg)
    if cfg.vllm.url:
        server, base_path = None, ""
        engine = Engine(cfg.vllm.url, None, timeout_s=s.upstream_timeout_s)
        if not engine.healthy():
            raise ServeError(f"no vLLM answers at vllm.url {cfg.vllm.url}: start it, or unset vllm.url to let `raft serve` start one")
        if version is not None:
            _swap_external(cfg, engine, version)
    else:
        base_path = resolve_base_model(cfg.training.base_model, cfg.work_dir).path
        server = VLLMServer(_engine_settings(cfg, base_path, {version.name: version} if version else {}),
                            vllm_log or cfg.work_dir / "logs" / "vllm-serve.log")
        server.start()
        engine = Engine(server.url, version.name if version else None, timeout_s=s.upstream_timeout_s)
    store = open_index(cfg)
    embedder = make_embedder(cfg)
    retrieve = make_retriever(store, embedder)
    floors: dict[str, float] = {}
    trained_on: dict[str, tuple[str, ...]] = {}
    if version is not None:
        _note_version(cfg, floors, trained_on, version, embedder)
    app = create_app(GatewaySettings(cfg.serving, cfg.generation, cfg.vllm), engine, retrieve, embedder.encode, floors=floors,
                     trained_on=trained_on)
    stack = Stack(cfg, server, engine, app, retrieve, store, base_path, threading.Event(), floors, trained_on, embedder)
    if server is not None:
        threading.Thread(target=_supervise, args=(stack, folder), name="vllm-supervisor", daemon=True).start()
    if s.model == "production" and not cfg.vllm.merged:
        threading.Thread(target=_watch_registry, args=(stack, folder), name="registry-watcher", daemon=True).start()
    return stack


def serve(cfg: RaftConfig, flow_inputs: tuple[str | None, dict[str, Any]] | None = None) -> None:
    """Run the stack until Ctrl-C or SIGTERM, then stop the gateway and vLLM cleanly.

    With flows.watch and `flow_inputs` (the config file and overrides the flows load), the
    corpus watcher runs beside it: changed documents are re-indexed at once and served by the
    next request; enough change retrains, and a promoted version is swapped in.
    """
    import signal
    import sys

    import uvicorn

    # uvicorn shuts down on SIGTERM and then raises it again with the handler it found: make that
    # handler end this function through `finally`, so vLLM is stopped (docker stop, Kubernetes).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stack = start_stack(cfg)
    watcher = None
    try:
        if cfg.flows.watch and flow_inputs is not None:
            from flows.watch import CorpusWatcher

            watcher = CorpusWatcher(cfg, *flow_inputs).start()
        log.info("gateway on http://%s:%d/v1 (vLLM %s, serving %s)", cfg.serving.host, cfg.serving.port, stack.engine.url, stack.engine.active or BASE)
        uvicorn.run(stack.app, host=cfg.serving.host, port=cfg.serving.port, log_level="info")  # returns on SIGINT/SIGTERM
    finally:
        if watcher is not None:
            watcher.stop()
        stack.stop()


def example_answer(cfg: RaftConfig, question: str) -> dict[str, Any]:
    """Start the stack, ask `question` through the gateway (as a caller in `dataset.audience`, who
    may ask a version trained on it: public by default), stop it; the gateway's response: answer,
    citations, the retrieved context."""
    from fastapi.testclient import TestClient

    key = secrets.token_urlsafe(24)  # this call's own, never written anywhere
    keys = {**cfg.serving.api_keys, key: list(cfg.dataset.audience)}
    stack = start_stack(cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"api_keys": keys})}))
    try:
        with TestClient(stack.app) as client:
            response = client.post("/v1/chat/completions", json={"model": "raft", "messages": [{"role": "user", "content": question}]},
                                   headers={"Authorization": f"Bearer {key}"})
        body = response.json()
        if response.status_code != 200:
            raise ServeError(f"the gateway answered {response.status_code}: {body.get('error', {}).get('message')}")
        return body
    finally:
        stack.stop()


def _configured_version(cfg: RaftConfig) -> Version | None:
    folder = cfg.models_dir
    if cfg.serving.model == BASE:
        return None
    if cfg.serving.model == "production":
        name = read_aliases(folder)["production"]
        if name is None:
            log.warning("no production version yet (run `raft gate`): serving the base model with RAG")
            return None
        return get_version(folder, name)
    return get_version(folder, cfg.serving.model)


def _note_version(
    cfg: RaftConfig, floors: dict[str, float], trained_on: dict[str, tuple[str, ...]], version: Version, embedder: Embedder
) -> None:
    """Put what the gateway checks per request about `version` into `floors` (its evidence floor, if it
    has one) and `trained_on` (the groups whose documents it learned from: callers must be in them)."""
    trained_on[version.name] = version.audience
    floor = version_floor(version, cfg.generation, embedder.encode, embedder.name)
    if floor is not None:
        floors[version.name] = floor
        log.info("%s answers \"I don't know\" when the context's best sentence matches below %.3f (evidence floor)", version.name, floor)


def _swap_external(cfg: RaftConfig, engine: Engine, version: Version) -> None:
    try:
        engine.swap(version.name, adapter_path(cfg.vllm, version))
    except SwapError as e:
        raise ServeError(f"the vLLM at {cfg.vllm.url} could not serve {version.name}: {e}; it needs {RUNTIME_LORA_NEEDS}") from None


def _engine_settings(cfg: RaftConfig, base_path: str, versions: dict[str, Version]) -> VLLMSettings:
    """Base model + adapters with runtime loading; or, with vllm.merged, the one version's merged model."""
    if cfg.vllm.merged and versions:
        [(name, version)] = versions.items()
        if version.merged_dir is None:
            raise ServeError(f"vllm.merged is true but {name} has no merged model: train it with --merge, or set vllm.merged false")
        return for_versions(cfg.vllm, str(version.merged_dir), name, {}, cfg.serving.vllm_port, False, cfg.training.lora.rank)
    return for_versions(cfg.vllm, base_path, BASE, versions, cfg.serving.vllm_port, True, cfg.training.lora.rank)


def make_retriever(store: IndexReader, embedder: Embedder) -> Retriever:
    """question, k, groups -> context, over one index client (embedded Qdrant allows one per process).
    Callable from many threads at once: the embedder and embedded Qdrant serialize their own calls,
    and a Qdrant server answers searches in parallel."""

    def retrieve(question: str, k: int, groups: tuple[str, ...]) -> list[SourceDoc]:
        hits = search(store, embedder, question, k, groups)
        return [SourceDoc(h.context_doc(), h.doc_id, h.chunk_id, tuple(h.access)) for h in hits]

    return retrieve


# A version that failed to load or answer is tried again after this long: the failure may have
# been vLLM restarting, or a probe that timed out once, and deploy waits flows.deploy_timeout_s.
RETRY_FAILED_S = 60.0


def _watch_registry(stack: Stack, folder: Path) -> None:
    failed: dict[str, float] = {}  # version -> when it last failed to load (time.monotonic)
    while not stack.stop_event.wait(stack.cfg.serving.poll_s):
        name = None
        try:
            name = read_aliases(folder)["production"]
            if name is None or time.monotonic() - failed.get(name, -RETRY_FAILED_S) < RETRY_FAILED_S:
                continue
            if name == stack.engine.active:
                if not stack.engine.lost(name):
                    continue
                # A vLLM that restarted on its own (vllm.url: a pod, a compose restart) forgot the adapters loaded at runtime.
                log.warning("the vLLM at %s no longer serves %s: loading it again", stack.engine.url, name)
                stack.engine.loaded.discard(name)
            version = get_version(folder, name)
            _note_version(stack.cfg, stack.floors, stack.trained_on, version, stack.embedder)  # before the swap: its first answer already has it
            record = stack.engine.swap(name, adapter_path(stack.cfg.vllm, version))
            failed.pop(name, None)
            log.info("now serving %s (loaded and probed in %.1f s)", name, record.seconds)
        except (SwapError, RegistryError) as e:
            failed[name] = time.monotonic()
            log.error("kept serving %s: %s (tried again in %.0f s)", stack.engine.active, e, RETRY_FAILED_S)
        except Exception:  # the watcher must outlive a bad registry read
            log.exception("registry watcher")


def _supervise(stack: Stack, folder: Path) -> None:
    """Restart vLLM when it exits, on the same port with the versions it served. What is left of the
    old process group (EngineCore and its worker outlive a killed API server, with the memory and
    the port) is stopped first; start() then finds the port free."""
    while not stack.stop_event.wait(2):
        process = stack.vllm.process
        if process is None or process.poll() is None:
            continue
        if stack.stop_event.is_set():
            return  # stopped on purpose
        log.error("vLLM exited with code %s; restarting it", process.returncode)
        try:
            left = stack.vllm.stop()
            if left:
                log.warning("stopped what the old vLLM left running: %s", ", ".join(left))
            versions = {name: get_version(folder, name) for name in stack.engine.loaded}
            stack.vllm.settings = _engine_settings(stack.cfg, stack.base_path, versions)
            stack.vllm.start(cancel=stack.stop_event)  # Stack.stop stops whatever this starts
            log.info("vLLM is back")
        except Exception as e:
            if stack.stop_event.is_set():
                return
            log.error("vLLM did not come back: %s; trying again", e)
            time.sleep(5)
