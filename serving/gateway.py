"""The RAG gateway: an OpenAI-compatible API in front of vLLM that answers from the index.

For each chat request: the last user message is the question; the top-k chunks the caller
may see are retrieved (or the request brings its own `documents`); the prompt is built
with the shared RAFT prompt module (training/prompt.py), exactly as in training; vLLM
answers; the reply carries the final answer (or the whole reasoning when asked) and the
citations, as a top-level `citations` list (in the last chunk when streaming).

    POST /v1/chat/completions   OpenAI chat, plus "documents" and "raft": {"k", "reasoning"}
    GET  /v1/models             raft (= production), base, loaded versions
    GET  /health                200 when vLLM answers, else 503
    GET  /metrics               Prometheus

Errors are OpenAI-shaped ({"error": {"message", "type", "param", "code"}}): 400 malformed,
401 bad key, 404 unknown model, 413 too large, 429 too many in flight, 503 vLLM down,
504 vLLM too slow.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from serving.citations import SourceDoc, cite
from serving.engine import Engine
from serving.generation import Sampling
from training.prompt import ANSWER_PREFIX, ContextDoc, build_messages, parse_output

Retriever = Callable[[str, int, Sequence[str]], list[SourceDoc]]  # question, k, groups -> context


@dataclass(frozen=True)
class GatewaySettings:
    api_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)  # key -> access groups
    anonymous: bool = False  # requests without a key: allowed, public documents only
    k: int = 5
    max_k: int = 20
    max_message_chars: int = 8000  # the question
    max_document_chars: int = 50_000  # all documents a request brings, together
    default_max_tokens: int = 256
    max_tokens: int = 1024
    max_concurrency: int = 16  # requests in flight; more get 429
    upstream_timeout_s: float = 120


class ApiError(Exception):
    """An error the client gets as OpenAI-shaped JSON."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def response(self) -> JSONResponse:
        """The JSON response."""
        return JSONResponse({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}, self.status)


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None  # text, or OpenAI content parts

    def text(self) -> str:
        """The message's text (the text parts joined)."""
        if isinstance(self.content, list):
            return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class Document(BaseModel):
    text: str = Field(min_length=1)
    title: str = ""
    source: str = ""


class RaftOptions(BaseModel):
    k: int | None = Field(None, ge=1)
    reasoning: bool = False  # the whole output (reasoning with quotes) instead of the final answer


class ChatRequest(BaseModel):
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    documents: list[Document] | None = None  # the caller's own context: no retrieval
    raft: RaftOptions = RaftOptions()


