"""The RAG gateway: an OpenAI-compatible API in front of vLLM that answers from the index.

Thin routes over the chat service (serving/chat_service.py) and the wire format
(serving/protocol.py):

    POST /v1/chat/completions   OpenAI chat, plus "documents" and "raft": {"k", "reasoning"}
    GET  /v1/models             raft (= production), base, loaded versions
    GET  /openapi.json          the API's schema (behind the same key)
    GET  /health                200 when vLLM answers, else 503
    GET  /metrics               Prometheus

Every error, from any layer (unknown path, wrong method, a body that is not JSON, a
field of the wrong type, vLLM down), is OpenAI-shaped: {"error": {"message", "type",
"param", "code"}}. A request is authenticated before its body is read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.generation import async_model_client
from serving.chat_service import GatewaySettings, Metrics, RagChatService, Retriever
from serving.engine import Engine
from serving.grounding import Embed
from serving.protocol import ApiError, ChatRequest, parse_chat_request

CHAT_PATH = "/v1/chat/completions"
log = logging.getLogger("raft.gateway")


def create_app(
    settings: GatewaySettings, engine: Engine, retrieve: Retriever, embed: Embed, http_client: httpx.AsyncClient | None = None,
    floors: Mapping[str, float] | None = None, trained_on: Mapping[str, Sequence[str]] | None = None,
) -> FastAPI:
    """The gateway app over a running vLLM (`engine`), a retriever and the embedding model that ranks
    quote candidates (`embed`); `http_client` carries the calls to vLLM (tests pass one with a fake
    vLLM behind it); `floors` holds each served version's evidence floor and `trained_on` the access
    groups whose documents it was trained on (both read at each request, so the caller may add a
    version's before swapping it in)."""
    app = FastAPI(title="raft gateway", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = Metrics()
    client = async_model_client(engine.url, settings.serving.upstream_timeout_s, http_client)
    service = RagChatService(settings, engine, retrieve, embed, client, metrics, floors, trained_on)
    app.state.metrics, app.state.service = metrics, service
    slots = asyncio.Semaphore(settings.serving.max_concurrency)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        metrics.errors.labels(e.code or e.kind).inc()
        return e.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        if e.status_code == 404:
            return ApiError(404, f"no such endpoint: {request.url.path}", code="unknown_url").response()
        if e.status_code == 405:
            return ApiError(405, f"{request.method} is not allowed on {request.url.path}", code="method_not_allowed").response()
        return ApiError(e.status_code, str(e.detail)).response()

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return ApiError(400, f"invalid request: {param or 'request'}: {first.get('msg', 'malformed')}", param=param).response()

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

    @app.get("/openapi.json")
    async def openapi(request: Request) -> dict[str, Any]:
        groups(settings, request)
        return _schema(app)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        groups(settings, request)
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "raft"} for m in engine.models()]}

    @app.post(CHAT_PATH, openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatRequest"}}}}})
    async def chat(request: Request) -> Response:
        caller = groups(settings, request)  # before the body is read: strangers learn nothing about it
        body = parse_chat_request(await _body(request, settings.serving.max_request_bytes))
        if slots.locked():
            raise ApiError(429, f"more than {settings.serving.max_concurrency} requests in flight; retry shortly", "rate_limit_error",
                           code="too_many_requests")
        await slots.acquire()
        slot = _Slot(slots, metrics)
        try:
            prepared = await service.prepare(body, caller)
            if body.stream:
                events = await service.stream(prepared)
                # The slot is held until the stream ends, however it ends.
                return StreamingResponse(slot.held_by(events), media_type="text/event-stream", background=BackgroundTask(slot.release_async))
            response = JSONResponse(await service.complete(prepared))
        except BaseException:
            slot.release()
            raise
        slot.release()
        return response

    app.router.add_event_handler("shutdown", client.close)
    app.add_middleware(CountStatuses, metrics=metrics)
    return app


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) past `limit` bytes before more of it is read: parsing runs
    on the event loop that every request shares, and a 30 MB body held it for about 1.5 s."""
    too_large = ApiError(413, f"the request body is larger than this gateway's limit of {limit} bytes", code="request_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise too_large
    return bytes(body)


class _Slot:
    """One of `serving.max_concurrency` places of a request in flight, given back once however the request ends."""

    def __init__(self, slots: asyncio.Semaphore, metrics: Metrics) -> None:
        self.slots, self.metrics, self.held = slots, metrics, True
        metrics.in_flight.inc()

    def release(self) -> None:
        """Give the place back (a second call does nothing)."""
        if self.held:
            self.held = False
            self.metrics.in_flight.dec()
            self.slots.release()

    async def release_async(self) -> None:
        """`release` as a background task: Starlette runs a plain function in a worker thread, beside the event loop."""
        self.release()

    async def held_by(self, events: AsyncIterator[str]) -> AsyncIterator[str]:
        """`events`, giving the place back when they end: a stream that raises ends before Starlette runs its
        background task, which alone would lose the place for good."""
        try:
            async for event in events:
                yield event
        finally:
            self.release()


class CountStatuses:
    """Counts every chat response by status code (401s and 429s too) and turns an unexpected
    exception into an OpenAI-shaped 500, so nothing leaves the gateway in another shape."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_counted(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if scope["path"] == CHAT_PATH:
                    self.metrics.requests.labels(str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except Exception:
            log.exception("unexpected error on %s", scope["path"])
            self.metrics.errors.labels("internal").inc()
            if started:
                raise
            response = ApiError(500, "internal error in the gateway; the log has the details", "server_error", code="internal_error").response()
            await response(scope, receive, send_counted)


def groups(settings: GatewaySettings, request: Request) -> tuple[str, ...]:
    """The caller's access groups from its API key (public is always among them)."""
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not key:
        if settings.serving.anonymous:
            return ("public",)
        raise ApiError(401, "no API key: send 'Authorization: Bearer <key>'", "authentication_error", code="invalid_api_key")
    if key not in settings.serving.api_keys:
        raise ApiError(401, "invalid API key", "authentication_error", code="invalid_api_key")
    return tuple(dict.fromkeys(("public", *settings.serving.api_keys[key])))


def _schema(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with the chat request's model (the route reads raw bytes, so FastAPI cannot see it)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version="1", routes=app.routes)
        defs = ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(defs.pop("$defs", {}))
        components["ChatRequest"] = defs
        app.openapi_schema = schema
    return app.openapi_schema
