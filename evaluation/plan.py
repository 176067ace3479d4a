"""The evaluation settings, one entry each, and the jobs they make: who answers, with which documents.

    closed_book  base model, no documents
    rag          base model, top-k retrieved chunks
    raft_rag     tuned model, top-k retrieved chunks (the product)
    oracle       tuned model, the oracle chunk among distractors (upper bound; oracle known)
    no_oracle    tuned model, top-k retrieved chunks of other documents, none holding a gold answer
                 (the right reply is "I don't know": its `idk` is how often the model abstains
                 when the documents do not answer; source known)
    dsf          a model tuned without documents, asked without documents (when given)

A new setting is one entry of `SETTINGS`: which model answers and what context it gets.
Settings with retrieved context run once for every k of a sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from contracts.answers import contains_answer
from contracts.prompt import ContextDoc
from evaluation.questions import EvalQuestion, EvaluationError
from retrieval.index import Hit

BASE = "base"  # the served name of the base model


@dataclass(frozen=True)
class Setting:
    name: str
    model: Literal["base", "tuned", "dsf"]  # which model answers
    context: Literal["none", "retrieved", "oracle", "distractors"]  # which documents it is shown
    description: str


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("closed_book", "base", "none", "base model, no documents"),
        Setting("rag", "base", "retrieved", "base model, top-k retrieved chunks"),
        Setting("raft_rag", "tuned", "retrieved", "tuned model, top-k retrieved chunks (the product)"),
        Setting("oracle", "tuned", "oracle", "tuned model, the oracle chunk among distractors (upper bound)"),
        Setting("no_oracle", "tuned", "distractors", "tuned model, top-k retrieved chunks that do not answer (right reply: I don't know)"),
        Setting("dsf", "dsf", "none", "a model tuned without documents, asked without documents"),
    )
}
TUNED_SETTINGS = tuple(name for name, s in SETTINGS.items() if s.model == "tuned")
SWEPT_SETTINGS = tuple(name for name, s in SETTINGS.items() if s.context in ("retrieved", "distractors"))
# Retrieval depth for the distractors setting: a question's source document can fill the top ranks
# (a long page is dozens of chunks), and k chunks of other documents must remain below them.
DISTRACTOR_DEPTH = 50


@dataclass(frozen=True)
class Models:
    """Served model names: the base model, the tuned version, an optional DSF version."""

    tuned: str | None
    dsf: str | None = None
    base: str = BASE

    def for_setting(self, setting: Setting) -> str:
        """The served name that answers in `setting` ("" when that model is not given)."""
        return {"base": self.base, "tuned": self.tuned, "dsf": self.dsf}[setting.model] or ""


@dataclass(frozen=True)
class Job:
    setting: str
    k: int | None  # retrieved chunks; the context's size for oracle; None without documents
    question: EvalQuestion
    model: str
    docs: tuple[ContextDoc, ...]


def check_settings(names: Sequence[str]) -> None:
    """Raise EvaluationError for a name that is not a setting."""
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise EvaluationError(f"unknown evaluation setting(s) {', '.join(unknown)}: known ones are {', '.join(SETTINGS)}")


def plan_jobs(
    questions: Sequence[EvalQuestion], hits: Sequence[Sequence[Hit]], settings: Sequence[str], models: Models, ks: Sequence[int]
) -> list[Job]:
    """The requests of an evaluation: each setting (and k, for retrieved contexts) for each question.

    Oracle jobs exist only for questions whose oracle is known, no_oracle jobs only for those whose
    source document is known and whose hits hold chunks of other documents (a long source page can
    fill all of them); `hits` must then reach DISTRACTOR_DEPTH.
    """
    check_settings(settings)
    jobs = []
    for q, found in zip(questions, hits):
        for name in settings:
            setting = SETTINGS[name]
            model = models.for_setting(setting)
            if setting.context == "none":
                jobs.append(Job(name, None, q, model, ()))
            elif setting.context == "oracle":
                if q.oracle_context is not None:
                    jobs.append(Job(name, len(q.oracle_context), q, model, q.oracle_context))
            elif setting.context == "distractors":
                if q.source_docs:
                    others = [h for h in found if h.doc_id not in q.source_docs and not any(contains_answer(h.text, r) for r in q.references)]
                    if others:
                        jobs.extend(Job(name, k, q, model, tuple(h.context_doc() for h in others[:k])) for k in ks)
            else:
                jobs.extend(Job(name, k, q, model, tuple(h.context_doc() for h in found[:k])) for k in ks)
    return jobs


def retrieval_depth(settings: Sequence[str], ks: Sequence[int]) -> int:
    """How many chunks to retrieve per question for the jobs of `settings` at `ks`."""
    check_settings(settings)
    return max(max(ks), DISTRACTOR_DEPTH if any(SETTINGS[n].context == "distractors" for n in settings) else 0)
