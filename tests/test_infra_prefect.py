"""infra/prefect.yaml declares the same deployments `raft deploy-flows` serves: entrypoints that
load, parameters the flows accept, schedules and trigger equal to the config's defaults."""

from __future__ import annotations

import importlib

import yaml

from contracts.settings import RaftConfig
from flows.pipeline import RETRAIN_DUE
from tests.conftest import REPO


def _deployments():
    return {d["name"]: d for d in yaml.safe_load((REPO / "infra" / "prefect.yaml").read_text())["deployments"]}


def test_entrypoints_load_and_take_the_parameters():
    for d in _deployments().values():
        module, name = d["entrypoint"].split(":")
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), name)
        assert flow.name == d["name"]  # the deployment is named after its flow
        flow.validate_parameters(d["parameters"])
        for trigger in d.get("triggers", []):
            flow.validate_parameters(trigger["parameters"])


def test_schedules_and_trigger_match_the_config():
    defaults = RaftConfig()
    deps = _deployments()
    assert [s["cron"] for s in deps["index-corpus"]["schedules"]] == [defaults.flows.index_schedule]
    assert [s["cron"] for s in deps["raft-pipeline"]["schedules"]] == [defaults.flows.retrain_schedule]
    [trigger] = deps["raft-pipeline"]["triggers"]
    assert trigger["expect"] == [RETRAIN_DUE] and trigger["parameters"]["only_if_due"] is True
    assert trigger["match"]["prefect.resource.id"] == f"raft.corpus.{defaults.qdrant.collection}"
    for d in deps.values():
        assert d["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
