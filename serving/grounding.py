"""Grounded decoding: quotes that can only be verbatim sentences of the documents in the prompt,
and an answer checked against what the model quoted.

With grounding `constrained`, every request to vLLM carries a grammar (vLLM's `structured_outputs`,
xgrammar's EBNF, enforced token by token inside vLLM on CPU and GPU alike) that the output must
match. With `generation.answer: free` (the default) any number of quotes come before an answer
line of any text, which `answer_grounded` then checks. With `answer: span`:

    free text, then either  <ANSWER>: I don't know
                   or       ##begin_quote## one sentence of a context document ##end_quote##
                            free text  <ANSWER>: a run of consecutive words of that sentence

the form of every training answer built from a QA file, and stricter; but measured on squad and
the sample domain it answered worse (docs/benchmarks.md): when the quote is the wrong sentence,
a free answer line can still take the answer from the context, a span cannot.
Free text and the answer line may not hold `##` (both quote markers begin so) nor the answer
marker, so a quote can only be opened by the marker, and the marker can only be followed by a
sentence that is in the prompt, character for character (or a term on a line of its own together
with the sentence below it, as documentation lists flags and settings:
`contracts.textmatch.statements`). A single `#` or `<` is text: documentation's titles and
answers hold them ("[profile.<name>.lto]", "#[cfg(doc)]"), and a title the model names in its
reasoning must not end it.
With `generation.quote_candidates` N > 0, a quote may be only one of the N sentences of the
context that best match the question (`retrieval.evidence`: the retrieval's embedding model and
BM25, each sentence read with its document's title): a small model finds the sentence that
holds the answer less often than this ranks it first (measured in docs/benchmarks.md), so the
choice is narrowed before decoding.
With an evidence floor (`retrieval.evidence.evidence_floor`, calibrated on the served version's
own training contexts), a context whose best sentence matches the question less than that (its
embedding, and the share of the question's terms it holds) gets
the grammar of "I don't know" alone: the documents do not say, so the model may not answer.
A grammar rather than a regex: the answer spans of a sentence of n words are n rules here, n²/2
alternatives as a regex (a 60-word sentence compiled 50x slower). The gateway and evaluation
both ask through `Grounder.request_fields`, so what is measured is what is served.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from contracts.answers import FUNCTION_WORDS, answer_in_quotes, echoes_question, is_abstention
from contracts.generation import Sampling
from contracts.prompt import ANSWER_PREFIX, BEGIN_QUOTE, END_QUOTE, UNKNOWN_ANSWER, ContextDoc, ParsedOutput, parse_output
from contracts.settings import AnswerForm, GenerationConfig, Grounding
from contracts.textmatch import answer_tokens
from retrieval.evidence import CachedEmbed, Embed, closest_sentences, evidence_floor, match_sentences, quotable
from training.evidence_profile import current_profile
from training.registry import Version

# The units an answer span starts and ends on: words, and each punctuation mark on its own (so
# "16 bar" can end before the sentence's final period).
_WORD = re.compile(r"\w+|[^\w\s]")
_MARK = re.compile(r"[^\w\s]")
_WORD_ONLY = re.compile(r"\w+")
# A sign or currency that leads a number belongs to it ("-10 °C", "±0.5 %", "$159"): without it the
# number says something else. Not mid-token ("1-2"). Flags' dashes, paths and opening quotes were
# let lead a new answer too, and the tuned model then chose them over the right word
# (docs/benchmarks.md).
_SIGN = re.compile(r"(?<![^\s])[-+±$€£¥]+(?=\d)")
_TOKEN = re.compile(r"\S+")


def literal(text: str) -> str:
    """`text` as a string literal of xgrammar's EBNF (JSON's escapes)."""
    return json.dumps(text, ensure_ascii=False)


ABSTAIN_GRAMMAR = f"root ::= {literal(f'{ANSWER_PREFIX} {UNKNOWN_ANSWER}')}"  # a context below the evidence floor


def abstained(fields: dict[str, object]) -> bool:
    """Whether `Grounder.request_fields` returned the grammar of "I don't know" alone (the floor, or no documents)."""
    return fields.get("structured_outputs") == {"grammar": ABSTAIN_GRAMMAR}


def version_floor(version: Version, generation: GenerationConfig, embed: Embed, embedding_model: str) -> float | None:
    """The evidence floor of `version`: the `generation.evidence_quantile` of its training contexts'
    scores (`retrieval.evidence.evidence_floor`) in the current measure, taken with `embedding_model`
    (`embed`): re-measured from its dataset when it was trained before the measure changed
    (`training.evidence_profile.current_profile`). None when the quantile is 0, or when it has no
    profile and its dataset is gone (logged: it then answers without a floor)."""
    if not generation.evidence_quantile:
        return None
    return evidence_floor(current_profile(version, embed, embedding_model), generation.evidence_quantile, embedding_model)


def output_grammar(quotes: Sequence[str], answer: AnswerForm = "free") -> str:
    """The EBNF grammar a grounded output must match when a quote may be any of `quotes` (see the
    module docstring). Rule `quote_i` is the i-th of `quotes`."""
    rules = [f"quote_{i} ::= {literal(q)}" for i, q in enumerate(quotes)]
    if answer == "free":
        quote = f"{literal(BEGIN_QUOTE)} ({' | '.join(f'quote_{i}' for i in range(len(quotes)))}) {literal(END_QUOTE)}"
        return "\n".join([f'root ::= text ({quote} text)* {literal(ANSWER_PREFIX + " ")} line', *rules, *_TEXT_RULES])
    quoted = " | ".join(f"quoted_{i}" for i in range(len(quotes)))
    rules.insert(0, f"root ::= text ({literal(f'{ANSWER_PREFIX} {UNKNOWN_ANSWER}')} | {literal(BEGIN_QUOTE)} ({quoted}))")
    for i, q in enumerate(quotes):
        rules.append(f"quoted_{i} ::= quote_{i} {literal(END_QUOTE)} text {literal(ANSWER_PREFIX + ' ')} answer_{i}")
        rules += _span_rules(f"answer_{i}", q)
    return "\n".join([*rules, *_TEXT_RULES])


def _text_rules() -> list[str]:
    """Rules `text` (free text) and `line` (the rest of the answer line): anything without `##` or the
    answer marker, the line also without a line break. A `#` is text when a character other than `#`
    or `<` follows it (the line may also end on one: "C#"); a `<` when what follows it departs from
    the answer marker before the marker's end ("<name>", "<ANSWERS>")."""

    def after_lt(excluded: str) -> str:  # what may follow a '<': anything that leaves "<ANSWER>:" before its end
        rest = ANSWER_PREFIX[1:]
        follow = f"[^{rest[-1]}#<{excluded}]"
        for ch in reversed(rest[:-1]):
            follow = f"[^{ch}#<{excluded}] | {literal(ch)} ({follow})"
        return f'"<" ({follow})'

    # Runs of plain characters as character-class stars: xgrammar matches those fastest.
    return [
        "text ::= [^#<]* (text_mark [^#<]*)*",
        f'text_mark ::= "#" [^#<] | {after_lt("")}',
        r'line ::= [^\n#<]* (line_mark [^\n#<]*)* "#"?',
        r'line_mark ::= "#" [^\n#<] | ' + after_lt(r"\n"),
    ]


