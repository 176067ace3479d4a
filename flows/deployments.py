"""Scheduled and event-triggered runs: the flows as Prefect deployments (`raft deploy-flows`).

Schedules need a Prefect server (an ephemeral one cannot run them): `prefect server start`,
then PREFECT_API_URL=http://127.0.0.1:4200/api. Two deployments are served from this process:

- index-corpus on flows.index_schedule: the periodic check for sources without file events;
  it emits raft.corpus.changed, and raft.retrain.due when the change passes the threshold;
- raft-pipeline on flows.retrain_schedule (the full retrain), and on every raft.retrain.due
  event with only_if_due. One run at a time; runs that arrive meanwhile queue, and a queued
  run whose change a finished run already trained on stops after indexing.

For work pools (Kubernetes, Docker) the same deployments are declared in infra/prefect.yaml.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from contracts.settings import RaftConfig
from flows.pipeline import RETRAIN_DUE, index_corpus, raft_pipeline


class NoPrefectServer(RuntimeError):
    """Schedules were asked for without a Prefect server."""


def build_deployments(cfg: RaftConfig, config: str | None, overrides: dict[str, Any]) -> list[Any]:
    """The index-corpus and raft-pipeline deployments with their schedules and trigger."""
    f = cfg.flows
    params = {"config": config, "overrides": overrides}
    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    index = index_corpus.to_deployment(
        name="index-corpus", schedules=[Cron(f.index_schedule, timezone=f.timezone)], parameters=params,
        concurrency_limit=one_at_a_time, description="Sync the corpus into the index; emit change events.", tags=["raft"],
    )
    pipeline = raft_pipeline.to_deployment(
        name="raft-pipeline", schedules=[Cron(f.retrain_schedule, timezone=f.timezone)], parameters=params,
        concurrency_limit=one_at_a_time, tags=["raft"],
        description="Index, dataset, fine-tune, gate, deploy; unchanged inputs skip their steps.",
        triggers=[DeploymentEventTrigger(
            name="retrain when the corpus changed enough", expect={RETRAIN_DUE},
            match={"prefect.resource.id": f"raft.corpus.{cfg.qdrant.collection}"},
            parameters={**params, "only_if_due": True},
        )],
    )
    return [index, pipeline]


def serve_deployments(cfg: RaftConfig, config: str | None, overrides: dict[str, Any]) -> None:
    """Register the deployments with the Prefect server and run their flows until stopped."""
    from prefect import serve

    if not os.environ.get("PREFECT_API_URL"):
        raise NoPrefectServer(
            "schedules need a Prefect server: run `prefect server start` (or use infra/compose.yaml), "
            "then set PREFECT_API_URL=http://127.0.0.1:4200/api and run `raft deploy-flows` again"
        )
    serve(*build_deployments(cfg, config, overrides))
