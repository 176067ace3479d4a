"""Finding evidence in chunks, extractive answers, and checking a teacher's quotes."""

import pytest

from contracts.prompt import parse_output, quote
from contracts.textmatch import find_span, normalize_answer, sentences, statement_around, statements
from tests.conftest import OPTIONS_TEXT
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


def texts(text: str) -> list[str]:
    return [text[s.start : s.end] for s in statements(text)]


def test_a_term_on_its_own_line_goes_with_the_sentence_below_it():
    assert texts(OPTIONS_TEXT) == [
        "Selection options\n--ignored\nRuns only tests that are marked with the ignore attribute.",
        "--include-ignored\nRuns both ignored and non-ignored tests.",
        "http.timeout\nType: integer\nDefault: 30\nEnvironment: CARGO_HTTP_TIMEOUT\nSets the timeout for each HTTP request, in seconds.",
        "It applies to every registry.",
    ]


@pytest.mark.parametrize("text, units", [
    ("The pump is IP65.\nIt takes 16 bar.", ["The pump is IP65.", "It takes 16 bar."]),  # sentences stand alone
    ("# Pumps\nIt takes 16 bar.", ["# Pumps", "It takes 16 bar."]),  # a Markdown heading is not a term
    ("- 16 bar\n- IP65 housing\nBoth are tested.", ["- 16 bar", "- IP65 housing", "Both are tested."]),  # nor a list item
    ("Limits\n- 16 bar\n| IP65 | yes |", ["Limits", "- 16 bar", "| IP65 | yes |"]),  # a term describes no list item or table row
    ("Pressure:\nIt takes 16 bar.", ["Pressure:", "It takes 16 bar."]),  # a lead-in ends in a colon
    ("See the table below\n# Limits\nIt takes 16 bar.", ["See the table below", "# Limits", "It takes 16 bar."]),
    ("The pump: model PC-220\n", ["The pump: model PC-220"]),  # nothing below to read it with
    ("warning: 1 emitted\n    Finished in 2.9s\nAdd the lint.", ["warning: 1 emitted", "Finished in 2.9s", "Add the lint."]),  # code
    ("a\nb\nc\nd\ne\nIt takes 16 bar.", ["a", "b\nc\nd\ne\nIt takes 16 bar."]),  # at most 4 term lines
    ("pressure\n" + "It takes 16 bar" * 30 + ".", ["pressure", "It takes 16 bar" * 30 + "."]),  # no room beside a long sentence
    ("x" * 81 + "\nIt takes 16 bar.", ["x" * 81, "It takes 16 bar."]),  # too long for a term
    ("The pump takes 16 bar\nat most.", ["The pump takes 16 bar\nat most."]),  # a sentence wrapped over two lines is whole again
])
def test_only_short_term_lines_join_the_sentence_below(text, units):
    assert texts(text) == units


def test_statement_around_is_cut_at_word_edges_when_too_long():
    text = "word " * 200 + "the answer is 42 units " + "word " * 200
    span = find_span("42 units", text)
    cut = statement_around(text, span, max_chars=60)
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


def test_training_quotes_a_term_with_the_sentence_that_describes_it():
    # The served grammar admits "--include-ignored" only together with its description, so the
    # extractive teacher quotes the same statement.
    out = extractive_answer("--include-ignored", OPTIONS_TEXT, 2, "libtest", "cot")
    assert parse_output(out).quotes == ("--include-ignored\nRuns both ignored and non-ignored tests.",)
    span = evidence_span("30", OPTIONS_TEXT)
    assert OPTIONS_TEXT[span.start : span.end].startswith("http.timeout\nType: integer\nDefault: 30\n")


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


def test_the_teacher_fingerprint_follows_the_evidence_it_picks(monkeypatch):
    import training.quotes as quotes

    assert quotes._teacher_fingerprint() == quotes.EXTRACTIVE_TEACHER
    monkeypatch.setattr(quotes, "statement_around", lambda text, span, max_chars=400: span)  # quote the answer alone
    assert quotes._teacher_fingerprint() != quotes.EXTRACTIVE_TEACHER
    monkeypatch.undo()
    monkeypatch.setattr(quotes, "MIN_SUPPORT", 0.5)
    assert quotes._teacher_fingerprint() != quotes.EXTRACTIVE_TEACHER
