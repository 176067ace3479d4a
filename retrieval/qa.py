"""The QA file format shared by retrieval benchmarks, dataset building and evaluation.

JSONL, one object per line: `question` (required), `answer` (required), optional `id`,
`source` (a document path relative to the corpus root, or a jsonl document's id) and
`answers` (every acceptable answer, as SQuAD gives them: scores take the best of them);
other fields are kept in `extra` and otherwise ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class QAFileError(ValueError):
    """A QA file that cannot be read; the message names the line and field of every bad line."""


@dataclass(frozen=True)
class QAItem:
    question: str
    answer: str
    id: str
    source: str | None = None
    line: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    answers: tuple[str, ...] = ()  # every acceptable answer, `answer` first

    def __post_init__(self) -> None:
        if not self.answers:
            object.__setattr__(self, "answers", (self.answer,))


def read_qa_file(path: Path) -> list[QAItem]:
    """All items of a QA file. Raises QAFileError listing every bad line (none is silently dropped)."""
    items, errors = [], []
    for lineno, record in read_jsonl(path, required=("question", "answer")):
        source = record.get("source")
        ident = record.get("id", f"line-{lineno}")
        answers = record.get("answers", [])
        if source is not None and (not isinstance(source, str) or not source.strip()):
            errors.append(f"line {lineno}: field 'source' must be a document path or id")
        elif isinstance(ident, bool) or not isinstance(ident, (str, int, float)) or not str(ident).strip():
            errors.append(f"line {lineno}: field 'id' must be a non-empty string or a number, or left out")
        elif not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
            errors.append(f"line {lineno}: field 'answers' must be a list of non-empty strings")
        else:
            answer = record["answer"].strip()
            extra = {k: v for k, v in record.items() if k not in ("question", "answer", "answers", "id", "source")}
            every = tuple(dict.fromkeys([answer, *(a.strip() for a in answers)]))
            items.append(QAItem(record["question"].strip(), answer, str(ident), source, lineno, extra, every))
    if errors:
        raise QAFileError(f"{path}: {_listed(errors)}")
    return items


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each line of a JSONL file whose `required` fields are non-empty strings.

    Raises QAFileError naming the line and field of every bad line, or when there is no line.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise QAFileError(f"{path} does not exist") from None
    except UnicodeDecodeError as e:
        raise QAFileError(f"{path} is not UTF-8 (byte {e.start}): re-save it as UTF-8") from None
    records, errors = [], []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"line {lineno}: invalid JSON ({e.msg} at column {e.colno})")
            continue
        except RecursionError:
            errors.append(f"line {lineno}: JSON nested too deeply to read")
            continue
        if not isinstance(record, dict):
            errors.append(f"line {lineno}: expected a JSON object")
            continue
        missing = [f for f in required if record.get(f) is None or (isinstance(record[f], str) and not record[f].strip())]
        if missing:
            errors.append(f"line {lineno}: missing or empty field {', '.join(repr(f) for f in missing)}")
            continue
        typed = [f for f in required if not isinstance(record[f], str)]
        if typed:
            errors.append(f"line {lineno}: field {', '.join(repr(f) for f in typed)} must be a string, not {type(record[typed[0]]).__name__}")
            continue
        records.append((lineno, record))
    if errors:
        raise QAFileError(f"{path}: {_listed(errors)}")
    if not records:
        raise QAFileError(f"{path} holds no questions")
    return records


def _listed(errors: list[str]) -> str:
    shown = "; ".join(errors[:20]) + (f"; and {len(errors) - 20} more" if len(errors) > 20 else "")
    return f"{len(errors)} bad line(s): {shown}"
