"""The QA file format: valid files, and every bad line named."""

import pytest

from retrieval.qa import QAFileError, read_qa_file


def test_reads_items_with_optional_fields(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"id": "q1", "question": " Q? ", "answer": "A", "source": "a.md", "level": 2}\n\n{"question": "Q2?", "answer": "B"}\n')
    a, b = read_qa_file(f)
    assert (a.id, a.question, a.answer, a.source, a.extra, a.line) == ("q1", "Q?", "A", "a.md", {"level": 2}, 1)
    assert (b.id, b.source, b.line) == ("line-3", None, 3)
    assert (a.answers, b.answers) == (("A",), ("B",))


def test_every_gold_answer_is_kept_answer_first(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"question": "When?", "answer": "October 1973", "answers": ["1973", "October 1973", " October "]}\n')
    [item] = read_qa_file(f)
    assert item.answers == ("October 1973", "1973", "October")
    f.write_text('{"question": "When?", "answer": "x", "answers": "x"}\n')
    with pytest.raises(QAFileError, match="line 1: field 'answers'"):
        read_qa_file(f)


def test_every_bad_line_is_named(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"question": "ok?", "answer": "yes"}\n{"question": "no answer"}\n{bad json\n["list"]\n')
    with pytest.raises(QAFileError) as e:
        read_qa_file(f)
    message = str(e.value)
    assert "3 bad line(s)" in message
    assert "line 2: missing or empty field 'answer'" in message
    assert "line 3: invalid JSON" in message
    assert "line 4: expected a JSON object" in message
    f.write_text('{"question": "q", "answer": "a", "source": 7}\n')
    with pytest.raises(QAFileError, match="line 1: field 'source'"):
        read_qa_file(f)
    f.write_text('{"question": "q", "answer": 5}\n' + '{"question": "q2", "answer": "a", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(QAFileError) as e:
        read_qa_file(f)
    assert "line 1: field 'answer' must be a string, not int" in str(e.value)
    assert "line 2: JSON nested too deeply" in str(e.value)
    f.write_text("".join(f'{{"question": "q", "answer": "a", "id": {ident}}}\n' for ident in ("null", '""', "true", "[1]")))
    with pytest.raises(QAFileError, match="4 bad line"):  # every bad line, not the first only
        read_qa_file(f)
    f.write_text('{"question": "q", "answer": "a", "id": 7}\n{"question": "r", "answer": "b"}\n{"question": "s", "answer": "c", "id": 2.5}\n')
    assert [item.id for item in read_qa_file(f)] == ["7", "line-2", "2.5"]


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(QAFileError, match="does not exist"):
        read_qa_file(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(QAFileError, match="holds no questions"):
        read_qa_file(tmp_path / "empty.jsonl")