_TEXT_RULES = _text_rules()


def _one_unit(sentence: str, at: int) -> int | None:
    return _WORD.match(sentence, at).end()  # `at` is where a unit starts


def _span_rules(name: str, sentence: str, first: Callable[[str, int], int | None] = _one_unit) -> list[str]:
    """Rules for `name`: any run of consecutive words (and marks) of `sentence`, as written there.
    It starts where a unit (a word or a mark) starts, at `at`, if `first(sentence, at)` says where
    its first piece ends (None: not there). Rule name_j: optionally word j (with the text before
    it), then optionally what follows it."""
    words = [m.span() for m in _WORD.finditer(sentence)]
    unit_ending = {b: j for j, (_, b) in enumerate(words)}
    starts = []
    for a, _ in words:
        if (end := first(sentence, a)) is not None:
            j = unit_ending[end]
            starts.append(f"{literal(sentence[a:end])} {name}_{j + 1}" if j + 1 < len(words) else literal(sentence[a:end]))
    rules = [f"{name} ::= {' | '.join(starts)}"]
    for j in range(1, len(words)):
        more = f" {name}_{j + 1}" if j + 1 < len(words) else ""
        rules.append(f'{name}_{j} ::= "" | {literal(sentence[words[j - 1][1] : words[j][1]])}{more}')
    return rules


