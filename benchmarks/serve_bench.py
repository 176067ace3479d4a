"""Serving: direct vLLM versus through the gateway, at concurrency 1 and 8; adapter versus merged.

In one run, on the same questions from the QA file:
- direct: the prompt built here (retrieved context + the shared RAFT prompt) sent straight to vLLM;
- gateway: the question sent to the gateway, which retrieves and builds the same prompt;
at concurrency 1 and 8: latency p50/p95 and output tokens/s; the gateway's overhead as a share
of its end-to-end latency (goal <= 10% at concurrency 8); retrieval p95 in ms. Then the same
direct requests against a second vLLM serving the version's merged model (no LoRA).
vLLM runs without prefix caching, so neither path gains from the other's prompts.

    .venv/bin/python benchmarks/serve_bench.py [--model VERSION] [--n1 8] [--n8 16] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contracts.generation import Sampling, complete, model_client  # noqa: E402
from contracts.prompt import build_messages  # noqa: E402
from flows.config import load_config  # noqa: E402
from flows.serve import start_stack  # noqa: E402
from retrieval.qa import read_qa_file  # noqa: E402
from serving.vllm_process import VLLMServer, VLLMSettings, free_port  # noqa: E402
from training.registry import get_version, list_versions, read_aliases  # noqa: E402

KEY = "bench-key"


def run(requests: list, concurrency: int) -> dict:
    """Send `requests` (callables returning completion tokens) `concurrency` at a time; latency and throughput."""
    latencies: list[float] = []

    def one(call):
        began = time.perf_counter()
        tokens = call()
        latencies.append(time.perf_counter() - began)
        return tokens

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, requests))
    wall = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=20)
    return {"n": len(requests), "p50_s": round(statistics.median(latencies), 3), "p95_s": round(q[18], 3),
            "tokens_per_s": round(tokens / wall, 1), "wall_s": round(wall, 1)}


def retrieval_only(work_dir: Path) -> None:
    """Retrieval latency as the gateway retrieves (embed the question, search the index), without vLLM."""
    from flows.serve import make_retriever
    from flows.wiring import make_embedder, open_index

    cfg = load_config(REPO / "raft.yaml", {"work_dir": str(work_dir)})
    questions = [q.question for q in read_qa_file(REPO / "examples" / "qa.jsonl")]
    store = open_index(cfg)
    try:
        retrieve = make_retriever(store, make_embedder(cfg))
        retrieve(questions[0], cfg.serving.k, ("public",))  # loads the embedding model
        timings = []
        for q in questions:
            t = time.perf_counter()
            retrieve(q, cfg.serving.k, ("public",))
            timings.append((time.perf_counter() - t) * 1000)
    finally:
        store.close()
    q = statistics.quantiles(timings, n=20)
    print(f"retrieval over {len(timings)} questions: p50 {statistics.median(timings):.1f} ms, p95 {q[18]:.1f} ms")
    print("RESULTS " + json.dumps({"n": len(timings), "p50_ms": round(statistics.median(timings), 1), "p95_ms": round(q[18], 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / ".raft")
    parser.add_argument("--model", help="version (default: production, else the newest)")
    parser.add_argument("--n1", type=int, default=8, help="questions at concurrency 1")
    parser.add_argument("--n8", type=int, default=16, help="questions at concurrency 8")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--retrieval-only", action="store_true", help="only time retrieval (no vLLM), over every QA question")
    args = parser.parse_args()
    if args.retrieval_only:
        retrieval_only(args.work_dir)
        return

    folder = args.work_dir / "models"
    name = args.model or read_aliases(folder)["production"] or list_versions(folder)[-1].name
    cfg = load_config(REPO / "raft.yaml", {
        "work_dir": str(args.work_dir), "serving.model": name, "serving.api_keys": json.dumps({KEY: []}),
        "serving.vllm_port": str(free_port()), "vllm.extra_args": "--no-enable-prefix-caching",
    })
    version = get_version(cfg.models_dir, name)
    questions = [q.question for q in read_qa_file(REPO / "examples" / "qa.jsonl")][: max(args.n1, args.n8)]
    sampling = Sampling(max_tokens=args.max_tokens)

    import uvicorn

    stack = start_stack(cfg, args.work_dir / "logs" / "vllm-serve-bench.log")
    port = free_port()
    gateway = uvicorn.Server(uvicorn.Config(stack.app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=gateway.run, daemon=True).start()
    while not gateway.started:
        time.sleep(0.1)
    gateway_url = f"http://127.0.0.1:{port}/v1"
    results: dict = {"model": name, "max_tokens": args.max_tokens}
    try:
        retrieval_ms, prompts = [], {}
        stack.retrieve(questions[0], cfg.serving.k, ("public",))  # loads the embedding model
        for q in questions:
            t = time.perf_counter()
            context = stack.retrieve(q, cfg.serving.k, ("public",))
            retrieval_ms.append((time.perf_counter() - t) * 1000)
            prompts[q] = build_messages(q, [s.doc for s in context])
        results["retrieval_p95_ms"] = round(statistics.quantiles(retrieval_ms, n=20)[18], 1)
        client = httpx.Client(timeout=600)

        clients = {url: model_client(url, 600) for url in (stack.engine.url,)}

        def direct(url: str, model: str, q: str):
            return lambda: complete(clients[url], model, prompts[q], sampling).completion_tokens

        def through_gateway(q: str):
            def call():
                reply = client.post(f"{gateway_url}/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                                    json={"model": "raft", "messages": [{"role": "user", "content": q}], **sampling.request_fields()})
                reply.raise_for_status()
                return reply.json()["usage"]["completion_tokens"]
            return call

        complete(clients[stack.engine.url], name, prompts[questions[0]], sampling)  # warm up
        for c, n in ((1, args.n1), (8, args.n8)):
            results[f"direct_c{c}"] = run([direct(stack.engine.url, name, q) for q in questions[:n]], c)
            results[f"gateway_c{c}"] = run([through_gateway(q) for q in questions[:n]], c)
            g, d = results[f"gateway_c{c}"]["p50_s"], results[f"direct_c{c}"]["p50_s"]
            results[f"overhead_c{c}"] = round((g - d) / g, 4)
    finally:
        gateway.should_exit = True
        stack.stop()

    if version.merged_dir is not None:
        merged = VLLMSettings(model=str(version.merged_dir), served_name=name, port=free_port(), runtime_lora_updating=False,
                              config=cfg.vllm.model_copy(update={"extra_args": ["--no-enable-prefix-caching"]}))
        with VLLMServer(merged, args.work_dir / "logs" / "vllm-serve-bench-merged.log") as server:
            clients[server.url] = model_client(server.url, 600)
            complete(clients[server.url], name, prompts[questions[0]], sampling)
            results["merged_direct_c8"] = run([direct(server.url, name, q) for q in questions[: args.n8]], 8)
        results["merged_vs_adapter_tokens_per_s"] = round(results["merged_direct_c8"]["tokens_per_s"] / results["direct_c8"]["tokens_per_s"], 2)

    print(f"{'path':<22}{'n':>4}{'p50 s':>9}{'p95 s':>9}{'tok/s':>9}")
    for key in ("direct_c1", "gateway_c1", "direct_c8", "gateway_c8", "merged_direct_c8"):
        if key in results:
            r = results[key]
            print(f"{key:<22}{r['n']:>4}{r['p50_s']:>9}{r['p95_s']:>9}{r['tokens_per_s']:>9}")
    print(f"gateway overhead (p50): c1 {results['overhead_c1']:.1%}, c8 {results['overhead_c8']:.1%} (goal <= 10% at c8)")
    print(f"retrieval p95: {results['retrieval_p95_ms']} ms")
    if "merged_vs_adapter_tokens_per_s" in results:
        print(f"merged / adapter throughput at c8: {results['merged_vs_adapter_tokens_per_s']}x")
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
