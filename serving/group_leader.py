"""The leader of vLLM's process group: runs vLLM and ends the whole group when raft, which started it, dies.

    python -m serving.group_leader COMMAND...

The kernel tells a process when the one that started it dies (PR_SET_PDEATHSIG), but only the
process that asked for it. Given to vLLM's API server, that signal reached neither EngineCore nor
its worker, and a server still starting did not act on it: a `raft serve` killed with SIGKILL
during vLLM's start-up left the whole tree running (tests/test_vllm_supervision.py). So this small
process asks for the signal (serving/vllm_process.py sets it before starting it) and answers it
by ending the group: SIGTERM to all, SIGKILL to what is left after ORPHAN_GRACE_S. A SIGTERM
while its owner lives comes with the owner's own stop of the group (VLLMServer.stop), which
escalates by itself. Otherwise it waits for vLLM and exits with its status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# With the owner gone no one waits on a clean shutdown, and a vLLM still starting does not act on
# SIGTERM at all (measured): a short grace, then SIGKILL.
ORPHAN_GRACE_S = 10.0


def group_members(pgid: int) -> list[int]:
    """The pids of the live processes in process group `pgid`, sorted. A zombie counts as gone: it
    holds no memory and no port, and its parent (or init, for an orphan) reaps it."""
    if not os.path.isdir("/proc"):  # no process table to read: only whether the group exists at all
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:  # exited while we looked
            continue
        # The name (field 2) may hold spaces and parentheses: the fields start after the last ")".
        state, _ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return sorted(members)


def others_in_group() -> list[int]:
    """The live processes of this process's group other than itself."""
    return [pid for pid in group_members(os.getpgid(0)) if pid != os.getpid()]


def end_group(grace_s: float) -> None:
    """SIGTERM to every process of the group, SIGKILL to those still there after `grace_s`."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group's signal reaches this process too
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while others_in_group() and time.monotonic() < deadline:
        time.sleep(0.1)
    if others_in_group():
        os.killpg(0, signal.SIGKILL)  # this process included


def main(command: list[str]) -> int:
    """Run `command` and return its exit status (128 + the signal's number when a signal ended it)."""
    owner = os.getppid()

    def on_signal(signum: int, _frame: object) -> None:
        if os.getppid() == owner:
            return  # the owner is stopping the group: it signalled every member and escalates itself
        end_group(ORPHAN_GRACE_S)
        sys.exit(128 + signum)

    # Handlers first: a signal that comes before vLLM exists then has nothing to end but this process.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    code = subprocess.Popen(command).wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
