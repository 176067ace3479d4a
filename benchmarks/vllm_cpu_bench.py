"""vLLM-CPU: which dtype and how many cores answer fastest on this machine.

Starts vLLM (eager, the embedded base model) once per configuration and asks the same batch of
RAFT-sized prompts twice: the first round includes vLLM's warm-up, the second is steady state
(each round's prompts differ from the other's, so no prefix cache is shared between rounds).
Prints seconds per round and the ratio against vLLM's own default (`--dtype auto`, which is
bf16 for SmolLM2, and its automatic core binding, which keeps one core for the API server),
measured in the same run.

    .venv/bin/python benchmarks/vllm_cpu_bench.py [--n 8] [--max-tokens 48] [--configs default,fp32,fp32-all-cores]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contracts.prompt import ContextDoc, build_messages  # noqa: E402
from contracts.settings import VLLMConfig  # noqa: E402
from serving.vllm_process import VLLMServer, VLLMSettings, free_port  # noqa: E402
from training.base_model import EMBEDDED, resolve_base_model  # noqa: E402

ALL_CORES = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
CONFIGS = {  # name -> (--dtype, environment for vLLM)
    "default": ("bfloat16", {}),  # what `auto` meant before raft chose float32 on CPUs without bf16
    "fp32": ("float32", {}),
    "fp32-all-cores": ("float32", {"VLLM_CPU_OMP_THREADS_BIND": ALL_CORES, "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}),
}


def prompts(n: int, round_: int) -> list[list[dict[str, str]]]:
    """`n` RAFT prompts of three sample documents each (about 800 tokens), distinct per round."""
    files = sorted((REPO / "examples" / "corpus").rglob("*.md"))
    out = []
    for i in range(n):
        docs = [ContextDoc(f.read_text()[:1000], f.stem, f.name) for f in files[i * 3 % len(files):][:3]]
        out.append(build_messages(f"Round {round_}, question {i}: what does the first document specify?", docs))
    return out


def ask_all(url: str, batch: list, max_tokens: int) -> float:
    def one(messages):
        reply = httpx.post(f"{url}/chat/completions", timeout=900, json={
            "model": "base", "messages": messages, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True})
        reply.raise_for_status()

    began = time.perf_counter()
    with ThreadPoolExecutor(len(batch)) as pool:
        list(pool.map(one, batch))
    return round(time.perf_counter() - began, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8, help="requests per round, sent together")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vllm-cpu-bench-"))
    base = resolve_base_model(EMBEDDED, work)
    results = {}
    for name in args.configs.split(","):
        dtype, env = CONFIGS[name]
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            settings = VLLMSettings(model=base.path, port=free_port(), runtime_lora_updating=False,
                                    config=VLLMConfig(max_model_len=2048, dtype=dtype, extra_args=["--enforce-eager"]))
            began = time.perf_counter()
            with VLLMServer(settings, work / f"vllm-{name}.log") as server:
                startup = round(time.perf_counter() - began, 1)
                first = ask_all(server.url, prompts(args.n, 1), args.max_tokens)
                steady = ask_all(server.url, prompts(args.n, 2), args.max_tokens)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        results[name] = {"dtype": dtype, "env": env, "startup_s": startup, "first_round_s": first, "steady_round_s": steady}
        print(json.dumps({name: results[name]}), flush=True)
    baseline = results.get("default")
    if baseline:
        for name, r in results.items():
            r["speedup_first"] = round(baseline["first_round_s"] / r["first_round_s"], 2)
            r["speedup_steady"] = round(baseline["steady_round_s"] / r["steady_round_s"], 2)
    print(json.dumps({"n": args.n, "max_tokens": args.max_tokens, "cpus": ALL_CORES, "results": results}, indent=2))


if __name__ == "__main__":
    main()
