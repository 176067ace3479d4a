"""Asking a model server every job, as the gateway asks, and summarizing the scored rows.

Every job is one chat request with messages from the shared prompt module and the
grounding's structured-output fields from `serving.grounding`, so the numbers describe
what production serves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from contracts.generation import Completion, Sampling, complete, model_client
from contracts.prompt import build_messages
from evaluation.metrics import AnswerScore, score_output, summarize
from evaluation.plan import SETTINGS, SWEPT_SETTINGS, Job
from evaluation.questions import EvalQuestion
from retrieval.index import Hit
from serving.grounding import Grounder, abstained


def run_jobs(
    jobs: Sequence[Job], base_url: str, sampling: Sampling, concurrency: int, grounder: Grounder,
    on_done: Callable[[], None] = lambda: None, floors: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Ask the server every job (`concurrency` at a time) grounded by `grounder` with the evidence
    floor of the job's model (`floors`; none for a model not in it), as the gateway asks; one scored
    row per job, in job order."""

    def ask(job: Job) -> dict[str, Any]:
        messages = build_messages(job.question.question, job.docs)
        # A setting without documents (closed_book, dsf) answers from memory: there is nothing to ground it in.
        asked = grounder.with_grounding("free") if SETTINGS[job.setting].context == "none" else grounder
        fields = asked.with_floor((floors or {}).get(job.model)).request_fields(job.question.question, job.docs)
        done = complete(client, job.model, messages, sampling, fields or None)
        reask = asked.reask(job.question.question, done.text)
        more = reask.sampling(sampling, done.completion_tokens) if reask else None
        if reask and more:
            done = done.continued(reask.prefix, complete(client, job.model, reask.messages(messages), more, reask.extra_body()))
        on_done()
        return _row(job, done, score_output(done.text, job.question.references, job.docs), reasked=bool(reask and more),
                    below_floor=abstained(fields))

    with model_client(base_url) as client, ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(ask, jobs))


def summarize_rows(rows: Sequence[dict[str, Any]], k: int) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Metrics per setting (the swept ones, rag, raft_rag and no_oracle, at `k`), and per k of the sweep for those.

    Only the swept settings are grouped by k: an oracle row's k is the size of its own context,
    which differs between questions, and every setting's row covers all of its questions.
    """
    groups: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    for row in rows:
        swept = row["setting"] in SWEPT_SETTINGS
        groups.setdefault((row["setting"], row["k"] if swept else None), []).append(row)
    settings: dict[str, Any] = {}
    sweep: dict[str, dict[str, Any]] = {}
    for (setting, row_k), group in groups.items():
        summary = {**_summary(group), "k": row_k}
        if setting in SWEPT_SETTINGS:
            sweep.setdefault(setting, {})[str(row_k)] = summary
            if row_k == k:
                settings[setting] = summary
        else:
            settings[setting] = summary
    order = {name: n for n, name in enumerate(SETTINGS)}
    settings = dict(sorted(settings.items(), key=lambda item: order[item[0]]))
    sweep = {name: dict(sorted(by_k.items(), key=lambda item: int(item[0]))) for name, by_k in sorted(sweep.items(), key=lambda item: order[item[0]])}
    return settings, sweep


def retrieval_scores(questions: Sequence[EvalQuestion], hits: Sequence[Sequence[Hit]], ks: Sequence[int]) -> dict[str, Any]:
    """Recall@k of the source document for each k, and MRR over the deepest k (judged questions only)."""
    judged = [(q, found) for q, found in zip(questions, hits) if q.source_docs]
    if not judged:
        return {"n": 0}
    ranks = [next((n for n, h in enumerate(found, start=1) if h.doc_id in q.source_docs), None) for q, found in judged]
    return {
        "n": len(judged),
        "recall_by_k": {str(k): round(sum(r is not None and r <= k for r in ranks) / len(ranks), 4) for k in sorted(ks)},
        "mrr": round(sum(1 / r for r in ranks if r is not None) / len(ranks), 4),
    }


def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    scores = [
        AnswerScore(r["prediction"], r["parsed"], r["em"], r["f1"], r["contained"], r["quotes"], r["quotes_verbatim"],
                    r["answer_in_quote"], r["abstained"], r["answer_in_context"])
        for r in rows
    ]
    n = len(rows)
    return {
        **summarize(scores),
        "latency_s": round(sum(r["latency_s"] for r in rows) / n, 3),
        "output_tokens": round(sum(r["completion_tokens"] for r in rows) / n, 1),
        "truncated_outputs": sum(r["finish_reason"] == "length" for r in rows),
        "reasked": sum(r["reasked"] for r in rows),
        "below_evidence_floor": sum(r.get("below_floor", False) for r in rows),
    }


def _row(job: Job, done: Completion, score: AnswerScore, reasked: bool, below_floor: bool) -> dict[str, Any]:
    return {
        "setting": job.setting, "k": job.k, "model": job.model, "id": job.question.id,
        "question": job.question.question, "reference": job.question.answer, "output": done.text,
        "prediction": score.prediction, "parsed": score.parsed, "em": score.em, "f1": round(score.f1, 4),
        "contained": score.contained, "quotes": score.quotes, "quotes_verbatim": score.quotes_verbatim,
        "answer_in_quote": score.answer_in_quote, "abstained": score.abstained, "answer_in_context": score.answer_in_context,
        "references": list(job.question.references),
        "context_sources": [d.source for d in job.docs],
        "latency_s": round(done.latency_s, 3), "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens, "finish_reason": done.finish_reason, "reasked": reasked,
        "below_floor": below_floor,
    }


