"""A version's evidence profile: what serving's evidence floor is calibrated on, in the current measure.

`raft dataset` measures the profile over its training contexts (`dataset_profile`) and `raft
train` copies it into the version. When the measure changes (`retrieval.evidence.MEASURE`), the
training examples do not: so the profile is measured again from the version's own dataset the
first time the version is served or evaluated, and stored with it (`current_profile`). A new
measure then costs seconds, not a rebuilt dataset and a retraining.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from contracts.prompt import example_docs
from retrieval.evidence import MEASURE, Embed, evidence_profile
from training.dataset_folder import DatasetFolderError, dataset_hash, read_examples
from training.registry import Version, store_evidence_profile

log = logging.getLogger("raft.evidence")


def dataset_profile(train_rows: Iterable[Mapping[str, Any]], embed: Embed, embedding_model: str) -> dict[str, Any]:
    """The evidence profile of a dataset's training examples: the scores of the contexts that hold
    their oracle (the ones training shows with the answer in them)."""
    answered = [(row["question"], example_docs(row)) for row in train_rows if row["oracle_present"]]
    return evidence_profile(answered, embed, embedding_model)


def current_profile(version: Version, embed: Embed, embedding_model: str) -> dict[str, Any] | None:
    """`version`'s evidence profile in the current measure, taken with `embedding_model`: the stored
    one, or else one measured again from the dataset the version was trained on and stored in its
    metadata (so this happens once). None, logged, when that dataset is gone or is no longer what
    the version was trained on."""
    stored = version.metadata.get("evidence")
    if stored and stored.get("measure") == MEASURE and stored.get("embedding_model") == embedding_model:
        return stored
    trained_on = version.metadata.get("dataset") or {}
    folder = Path(trained_on.get("path") or "")
    try:
        unchanged = bool(trained_on.get("path")) and dataset_hash(folder) == trained_on.get("sha256")
    except (DatasetFolderError, OSError):
        unchanged = False
    if not unchanged:
        log.warning("%s has no evidence profile for %s in the current measure, and the dataset it was trained on (%s) is gone "
                    "or has changed, so it cannot be measured again: train it again to get one", version.name, embedding_model, folder)
        return None
    profile = dataset_profile(read_examples(folder, "train"), embed, embedding_model)
    try:
        store_evidence_profile(version, profile)
    except OSError as e:  # a read-only registry (a serving replica): still use it, measured again next start
        log.warning("%s: could not store its evidence profile (%s); it is measured again at the next start", version.name, e)
    log.info("%s: evidence profile measured again from its dataset %s (%d contexts): it was trained before the measure "
             "or the embedding model changed", version.name, folder, len(profile["scores"]))
    return profile