class Metrics:
    """The gateway's Prometheus metrics, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("raft_requests_total", "Chat requests by status code", ["status"], registry=self.registry)
        self.latency = Histogram("raft_request_seconds", "End-to-end latency of chat requests", registry=self.registry)
        self.retrieval = Histogram("raft_retrieval_seconds", "Time to retrieve the context", registry=self.registry,
                                   buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.upstream = Histogram("raft_upstream_seconds", "Time vLLM took to answer", registry=self.registry)
        self.errors = Counter("raft_errors_total", "Failed requests by kind", ["kind"], registry=self.registry)
        self.in_flight = Gauge("raft_in_flight", "Chat requests in flight", registry=self.registry)


def create_app(settings: GatewaySettings, engine: Engine, retrieve: Retriever) -> FastAPI:
    """The gateway app over a running vLLM (`engine`) and a retriever."""
    app = FastAPI(title="raft gateway")
    metrics = Metrics()
    app.state.metrics = metrics
    slots = asyncio.Semaphore(settings.max_concurrency)
    http = httpx.AsyncClient(timeout=httpx.Timeout(settings.upstream_timeout_s, connect=5))

    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        metrics.errors.labels(e.code or e.kind).inc()
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        metrics.errors.labels("invalid_request").inc()
        return ApiError(400, f"invalid request: {param or 'body'}: {first.get('msg', 'malformed')}", param=param).response()

    @app.get("/health")
    async def health() -> JSONResponse:
        up = await run_in_threadpool(engine.healthy)
        swap = engine.last_swap
        body = {
            "status": "ok" if up else "unavailable", "vllm": up, "production": engine.active,
            "last_swap": None if swap is None else {"version": swap.version, "ok": swap.ok, "error": swap.error, "seconds": round(swap.seconds, 2)},
        }
        return JSONResponse(body, 200 if up else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        _groups(settings, request)
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "raft"} for m in engine.models()]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request) -> Response:
        began = time.perf_counter()
        groups = _groups(settings, request)
        if slots.locked():
            raise ApiError(429, f"more than {settings.max_concurrency} requests in flight; retry shortly", "rate_limit_error", code="too_many_requests")
        await slots.acquire()
        metrics.in_flight.inc()

        def release() -> None:
            metrics.in_flight.dec()
            slots.release()

        try:
            response = await _answer(body, groups, began)
        except BaseException as e:
            release()
            if isinstance(e, ApiError):
                metrics.requests.labels(str(e.status)).inc()
            raise
        if isinstance(response, StreamingResponse):
            response.background = BackgroundTask(release)  # the slot is held until the stream ends
        else:
            release()
        return response

    async def _answer(body: ChatRequest, groups: tuple[str, ...], began: float) -> Response:
        try:
            served = engine.resolve(body.model)
        except KeyError:
            raise ApiError(404, f"model {body.model!r} does not exist; available: {', '.join(engine.models())}", param="model", code="model_not_found") from None
        question = _question(body, settings)
        max_tokens = body.max_completion_tokens or body.max_tokens or settings.default_max_tokens
        if max_tokens > settings.max_tokens:
            raise ApiError(400, f"max_tokens {max_tokens} is above this gateway's limit of {settings.max_tokens}", param="max_tokens")
        t = time.perf_counter()
        context = _own_documents(body, settings) if body.documents is not None else await _retrieve(question, body, groups)
        metrics.retrieval.observe(time.perf_counter() - t)
        messages = build_messages(question, [s.doc for s in context])
        sampling = Sampling(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, seed=body.seed or 0)
        payload = {"model": served, "messages": messages, **sampling.request_fields()}
        if body.stream:
            return StreamingResponse(_stream(payload, body, context, began), media_type="text/event-stream")
        t = time.perf_counter()
        upstream = await _post(payload)
        metrics.upstream.observe(time.perf_counter() - t)
        output = upstream["choices"][0]["message"]["content"] or ""
        parsed = parse_output(output)
        content = output if body.raft.reasoning or parsed.answer is None else parsed.answer
        metrics.requests.labels("200").inc()
        metrics.latency.observe(time.perf_counter() - began)
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": upstream["choices"][0].get("finish_reason")}],
            "usage": upstream.get("usage"),
            "citations": [c.to_dict() for c in cite(parsed.quotes, context)],
            "raft": {"served_model": served, "answer": parsed.answer, "context": [_describe(s) for s in context]},
        })

    async def _retrieve(question: str, body: ChatRequest, groups: tuple[str, ...]) -> list[SourceDoc]:
        k = body.raft.k or settings.k
        if k > settings.max_k:
            raise ApiError(400, f"raft.k {k} is above this gateway's limit of {settings.max_k}", param="raft.k")
        return await run_in_threadpool(retrieve, question, k, groups)

    async def _post(payload: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = await http.post(f"{engine.url}/chat/completions", json=payload)
        except httpx.TimeoutException:
            raise ApiError(504, f"the model server did not answer within {settings.upstream_timeout_s:.0f} s", "server_error", code="upstream_timeout") from None
        except httpx.HTTPError as e:
            raise ApiError(503, f"the model server is unavailable ({type(e).__name__}); retry shortly", "server_error", code="upstream_unavailable") from None
        if reply.status_code >= 500:
            raise ApiError(503, f"the model server failed ({reply.status_code}); retry shortly", "server_error", code="upstream_error")
        if reply.status_code != 200:
            raise ApiError(400, f"the model server refused the request: {reply.text[:300]}", code="upstream_refused")
        return reply.json()

    async def _stream(payload: dict[str, Any], body: ChatRequest, context: list[SourceDoc], began: float) -> AsyncIterator[str]:
        """Server-sent events: the answer as it is generated, then a last chunk with the citations."""
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            data = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(data)}\n\n"

        output, sent, finish = "", 0, None
        yield chunk({"role": "assistant", "content": ""})
        t = time.perf_counter()
        try:
            async with http.stream("POST", f"{engine.url}/chat/completions", json={**payload, "stream": True}) as reply:
                if reply.status_code != 200:
                    raise httpx.HTTPStatusError(f"status {reply.status_code}", request=reply.request, response=reply)
                async for line in reply.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    choice = json.loads(line[6:])["choices"][0]
                    output += choice.get("delta", {}).get("content") or ""
                    finish = choice.get("finish_reason") or finish
                    visible = _visible(output, body.raft.reasoning)
                    if visible is not None and len(visible) > sent:
                        yield chunk({"content": visible[sent:]})
                        sent = len(visible)
        except httpx.HTTPError as e:
            metrics.errors.labels("upstream_stream").inc()
            metrics.requests.labels("503").inc()
            error = {"message": f"the model server failed while streaming ({type(e).__name__})", "type": "server_error", "code": "upstream_unavailable"}
            yield f"data: {json.dumps({'error': error})}\n\n"
            return
        metrics.upstream.observe(time.perf_counter() - t)
        parsed = parse_output(output)
        if parsed.answer is None and not body.raft.reasoning and output[sent:]:
            yield chunk({"content": output[sent:]})  # no answer line: the whole output is the answer
        yield chunk({}, finish or "stop", citations=[c.to_dict() for c in cite(parsed.quotes, context)])
        yield "data: [DONE]\n\n"
        metrics.requests.labels("200").inc()
        metrics.latency.observe(time.perf_counter() - began)

    app.router.add_event_handler("shutdown", http.aclose)
    return app


def _groups(settings: GatewaySettings, request: Request) -> tuple[str, ...]:
    """The caller's access groups from its API key (public is always among them)."""
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not key:
        if settings.anonymous:
            return ("public",)
        raise ApiError(401, "no API key: send 'Authorization: Bearer <key>'", "authentication_error", code="invalid_api_key")
    if key not in settings.api_keys:
        raise ApiError(401, "invalid API key", "authentication_error", code="invalid_api_key")
    return tuple(dict.fromkeys(("public", *settings.api_keys[key])))


