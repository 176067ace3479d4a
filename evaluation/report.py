"""The evaluation report: a Markdown summary, PNG charts, and per-question outputs for error analysis.

    <report dir>/
      report.md       the matrix of settings, the k sweep, retrieval, how it was run
      settings.png    EM, F1 and quote faithfulness per setting
      k_sweep.png     F1 against the number of retrieved documents, rag vs raft_rag
      results.json    the same numbers as `raft eval --json`
      outputs.jsonl   one line per question and setting: prompt sources, output, prediction, scores
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts.atomic import atomic_file, write_text_atomic

COLUMNS = (
    ("n", "n"), ("em", "EM"), ("f1", "F1"), ("answer_contained", "contained"), ("quote_faithfulness", "quote faithfulness"),
    ("answer_in_quote", "answer in quote"), ("wrong_idk", "wrong IDK"), ("idk_without_answer", "IDK w/o answer"),
    ("answer_parse_rate", "parse rate"), ("latency_s", "latency s"), ("output_tokens", "output tokens"), ("reasked", "asked again"),
    ("below_evidence_floor", "below evidence floor"),
)


def write_report(folder: Path, results: dict[str, Any], rows: Sequence[dict[str, Any]]) -> Path:
    """Write the report files into `folder` (created); returns the Markdown file."""
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "results.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(folder / "outputs.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    charts = [_settings_chart(folder / "settings.png", results["settings"])]
    if any(len(by_k) > 1 for by_k in results.get("k_sweep", {}).values()):
        charts.append(_sweep_chart(folder / "k_sweep.png", results["k_sweep"]))
    write_text_atomic(folder / "report.md", markdown(results, [c.name for c in charts]))
    return folder / "report.md"


def markdown(results: dict[str, Any], charts: Sequence[str] = ()) -> str:
    """The report as Markdown."""
    model, data = results.get("model", {}), results.get("dataset", {})
    lines = [
        "# Evaluation report", "",
        f"Model: `{model.get('tuned')}` (base `{model.get('base')}`); questions: {data.get('n')} from "
        f"`{data.get('path')}` ({data.get('kind')}); k = {results['retrieval'].get('k')}; "
        f"sampling {json.dumps(results.get('sampling', {}))}; {results.get('seconds')} s.", "",
        "## Settings", "",
        "| setting | " + " | ".join(title for _, title in COLUMNS) + " |",
        "| --- |" + " ---: |" * len(COLUMNS),
    ]
    for name, m in results["settings"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(m.get(key)) for key, _ in COLUMNS) + " |")
    lines += ["", *(f"![{c}]({c})" for c in charts if c == "settings.png")]
    if results.get("k_sweep"):
        ks = sorted({int(k) for by_k in results["k_sweep"].values() for k in by_k})
        lines += ["", "## F1 by number of retrieved documents", "", "| setting | " + " | ".join(f"k={k}" for k in ks) + " |",
                  "| --- |" + " ---: |" * len(ks)]
        for name, by_k in results["k_sweep"].items():
            lines.append(f"| {name} | " + " | ".join(_cell(by_k.get(str(k), {}).get("f1")) for k in ks) + " |")
        lines += ["", *(f"![{c}]({c})" for c in charts if c == "k_sweep.png")]
    r = results["retrieval"]
    if r.get("n"):
        recall = ", ".join(f"@{k} {v}" for k, v in r["recall_by_k"].items())
        lines += ["", "## Retrieval", "", f"Source document recall {recall}; MRR {r['mrr']} ({r['n']} questions with a known source)."]
    lines += ["", "Per-question outputs: `outputs.jsonl` (one line per question and setting)."]
    return "\n".join(lines) + "\n"


def _settings_chart(path: Path, settings: dict[str, Any]) -> Path:
    plt = _pyplot()
    names = list(settings)
    measures = (("em", "EM"), ("f1", "F1"), ("quote_faithfulness", "quote faithfulness"))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(names), 3.6))
    width = 0.8 / len(measures)
    for n, (key, label) in enumerate(measures):
        values = [settings[s].get(key) for s in names]
        bars = ax.bar([i + (n - 1) * width for i in range(len(names))], [v or 0.0 for v in values], width, label=label)
        # None: not measurable (no quotes to check), which is not the same as 0
        ax.bar_label(bars, labels=["n/a" if v is None else f"{v:.2f}" for v in values], fontsize=7)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.1)
    ax.set_title("Answer quality by setting")
    ax.legend(fontsize=8, loc="upper left")
    return _save(plt, fig, path)


def _sweep_chart(path: Path, sweep: dict[str, dict[str, Any]]) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, by_k in sweep.items():
        ks = sorted(int(k) for k in by_k)
        ax.plot(ks, [by_k[str(k)]["f1"] for k in ks], marker="o", label=name)
    ax.set_xlabel("retrieved documents (k)")
    ax.set_ylabel("F1")
    ax.set_ylim(0, 1.0)
    ax.set_title("F1 as more documents are retrieved")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path




def _cell(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)
