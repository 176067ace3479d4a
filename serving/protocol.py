"""The gateway's wire format: request models, OpenAI response types, and the one error type.

Requests are read here from raw bytes (after authentication, never before), so that every
way a body can be wrong (not UTF-8, not JSON, nested too deeply, a lone surrogate, a field
of the wrong type) becomes the same OpenAI-shaped 400 naming the field. Responses are the
`openai` package's own models (ChatCompletion, ChatCompletionChunk) with the gateway's
extra fields (`citations`, `raft`) beside the standard ones.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from fastapi.responses import JSONResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel, ConfigDict, Field, ValidationError

INT64 = 2**63  # vLLM takes a seed as a 64-bit integer
FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "function_call")


class ApiError(Exception):
    """An error the client gets as OpenAI-shaped JSON: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        """The JSON response."""
        return JSONResponse(self.body(), self.status)


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
    model_config = ConfigDict(extra="forbid")  # this gateway's own options: a misspelt one is an error, not ignored

    k: int | None = Field(None, ge=1)
    reasoning: bool = False  # the whole output (reasoning with quotes) instead of the final answer
    grounding: Literal["constrained", "free"] | None = None  # None: the gateway's setting (generation.grounding)


class ChatRequest(BaseModel):
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    n: int = Field(1, ge=1, le=1, description="answers per request: one (each answer is grounded in its own retrieval)")
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(None, ge=-INT64, lt=INT64)
    documents: list[Document] | None = None  # the caller's own context: no retrieval
    raft: RaftOptions = RaftOptions()


def parse_chat_request(raw: bytes) -> ChatRequest:
    """The request in `raw`, or ApiError 400 that says what is wrong and where."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"the request body is not valid UTF-8 (byte {e.start}); send JSON encoded as UTF-8") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(data).__name__}")
    surrogate = _lone_surrogate(data)
    if surrogate is not None:
        raise ApiError(400, f"{surrogate or 'body'}: text holds a lone UTF-16 surrogate, which is not a character", param=surrogate or None)
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        param = _param(first.get("loc", ()))
        raise ApiError(400, f"invalid request: {param or 'body'}: {first.get('msg', 'malformed')}", param=param) from None


def _lone_surrogate(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (key or value) holding a lone surrogate, or None."""
    if isinstance(value, str):
        return path if any("\ud800" <= ch <= "\udfff" for ch in value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and _lone_surrogate(key) is not None:
            return path
        found = _lone_surrogate(item, where)
        if found is not None:
            return found
    return None


def _param(loc: tuple[Any, ...]) -> str | None:
    # pydantic adds the member type of a union to the location ("content.str"): not a field name.
    parts = [str(p) for p in loc if isinstance(p, int) or ("[" not in str(p) and str(p) not in ("str", "list", "int", "dict"))]
    return ".".join(parts) or None


def completion(model: str, content: str, finish_reason: str | None, usage: Any, **extra: Any) -> dict[str, Any]:
    """A chat.completion body (OpenAI's model) with the gateway's extra fields."""
    body = ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}", object="chat.completion", created=int(time.time()), model=model,
        choices=[{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish(finish_reason)}],
        usage=usage, **extra,
    )
    return body.model_dump(mode="json", exclude_unset=True)


class ChunkWriter:
    """Server-sent events of one streamed answer: chat.completion.chunk objects sharing an id."""

    def __init__(self, model: str):
        self.model, self.id, self.created = model, f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def event(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        """One `data:` event."""
        chunk = ChatCompletionChunk(
            id=self.id, object="chat.completion.chunk", created=self.created, model=self.model,
            choices=[{"index": 0, "delta": delta, "finish_reason": finish_reason and finish(finish_reason)}], **extra,
        )
        return f"data: {json.dumps(chunk.model_dump(mode='json', exclude_unset=True))}\n\n"

    @staticmethod
    def error(e: ApiError) -> str:
        """An error event (OpenAI's shape) for a failure after the stream began."""
        return f"data: {json.dumps(e.body())}\n\n"

    DONE = "data: [DONE]\n\n"


def finish(reason: str | None) -> str:
    """vLLM's finish reason as one OpenAI knows (vLLM also says e.g. 'abort')."""
    return reason if reason in FINISH_REASONS else "stop"
