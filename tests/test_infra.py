"""infra/: every compose and Kubernetes file parses and passes a schema validator, images are
pinned, no secret stands in plain text, and ports and RAFT_* settings agree with the config model.

Validators (from PyPI, in the lock): compose-spec (the compose_spec parser, plus its Pydantic
model of the Compose Specification) and kubernetes-validate (Kubernetes' own JSON schemas, 1.37).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import compose_spec
import kubernetes_validate
import pytest
import yaml

from flows.config import ConfigError, env_name, leaf_keys, load_config
from tests.conftest import REPO

INFRA = REPO / "infra"
K8S = INFRA / "k8s"
K8S_VERSION = "1.37.0"
SECRET_WORDS = re.compile(r"(API_KEY|API_KEYS|SECRET|PASSWORD|TOKEN)$")
PINNED = re.compile(r"^[\w./-]+:(v?\d+\.\d+(\.\d+)?[\w.-]*)$")  # a version tag, never latest


def _env_file() -> dict[str, str]:
    lines = (INFRA / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {k: v.split("  #")[0].strip() for k, v in pairs}


def _interpolate(value, env):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error}, applied to the parsed values as compose does."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:[-?])([^}]*))?\}", sub, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    raw = yaml.safe_load((INFRA / "compose.yaml").read_text())  # expands the YAML anchors and merge keys
    return _interpolate(raw, _env_file())


def _k8s_docs() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in ("kustomization.yaml", "qdrant-values.yaml"):
            continue
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _work_pool_job() -> dict:
    """The work pool's Job template with every placeholder given its default (as the worker does)."""
    template = json.loads((K8S / "work-pool-gpu.json").read_text())
    defaults = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    values = {**defaults, "name": "raft-pipeline-run", "command": "prefect flow-run execute", "env": [], "labels": {}}

    def fill(node):
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str):
            whole = re.fullmatch(r"\{\{ (\w+) \}\}", node)
            if whole:
                value = values[whole.group(1)]
                return value.split() if whole.group(1) == "command" else value
            return re.sub(r"\{\{ (\w+) \}\}", lambda m: str(values[m.group(1)]), node)
        return node

    job = fill(template["job_configuration"]["job_manifest"])
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    for part in resources.values():  # quantities are strings or numbers in Kubernetes
        part.update({k: str(v) for k, v in part.items()})
    return job


# --- schemas ----------------------------------------------------------------------------------


def test_compose_file_passes_the_compose_specification(compose):
    parsed = compose_spec.PyCompose.from_json(json.dumps(compose))
    assert set(parsed.service_names()) == {"qdrant", "vllm", "gateway", "prefect-server", "worker"}
    compose_spec.ComposeSpecification.model_validate(compose)
    broken = json.loads(json.dumps(compose))
    broken["services"]["gateway"]["restart"] = "sometimes"
    with pytest.raises(ValueError):  # the validator does reject what is wrong
        compose_spec.PyCompose.from_json(json.dumps(broken))


@pytest.mark.parametrize("path, doc", _k8s_docs(), ids=lambda x: x.name if isinstance(x, Path) else x.get("kind", "?"))
def test_kubernetes_manifests_pass_the_kubernetes_schemas(path, doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_kubernetes_validator_rejects_what_is_wrong():
    deployment = yaml.safe_load_all((K8S / "gateway.yaml").read_text()).__next__()
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_the_work_pool_job_passes_the_kubernetes_schemas():
    job = _work_pool_job()
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p, _ in _k8s_docs()}


def test_helm_values_ask_for_a_replicated_cluster_with_a_secret_key():
    values = yaml.safe_load((K8S / "qdrant-values.yaml").read_text())
    config = yaml.safe_load((K8S / "config.yaml").read_text())["data"]
    assert values["config"]["cluster"]["enabled"] and values["replicaCount"] >= int(config["RAFT_QDRANT_REPLICATION_FACTOR"])
    assert values["apiKey"]["valueFrom"]["secretKeyRef"]["name"] == "raft-secrets"


# --- images pinned, secrets out of the files -------------------------------------------------------


def _images(compose) -> list[str]:
    images = [s["image"] for s in compose["services"].values() if "image" in s]
    for _, doc in _k8s_docs():
        images += [c["image"] for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])]
    images.append(_work_pool_job()["spec"]["template"]["spec"]["containers"][0]["image"])
    for dockerfile in (INFRA / "docker").glob("*.Dockerfile"):
        images += [line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("FROM ")]
    return images


