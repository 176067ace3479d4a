"""Checks the sample domain: every QA answer is in its source document, as the index reads it.

Documents are loaded with raft-pipeline's own loaders (the text the index and the training
examples see), so a PDF or HTML page is checked after extraction, not as written.
Exits 1 and lists the problems when any check fails.

Run: .venv/bin/python examples/check_corpus.py
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from retrieval.corpus import scan_corpus
from retrieval.qa import read_qa_file
from retrieval.sync import IndexSettings, load_file

HERE = Path(__file__).resolve().parent


def main() -> int:
    settings = IndexSettings()
    files, skipped = scan_corpus(HERE / "corpus", list(settings.corpus.include))
    problems = [f"unreadable: {s.source}: {s.reason}" for s in skipped]
    docs = {}
    for file in files:
        loaded, bad = load_file(file, settings)
        problems += [f"bad line: {s.source}: {s.reason}" for s in bad]
        for doc in loaded:
            docs[doc.doc_id] = doc
    texts = Counter(d.text for d in docs.values())
    problems += [f"duplicate text in {d.doc_id}" for d in docs.values() if texts[d.text] > 1]

    items = read_qa_file(HERE / "qa.jsonl")
    questions = Counter(i.question for i in items)
    ids = Counter(i.id for i in items)
    per_doc = Counter()
    for item in items:
        doc = docs.get(item.source)
        if doc is None:
            problems.append(f"line {item.line}: source {item.source!r} is not a document")
            continue
        per_doc[doc.doc_id] += 1
        if " ".join(item.answer.split()) not in " ".join(doc.text.split()):
            problems.append(f"line {item.line}: answer {item.answer!r} is not in {item.source}")
        if questions[item.question] > 1:
            problems.append(f"line {item.line}: duplicate question {item.question!r}")
        if ids[item.id] > 1:
            problems.append(f"line {item.line}: duplicate id {item.id!r}")
    problems += [f"{doc_id} has only {per_doc[doc_id]} question(s)" for doc_id in docs if per_doc[doc_id] < 2]

    formats = Counter(Path(f.source).suffix.lstrip(".") for f in files)
    restricted = {d.doc_id: list(d.access) for d in docs.values() if list(d.access) != ["public"]}
    print(json.dumps({"files": len(files), "documents": len(docs), "formats": dict(sorted(formats.items())),
                      "questions": len(items), "restricted": restricted}, indent=1))
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
