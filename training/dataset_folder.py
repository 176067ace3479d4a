"""Dataset folders on disk: `train.jsonl`, `eval.jsonl`, `dataset_card.json`.

A dataset is written to a temporary folder beside its destination and renamed into place,
so a reader never sees half a dataset. Under the work dir it is named by its content hash
(`datasets/<hash>`), and `datasets/LATEST` names the newest one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.atomic import atomic_dir, write_text_atomic
from contracts.prompt import PROMPT_FORMAT

if TYPE_CHECKING:  # training reads dataset folders without the retrieval stack (GPU machines, launchers)
    from training.dataset import Dataset

FILES = ("train.jsonl", "eval.jsonl", "dataset_card.json")
LATEST = "LATEST"
DATASET_FORMAT = 2  # 2: examples as data (question, context documents, oracle position, answer turn)


class DatasetFolderError(ValueError):
    """A dataset folder that is missing or incomplete; the message says what to do."""


def write_dataset(dataset: Dataset, datasets_dir: Path, out: Path | None = None) -> tuple[Path, str]:
    """Write `dataset` atomically to `out`, else to `datasets_dir/<content hash>`; returns (folder, hash).

    Writing to the work dir also points `datasets_dir/LATEST` at it. An existing folder at
    `out` is replaced only when it is a dataset folder itself.
    """
    blobs = {
        "train.jsonl": _jsonl(dataset.train),
        "eval.jsonl": _jsonl(dataset.eval),
        "dataset_card.json": (json.dumps(dataset.card, indent=2, sort_keys=True) + "\n").encode(),
    }
    digest = _digest(blobs)
    target = out if out is not None else datasets_dir / digest[:16]
    if target.exists() and not (target / "dataset_card.json").is_file():
        raise DatasetFolderError(f"{target} exists and is not a dataset folder: choose another --out or remove it")
    with atomic_dir(target) as tmp:
        for name in FILES:
            (tmp / name).write_bytes(blobs[name])
    if out is None:
        write_text_atomic(datasets_dir / LATEST, target.name + "\n")
    return target, digest


def latest_dataset(datasets_dir: Path) -> Path:
    """The dataset `datasets_dir/LATEST` names."""
    pointer = datasets_dir / LATEST
    if not pointer.is_file():
        raise DatasetFolderError(f"no dataset in {datasets_dir}: run `raft dataset` first, or pass --dataset DIR")
    return check_dataset(datasets_dir / pointer.read_text().strip())


def check_dataset(path: Path) -> Path:
    """`path` if it holds a complete dataset, else DatasetFolderError naming what is missing."""
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise DatasetFolderError(f"{path} is not a dataset folder (missing {', '.join(missing)}): run `raft dataset`")
    return path


def check_format(path: Path) -> Path:
    """`path` if its examples can be rendered by this code's prompt module, else DatasetFolderError:
    the answer turns were written in the prompt format the dataset was built with."""
    card = read_card(path)
    built, fmt = card.get("sources", {}).get("prompt_format"), card.get("format")
    if fmt != DATASET_FORMAT:
        raise DatasetFolderError(f"{path} is a dataset of format {fmt}; this version reads format {DATASET_FORMAT}: rebuild it with `raft dataset`")
    if built != PROMPT_FORMAT:
        raise DatasetFolderError(
            f"{path} was built with prompt format {built}, but this code renders prompt format {PROMPT_FORMAT} "
            "(contracts/prompt.py changed): rebuild it with `raft dataset`"
        )
    return path


def dataset_hash(path: Path) -> str:
    """The content hash of a dataset folder (the same `write_dataset` returned for it)."""
    return _digest({name: (check_dataset(path) / name).read_bytes() for name in FILES})


def read_examples(path: Path, split: str) -> list[dict[str, Any]]:
    """The examples of one split ("train" or "eval") of a dataset folder."""
    file = check_dataset(path) / f"{split}.jsonl"
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_card(path: Path) -> dict[str, Any]:
    """The dataset card of a dataset folder."""
    return json.loads((check_dataset(path) / "dataset_card.json").read_text(encoding="utf-8"))


def _digest(blobs: dict[str, bytes]) -> str:
    return hashlib.sha256(b"".join(hashlib.sha256(blobs[name]).digest() for name in FILES)).hexdigest()


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows).encode()