def test_every_image_is_pinned_to_a_version(compose):
    images = _images(compose)
    assert len(images) >= 12
    for image in images:
        assert PINNED.match(image) and not image.endswith(":latest"), f"{image} is not pinned to a version tag"


def test_no_secret_in_plain_text(compose):
    for name, service in compose["services"].items():
        raw = yaml.safe_load((INFRA / "compose.yaml").read_text())["services"][name]
        for key, value in (raw.get("environment") or {}).items():
            if SECRET_WORDS.search(key):
                assert str(value).startswith("${"), f"compose {name}.{key} holds a value: take it from infra/.env"
    for path, doc in _k8s_docs():
        assert doc["kind"] != "Secret", f"{path.name}: secrets are created with kubectl, not committed"
        if doc["kind"] == "ConfigMap":
            assert not [k for k in doc["data"] if SECRET_WORDS.search(k)], f"{path.name}: a secret in a ConfigMap"
        for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for e in c.get("env", []):
                if SECRET_WORDS.search(e["name"]):
                    assert "secretKeyRef" in e.get("valueFrom", {}), f"{path.name}: {e['name']} must come from a Secret"
    for key, value in _env_file().items():
        if SECRET_WORDS.search(key):
            assert "change-me" in value, f".env.example {key} must hold a placeholder"
    assert ".env" in (REPO / ".gitignore").read_text().split()  # the filled-in file stays out of git


# --- ports and settings agree with the config model ---------------------------------------------


def _raft_env(compose) -> list[tuple[str, dict[str, str]]]:
    found = [(f"compose {n}", {k: str(v) for k, v in (s.get("environment") or {}).items()}) for n, s in compose["services"].items()]
    found += [(f"k8s {p.name}", d["data"]) for p, d in _k8s_docs() if d["kind"] == "ConfigMap"]
    return found


def test_raft_settings_are_config_fields_with_valid_values(compose):
    known = {env_name(k) for k in leaf_keys()} | {"RAFT_CONFIG"}
    for where, env in _raft_env(compose):
        raft = {k: v for k, v in env.items() if k.startswith("RAFT_")}
        unknown = set(raft) - known
        assert not unknown, f"{where}: {unknown} are not config fields"
        try:
            load_config(REPO / "raft.yaml", environ={k: v for k, v in raft.items() if k != "RAFT_CONFIG"})
        except ConfigError as e:
            raise AssertionError(f"{where}: {e}") from None


def test_ports_agree_between_services(compose):
    s = compose["services"]
    gateway_env = s["gateway"]["environment"]
    assert s["gateway"]["ports"] == [f"{gateway_env['RAFT_SERVING_PORT']}:{gateway_env['RAFT_SERVING_PORT']}"]
    vllm_port = next(a.split("=")[1] for a in s["vllm"]["command"] if a.startswith("--port="))
    assert urlparse(gateway_env["RAFT_VLLM_URL"]).port == int(vllm_port) and urlparse(gateway_env["RAFT_VLLM_URL"]).hostname == "vllm"
    assert urlparse(gateway_env["RAFT_QDRANT_URL"]).port == 6333 and s["qdrant"]["ports"] == ["127.0.0.1:6333:6333"]
    assert gateway_env["RAFT_VLLM_ADAPTER_ROOT"].startswith("/srv/raft") and "raft-work:/srv/raft:ro" in s["vllm"]["volumes"]
    assert urlparse(gateway_env["PREFECT_API_URL"]).port == 4200

    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in _k8s_docs()}
    config = docs[("ConfigMap", "raft-config")]["data"]
    for name, url_key in (("vllm", "RAFT_VLLM_URL"), ("gateway", None)):
        container = docs[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        service = docs[("Service", name)]["spec"]["ports"][0]
        assert service["targetPort"] in ports
        if url_key:
            assert urlparse(config[url_key]).port == service["port"] == ports["http"]
            assert f"--port={ports['http']}" in container["args"]
            tp = next(a for a in container["args"] if a.startswith("--tensor-parallel-size="))
            assert tp.split("=")[1] == config["RAFT_VLLM_TENSOR_PARALLEL_SIZE"] == container["resources"]["limits"]["nvidia.com/gpu"]
    assert int(config["RAFT_SERVING_PORT"]) == docs[("Service", "gateway")]["spec"]["ports"][0]["port"]
