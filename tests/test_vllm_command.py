"""The command line raft starts vLLM with: LoRA flags, adapters by version name, and the dtype
chosen for the machine (a real vLLM runs in tests/test_vllm_supervision.py)."""

from __future__ import annotations

import pytest

from contracts.settings import VLLMConfig
from serving import vllm_process
from serving.vllm_process import VLLMSettings, vllm_command


def flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_adapters_are_served_under_their_version_names_with_a_rank_vllm_accepts():
    s = VLLMSettings(model="/m", adapters={"raft-1": "/r/raft-1/adapter"}, lora_rank=12, config=VLLMConfig(extra_args=["--enforce-eager"]))
    cmd = vllm_command(s)
    assert flag(cmd, "--served-model-name") == "base" and flag(cmd, "--max-lora-rank") == "16"
    assert flag(cmd, "--lora-modules") == "raft-1=/r/raft-1/adapter" and cmd[-1] == "--enforce-eager"
    assert "--enable-lora" not in vllm_command(VLLMSettings(model="/m", runtime_lora_updating=False))


@pytest.mark.parametrize("on_cpu, fast_bf16, configured, expected", [
    (True, False, "auto", "float32"),  # emulated bf16: float32 answers about 3x faster
    (True, True, "auto", "auto"),
    (False, False, "auto", "auto"),  # a GPU build: the model's dtype
    (True, False, "bfloat16", "bfloat16"),  # what the config names is what vLLM gets
])
def test_auto_dtype_is_float32_only_where_vllm_would_emulate_bf16(monkeypatch, on_cpu, fast_bf16, configured, expected):
    monkeypatch.setattr(vllm_process, "vllm_runs_on_cpu", lambda: on_cpu)
    monkeypatch.setattr(vllm_process, "cpu_has_fast_bf16", lambda: fast_bf16)
    assert flag(vllm_command(VLLMSettings(model="/m", config=VLLMConfig(dtype=configured))), "--dtype") == expected
