"""The promotion gate: a candidate version becomes `production` only if it answers better.

The candidate's `raft_rag` scores are compared with the current production version's
`raft_rag` (or, before any promotion, the base model's `rag`) on the same questions in the
same run. It passes when its F1 beats the baseline by `min_f1_gain` and its quote
faithfulness drops by at most `faithfulness_tolerance` (and stays above
`min_faithfulness`). Every decision, pass or refuse, is kept in the registry under
`models/decisions/` with its numbers; only a pass moves the alias.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.atomic import write_text_atomic
from contracts.settings import GateConfig
from training.registry import set_alias

DECISIONS = "decisions"


@dataclass(frozen=True)
class Decision:
    candidate: str
    baseline: str  # "production:<version>" or "base:rag"
    promoted: bool
    reasons: tuple[str, ...]
    candidate_scores: dict[str, Any]
    baseline_scores: dict[str, Any]
    rules: GateConfig
    decided: str
    evaluation: dict[str, Any]  # what was evaluated on (dataset, n, k)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {**asdict(self), "rules": self.rules.model_dump()}


def decide(
    candidate: str, candidate_scores: dict[str, Any], baseline: str, baseline_scores: dict[str, Any], rules: GateConfig,
    evaluation: dict[str, Any] | None = None,
) -> Decision:
    """Compare the candidate's scores with the baseline's under `rules`; the reasons say why."""
    reasons = []
    f1, base_f1 = candidate_scores.get("f1") or 0.0, baseline_scores.get("f1") or 0.0
    if f1 >= base_f1 + rules.min_f1_gain:
        reasons.append(f"F1 {f1:.4f} >= baseline {base_f1:.4f} + {rules.min_f1_gain}")
        f1_ok = True
    else:
        reasons.append(f"F1 {f1:.4f} < baseline {base_f1:.4f} + {rules.min_f1_gain}")
        f1_ok = False
    faith, base_faith = candidate_scores.get("quote_faithfulness"), baseline_scores.get("quote_faithfulness")
    faith_ok = True
    if faith is None and rules.min_faithfulness > 0:
        faith_ok = False
        reasons.append("the candidate quoted nothing: quote faithfulness cannot be judged")
    elif faith is None:  # no floor: answers without quotes are allowed (e.g. dataset.style direct)
        reasons.append("the candidate quoted nothing, and min_faithfulness is 0: not judged")
    else:
        if base_faith is not None and faith < base_faith - rules.faithfulness_tolerance:
            faith_ok = False
            reasons.append(f"quote faithfulness {faith:.4f} dropped below baseline {base_faith:.4f} - {rules.faithfulness_tolerance}")
        if faith < rules.min_faithfulness:
            faith_ok = False
            reasons.append(f"quote faithfulness {faith:.4f} < floor {rules.min_faithfulness}")
        if faith_ok:
            reasons.append(f"quote faithfulness {faith:.4f} holds (baseline {base_faith}, floor {rules.min_faithfulness})")
    return Decision(
        candidate, baseline, f1_ok and faith_ok, tuple(reasons), candidate_scores, baseline_scores, rules,
        datetime.now(UTC).isoformat(timespec="microseconds"), evaluation or {},
    )


def record(models_dir: Path, decision: Decision) -> Path:
    """Keep the decision in the registry and, when it promotes, point `production` at the candidate.

    The decision file is written first (temp then rename), so a promotion is never without
    its record.
    """
    folder = models_dir / DECISIONS
    folder.mkdir(parents=True, exist_ok=True)
    stamp = decision.decided.replace(":", "").replace("-", "").replace("+0000", "Z")  # sortable, unique per decision
    path = folder / f"{stamp}-{decision.candidate}.json"
    write_text_atomic(path, json.dumps(decision.to_dict(), indent=2, sort_keys=True) + "\n")
    if decision.promoted:
        set_alias(models_dir, "production", decision.candidate)
    return path


def decisions(models_dir: Path, candidate: str | None = None) -> list[dict[str, Any]]:
    """Recorded decisions, oldest first (only `candidate`'s when given)."""
    folder = models_dir / DECISIONS
    # Not a hidden file: a write killed half-way by an older version left its temporary ".<name>.….tmp.json".
    found = [json.loads(p.read_text()) for p in sorted(folder.glob("[!.]*.json"))] if folder.is_dir() else []
    return [d for d in found if candidate is None or d["candidate"] == candidate]

