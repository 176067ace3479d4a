"""LoRA adapters in a running vLLM (runtime loading): what it serves, loading, unloading, and
where it sees a version's adapter.

A version's name stands for one set of weights (the registry never reuses a name), so a name
the server already serves is the version asked for: loading it again is a no-op, not an error.
That is what lets a gateway restart against a vLLM that outlived it (compose, Kubernetes), and
an evaluation ask a version the gateway already loaded.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from contracts.settings import VLLMConfig
from training.registry import Version

# What an external vLLM (vllm.url) needs before raft can load adapters into it: said by every error about it.
RUNTIME_LORA_NEEDS = "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, --enable-lora, and the models folder at vllm.adapter_root"


class AdapterError(RuntimeError):
    """vLLM did not answer, or refused to load or unload an adapter; the message holds its reply."""


def served_models(url: str, timeout_s: float = 10) -> set[str]:
    """The served model names of the vLLM at `url` (its OpenAI base URL, ending in /v1)."""
    try:
        reply = httpx.get(f"{url}/models", timeout=timeout_s)
    except httpx.HTTPError as e:
        raise AdapterError(f"the vLLM at {url} did not answer ({type(e).__name__}: {e})") from None
    if reply.status_code != 200:
        raise AdapterError(f"the vLLM at {url} answered {reply.status_code} to /models: {reply.text[:300]}")
    return {m["id"] for m in reply.json()["data"]}


def load_adapter(url: str, name: str, adapter_dir: Path | str, timeout_s: float = 120) -> bool:
    """Serve the adapter at `adapter_dir` (a path as that server sees it) under `name`; False when
    the server already served `name`, True when this call loaded it."""
    if name in served_models(url, timeout_s):
        return False
    try:
        reply = httpx.post(f"{url}/load_lora_adapter", json={"lora_name": name, "lora_path": str(adapter_dir)}, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise AdapterError(f"vLLM did not answer the load of {name} ({type(e).__name__}: {e})") from None
    if reply.status_code != 200:
        raise AdapterError(f"vLLM refused to load {name} from {adapter_dir}: {reply.status_code} {reply.text[:300]}")
    return True


def unload_adapter(url: str, name: str, timeout_s: float = 60) -> None:
    """Stop serving the adapter `name` (it frees its slot and memory in vLLM)."""
    try:
        reply = httpx.post(f"{url}/unload_lora_adapter", json={"lora_name": name}, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise AdapterError(f"vLLM did not answer the unload of {name} ({type(e).__name__}: {e})") from None
    if reply.status_code != 200:
        raise AdapterError(f"vLLM refused to unload {name}: {reply.status_code} {reply.text[:300]}")


def adapter_path(vllm: VLLMConfig, version: Version) -> Path:
    """The version's adapter folder as vLLM sees it: under vllm.adapter_root when vLLM mounts the
    models elsewhere (another container), else where the registry keeps it."""
    root = vllm.adapter_root
    return Path(root) / version.name / "adapter" if root else version.adapter_dir
