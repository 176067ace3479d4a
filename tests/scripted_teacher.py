"""A scripted OpenAI-compatible teacher server for tests (a stand-in for a remote teacher API).

It speaks the real HTTP protocol (`POST /v1/chat/completions`) on a local port, so the
teacher client is exercised end to end: concurrency, retries, error codes, the cache. Its
replies are computed from the prompt instead of by a model:

- a question prompt gets one question per sentence that holds a number, answered by it;
- an answer prompt gets reasoning that quotes the passage's sentence holding the reference
  answer, with one word's case changed when `sloppy` (a near miss the client must repair),
  or a made-up quote when the question contains "fabricate" (the client must drop it).

`fail_after=n` makes it answer HTTP 503 after n good replies: an outage mid-run.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from contracts.prompt import ANSWER_PREFIX, quote
from contracts.textmatch import find_span, statement_around

_NUMBER_SENTENCE = re.compile(r"[^.\n]*?\b(\d+(?:\.\d+)?(?: [a-zA-Z%]+)?)\b[^.\n]*\.")


class ScriptedTeacher:
    def __init__(self, fail_after: int | None = None, sloppy: bool = False, status: int = 200) -> None:
        self.fail_after = fail_after
        self.sloppy = sloppy
        self.status = status  # a fixed error status for every request, when not 200
        self.good = 0  # successful replies so far
        self.requests = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedTeacher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reply(self, prompt: str) -> str:
        if prompt.startswith("Question:"):
            return self._reasoning(prompt)
        passage = prompt.split("Passage:\n", 1)[1]
        pairs = [
            {"question": f"Which figure does this passage give in: {m.group(0).strip()[:80]}?", "answer": m.group(1)}
            for m in _NUMBER_SENTENCE.finditer(passage)
        ]
        return "Here are the questions:\n" + json.dumps(pairs[:3])

    def _reasoning(self, prompt: str) -> str:
        question = prompt.split("\n", 1)[0]
        text = prompt.split('":\n', 1)[1].split("\nReference answer: ", 1)[0]
        answer = prompt.split("Reference answer: ", 1)[1].split("\n", 1)[0]
        if "fabricate" in question:
            return f"The passage says {quote('The moon is made of green cheese.')}\n{ANSWER_PREFIX} {answer}"
        span = find_span(answer, text)
        unit = statement_around(text, span) if span else None
        sentence = text[unit.start : unit.end] if unit else text[:80]
        if self.sloppy:
            sentence = sentence[0].swapcase() + sentence[1:]
        return f"The document states it directly: {quote(sentence)} So the answer is {answer}.\n{ANSWER_PREFIX} {answer}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        teacher = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with teacher.lock:
                    teacher.requests += 1
                    down = teacher.fail_after is not None and teacher.good >= teacher.fail_after
                    if teacher.status == 200 and not down:
                        teacher.good += 1
                if teacher.status != 200 or down:
                    self._send(teacher.status if teacher.status != 200 else 503, {"error": {"message": "unavailable"}})
                    return
                content = teacher.reply(body["messages"][-1]["content"])
                self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
