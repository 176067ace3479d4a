"""`raft status`: what is served, when the index last synced, how far the corpus has moved since
the last training, and when the scheduled runs come next."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from cronsim import CronSim

from contracts.settings import RaftConfig
from flows.changes import read_ledger, retrain_due
from training.registry import read_aliases


def pipeline_status(cfg: RaftConfig) -> dict[str, Any]:
    """Everything `raft status` shows, as plain values."""
    ledger = read_ledger(cfg.work_dir)
    due, why = retrain_due(ledger, cfg.flows.retrain)
    trained = ledger.get("trained_on")
    return {
        "serving": _serving(cfg),
        "last_sync": ledger.get("last_sync"),
        "trained_on": None if trained is None else {k: trained[k] for k in ("version", "at", "digest")},
        "since_training": ledger.get("pending"),
        "retrain": {"due": due, "why": why, "by": cfg.flows.retrain_by},
        "next_runs": _next_runs(cfg),
    }


def _serving(cfg: RaftConfig) -> dict[str, Any]:
    url = f"http://{cfg.serving.host}:{cfg.serving.port}"
    production = read_aliases(cfg.models_dir)["production"]
    try:
        health = httpx.get(f"{url}/health", timeout=3).json()
    except (httpx.HTTPError, ValueError):
        return {"gateway": None, "url": url, "production": production, "served": None}
    return {"gateway": health.get("status"), "url": url, "production": production, "served": health.get("production")}


def _next_runs(cfg: RaftConfig) -> list[dict[str, Any]]:
    """The next run of each deployment: from the Prefect server when one is set and knows them,
    else computed from the configured cron expressions."""
    f = cfg.flows
    runs = [{"deployment": "index-corpus", "cron": f.index_schedule}, {"deployment": "raft-pipeline", "cron": f.retrain_schedule}]
    scheduled = _scheduled_from_server() if os.environ.get("PREFECT_API_URL") else {}
    now = datetime.now(ZoneInfo(f.timezone))
    for run in runs:
        if run["deployment"] in scheduled:
            run.update(next=scheduled[run["deployment"]], source="prefect server")
        else:
            run.update(next=next(iter(CronSim(run["cron"], now))).isoformat(), source="config (not registered: run raft deploy-flows)")
    return runs


def _scheduled_from_server() -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    found: dict[str, str] = {}
    try:
        with get_client(sync_client=True) as client:
            deployments = client.read_deployments(deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=["raft"])))
            for d in deployments:
                runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id={"any_": [d.id]}),
                    flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                    sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1,
                )
                if runs and runs[0].expected_start_time:
                    found[d.name] = runs[0].expected_start_time.isoformat()
    except Exception:  # the server is down or unknown: the config's cron still says when
        return {}
    return found