def new_answer_grammar(quotes: Sequence[str], question: str, answer_line: bool) -> str | None:
    """The grammar of what follows a cut answer that only echoed `question` (see `Grounder.reask`): a
    run of words of one of `quotes` that starts on a word the question does not hold (nor a
    function word), or on the sign that leads such a number ("-10 °C", "$159"), then, with
    `answer_line`, any text and the answer line, again such a run. None when no quote holds such
    a word."""
    asked = set(answer_tokens(question)) | set(answer_tokens(_MARK.sub(" ", question)))  # "D-50" and its words "D", "50"

    def first(sentence: str, at: int) -> int | None:
        # A word the question lacks. A signed number ("-10") is judged whole, and its first piece
        # runs to the end of its first word (so no answer is a sign alone).
        if sign := _SIGN.match(sentence, at):
            unit, end = _TOKEN.match(sentence, at).group(), _WORD_ONLY.match(sentence, sign.end()).end()
        elif word := _WORD_ONLY.match(sentence, at):
            unit, end = word.group(), word.end()
        else:
            return None  # a mark alone ("’") names nothing
        norm = answer_tokens(unit)
        return end if norm and norm[0] not in asked and norm[0] not in FUNCTION_WORDS else None

    names, rules = [], []
    for i, q in enumerate(quotes):
        if any(first(q, m.start()) is not None for m in _WORD.finditer(q)):
            names.append(f"new_{i}")
            rules += _span_rules(names[-1], q, first)
    if not names:
        return None
    tail = f" text {literal(ANSWER_PREFIX + ' ')} answer" if answer_line else ""
    return "\n".join([f'root ::= " " answer{tail}', f"answer ::= {' | '.join(names)}", *rules, *_TEXT_RULES])


