"""The one way this project talks to an OpenAI-compatible model server (vLLM, a teacher API).

Every call goes through the `openai` SDK: `model_client` for the synchronous callers
(evaluation, the swap probe, the teacher) and `async_model_client` for the gateway. The
SDK's own retries are off (`max_retries=0`): each caller decides what a failure means
(the teacher retries with backoff, the gateway answers 503 at once).

Sampling is set per request: vLLM would otherwise take it from the model's
generation_config.json, which differs between base models. Evaluation and the gateway both
answer through these clients, so what is measured is what is served.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import openai

# vLLM accepts no key but the SDK insists on one; a real key (teacher APIs) replaces it.
NO_KEY = "none"


class GenerationError(RuntimeError):
    """The model server refused or failed a request, or could not be reached.

    `status` is the HTTP status of the refusal (None: no answer at all) and `retry_after` the
    seconds the server asked the caller to wait (0 when it said nothing).
    """

    def __init__(self, message: str, status: int | None = None, retry_after: float = 0.0, timed_out: bool = False):
        super().__init__(message)
        self.status, self.retry_after, self.timed_out = status, retry_after, timed_out


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 256
    temperature: float = 0.0  # greedy: answers are reproducible and evaluations comparable
    top_p: float = 1.0
    seed: int = 0

    def request_fields(self) -> dict[str, float | int]:
        """The fields of an OpenAI chat request."""
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    latency_s: float

    def continued(self, prefix: str, more: Completion) -> Completion:
        """This completion's text cut to `prefix` and continued by `more` (a second request that
        continued the assistant turn), with both requests' tokens and time."""
        return Completion(prefix + more.text, self.prompt_tokens, self.completion_tokens + more.completion_tokens,
                          more.finish_reason, self.latency_s + more.latency_s)


def model_client(
    base_url: str, timeout_s: float = 900, api_key: str | None = None, http_client: httpx.Client | None = None,
) -> openai.OpenAI:
    """A synchronous client for the server at `base_url` (ends in /v1); safe to share between threads.
    `http_client` lets tests put a fake server behind it (httpx.MockTransport)."""
    return openai.OpenAI(
        base_url=base_url, api_key=api_key or NO_KEY, max_retries=0, timeout=httpx.Timeout(timeout_s, connect=10), http_client=http_client
    )


def async_model_client(base_url: str, timeout_s: float, http_client: httpx.AsyncClient | None = None) -> openai.AsyncOpenAI:
    """The gateway's client; `http_client` lets tests put a fake server behind it (httpx.MockTransport)."""
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=NO_KEY, max_retries=0, timeout=httpx.Timeout(timeout_s, connect=5), http_client=http_client
    )


def complete(
    client: openai.OpenAI, model: str, messages: list[dict[str, str]], sampling: Sampling, extra_body: dict[str, Any] | None = None
) -> Completion:
    """Ask `model` (a served name: the base model or an adapter version) for one chat answer."""
    began = time.perf_counter()
    try:
        reply = client.chat.completions.create(model=model, messages=messages, extra_body=extra_body, **sampling.request_fields())
    except openai.APIError as e:
        raise generation_error(e, str(client.base_url).rstrip("/"), model) from None
    if not getattr(reply, "choices", None):
        # The server said 200 but sent no completion: a wrong URL or API, not worth a retry.
        raise GenerationError(f"{str(client.base_url).rstrip('/')} did not return an OpenAI chat completion: {str(reply)[:200]}", 200)
    choice = reply.choices[0]
    usage = reply.usage
    return Completion(
        text=choice.message.content or "",
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        finish_reason=choice.finish_reason or "",
        latency_s=time.perf_counter() - began,
    )


def generation_error(e: openai.APIError, base_url: str, model: str) -> GenerationError:
    """A GenerationError that says what the SDK's exception means for the caller."""
    if isinstance(e, openai.APITimeoutError):
        return GenerationError(f"{base_url} did not answer in time for model {model!r}", timed_out=True)
    if isinstance(e, openai.APIStatusError):
        return GenerationError(
            f"{base_url} answered HTTP {e.status_code} for model {model!r}: {e.response.text[:500]}", e.status_code, _retry_after(e.response)
        )
    return GenerationError(f"cannot reach {base_url} ({type(e).__name__}: {e}); is the server running?")


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("retry-after", 0)), 300.0)
    except ValueError:
        return 0.0
