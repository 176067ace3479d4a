"""The model server behind the gateway: which served model answers for `raft`, and swapping it.

vLLM serves the base model as `base` and each version's LoRA adapter under the version name.
A swap loads the new version into the running vLLM (runtime LoRA loading), asks it a probe
question, and only then points `raft` at it: requests in flight finish on the old version,
which stays loaded. If loading or the probe fails, the old version keeps serving and the
error is kept for /health.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from contracts.generation import GenerationError, Sampling, complete, model_client
from serving.adapters import AdapterError, load_adapter

PUBLIC_NAME = "raft"  # the model name clients ask for: whatever production is
BASE = "base"


class SwapError(RuntimeError):
    """A version could not be loaded or did not answer the probe; the old one keeps serving. The
    message holds what vLLM said (for the log); `reason` only what went wrong, for `/health`, which
    answers anyone: no vLLM address, file path or vLLM text."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class SwapRecord:
    version: str
    ok: bool
    at: float
    seconds: float
    error: str = ""  # SwapError.reason: what /health shows


class Engine:
    """A handle on a running vLLM (OpenAI-compatible base URL) and the version `raft` maps to."""

    def __init__(self, url: str, active: str | None, loaded: set[str] | None = None, timeout_s: float = 120):
        self.url = url.rstrip("/")
        self.active = active  # served name behind `raft`; None: base model (no version promoted yet)
        self.loaded = set(loaded or ()) | ({active} if active else set())
        self.last_swap: SwapRecord | None = None
        self._timeout = timeout_s
        self._lock = threading.Lock()

    def resolve(self, requested: str) -> str:
        """The served name for a request's model: `raft` -> production, a loaded version, or `base`."""
        if requested == PUBLIC_NAME:
            return self.active or BASE
        if requested == BASE or requested in self.loaded:
            return requested
        raise KeyError(requested)

    def models(self) -> list[str]:
        """The model names a client may ask for."""
        return [PUBLIC_NAME, BASE, *sorted(self.loaded)]

    def healthy(self) -> bool:
        """Whether vLLM answers its model list."""
        try:
            return httpx.get(f"{self.url}/models", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def lost(self, version: str) -> bool:
        """Whether vLLM answers its model list without `version` (False when it does not answer: a
        vLLM that is down has lost nothing yet)."""
        try:
            reply = httpx.get(f"{self.url}/models", timeout=5)
            return reply.status_code == 200 and version not in {m.get("id") for m in reply.json().get("data", [])}
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

    def swap(self, version: str, adapter_dir: Path) -> SwapRecord:
        """Load `version` into vLLM, probe it, then make it what `raft` answers with; raises SwapError."""
        with self._lock:  # one swap at a time
            began = time.perf_counter()
            try:
                if version not in self.loaded:
                    self._load(version, adapter_dir)
                self._probe(version)
            except SwapError as e:
                self.last_swap = SwapRecord(version, False, time.time(), time.perf_counter() - began, e.reason)
                raise
            self.loaded.add(version)
            self.active = version
            self.last_swap = SwapRecord(version, True, time.time(), time.perf_counter() - began)
            return self.last_swap

    def _load(self, version: str, adapter_dir: Path) -> None:
        try:
            load_adapter(self.url, version, adapter_dir, self._timeout)  # a no-op when vLLM already serves it
        except AdapterError as e:
            raise SwapError(str(e), "vLLM did not load its adapter (the gateway's log has vLLM's reply)") from None

    def _probe(self, version: str) -> None:
        try:
            with model_client(self.url, self._timeout) as client:
                done = complete(client, version, [{"role": "user", "content": "Question: ping"}], Sampling(max_tokens=2))
        except GenerationError as e:
            raise SwapError(f"{version} was loaded but did not answer the probe: {e}", "it was loaded but did not answer a probe (see the gateway's log)") from None
        if done.completion_tokens < 1:
            raise SwapError(f"{version} answered the probe with no tokens", "it answered a probe with no tokens")