@dataclass(frozen=True)
class Reask:
    """A second request for an answer that only repeated the question's words: the output so far,
    cut where that answer began (`prefix`), continued by the model under `grammar`."""

    prefix: str
    grammar: str

    def messages(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The first request's messages with the cut output as the assistant turn to continue."""
        return [*messages, {"role": "assistant", "content": self.prefix}]

    def extra_body(self) -> dict[str, object]:
        """vLLM's fields for continuing the last assistant turn under the grammar."""
        return {"structured_outputs": {"grammar": self.grammar}, "continue_final_message": True, "add_generation_prompt": False}

    def sampling(self, first: Sampling, used_tokens: int) -> Sampling | None:
        """The first request's sampling with the tokens it left (the window was fitted to the
        first's max_tokens); None when too few are left for an answer."""
        left = first.max_tokens - used_tokens
        return dataclasses.replace(first, max_tokens=left) if left >= REASK_MIN_TOKENS else None


REASK_MIN_TOKENS = 8  # a new answer of a few words, and its answer line


@dataclass(frozen=True)
class Grounder:
    """How a request's answer is grounded: `grounding`, with `candidates` > 0 how many of the
    context's sentences (those that match the question best, by `embed`) a quote may be, the
    `answer`'s form, whether an answer that only echoes the question is asked again (`reask`), and
    the evidence `floor` (None: none) below which the answer is "I don't know"."""

    grounding: Grounding = "constrained"
    candidates: int = 0  # 0: any sentence of the context
    embed: Embed | None = None
    answer: AnswerForm = "free"
    reask_echoes: bool = True
    floor: float | None = None

    def __post_init__(self) -> None:
        if (self.candidates or self.floor is not None) and self.embed is None:
            raise ValueError("quote candidates and the evidence floor use the embedding model: pass embed, or set candidates 0 and no floor")

    @classmethod
    def from_config(cls, generation: GenerationConfig, embed: Embed) -> Grounder:
        """The grounder `generation` describes, ranking sentences with `embed`, whose vectors it keeps
        for the next requests (`CachedEmbed`; no floor: that is the served version's, `with_floor`)."""
        return cls(generation.grounding, generation.quote_candidates, CachedEmbed(embed), generation.answer, generation.reask_echoes)

    def with_grounding(self, grounding: Grounding | None) -> Grounder:
        """This grounder with `grounding` instead (a request's own choice); unchanged for None."""
        return self if grounding is None else dataclasses.replace(self, grounding=grounding)

    def with_floor(self, floor: float | None) -> Grounder:
        """This grounder with the evidence floor `floor` (None: none)."""
        return dataclasses.replace(self, floor=floor)

    def request_fields(self, question: str, docs: Sequence[ContextDoc]) -> dict[str, object]:
        """The extra fields of a vLLM chat request ({} for free decoding). Below the floor, or with no
        document to quote (a caller whose groups see none of the retrieved chunks), the grammar of
        "I don't know" alone: a grounded answer needs a sentence to quote."""
        if self.grounding == "free":
            return {}
        if not any(d.text.strip() for d in docs):
            return {"structured_outputs": {"grammar": ABSTAIN_GRAMMAR}}
        if self.floor is None:
            quotes = closest_sentences(question, docs, self.candidates, self.embed) if self.candidates and self.embed else quotable(docs)
        else:
            assert self.embed is not None  # __post_init__
            match = match_sentences(question, docs, self.embed)
            if match.evidence < self.floor:
                return {"structured_outputs": {"grammar": ABSTAIN_GRAMMAR}}
            quotes = match.closest(self.candidates) if self.candidates else match.sentences
        return {"structured_outputs": {"grammar": output_grammar(quotes, self.answer)}}

    @property
    def asks_again(self) -> bool:
        """Whether an answer that only echoes the question is asked again (`reask`)."""
        return self.reask_echoes and self.grounding == "constrained"

    def reask(self, question: str, output: str) -> Reask | None:
        """The second request to make when, grounding constrained, `output`'s answer only repeats
        words of `question` (`echoes_question`): a small model often quotes the right sentence and
        then names the question's own subject ("rebranded its Forte as the Dodge D-50" -> "Forte").
        The output is cut where that answer begins (its first mention after the last quote, else the
        answer line) and continued with a run of words of its quotes that starts on a word the
        question does not hold. None when there is nothing to ask again."""
        if not self.asks_again:
            return None
        parsed = parse_output(output)
        at, quoted = output.rfind(ANSWER_PREFIX), output.rfind(END_QUOTE)
        if not parsed.answer or not parsed.quotes or quoted == -1 or at < quoted or not echoes_question(parsed.answer, question):
            return None
        after_quote = quoted + len(END_QUOTE)
        mention = output[after_quote:at].lower().find(parsed.answer.lower())
        cut = at + len(ANSWER_PREFIX) if mention == -1 else after_quote + mention
        grammar = new_answer_grammar(parsed.quotes, question, answer_line=mention != -1)
        return None if grammar is None else Reask(output[:cut].rstrip(), grammar)


def answer_grounded(parsed: ParsedOutput) -> bool:
    """Whether the final answer is backed by the output's own quotes: it occurs in one of them,
    or it is an abstention ("I don't know" needs no quote)."""
    if parsed.answer is None:
        return False
    return is_abstention(parsed.answer) or answer_in_quotes(parsed.answer, parsed.quotes)
