"""The shared RAFT prompt format and the output parser, on well-formed and malformed outputs."""

import pytest

from contracts.prompt import (
    ANSWER_PREFIX, ContextDoc, build_messages, example_docs, example_messages, format_answer, parse_output, quote, user_message,
)

DOCS = [ContextDoc("The P200 pumps 42 litres per minute.", "Pump P200", "guides/pump.md"), ContextDoc('Say "hi".', 'A "quoted"\ntitle')]


def test_messages_put_documents_before_the_question():
    messages = build_messages("How fast is the P200?", DOCS, answer="<ANSWER>: 42 litres per minute")
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    user = messages[1]["content"]
    assert user.startswith('<DOCUMENT id="1" title="Pump P200" source="guides/pump.md">\nThe P200 pumps 42 litres per minute.\n</DOCUMENT>')
    assert '<DOCUMENT id="2" title="A \'quoted\' title" source="">' in user
    assert user.endswith("\n\nQuestion: How fast is the P200?")


def test_styles_have_their_own_instructions_and_unknown_style_fails():
    cot, direct = (build_messages("q", DOCS, style=s)[0]["content"] for s in ("cot", "direct"))
    assert "##begin_quote##" in cot and "##begin_quote##" not in direct
    with pytest.raises(ValueError, match="answer style"):
        build_messages("q", DOCS, style="verbose")


def test_no_documents_is_the_closed_book_prompt():
    assert user_message("What is X?", []) == "Question: What is X?"


def test_format_then_parse_round_trip():
    text = format_answer("42 litres per minute", f"The pump guide says {quote('The P200 pumps 42 litres per minute.')} so that is the rate.")
    parsed = parse_output(text)
    assert parsed.answer == "42 litres per minute"
    assert parsed.quotes == ("The P200 pumps 42 litres per minute.",)
    assert parsed.well_formed and parsed.reasoning.startswith("The pump guide says")
    assert parse_output(format_answer("  42   lpm ", style="direct")) == parse_output(f"{ANSWER_PREFIX} 42 lpm")


@pytest.mark.parametrize(
    "output, answer, quotes, well_formed",
    [
        ("no answer line at all", None, (), False),
        ("reasoning\n<ANSWER>:", None, (), False),
        ("<ANSWER>:42 lpm", "42 lpm", (), True),
        ("<ANSWER>: first\nmore <ANSWER>: last\ntrailing chatter", "last", (), True),
        ("##begin_quote## open but never closed\n<ANSWER>: x", "x", (), False),
        ("##begin_quote##a##end_quote## and ##begin_quote##b##end_quote##\n<ANSWER>: y", "y", ("a", "b"), True),
        ("##begin_quote##a##end_quote## ##end_quote##\n<ANSWER>: y", "y", ("a",), False),
        ("##begin_quote##   ##end_quote##<ANSWER>: z", "z", (), True),
    ],
)
def test_parser_on_malformed_outputs(output, answer, quotes, well_formed):
    parsed = parse_output(output)
    assert (parsed.answer, parsed.quotes, parsed.well_formed) == (answer, quotes, well_formed)


@pytest.mark.parametrize(
    "answer, quoted, completed",
    [
        ("tests/common/mod", "share code in tests/common/mod.rs and then import it.", "tests/common/mod.rs"),
        ("tests/common/mod.", "share code in tests/common/mod.rs and then import it.", "tests/common/mod.rs"),
        ("rustup-init", "Download and run rustup-init.exe.", "rustup-init.exe"),
        ("[patch", "Use [patch.crates-io] to override it.", "[patch.crates-io]"),
        ("mod", "(see mod.rs).", "mod.rs"),
        ("3", "It grew by 3.5 million people.", "3.5"),
        ("Cargo", "Cargo reads Cargo.toml.", "Cargo"),  # also quoted whole: kept
        ("Denver", "A Denver-based firm.", "Denver"),
        ("16 bar", "It is rated for 16 bar.", "16 bar"),
        ("step 1", "Do step 1. Then close it.", "step 1"),
        ("main", "Not quoted: main.rs.", "main"),
    ],
)
def test_an_answer_cut_at_the_dot_of_a_quoted_token_is_completed(answer, quoted, completed):
    quoted = "" if quoted.startswith("Not quoted") else quote(quoted)
    assert parse_output(f"It says {quoted}\n{ANSWER_PREFIX} {answer}").answer == completed


def test_a_stored_example_renders_through_this_module():
    example = {"question": "How fast is the P200?", "style": "cot", "target": "<ANSWER>: 42 litres per minute",
               "context": [{"chunk_id": "c1", "doc_id": "pump", "text": DOCS[0].text, "title": DOCS[0].title, "source": DOCS[0].source}]}
    assert example_messages(example) == build_messages("How fast is the P200?", DOCS[:1], "cot", "<ANSWER>: 42 litres per minute")
    assert example_docs(example) == DOCS[:1]


def test_the_prompt_format_fingerprint_follows_the_rendering(monkeypatch):
    import contracts.prompt as prompt

    assert prompt._format_fingerprint() == prompt.PROMPT_FORMAT
    monkeypatch.setitem(prompt.SYSTEM_PROMPT, "cot", prompt.SYSTEM_PROMPT["cot"] + " Be brief.")
    assert prompt._format_fingerprint() != prompt.PROMPT_FORMAT
    monkeypatch.undo()
    monkeypatch.setattr(prompt, "ANSWER_PREFIX", "<FINAL>:")
    assert prompt._format_fingerprint() != prompt.PROMPT_FORMAT


def test_a_dataset_of_another_prompt_format_is_refused(tmp_path):
    import json

    from training.dataset_folder import DATASET_FORMAT, DatasetFolderError, check_format

    for name in ("train.jsonl", "eval.jsonl"):
        (tmp_path / name).write_text("")
    card = {"format": DATASET_FORMAT, "sources": {"prompt_format": "0123456789abcdef"}}
    (tmp_path / "dataset_card.json").write_text(json.dumps(card))
    with pytest.raises(DatasetFolderError, match="prompt format 0123456789abcdef.*rebuild it with `raft dataset`"):
        check_format(tmp_path)
    (tmp_path / "dataset_card.json").write_text(json.dumps({**card, "format": 1}))
    with pytest.raises(DatasetFolderError, match="format 1"):
        check_format(tmp_path)
