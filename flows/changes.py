"""How far the corpus has moved since the model was trained, and whether a retrain is due.

The index is compared with a snapshot of what the production model's training saw: per
document its version hash and chunk count. So an edit that is later undone counts as no
change, and the count never drifts from the index. The ledger is one JSON file in the
work dir, replaced atomically:

    state/changes.json
      last_sync       when the index last synced, what that sync did, the index digest after it
      last_change_at  when a sync last changed something (settle_s counts from here)
      trained_on      the snapshot the last training used, its digest, when that run started
      pending         the change since then, as of the last sync
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.atomic import write_text_atomic
from contracts.settings import RetrainConfig
from retrieval.index import IndexReader

LEDGER = Path("state") / "changes.json"

Snapshot = dict[str, list[Any]]  # doc_id -> [version hash, number of chunks]


class LedgerError(ValueError):
    """The change ledger cannot be read; the message says how to recover."""


@dataclass(frozen=True)
class Change:
    """The difference between the index now and the snapshot training used."""

    added: int = 0
    changed: int = 0
    deleted: int = 0
    chunks: int = 0  # chunks of added and changed documents now, plus those of deleted documents then
    trained_chunks: int = 0
    never_trained: bool = False

    @property
    def documents(self) -> int:
        """Documents added, changed or deleted."""
        return self.added + self.changed + self.deleted

    @property
    def share(self) -> float:
        """Changed chunks over the chunks training saw (1.0 before any training)."""
        return 1.0 if self.never_trained else self.chunks / max(self.trained_chunks, 1)

    def to_dict(self) -> dict[str, Any]:
        """The ledger's and `raft status --json`'s form."""
        return {**asdict(self), "documents": self.documents, "share": round(self.share, 4)}


def index_snapshot(store: IndexReader) -> Snapshot:
    """Every indexed document's version hash and chunk count (payloads only, no vectors)."""
    return {doc_id: [sorted(d.version_hashes)[0], len(d.point_ids)] for doc_id, d in store.documents().items()}


def snapshot_digest(snapshot: Snapshot) -> str:
    """A content hash of the indexed corpus: equal digests, equal documents."""
    return hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()[:16]


def diff(trained: Snapshot | None, now: Snapshot) -> Change:
    """What changed from `trained` (None: never trained) to `now`."""
    if trained is None:
        return Change(added=len(now), chunks=_chunks(now), never_trained=True)
    added = [d for d in now if d not in trained]
    changed = [d for d in now if d in trained and now[d][0] != trained[d][0]]
    deleted = [d for d in trained if d not in now]
    chunks = sum(now[d][1] for d in added + changed) + sum(trained[d][1] for d in deleted)
    return Change(len(added), len(changed), len(deleted), chunks, _chunks(trained))


def read_ledger(work_dir: Path) -> dict[str, Any]:
    """The ledger, or an empty one before the first sync."""
    file = work_dir / LEDGER
    if not file.is_file():
        return {"last_sync": None, "last_change_at": None, "trained_on": None, "pending": None}
    try:
        return json.loads(file.read_text())
    except ValueError as e:
        raise LedgerError(f"{file} is not valid JSON ({e}); delete it: the next sync rebuilds it (and counts all as changed)") from None


def record_sync(work_dir: Path, sync: dict[str, Any], snapshot: Snapshot) -> tuple[dict[str, Any], Change]:
    """Note a finished sync and the change pending since training; returns the ledger and that change."""
    ledger = read_ledger(work_dir)
    now = now_stamp()
    changed = any(sync.get(key) for key in ("added", "updated", "deleted"))
    trained = ledger["trained_on"]
    change = diff(trained["snapshot"] if trained else None, snapshot)
    ledger["last_sync"] = {
        "at": now, "digest": snapshot_digest(snapshot), "documents": len(snapshot),
        "chunks": _chunks(snapshot), **{k: sync.get(k, 0) for k in ("added", "updated", "deleted", "chunks_written", "chunks_deleted")},
    }
    if changed or ledger["last_change_at"] is None:
        ledger["last_change_at"] = now
    ledger["pending"] = change.to_dict()
    _write(work_dir, ledger)
    return ledger, change


def record_training(work_dir: Path, snapshot: Snapshot, started_at: str, version: str, current: Snapshot) -> None:
    """Note that `version` was trained on `snapshot` (the index when its dataset was built);
    `current` is the index now (edits may have landed during training: they stay pending)."""
    ledger = read_ledger(work_dir)
    ledger["trained_on"] = {"at": started_at, "version": version, "digest": snapshot_digest(snapshot), "snapshot": snapshot}
    ledger["pending"] = diff(snapshot, current).to_dict()
    _write(work_dir, ledger)


def retrain_due(ledger: dict[str, Any], rules: RetrainConfig, now: datetime | None = None) -> tuple[bool, str]:
    """Whether the pending change calls for a retrain now, and why (or why not yet)."""
    now = now or datetime.now(UTC)
    pending = ledger.get("pending")
    if not pending:
        return False, "no sync recorded yet"
    share, docs = pending["share"], pending["documents"]
    if docs == 0 or (share < rules.min_changed_share and docs < rules.min_changed_documents):
        return False, (
            f"{docs} documents / {share:.1%} of chunks changed since the last training "
            f"(thresholds: {rules.min_changed_documents} documents or {rules.min_changed_share:.0%})"
        )
    quiet = (now - _parse(ledger["last_change_at"])).total_seconds()
    if quiet < rules.settle_s:
        return False, f"waiting for the corpus to settle ({quiet:.0f} s of {rules.settle_s:.0f} s quiet)"
    trained = ledger.get("trained_on")
    if trained and not pending.get("never_trained"):
        since = (now - _parse(trained["at"])).total_seconds()
        if since < rules.cooldown_s:
            return False, f"cooling down ({since:.0f} s of {rules.cooldown_s:.0f} s since the last retrain started)"
    return True, f"{docs} documents / {share:.1%} of chunks changed since the last training"


def _chunks(snapshot: Snapshot) -> int:
    return sum(n for _, n in snapshot.values())


def now_stamp() -> str:
    """The ledger's time stamp for now (UTC, ISO 8601)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _write(work_dir: Path, ledger: dict[str, Any]) -> None:
    write_text_atomic(work_dir / LEDGER, json.dumps(ledger, indent=1, sort_keys=True) + "\n")
