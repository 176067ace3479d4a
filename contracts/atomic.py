"""Writing files and folders so that readers see the old content or the new, never half of it.

Everything is written to a temporary sibling (same folder, so same file system) and renamed
into place in one step; a failure or an interrupt leaves the old content and removes the
temporary one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary sibling of `path` to write; it replaces `path` when the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden, and not ending in the target's suffix: a reader that lists "*.json" never takes a
    # temporary that a killed write left behind for a finished file.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these files are read by servers and other users
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) in one step."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def atomic_dir(path: Path, replace: bool = True) -> Iterator[Path]:
    """An empty temporary sibling folder of `path` to fill; renamed to `path` when the block ends
    without error. An existing `path` is replaced (`replace`) or is an error (FileExistsError)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        if path.exists() and not replace:
            raise FileExistsError(f"{path} exists already")
        # A rename cannot replace a non-empty folder: move the old one aside first, then drop it.
        old = path.with_name(f".{path.name}.old") if path.exists() else None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