def _question(body: ChatRequest, settings: GatewaySettings) -> str:
    user = [m.text().strip() for m in body.messages if m.role == "user" and m.text().strip()]
    if not user:
        raise ApiError(400, "no user message with text: the last user message is the question", param="messages")
    question = user[-1]
    if len(question) > settings.max_message_chars:
        raise ApiError(413, f"the question has {len(question)} characters; the limit is {settings.max_message_chars}", param="messages", code="message_too_long")
    return question


def _own_documents(body: ChatRequest, settings: GatewaySettings) -> list[SourceDoc]:
    docs = body.documents or []
    if not docs:
        raise ApiError(400, "documents is empty: leave it out to retrieve from the index", param="documents")
    size = sum(len(d.text) for d in docs)
    if size > settings.max_document_chars:
        raise ApiError(413, f"the documents hold {size} characters; the limit is {settings.max_document_chars}", param="documents", code="documents_too_long")
    return [SourceDoc(ContextDoc(d.text, d.title, d.source)) for d in docs]


def _visible(output: str, reasoning: bool) -> str | None:
    """What a stream may show so far: all of it with reasoning, else what follows the answer line."""
    if reasoning:
        return output
    at = output.rfind(ANSWER_PREFIX)
    return None if at == -1 else output[at + len(ANSWER_PREFIX) :].lstrip().split("\n")[0]


def _describe(s: SourceDoc) -> dict[str, Any]:
    return {"doc_id": s.doc_id, "chunk_id": s.chunk_id, "source": s.doc.source, "title": s.doc.title, "access": list(s.access)}
