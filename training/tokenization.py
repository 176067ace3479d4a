"""Chat examples to token ids and labels: loss on the assistant's answer only.

The text is rendered with the base model's own chat template. Which tokens are trained is
decided on characters, not on token counts: everything after the rendered prompt (the
template's assistant header included in the prompt) up to the end of the answer and the
end-of-turn token. Other trainers got this wrong with some templates by assuming the prompt
tokenizes the same alone as inside the whole text; offsets make no such assumption.

An example longer than `max_len` is shortened on the documents side only: distractor
documents are cut to 3/4, 1/2, 1/4 of their text, then emptied; the oracle, the question and the answer are
never cut. An example that still does not fit is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from contracts.prompt import ContextDoc, example_docs, example_messages

IGNORE = -100  # label of tokens without loss


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    truncated: bool  # documents were shortened to fit

    @property
    def n_trained(self) -> int:
        """Tokens that carry loss."""
        return sum(label != IGNORE for label in self.labels)


def tokenize_example(tokenizer: Any, example: Mapping[str, Any], max_len: int) -> TokenizedExample | None:
    """Token ids and labels of one stored example (a dataset row), rendered by the prompt module.

    The oracle document (the example's `oracle_position`) is never cut. Returns None when even
    without distractors the example is longer than `max_len`.
    """
    encoded = _encode(tokenizer, example_messages(example))
    if len(encoded.input_ids) <= max_len:
        return encoded
    for shortened in _shorter_contexts(example_docs(example), example.get("oracle_position")):
        encoded = _encode(tokenizer, example_messages(example, shortened))
        if len(encoded.input_ids) <= max_len:
            return replace(encoded, truncated=True)
    return None


def _shorter_contexts(docs: Sequence[ContextDoc], keep: int | None) -> list[list[ContextDoc]]:
    """Ever shorter contexts: distractors cut to 3/4, 1/2, 1/4 of their text, then emptied.

    Emptied, not removed: the answer cites documents by their number, which must not change.
    """
    versions = []
    for share in (0.75, 0.5, 0.25, 0.0):
        shortened = []
        for n, doc in enumerate(docs, start=1):
            if n == keep:
                shortened.append(doc)
            else:
                cut = doc.text[: int(len(doc.text) * share)]
                shortened.append(replace(doc, text=cut[: cut.rfind(" ")] if " " in cut else cut))
        versions.append(shortened)
    return versions


def _encode(tokenizer: Any, messages: list[dict[str, str]]) -> TokenizedExample:
    if messages[-1]["role"] != "assistant":
        raise ValueError("a training example must end with the assistant's answer")
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently alone and with the answer; cannot mask labels")
    answer_at = full.find(messages[-1]["content"], len(prompt))
    if answer_at < 0:
        raise ValueError("the chat template altered the assistant's text; cannot mask labels")
    end = answer_at + len(messages[-1]["content"])
    eos = tokenizer.eos_token or ""
    if eos and full.startswith(eos, end):
        end += len(eos)  # the model must learn to stop
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    labels = [tok if start >= len(prompt) and stop <= end and stop > start else IGNORE for tok, (start, stop) in zip(ids, encoded["offset_mapping"])]
    return TokenizedExample(ids, labels, truncated=False)
