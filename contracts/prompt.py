"""The RAFT prompt format: the one definition that training, evaluation and serving share.

A model sees exactly this at train time and at serve time:

    system:    SYSTEM_PROMPT[style]
    user:      <DOCUMENT id="1" title="…" source="…">chunk text</DOCUMENT>
               … more documents …
               Question: …
    assistant: (style "cot")    reasoning with verbatim quotes ##begin_quote##…##end_quote##,
                                then a last line "<ANSWER>: short answer"
               (style "direct") "<ANSWER>: short answer"

`parse_output` reads a model's output back: the final answer, the quotes, and whether the
output kept the format.

Datasets store examples as data (question, context documents, oracle position, the answer
turn); `example_messages` renders them with this module at train and eval time, and
`PROMPT_FORMAT` fingerprints the rendering, so that data, models and the server can be
checked to speak the same format.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

BEGIN_QUOTE = "##begin_quote##"
END_QUOTE = "##end_quote##"
ANSWER_PREFIX = "<ANSWER>:"

AnswerStyle = Literal["cot", "direct"]
ANSWER_STYLES: tuple[AnswerStyle, ...] = ("cot", "direct")

SYSTEM_PROMPT: dict[str, str] = {
    "cot": (
        "You answer questions using the documents given with each question. Some documents are "
        "irrelevant: find the ones that answer the question and ignore the rest. Reason step by "
        f"step, copying the sentences you rely on word for word between {BEGIN_QUOTE} and "
        f"{END_QUOTE}. End with a last line of the form '{ANSWER_PREFIX} <short answer>'. If no "
        f"document answers the question, say so and end with '{ANSWER_PREFIX} I don't know'."
    ),
    "direct": (
        "You answer questions using the documents given with each question. Some documents are "
        f"irrelevant. Reply with one line of the form '{ANSWER_PREFIX} <short answer>'. If no "
        f"document answers the question, reply '{ANSWER_PREFIX} I don't know'."
    ),
}
UNKNOWN_ANSWER = "I don't know"


@dataclass(frozen=True)
class ContextDoc:
    """A document as the model sees it: a retrieved chunk, with where it comes from."""

    text: str
    title: str = ""
    source: str = ""


@dataclass(frozen=True)
class ParsedOutput:
    answer: str | None  # text after the last "<ANSWER>:", None when absent
    quotes: tuple[str, ...]  # every ##begin_quote##…##end_quote## span, in order
    reasoning: str  # everything before the answer line
    well_formed: bool  # an answer line and balanced quote markers


def format_documents(docs: Sequence[ContextDoc]) -> str:
    """The documents block of the user message, numbered from 1 in the given order."""
    return "\n".join(
        f'<DOCUMENT id="{n}" title="{_attr(d.title)}" source="{_attr(d.source)}">\n{d.text}\n</DOCUMENT>'
        for n, d in enumerate(docs, start=1)
    )


def user_message(question: str, docs: Sequence[ContextDoc]) -> str:
    """Documents first, then the question (the model reads the evidence before the ask)."""
    block = format_documents(docs)
    return (block + "\n\n" if block else "") + f"Question: {question.strip()}"


_DOCUMENT = re.compile(r'<DOCUMENT id="\d+" title="(.*?)" source="(.*?)">\n(.*?)\n</DOCUMENT>', re.S)


def parse_user_message(content: str) -> tuple[list[ContextDoc], str]:
    """The documents and the question of a user message that `user_message` built."""
    head, sep, question = content.rpartition("Question: ")
    if not sep:
        raise ValueError("not a RAFT user message: no 'Question: ' line")
    return [ContextDoc(text, title, source) for title, source, text in _DOCUMENT.findall(head)], question


def build_messages(question: str, docs: Sequence[ContextDoc], style: AnswerStyle = "cot", answer: str | None = None) -> list[dict[str, str]]:
    """Chat messages for one example; with `answer`, the assistant turn a model is trained on."""
    if style not in SYSTEM_PROMPT:
        raise ValueError(f"answer style must be one of {', '.join(ANSWER_STYLES)}, got {style!r}")
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT[style]},
        {"role": "user", "content": user_message(question, docs)},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def quote(text: str) -> str:
    """A verbatim span wrapped in quote markers."""
    return f"{BEGIN_QUOTE}{text}{END_QUOTE}"


def format_answer(final: str, reasoning: str = "", style: AnswerStyle = "cot") -> str:
    """The assistant turn: reasoning (cot only) then the answer line."""
    final = " ".join(final.split())
    if style == "direct" or not reasoning.strip():
        return f"{ANSWER_PREFIX} {final}"
    return f"{reasoning.strip()}\n{ANSWER_PREFIX} {final}"


QUOTE_PATTERN = re.compile(re.escape(BEGIN_QUOTE) + r"(.*?)" + re.escape(END_QUOTE), re.S)


def parse_output(output: str) -> ParsedOutput:
    """Read a model's output: final answer, quotes, reasoning, and whether the format held.

    Tolerates what small models do: extra text after the answer line (only its first line
    counts), a missing space after the colon, unbalanced quote markers (then well_formed is
    False and the complete spans still count), an answer cut at the dot of a quoted file name or
    number (`whole_token_answer`).
    """
    at = output.rfind(ANSWER_PREFIX)
    if at == -1:
        answer, reasoning = None, output.strip()
    else:
        tail = output[at + len(ANSWER_PREFIX) :].strip()
        answer = tail.splitlines()[0].strip() if tail else ""
        reasoning = output[:at].strip()
    quotes = tuple(q.strip() for q in QUOTE_PATTERN.findall(output) if q.strip())
    balanced = output.count(BEGIN_QUOTE) == output.count(END_QUOTE) == len(QUOTE_PATTERN.findall(output))
    answer = whole_token_answer(answer, quotes) if answer else answer
    return ParsedOutput(answer or None, quotes, reasoning, bool(answer) and balanced)


# What follows a dotted token's first part ("mod" of "mod.rs", "1" of "1.5", "rustup-init" of
# "rustup-init.exe"), and the marks that end a sentence or enclose a token rather than belong to it.
_DOTTED_REST = re.compile(r"\.\w\S*")
_TRAILING_MARKS = ".,;:!?"
_CLOSERS = {")": "(", "]": "[", "}": "{", '"': '"', "'": "'"}


def whole_token_answer(answer: str, quotes: Sequence[str]) -> str:
    """`answer`, completed when it stops at the dot inside a token of one of its own `quotes`.

    The training targets end "So the answer is X.", and a small model takes the first period
    of a file name or version for that sentence end: it quotes "... such as tests/common/mod.rs
    and ..." and answers "tests/common/mod". Such an answer gets the rest of the quoted token
    ("tests/common/mod.rs"), without the marks that end a sentence or close a bracket opened
    before it, when every place its quotes hold the answer is such a cut. Any other answer is
    returned as it is.
    """
    stem = answer.rstrip(_TRAILING_MARKS)
    if not stem or not (stem[-1].isalnum() or stem[-1] == "_"):
        return answer
    rests = [_DOTTED_REST.match(q, at + len(stem)) for q in quotes for at in _occurrences(stem, q)]
    if not rests or not all(rests):
        return answer  # not quoted, or quoted as it is somewhere ("Cargo" beside "Cargo.toml")
    return stem + _token_tail(stem.split()[-1], rests[0].group(0))


def _occurrences(needle: str, text: str) -> list[int]:
    found, at = [], text.find(needle)
    while at != -1:
        found.append(at)
        at = text.find(needle, at + 1)
    return found


def _token_tail(head: str, tail: str) -> str:
    # `head` is the token's part the answer has, `tail` the rest: a closing mark stays only when the token opened it.
    tail = tail.rstrip(_TRAILING_MARKS)
    while tail and tail[-1] in _CLOSERS and _CLOSERS[tail[-1]] not in head + tail[:-1]:
        tail = tail[:-1].rstrip(_TRAILING_MARKS)
    return tail


def _attr(value: str) -> str:
    return value.replace('"', "'").replace("\n", " ")


def example_docs(example: Mapping[str, Any]) -> list[ContextDoc]:
    """The context documents of a stored example, in the order the model sees them."""
    return [ContextDoc(d["text"], d.get("title", ""), d.get("source", "")) for d in example["context"]]


def example_messages(example: Mapping[str, Any], docs: Sequence[ContextDoc] | None = None) -> list[dict[str, str]]:
    """A stored example rendered as chat messages, the answer turn last; `docs` replaces its
    documents (a shortened context)."""
    return build_messages(example["question"], example_docs(example) if docs is None else docs, example["style"], example["target"])


def _format_fingerprint() -> str:
    """A hash of how this module renders a prompt and an answer, in every style: any change to the
    system prompts, the document block, the question line, quotes or the answer line changes it."""
    doc = ContextDoc("Text.", "Title", "a.md")
    rendered = [
        build_messages("Q?", [doc], style, format_answer(answer, f"Because {quote(doc.text)}", style))
        for style in ANSWER_STYLES for answer in ("A", UNKNOWN_ANSWER)
    ]
    return hashlib.sha256(json.dumps([rendered, QUOTE_PATTERN.pattern], sort_keys=True).encode()).hexdigest()[:16]


PROMPT_FORMAT = _format_fingerprint()
