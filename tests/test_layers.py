"""The packages form a one-way stack: each imports only packages below it.

    flows        config files, environment, Prefect, the CLI
    evaluation   questions, settings, asking, metrics, gate, report
    serving      vLLM process, gateway
    training     datasets, LoRA training, registry
    retrieval    loading, chunking, embedding, the index
    contracts    prompt format, text matching, answer checks, the model API client, settings
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

STACK = ("contracts", "retrieval", "training", "serving", "evaluation", "flows")


def imported_packages(file: Path) -> set[tuple[str, int]]:
    """(top-level package, line) of every import in `file`, wherever it stands (functions too)."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", STACK)
def test_no_package_imports_one_above_it(package):
    above = set(STACK[STACK.index(package) + 1:])
    wrong = [
        f"{file.relative_to(REPO)}:{line} imports {name}"
        for file in sorted((REPO / package).rglob("*.py"))
        for name, line in sorted(imported_packages(file), key=lambda item: item[1])
        if name in above
    ]
    assert not wrong, f"{package} may import only {', '.join(STACK[:STACK.index(package)]) or 'nothing of the stages'}:\n" + "\n".join(wrong)


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from flows.config import load_config\n    import serving.engine\n")
    assert imported_packages(module) == {("os", 1), ("flows", 4), ("serving", 5)}


def test_every_package_is_in_the_stack():
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert packages == set(STACK)


def environment_writes(file: Path) -> list[int]:
    """Lines of `file` that change the process environment (os.environ writes, os.putenv)."""
    lines = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        target = node.func.value if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
        if target is not None and ast.unparse(target) == "os.environ" and node.func.attr in ("setdefault", "update", "pop", "clear", "__setitem__"):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.putenv", "os.unsetenv"):
            lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            lines += [node.lineno for t in targets if isinstance(t, ast.Subscript) and ast.unparse(t.value) == "os.environ"]
    return sorted(lines)


def test_stage_code_leaves_the_process_environment_alone():
    """Only flows/ reads (and sets) the environment; a stage that set, say, HF_HUB_OFFLINE for the whole
    process would break a later step of the same run that needs the hub."""
    wrong = [f"{file.relative_to(REPO)}:{line}" for package in STACK[:-1] for file in sorted((REPO / package).rglob("*.py")) for line in environment_writes(file)]
    assert not wrong, "library code changes the process environment: " + ", ".join(wrong)


def test_the_environment_check_finds_every_kind_of_write(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('import os\nos.environ.setdefault("A", "1")\nos.environ["B"] = "2"\nos.putenv("C", "3")\ndel os.environ["D"]\nx = os.environ.get("E")\n')
    assert environment_writes(module) == [2, 3, 4, 5]


def test_the_images_carry_every_package():
    for dockerfile in sorted((REPO / "infra" / "docker").glob("*.Dockerfile")):
        copied = set(re.findall(r"^COPY (\w+) \1$", dockerfile.read_text(), re.M))
        assert set(STACK) <= copied, f"{dockerfile.name} does not copy {', '.join(sorted(set(STACK) - copied))}"


def imported_modules(file: Path) -> set[tuple[str, int]]:
    """(module, line) of every absolute import in `file`."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if isinstance(node, ast.Import):
            found |= {(alias.name, node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add((node.module, node.lineno))
    return found


def test_the_stages_use_the_index_only_through_its_interface():
    """Training, evaluation, serving and flows read the index through retrieval/index.py; only the
    place that opens one (flows/wiring.py) names a Qdrant backend."""
    backends = {"retrieval.store", "retrieval.edge_store", "retrieval.backend"}
    wrong = [
        f"{file.relative_to(REPO)}:{line}"
        for package in ("training", "serving", "evaluation", "flows")
        for file in sorted((REPO / package).rglob("*.py"))
        if file != REPO / "flows" / "wiring.py"
        for module, line in imported_modules(file)
        if module in backends
    ]
    assert not wrong, "import the index interface (retrieval.index), not a backend: " + ", ".join(wrong)


@pytest.mark.parametrize("backend", ["retrieval.store:ChunkStore", "retrieval.edge_store:EdgeStore"])
@pytest.mark.parametrize("protocol", ["IndexReader", "IndexWriter"])
def test_each_qdrant_backend_implements_the_index_interface(protocol, backend):
    import importlib
    import inspect

    import retrieval.index

    module, name = backend.split(":")
    cls = getattr(importlib.import_module(module), name)
    interface = getattr(retrieval.index, protocol)
    for method_name, method in inspect.getmembers(interface, inspect.isfunction):
        if method_name.startswith("_"):
            continue
        assert hasattr(cls, method_name), f"{name} lacks {protocol}.{method_name}"
        expected = list(inspect.signature(method).parameters)
        assert list(inspect.signature(getattr(cls, method_name)).parameters) == expected, f"{name}.{method_name} differs from {protocol}"
