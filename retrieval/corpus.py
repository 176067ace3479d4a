"""Finding the files of a corpus folder and fingerprinting them without parsing."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from retrieval.documents import SIDECAR_SUFFIX


class CorpusError(ValueError):
    """The corpus as a whole cannot be used (missing folder, no documents)."""


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    source: str  # relative to the corpus root, posix
    file_hash: str  # SHA-256 of the bytes, and of the sidecar's bytes when there is one
    modified: str  # ISO 8601, UTC


@dataclass(frozen=True)
class Skipped:
    """A file or record left out of a sync, and why."""

    source: str
    reason: str


def scan_corpus(root: Path, include: list[str]) -> tuple[list[CorpusFile], list[Skipped]]:
    """Every file under `root` whose name matches one of the `include` globs, with its hash.

    Hidden files and folders and `.meta.yaml` sidecars are not documents. Unreadable files
    come back as Skipped.
    """
    if not root.is_dir():
        raise CorpusError(f"corpus folder {root} does not exist: set corpus.path in raft.yaml or pass --corpus")
    files, skipped = [], []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name.endswith(SIDECAR_SUFFIX) or not any(fnmatch.fnmatch(name.lower(), p) for p in include):
                continue
            path = Path(folder) / name
            source = path.relative_to(root).as_posix()
            try:
                files.append(CorpusFile(path, source, _file_hash(path), _modified(path)))
            except OSError as e:
                skipped.append(Skipped(source, f"unreadable ({e.strerror or e}): check the file's permissions"))
    return files, skipped


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if sidecar.is_file():
        digest.update(b"\x00sidecar\x00" + sidecar.read_bytes())
    return digest.hexdigest()


def _modified(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).isoformat(timespec="seconds")
