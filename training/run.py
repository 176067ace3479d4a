"""One training run end to end: train an adapter, optionally merge it, register it as a version.

A run works in `runs/<key>/`, where the key is a hash of what decides the result (dataset,
base model, settings), so `resume` finds the checkpoints of an interrupted run with the
same inputs. The run folder is removed once its version is registered.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import time
from pathlib import Path

from contracts.atomic import atomic_dir
from contracts.prompt import PROMPT_FORMAT
from contracts.settings import TrainingConfig
from training.base_model import BaseModel
from training.dataset_folder import check_format, dataset_hash, read_card
from training.registry import Version, code_version, register
from training.trainer import CHECKPOINTS, train


def run_training(
    base: BaseModel,
    dataset_dir: Path,
    models_dir: Path,
    runs_dir: Path,
    settings: TrainingConfig,
    merge: bool = False,
    resume: bool = False,
    progress: bool = False,
    continue_interrupted: bool = False,
) -> Version | None:
    """Train on `dataset_dir`, register the result in `models_dir`; returns the new version.

    `resume` continues the checkpoints of an interrupted run with the same inputs (an error
    when there are none); `continue_interrupted` does so when there are, and starts afresh
    otherwise (the pipeline's reruns). Under `accelerate launch` every process trains and only
    the main one registers (the others return None).
    """
    began = time.perf_counter()
    check_format(dataset_dir)
    digest = dataset_hash(dataset_dir)
    config = settings.model_dump(mode="json", exclude={"merge"})  # merging is asked for separately
    key = hashlib.sha256(json.dumps({"dataset": digest, "base": base.sha256, "settings": config}, sort_keys=True).encode()).hexdigest()[:16]
    run_dir = runs_dir / key
    resume = resume or (continue_interrupted and any((run_dir / CHECKPOINTS).glob("step-*")))
    if not resume and (run_dir / CHECKPOINTS).exists():
        shutil.rmtree(run_dir / CHECKPOINTS)  # a fresh run was asked for: old checkpoints would be mixed in
    result = train(base, dataset_dir, run_dir, settings, resume=resume, progress=progress)
    if result is None:
        return None
    merged_dir, merge_seconds = None, None
    if merge:
        t = time.perf_counter()
        merged_dir = merge_adapter(base.path, result.adapter_dir, run_dir / "merged")
        merge_seconds = round(time.perf_counter() - t, 2)
    card = read_card(dataset_dir)
    metadata = {
        "base_model": {"name": base.name, "path": base.path, "sha256": base.sha256},
        "dataset": {"path": str(dataset_dir.resolve()), "sha256": digest, "counts": card.get("counts", {}), "settings": card.get("settings", {})},
        "config": config,
        "metrics": result.metrics,
        "timings": {
            "train_seconds": result.metrics["train_seconds"],
            "merge_seconds": merge_seconds,
            "total_seconds": round(time.perf_counter() - began, 2),
            "resumed": resume,
        },
        "serving": {"max_lora_rank": settings.lora.rank},  # vLLM's --max-lora-rank must be at least this
        "prompt_format": PROMPT_FORMAT,  # what the version was trained to read; evaluation checks it
        "evidence": card.get("evidence"),  # its training contexts' evidence scores: serving's evidence floor
        "libraries": {name: importlib.metadata.version(name) for name in ("torch", "transformers", "peft", "accelerate")},
        **code_version(),
    }
    version = register(models_dir, result.adapter_dir, metadata, merged_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    return version


def merge_adapter(base_path: str, adapter_dir: Path, out_dir: Path) -> Path:
    """The base model with the adapter folded into its weights, saved to `out_dir` (with tokenizer)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto")
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    with atomic_dir(out_dir) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(tmp)
    return out_dir
