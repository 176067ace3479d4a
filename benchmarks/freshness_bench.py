"""Freshness: from saving a changed document to the gateway's answer citing the new text.

The serving stack (vLLM + gateway, production model as served by `raft serve`) runs over a
copy of the sample corpus with the corpus watcher beside it, as `raft serve` / `raft run` run
it. Each trial edits one fact (the LS-10's measuring range in its datasheet and calibration
guide), saves, and asks the gateway the question until the answer or a citation carries the
new value; no retraining is involved (re-index only). The baseline, measured in the same run,
is one answer with nothing changed, so the ratio says how many plain answers the wait costs.
Goal: freshness <= 60 s.

    .venv/bin/python benchmarks/freshness_bench.py [--work-dir .raft] [--trials 3]

The work dir must hold a production model (`make run` trains one); its registry is copied.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flows.config import load_config  # noqa: E402
from flows.serve import start_stack  # noqa: E402
from flows.steps import sync_index  # noqa: E402
from flows.watch import CorpusWatcher  # noqa: E402
from serving.vllm_process import free_port  # noqa: E402
from training.registry import get_version, read_aliases, set_alias  # noqa: E402

QUESTION = "What is the measuring range of the LS-10?"
FILES = ("datasheets/ls-10.html", "sensors/ls-10-calibration.md")


def ask(url: str) -> tuple[str, float]:
    """The gateway's answer plus its citations as one text, and the request's seconds."""
    began = time.perf_counter()
    body = httpx.post(f"{url}/v1/chat/completions", timeout=300,
                      json={"model": "raft", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 96}).json()
    text = (body["raft"]["answer"] or body["choices"][0]["message"]["content"]) + " " + " ".join(c["quote"] for c in body["citations"])
    return text, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / ".raft")
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    production = read_aliases(args.work_dir / "models")["production"]
    if production is None:
        sys.exit(f"no production model in {args.work_dir}: run `make run` first")

    root = Path(tempfile.mkdtemp(prefix="freshness-"))
    corpus, work = root / "corpus", root / "work"
    shutil.copytree(REPO / "examples" / "corpus", corpus)
    version = get_version(args.work_dir / "models", production)
    shutil.copytree(version.path, work / "models" / version.name, ignore=shutil.ignore_patterns("merged"))
    set_alias(work / "models", "production", version.name)
    overrides = {"work_dir": str(work), "corpus.path": str(corpus), "serving.port": str(free_port()),
                 "serving.vllm_port": str(free_port()), "serving.anonymous": "true"}
    config = str(REPO / "raft.yaml")
    cfg = load_config(config, overrides)
    shutil.copytree(args.work_dir / "base", work / "base")  # the converted base model, verified by hash on use
    sync_index(cfg)

    import uvicorn

    stack = start_stack(cfg)
    server = uvicorn.Server(uvicorn.Config(stack.app, host="127.0.0.1", port=cfg.serving.port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    url = f"http://127.0.0.1:{cfg.serving.port}"
    watcher = CorpusWatcher(cfg, config, overrides, tick_s=0.5).start()
    while watcher.syncs < 1:  # its first sync, at start, as in `raft serve`
        time.sleep(0.2)
    time.sleep(1)
    try:
        before, _ = ask(url)  # warm-up, and the answer before any change
        _, baseline = ask(url)
        old = "0 to 4 m"
        fresh, indexed = [], []
        for trial, metres in enumerate((7, 9, 6)[: args.trials]):
            new = f"0 to {metres} m"
            syncs = watcher.syncs
            saved = time.perf_counter()
            for rel in FILES:
                path = corpus / rel
                path.write_text(path.read_text().replace(old, new))
            seen_index = None
            while True:
                if seen_index is None and watcher.syncs > syncs:
                    seen_index = time.perf_counter() - saved
                text, _ = ask(url)
                if f"{metres} m" in text:
                    break
                if time.perf_counter() - saved > 300:
                    sys.exit(f"trial {trial}: after 300 s the answer still does not carry {new!r}: {text[:200]!r}")
            fresh.append(time.perf_counter() - saved)
            indexed.append(seen_index if seen_index is not None else fresh[-1])
            print(f"trial {trial + 1}: {old!r} -> {new!r}: re-indexed after <= {indexed[-1]:.1f} s, answer cites it after {fresh[-1]:.1f} s")
            old = new
    finally:
        watcher.stop()
        server.should_exit = True
        stack.stop()
    median = statistics.median(fresh)
    print(f"\nanswer before the edits: {before[:160]!r}")
    print(f"baseline (one answer, nothing changed): {baseline:.1f} s")
    print(f"freshness, save -> answer citing the new text: median {median:.1f} s over {len(fresh)} trials "
          f"(re-index median {statistics.median(indexed):.1f} s); ratio to the baseline {median / baseline:.2f}; "
          f"goal <= 60 s: {'met' if median <= 60 else 'NOT met'}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
