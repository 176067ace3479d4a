"""The RAG chat service: retrieve, build the RAFT prompt, fit it into the model's window, ask
vLLM, cite.

It knows nothing of HTTP routes: the gateway (serving/gateway.py) parses and authenticates a
request, then calls `prepare` and `complete` or `stream`. Every failure is an ApiError, so
whatever goes wrong reaches the client OpenAI-shaped; upstream error texts are logged, never
passed on (they describe vLLM's internals, not the client's request).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import openai
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from contracts.generation import Sampling
from contracts.answers import echoes_question
from contracts.prompt import ANSWER_PREFIX, BEGIN_QUOTE, END_QUOTE, ContextDoc, ParsedOutput, build_messages, parse_output
from contracts.settings import GenerationConfig, ServingConfig, VLLMConfig
from contracts.textmatch import answer_tokens
from retrieval.index import visible_labels
from serving.citations import SourceDoc, cite
from serving.engine import Engine
from serving.grounding import Embed, Grounder, abstained, answer_grounded
from serving.protocol import ApiError, ChatRequest, ChunkWriter, completion

Retriever = Callable[[str, int, Sequence[str]], list[SourceDoc]]  # question, k, groups -> context
log = logging.getLogger("raft.gateway")
# What reading a reply that is not vLLM's raises (not JSON, no choices, a null delta): a 502 that
# says so, not a 500, and never a stream cut off without its error event.
UNREADABLE = (ValueError, TypeError, AttributeError, KeyError, IndexError)

# Chat-template tokens around the messages, counted on top of the text's bytes when deciding
# whether a prompt can possibly overflow the window without asking vLLM to tokenize it.
TEMPLATE_TOKENS = 64


@dataclass(frozen=True)
class GatewaySettings:
    """The config sections the gateway reads; vllm.max_model_len is the window until vLLM says otherwise."""

    serving: ServingConfig = ServingConfig()
    generation: GenerationConfig = GenerationConfig()
    vllm: VLLMConfig = VLLMConfig()


class Metrics:
    """The gateway's Prometheus metrics, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("raft_requests_total", "Chat requests by status code", ["status"], registry=self.registry)
        self.latency = Histogram("raft_request_seconds", "End-to-end latency of answered chat requests", registry=self.registry)
        self.retrieval = Histogram("raft_retrieval_seconds", "Time to retrieve the context", registry=self.registry,
                                   buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.upstream = Histogram("raft_upstream_seconds", "Time vLLM took to answer", registry=self.registry)
        self.errors = Counter("raft_errors_total", "Failed requests by kind", ["kind"], registry=self.registry)
        self.in_flight = Gauge("raft_in_flight", "Chat requests in flight", registry=self.registry)
        self.reasked = Counter("raft_reasked_total", "Answers that only echoed the question, asked again", registry=self.registry)


@dataclass
class Prepared:
    """A request made ready for vLLM: the served model, the context it gets, the messages."""

    body: ChatRequest
    served: str
    question: str
    context: list[SourceDoc]
    messages: list[dict[str, str]]
    sampling: Sampling
    grounder: Grounder  # the gateway's, with the request's own grounding
    extra: dict[str, Any]  # the grounding's structured-output fields ({}: none)
    began: float

    def request(self) -> dict[str, Any]:
        """The fields of the chat request to vLLM."""
        return {"model": self.served, "messages": self.messages, **self.sampling.request_fields(), "extra_body": self.extra or None}

    def reask_request(self, output: str, used_tokens: int) -> tuple[str, dict[str, Any]] | None:
        """When `output`'s answer only echoes the question (`Grounder.reask`): the part of it kept, and
        the fields of the request that continues it; None otherwise."""
        reask = self.grounder.reask(self.question, output)
        more = reask.sampling(self.sampling, used_tokens) if reask else None
        if reask is None or more is None:
            return None
        return reask.prefix, {"model": self.served, "messages": reask.messages(self.messages), **more.request_fields(),
                              "extra_body": reask.extra_body()}


class RagChatService:
    """Answers chat requests from retrieved (or caller-given) documents through vLLM."""

    def __init__(
        self, settings: GatewaySettings, engine: Engine, retrieve: Retriever, embed: Embed, client: openai.AsyncOpenAI, metrics: Metrics,
        floors: Mapping[str, float] | None = None, trained_on: Mapping[str, Sequence[str]] | None = None,
    ):
        self.settings, self.engine, self.retrieve, self.client, self.metrics = settings, engine, retrieve, client, metrics
        self.grounder = Grounder.from_config(settings.generation, embed)
        # Served model -> its evidence floor (a version's, calibrated on its training contexts; the
        # caller keeps it current across swaps). Retrieved context only: documents a caller brings
        # are not the corpus it was calibrated on.
        self.floors = floors if floors is not None else {}
        # Served model -> the access groups whose documents it was trained on (kept current the same way).
        self.trained_on = trained_on if trained_on is not None else {}
        self.max_model_len = settings.vllm.max_model_len

    async def prepare(self, body: ChatRequest, groups: tuple[str, ...]) -> Prepared:
        """Check the request against the limits, retrieve its context and fit the prompt into the window."""
        began = time.perf_counter()
        try:
            served = self.engine.resolve(body.model)
        except KeyError:
            raise ApiError(404, f"model {body.model!r} does not exist; available: {', '.join(self.engine.models())}",
                           param="model", code="model_not_found") from None
        # A model can repeat what it was trained on, whatever the context: its training groups bind it as they bind documents.
        if missing := sorted(set(self.trained_on.get(served, ())) - set(visible_labels(groups))):
            raise ApiError(403, f"model {body.model!r} was trained on documents of {', '.join(missing)}, which this key may not "
                           "read: ask with a key of those groups, or ask model 'base'", "permission_error", param="model",
                           code="model_not_permitted")
        question = _question(body, self.settings)
        max_tokens = body.max_completion_tokens or body.max_tokens or self.settings.serving.default_max_tokens
        if max_tokens > self.settings.serving.max_tokens:
            raise ApiError(400, f"max_tokens {max_tokens} is above this gateway's limit of {self.settings.serving.max_tokens}", param="max_tokens")
        t = time.perf_counter()
        own = body.documents is not None
        context = _own_documents(body, self.settings) if own else await self._retrieve(question, body, groups)
        self.metrics.retrieval.observe(time.perf_counter() - t)
        context, messages = await self._fit(served, question, context, max_tokens, own)
        sampling = Sampling(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, seed=body.seed or 0)
        grounder = self.grounder.with_grounding(body.raft.grounding).with_floor(None if own else self.floors.get(served))
        extra = await run_in_threadpool(grounder.request_fields, question, [s.doc for s in context])  # embeds: off the event loop
        return Prepared(body, served, question, context, messages, sampling, grounder, extra, began)

    async def complete(self, p: Prepared) -> dict[str, Any]:
        """The whole answer as one chat.completion body with citations."""
        t = time.perf_counter()
        try:
            upstream = await self.client.chat.completions.create(**p.request())
            choice, usage = upstream.choices[0], upstream.usage
            output, finish = choice.message.content or "", choice.finish_reason
        except openai.APIError as e:
            raise self._upstream_error(e) from None
        except UNREADABLE as e:
            raise self._unreadable(e) from None
        again = await self._reask(p, output, usage.completion_tokens if usage else None)
        if again is not None:
            output, finish, more = again
            usage = usage.model_copy(update={"completion_tokens": usage.completion_tokens + more,
                                             "total_tokens": usage.total_tokens + more}) if usage else None
        self.metrics.upstream.observe(time.perf_counter() - t)
        parsed = parse_output(output)
        content = output if p.body.raft.reasoning or parsed.answer is None else parsed.answer
        self.metrics.latency.observe(time.perf_counter() - p.began)
        return completion(
            p.body.model, content, finish, usage,
            citations=[c.to_dict() for c in cite(parsed.quotes, p.context)], raft=_raft_fields(p, parsed),
        )

    async def stream(self, p: Prepared) -> AsyncIterator[str]:
        """Server-sent events of the answer. The upstream stream is opened here, before the caller
        sends a status line, so an unreachable vLLM is a 503, not a 200 with an error inside."""
        t = time.perf_counter()
        try:
            upstream = await self.client.chat.completions.create(**p.request(), stream=True, stream_options={"include_usage": True})
        except openai.APIError as e:
            raise self._upstream_error(e) from None
        return self._events(p, upstream, t)

    async def _events(self, p: Prepared, upstream: Any, t: float) -> AsyncIterator[str]:
        writer = ChunkWriter(p.body.model)
        try:
            async for event in self._answer_events(p, upstream, t, writer):
                yield event
        except Exception as e:  # the 200 is sent: the client must still get an error event and the end
            error = self._unreadable(e) if isinstance(e, UNREADABLE) else self._failed(e)
            yield writer.error(error)
            yield writer.DONE

    async def _answer_events(self, p: Prepared, upstream: Any, t: float, writer: ChunkWriter) -> AsyncIterator[str]:
        output, shown, finish, used = "", "", None, None
        may_reask = p.grounder.asks_again  # then an answer that could still turn out to echo the question is held back
        yield writer.event({"role": "assistant", "content": ""})
        try:
            async for chunk in upstream:
                used = chunk.usage.completion_tokens if chunk.usage else used
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                output += choice.delta.content or ""
                finish = choice.finish_reason or finish
                visible = _visible(output, p.body.raft.reasoning, p.question if may_reask else None)
                if visible is not None and len(visible) > len(shown):
                    yield writer.event({"content": visible[len(shown) :]})
                    shown = visible
            again = await self._reask(p, output, used) if may_reask else None
        except openai.APIError as e:
            error = self._upstream_error(e)
            yield writer.error(error)
            yield writer.DONE
            return
        except ApiError as e:  # the second request failed
            yield writer.error(e)
            yield writer.DONE
            return
        finally:
            await upstream.close()
        if again is not None:
            output, finish, _ = again
        self.metrics.upstream.observe(time.perf_counter() - t)
        parsed = parse_output(output)
        if p.body.raft.reasoning and output[len(shown) :]:
            yield writer.event({"content": output[len(shown) :]})  # what was held back
        if parsed.answer is None and not p.body.raft.reasoning and output[len(shown) :]:
            yield writer.event({"content": output[len(shown) :]})  # no answer line: the whole output is the answer
        elif not p.body.raft.reasoning and parsed.answer and parsed.answer != shown and parsed.answer.startswith(shown):
            # The answer held back, or completed by the parser where the model cut it ("mod" -> "mod.rs").
            yield writer.event({"content": parsed.answer[len(shown) :]})
        citations = [c.to_dict() for c in cite(parsed.quotes, p.context)]
        yield writer.event({}, finish or "stop", citations=citations, raft=_raft_fields(p, parsed))
        yield writer.DONE
        self.metrics.latency.observe(time.perf_counter() - p.began)

    async def _reask(self, p: Prepared, output: str, used_tokens: int | None) -> tuple[str, str | None, int] | None:
        """The output, its finish reason and the tokens the second request took, when `output`'s
        answer only echoed the question and was asked again (`Prepared.reask_request`); else None.
        Without a token count (a server that reports none) the output's bytes bound it."""
        request = p.reask_request(output, len(output.encode()) if used_tokens is None else used_tokens)
        if request is None:
            return None
        prefix, fields = request
        try:
            again = await self.client.chat.completions.create(**fields)
            choice = again.choices[0]
            answer = prefix + (choice.message.content or ""), choice.finish_reason, again.usage.completion_tokens if again.usage else 0
        except openai.APIError as e:
            raise self._upstream_error(e) from None
        except UNREADABLE as e:
            raise self._unreadable(e) from None
        self.metrics.reasked.inc()
        return answer

    async def _retrieve(self, question: str, body: ChatRequest, groups: tuple[str, ...]) -> list[SourceDoc]:
        k = body.raft.k or self.settings.serving.k
        if k > self.settings.serving.max_k:
            raise ApiError(400, f"raft.k {k} is above this gateway's limit of {self.settings.serving.max_k}", param="raft.k")
        return await run_in_threadpool(self.retrieve, question, k, groups)

    async def _fit(
        self, served: str, question: str, context: list[SourceDoc], max_tokens: int, own: bool
    ) -> tuple[list[SourceDoc], list[dict[str, str]]]:
        """The context and messages that leave room for `max_tokens` in the model's window.

        Retrieved chunks are dropped from the end (the lowest ranked) until the prompt fits; a
        caller's own documents are never cut silently: too long is a 400 that says by how much.
        """
        while True:
            messages = build_messages(question, [s.doc for s in context])
            if _byte_bound(messages) + max_tokens <= self.max_model_len:
                return context, messages  # no tokenizer can make more tokens than bytes
            tokens = await self._count_tokens(served, messages)
            if tokens is None or tokens + max_tokens <= self.max_model_len:
                return context, messages
            if own or not context:
                raise ApiError(
                    400, f"the prompt takes {tokens} tokens and max_tokens is {max_tokens}, but the model's window is "
                    f"{self.max_model_len} tokens: send fewer or shorter documents, a shorter question, or a lower max_tokens",
                    param="documents" if own else "messages", code="context_length_exceeded",
                )
            context = context[:-1]

    async def _count_tokens(self, served: str, messages: list[dict[str, str]]) -> int | None:
        """The prompt's length in tokens from vLLM's /tokenize (None: that server has no such endpoint)."""
        root = str(self.client.base_url).rstrip("/").removesuffix("/v1")
        try:
            reply = await self.client.post(f"{root}/tokenize", cast_to=httpx.Response, body={"model": served, "messages": messages})
        except openai.NotFoundError:
            return None
        except openai.APIError as e:
            raise self._upstream_error(e) from None
        try:
            counted = reply.json()
            self.max_model_len = int(counted.get("max_model_len") or self.max_model_len)
            return int(counted["count"])
        except UNREADABLE as e:
            raise self._unreadable(e) from None

    def _upstream_error(self, e: openai.APIError) -> ApiError:
        """What the client is told when vLLM fails; what vLLM said goes to the log only."""
        timeout = self.settings.serving.upstream_timeout_s
        if isinstance(e, openai.APITimeoutError):
            error = ApiError(504, f"the model server did not answer within {timeout:.0f} s", "server_error", code="upstream_timeout")
        elif isinstance(e, openai.NotFoundError):  # the model is unknown to vLLM: not the client's doing
            log.error("vLLM does not serve the model asked for (404): %s", e.response.text[:500])
            error = ApiError(503, "the model server does not serve this model right now (it may have restarted); retry shortly",
                             "server_error", code="model_unavailable")
        elif isinstance(e, openai.APIStatusError) and e.status_code < 500:
            log.warning("vLLM refused a request (%d): %s", e.status_code, e.response.text[:500])
            error = ApiError(400, f"the model server refused the request ({e.status_code}); check its parameters",
                             code="upstream_refused")
        elif isinstance(e, openai.APIStatusError):
            log.error("vLLM failed a request (%d): %s", e.status_code, e.response.text[:500])
            error = ApiError(503, f"the model server failed ({e.status_code}); retry shortly", "server_error", code="upstream_error")
        else:
            error = ApiError(503, f"the model server is unavailable ({type(e).__name__}); retry shortly", "server_error",
                             code="upstream_unavailable")
        self.metrics.errors.labels(error.code or error.kind).inc()
        return error

    def _unreadable(self, e: Exception) -> ApiError:
        """A reply from vLLM (or whatever answers at its address) that is not what vLLM sends."""
        log.error("the model server sent a reply that cannot be read: %r", e)
        error = ApiError(502, "the model server sent a reply this gateway cannot read; retry shortly", "server_error",
                         code="upstream_bad_reply")
        self.metrics.errors.labels(error.code).inc()
        return error

    def _failed(self, e: Exception) -> ApiError:
        """A stream that broke off on this gateway's side: the status line is sent, so it ends in an error event."""
        log.error("a streamed answer failed", exc_info=e)
        error = ApiError(500, "the answer failed on the gateway; retry, and see its log if it happens again", "server_error",
                         code="internal_error")
        self.metrics.errors.labels(error.code).inc()
        return error


def _question(body: ChatRequest, settings: GatewaySettings) -> str:
    user = [m.text().strip() for m in body.messages if m.role == "user" and m.text().strip()]
    if not user:
        raise ApiError(400, "no user message with text: the last user message is the question", param="messages")
    question = user[-1]
    if len(question) > settings.serving.max_message_chars:
        raise ApiError(413, f"the question has {len(question)} characters; the limit is {settings.serving.max_message_chars}",
                       param="messages", code="message_too_long")
    return question


def _own_documents(body: ChatRequest, settings: GatewaySettings) -> list[SourceDoc]:
    docs = body.documents or []
    if not docs:
        raise ApiError(400, "documents is empty: leave it out to retrieve from the index", param="documents")
    if len(docs) > settings.serving.max_documents:
        raise ApiError(413, f"the request brings {len(docs)} documents; the limit is {settings.serving.max_documents}",
                       param="documents", code="too_many_documents")
    size = sum(len(d.text) for d in docs)
    if size > settings.serving.max_document_chars:
        raise ApiError(413, f"the documents hold {size} characters; the limit is {settings.serving.max_document_chars}",
                       param="documents", code="documents_too_long")
    return [SourceDoc(ContextDoc(d.text, d.title, d.source)) for d in docs]


def _byte_bound(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"].encode()) for m in messages) + TEMPLATE_TOKENS


def _visible(output: str, reasoning: bool, echo_of: str | None = None) -> str | None:
    """What a stream may show so far: all of it with reasoning, else what follows the answer line.

    With `echo_of` (the question, when an answer that only echoes it is asked again) the part that
    could still be cut for a second request is held back: with reasoning, what follows the last
    quote marker; else the answer while its whole words are all the question's."""
    if reasoning:
        if echo_of is None:
            return output
        quoted = output.rfind(END_QUOTE)
        return output[: max(output.rfind(BEGIN_QUOTE), quoted + len(END_QUOTE) if quoted != -1 else 0, 0)]
    at = output.rfind(ANSWER_PREFIX)
    if at == -1:
        return None
    answer = output[at + len(ANSWER_PREFIX) :].lstrip()
    line = answer.split("\n")[0]
    if echo_of is None or "\n" in answer:
        return line
    whole_words = line[: len(line) - len(re.match(r"\w*", line[::-1]).group())]  # a word still growing may yet become one of the question's
    return None if not answer_tokens(whole_words) or echoes_question(whole_words, echo_of) else line


def _raft_fields(p: Prepared, parsed: ParsedOutput) -> dict[str, Any]:
    """The `raft` object of a reply (streamed: of its last event): who answered, from what, how grounded,
    and whether the context fell below the evidence floor (so "I don't know" was the only answer)."""
    return {"served_model": p.served, "answer": parsed.answer, "grounding": p.grounder.grounding, "grounded": answer_grounded(parsed),
            "below_evidence_floor": abstained(p.extra), "context": [_describe(s) for s in p.context]}


def _describe(s: SourceDoc) -> dict[str, Any]:
    return {"doc_id": s.doc_id, "chunk_id": s.chunk_id, "source": s.doc.source, "title": s.doc.title, "access": list(s.access)}

