"""Retraining on data change: watch the corpus, re-index at once, retrain when enough changed.

- A file event in the corpus folder (or, every flows.check_every_s, a periodic check for
  folders that send no events, such as network mounts) runs the index_corpus flow at once,
  which records the change since the last training and emits `raft.corpus.changed`.
- When the ledger says a retrain is due (threshold passed, corpus quiet for settle_s, the
  last retrain at least cooldown_s ago), raft_pipeline runs with only_if_due (with
  flows.retrain_by: deployment, the raft.retrain.due event starts the served deployment instead).
- Pipeline runs go through a Coalescer: one at a time, and any number of triggers that
  arrive during a run become exactly one follow-up run.

`raft serve` and `raft run` run the watcher beside the gateway (embedded Qdrant allows one
process, so the watcher's syncs and the gateway's searches share its client); `raft watch`
runs it alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchfiles import watch

from contracts.settings import RaftConfig
from flows.changes import LedgerError, read_ledger, retrain_due
from flows.pipeline import index_corpus, raft_pipeline

log = logging.getLogger("raft.watch")


class Coalescer:
    """Runs `job` in a background thread, one run at a time; requests made while it runs are
    merged into one follow-up run."""

    def __init__(self, job: Callable[[], Any], name: str = "pipeline") -> None:
        self._job = job
        self._name = name
        self._cond = threading.Condition()
        self._pending = False
        self._running = False
        self.runs = 0  # finished runs
        self.failures = 0

    @property
    def busy(self) -> bool:
        """True while a run is in progress or about to start."""
        with self._cond:
            return self._running

    def request(self) -> None:
        """Ask for a run: now when idle, else once after the current run."""
        with self._cond:
            self._pending = True
            if not self._running:
                self._running = True
                threading.Thread(target=self._loop, name=f"{self._name}-runner", daemon=True).start()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no run is in progress or pending; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._running, timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    self._running = False
                    self._cond.notify_all()
                    return
                self._pending = False
            try:
                self._job()
            except Exception:  # a failed run must not stop later ones
                self.failures += 1
                log.exception("%s run failed", self._name)
            self.runs += 1


class CorpusWatcher:
    """Re-indexes on corpus change and starts (coalesced) retrains when they are due."""

    def __init__(self, cfg: RaftConfig, config: str | None, overrides: dict[str, Any], tick_s: float = 2.0) -> None:
        self.cfg = cfg
        self._config, self._overrides = config, overrides
        self._tick_s = tick_s
        self.stop_event = threading.Event()
        self.pipeline = Coalescer(lambda: raft_pipeline(config, overrides, only_if_due=True))
        self.syncs = 0
        self._thread: threading.Thread | None = None

    def start(self) -> CorpusWatcher:
        """Watch in a background thread."""
        self._thread = threading.Thread(target=self.run, name="corpus-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (a pipeline run in progress finishes on its own)."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run(self) -> None:
        """Watch until stopped: file events and periodic checks re-index; due retrains start.

        It first re-indexes once: that catches changes made while nothing watched, and starts
        Prefect's temporary server (about 10 s) before the first edit rather than after it."""
        folder = Path(self.cfg.corpus.path)
        self.reindex("start")
        checks = max(1, round(self.cfg.flows.check_every_s / self._tick_s))
        ticks = 0
        log.info("watching %s (and checking every %.0f s)", folder, self.cfg.flows.check_every_s)
        for changes in watch(
            folder, stop_event=self.stop_event, debounce=int(self.cfg.flows.debounce_s * 1000),
            rust_timeout=int(self._tick_s * 1000), yield_on_timeout=True, raise_interrupt=False,
        ):
            ticks += 1
            if changes or ticks % checks == 0:
                self.reindex(f"{len(changes)} file events" if changes else "periodic check")
            self.check_due()

    def reindex(self, why: str) -> dict[str, Any] | None:
        """Run the index_corpus flow now; request a retrain when it says one is due."""
        log.info("re-indexing (%s)", why)
        try:
            result = index_corpus(self._config, self._overrides)
        except Exception:
            log.exception("re-index failed; the index keeps its last good state")
            return None
        self.syncs += 1
        if result["retrain_due"] and self.cfg.flows.retrain_by == "watcher":
            self.pipeline.request()
        return result

    def check_due(self) -> None:
        """Start a retrain whose wait (settle, cool-down) has passed since the last sync."""
        if self.cfg.flows.retrain_by != "watcher" or self.pipeline.busy:
            return  # the run in progress re-checks; a trigger during it was already coalesced
        try:
            due, _ = retrain_due(read_ledger(self.cfg.work_dir), self.cfg.flows.retrain)
        except LedgerError as e:
            log.error("%s", e)
            return
        if due:
            self.pipeline.request()

