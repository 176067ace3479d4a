"""One chat completion from an OpenAI-compatible server (vLLM), with the sampling set per request.

vLLM would otherwise take default sampling from the model's generation_config.json, which
differs between base models; every request here says what it wants. Evaluation and the
gateway both answer through `complete`, so what is measured is what is served.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import httpx


class GenerationError(RuntimeError):
    """The model server refused or failed a request; the message holds its reply."""


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


def complete(client: httpx.Client, base_url: str, model: str, messages: list[dict[str, str]], sampling: Sampling) -> Completion:
    """Ask `model` (a served name: the base model or an adapter version) for one chat answer."""
    began = time.perf_counter()
    try:
        reply = client.post(f"{base_url}/chat/completions", json={"model": model, "messages": messages, **sampling.request_fields()})
    except httpx.HTTPError as e:
        raise GenerationError(f"{base_url} did not answer ({type(e).__name__}: {e}); is the model server running?") from None
    if reply.status_code != 200:
        raise GenerationError(f"{base_url} answered {reply.status_code} for model {model!r}: {reply.text[:500]}")
    body = reply.json()
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    return Completion(
        text=choice["message"]["content"] or "",
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
        finish_reason=choice.get("finish_reason") or "",
        latency_s=time.perf_counter() - began,
    )
