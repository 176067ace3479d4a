"""Finding evidence in chunks, extractive answers, and checking a teacher's quotes."""

from contracts.prompt import parse_output, quote
from contracts.textmatch import find_span, normalize_answer, sentence_around, sentences
from training.quotes import abstain_answer, check_quotes, evidence_span, extractive_answer

CHUNK = (
    "The PC-220 controller runs on 24 V DC.\nIts maximum inlet pressure is 16 bar. "
    "Firmware 4.0 adds Modbus TCP! Error E-41 means the\ninlet sensor is open."
)


def test_find_span_ignores_whitespace_and_case_but_not_word_edges():
    span = find_span("e-41 means the inlet", CHUNK)
    assert CHUNK[span.start : span.end] == "E-41 means the\ninlet"
    assert find_span("6 bar", CHUNK) is None  # inside "16 bar"
    assert find_span("16 bar", CHUNK) is not None
    assert find_span("", CHUNK) is None


def test_sentences_split_on_terminators_and_lines():
    texts = [CHUNK[s.start : s.end] for s in sentences(CHUNK)]
    assert texts == [
        "The PC-220 controller runs on 24 V DC.",
        "Its maximum inlet pressure is 16 bar.",
        "Firmware 4.0 adds Modbus TCP!",
        "Error E-41 means the",
        "inlet sensor is open.",
    ]


def test_sentences_do_not_end_at_initials_abbreviations_or_before_lower_case():
    text = "In 1973, Nixon named William E. Simon. U.S. troops left, e.g. the 3rd unit. Dr. Lee agreed. It is 24 V DC. Next."
    assert [text[s.start : s.end] for s in sentences(text)] == [
        "In 1973, Nixon named William E. Simon.",
        "U.S. troops left, e.g. the 3rd unit.",
        "Dr. Lee agreed.",
        "It is 24 V DC.",
        "Next.",
    ]


def test_sentence_around_is_cut_at_word_edges_when_too_long():
    text = "word " * 200 + "the answer is 42 units " + "word " * 200
    span = find_span("42 units", text)
    cut = sentence_around(text, span, max_chars=60)
    piece = text[cut.start : cut.end]
    assert "42 units" in piece and len(piece) <= 62
    assert not piece.startswith("ord") and text[cut.start - 1] == " "


def test_extractive_answer_quotes_the_sentence_verbatim():
    out = extractive_answer("16 bar", CHUNK, 3, "PC-220 Manual", "cot")
    parsed = parse_output(out)
    assert parsed.answer == "16 bar" and parsed.well_formed
    assert parsed.quotes == ("Its maximum inlet pressure is 16 bar.",)
    assert 'document 3 ("PC-220 Manual")' in out
    assert extractive_answer("16 bar", CHUNK, 3, "t", "direct") == "<ANSWER>: 16 bar"
    assert extractive_answer("230 V", CHUNK, 1, "t", "cot") is None


def test_evidence_falls_back_to_the_sentence_with_most_answer_tokens():
    span = evidence_span("Modbus TCP, firmware 4.0", CHUNK)  # not verbatim, all tokens in one sentence
    assert CHUNK[span.start : span.end] == "Firmware 4.0 adds Modbus TCP!"
    assert evidence_span("Profibus DP", CHUNK) is None


def test_check_quotes_keeps_verbatim_repairs_near_misses_and_drops_inventions():
    good = f"It says {quote('Its maximum inlet pressure is 16 bar.')}\n<ANSWER>: 16 bar"
    assert check_quotes(good, CHUNK, "cot").output == good

    sloppy = f"It says {quote('its maximum  inlet pressure is 16 bar.')}\n<ANSWER>: 16 bar"  # case, spacing
    fixed = check_quotes(sloppy, CHUNK, "cot")
    assert fixed.repaired == 1 and parse_output(fixed.output).quotes == ("Its maximum inlet pressure is 16 bar.",)

    paraphrase = f"It says {quote('The maximum inlet pressure is 16 bar.')}\n<ANSWER>: 16 bar"  # one word differs
    assert parse_output(check_quotes(paraphrase, CHUNK, "cot").output).quotes == ("Its maximum inlet pressure is 16 bar.",)

    invented = f"It says {quote('The housing is rated IP67 for outdoor use.')}\n<ANSWER>: IP67"
    assert check_quotes(invented, CHUNK, "cot").reason == "unrepairable_quote"
    assert check_quotes("It is 16 bar.\n<ANSWER>: 16 bar", CHUNK, "cot").reason == "no_quote"
    assert check_quotes("16 bar", CHUNK, "cot").reason == "malformed"


def test_abstain_answer_parses_as_unknown():
    assert parse_output(abstain_answer("cot")).answer == "I don't know"
    assert abstain_answer("direct") == "<ANSWER>: I don't know"


def test_normalize_answer_is_squad_style():
    assert normalize_answer("The  16-bar Limit!") == "16bar limit"
