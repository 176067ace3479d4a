"""The model registry: a folder of versions under the work dir, and aliases that name one.

    models/
      raft-20261123-101500-3fa2c1/      one version, its weights never changed once written
        adapter/                        LoRA adapter + tokenizer (what vLLM loads with --lora-modules)
        merged/                         optional: the adapter merged into the base model
        metadata.json                   base model and hash, dataset hash, config, metrics, timings, git commit
      aliases.json                      {"production": "raft-…" or null}

Each version has its own name, never reused: vLLM can serve stale weights when an adapter is
reloaded under a name it already knows, so serving switches between names, not files. A
version is assembled in a hidden temporary folder and renamed into place; aliases.json is
replaced by a rename too. Only the evaluation gate moves `production`. The one thing rewritten in
a version, by a rename too, is its evidence profile, when the measure it was taken with changes
(`training.evidence_profile`): it describes the version's dataset, not its weights.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.atomic import atomic_dir, write_text_atomic

METADATA = "metadata.json"
ALIASES = "aliases.json"
KNOWN_ALIASES = ("production",)
NAME = re.compile(r"^raft-\d{8}-\d{6}-[0-9a-f]{6}$")


class RegistryError(ValueError):
    """A version or alias that does not exist or cannot be written; the message says what to do."""


@dataclass(frozen=True)
class Version:
    name: str
    path: Path
    metadata: dict[str, Any]

    @property
    def adapter_dir(self) -> Path:
        """The LoRA adapter folder."""
        return self.path / "adapter"

    @property
    def merged_dir(self) -> Path | None:
        """The merged model folder, when the version has one."""
        return self.path / "merged" if (self.path / "merged").is_dir() else None

    @property
    def audience(self) -> tuple[str, ...]:
        """The access groups whose documents its training data could hold (`dataset.audience`): a
        model repeats what it learned, so only callers in all of them may ask it. A version that
        does not say is a RegistryError, never taken for public."""
        audience = self.metadata.get("dataset", {}).get("settings", {}).get("audience")
        if not isinstance(audience, list) or not all(isinstance(g, str) for g in audience):
            raise RegistryError(f"{self.name}'s metadata.json does not say whose documents it was trained on "
                                "(dataset.settings.audience): train it again")
        return tuple(audience)

    def summary(self) -> dict[str, Any]:
        """What `raft models --json` shows of a version."""
        return {"name": self.name, "path": str(self.path), "created": self.metadata.get("created"), "metrics": self.metadata.get("metrics", {})}


def register(models_dir: Path, adapter_dir: Path, metadata: dict[str, Any], merged_dir: Path | None = None) -> Version:
    """Copy a trained adapter (and merged model) into a new version, atomically; returns it.

    The adapter and merged folders are moved when they are on the same file system (they are
    the run's outputs), so a version costs no second copy.
    """
    now = datetime.now(UTC)
    name = f"raft-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    with atomic_dir(models_dir / name, replace=False) as tmp:
        shutil.move(adapter_dir, tmp / "adapter")
        if merged_dir is not None:
            shutil.move(merged_dir, tmp / "merged")
        metadata = {**metadata, "name": name, "created": now.isoformat(timespec="microseconds"), "merged": merged_dir is not None}
        (tmp / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return get_version(models_dir, name)


def list_versions(models_dir: Path) -> list[Version]:
    """All complete versions, oldest first (half-written temporary folders are not versions)."""
    if not models_dir.is_dir():
        return []
    versions = [_read(p) for p in sorted(models_dir.iterdir()) if NAME.match(p.name) and (p / METADATA).is_file()]
    return sorted(versions, key=lambda v: (v.metadata.get("created", ""), v.name))  # created has microseconds


def get_version(models_dir: Path, name: str) -> Version:
    """The version called `name`, or the one an alias (e.g. `production`) names."""
    aliases = read_aliases(models_dir)
    if name in aliases:
        if aliases[name] is None:
            raise RegistryError(f"alias {name!r} names no version yet: a version becomes {name} when it passes `raft gate`")
        name = aliases[name]
    path = models_dir / name
    if not NAME.match(name) or not (path / METADATA).is_file():
        known = ", ".join(v.name for v in list_versions(models_dir)) or "none (run `raft train`)"
        raise RegistryError(f"no model version {name!r} in {models_dir}; versions: {known}")
    return _read(path)


def read_aliases(models_dir: Path) -> dict[str, str | None]:
    """Alias -> version name (None while unset)."""
    aliases: dict[str, str | None] = dict.fromkeys(KNOWN_ALIASES)
    file = models_dir / ALIASES
    if file.is_file():
        try:
            aliases.update(json.loads(file.read_text()))
        except ValueError as e:
            raise RegistryError(f"{file} is not valid JSON ({e}); restore it or delete it to unset all aliases") from None
    return aliases


def set_alias(models_dir: Path, alias: str, name: str | None) -> None:
    """Point `alias` at version `name` (None unsets it), replacing aliases.json atomically."""
    if alias not in KNOWN_ALIASES:
        raise RegistryError(f"unknown alias {alias!r}; known: {', '.join(KNOWN_ALIASES)}")
    if name is not None:
        name = get_version(models_dir, name).name
    aliases = {**read_aliases(models_dir), alias: name}
    write_text_atomic(models_dir / ALIASES, json.dumps(aliases, indent=2, sort_keys=True) + "\n")


def store_evidence_profile(version: Version, profile: dict[str, Any]) -> Version:
    """`version` with its metadata's evidence profile replaced by `profile` (metadata.json rewritten
    atomically; the weights are untouched)."""
    metadata = {**_read(version.path).metadata, "evidence": profile}
    write_text_atomic(version.path / METADATA, json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return Version(version.name, version.path, metadata)


def code_version() -> dict[str, Any]:
    """The git commit of this code and whether the checkout had uncommitted changes (None outside git)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": bool(dirty.strip())}


def _read(path: Path) -> Version:
    try:
        metadata = json.loads((path / METADATA).read_text())
    except ValueError as e:
        raise RegistryError(f"{path / METADATA} is not valid JSON ({e}): the version is damaged; remove {path}") from None
    return Version(path.name, path, metadata)
