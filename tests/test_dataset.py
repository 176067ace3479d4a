"""RAFT dataset building on a small real index (real embedder, embedded Qdrant)."""

import json

import pytest
from pydantic import ValidationError

from contracts.prompt import example_docs, example_messages, parse_output
from contracts.settings import DatasetConfig, TeacherConfig
from retrieval.evidence import match_sentences
from retrieval.sync import sync_corpus
from tests.scripted_teacher import ScriptedTeacher
from training.dataset import DatasetError, Question, build_dataset, teacher_questions
from training.dataset_folder import latest_dataset, read_card, read_examples, write_dataset
from training.teacher import Teacher

QUESTIONS = [
    Question("q1", "How many litres per minute does the P200 pump move?", "42 litres per minute", "guides/pump.md"),
    Question("q2", "To what torque are the P200 anchor bolts tightened?", "60 Nm"),  # no source: found by retrieval
    Question("q3", "How long does the V10 ball valve take to close?", "1.2 seconds", "guides/valve.md"),
    Question("q4", "What do band S3 engineers earn?", "61000 and 72000 euros", "salaries.md"),  # [hr]
    Question("q5", "How long must the Control Box reset button be held?", "10 seconds", "kb-1"),
    Question("q6", "How much power does the H7 heater draw?", "3 kW", "manuals/heater.pdf"),
    Question("q7", "How many days of events does release 1.4 keep in its log?", "14 days", "notes/release-1.4.txt"),
    Question("q8", "How many days of events does release 1.4 keep in its logs?", "14 days", "notes/release-1.4.txt"),  # near-duplicate
    Question("q9", "How many days of events does release 1.4 keep in its log?", "14 days", "notes/release-1.4.txt"),  # duplicate
    Question("q10", "When does the P200 need a new shaft seal?", "every 8000 operating hours", "guides/pump.md"),
    Question("q11", "What pressure is the V10 rated for?", "16 bar", "guides/valve.md"),
    Question("q12", "How often must the H7 element be descaled in hard-water areas?", "every 6 months", "manuals/heater.pdf"),
    Question("q13", "Who should sev-1 tickets be escalated to?", "the on-call lead", "kb-3"),  # [internal]
    Question("q14", "What colour does the LED blink after a reset?", "purple", "kb-1"),  # not in the document
]
SMALL = DatasetConfig(k=2, candidates=8, eval_share=0.25)


@pytest.fixture
def index(store, embedder, corpus, settings):
    sync_corpus(store, embedder, corpus, settings)
    return store


def all_chunks(store):
    return {c.chunk_id: c for c in store.chunks(["hr", "internal", "finance"])}


def test_examples_hold_the_oracle_retrieved_distractors_and_verbatim_quotes(index, embedder):
    ds = build_dataset(index, embedder, QUESTIONS, SMALL)
    chunks = all_chunks(index)
    rows = ds.train + ds.eval
    assert {r["id"] for r in rows} == {"q1", "q2", "q3", "q5", "q6", "q7", "q10", "q11", "q12"}
    assert ds.card["dropped"] == {"duplicate": 1, "near_duplicate": 1, "restricted": 2, "unsupported": 1}
    for r in rows:
        oracle = chunks[r["oracle_id"]]
        messages = example_messages(r)
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        context_ids = [d["chunk_id"] for d in r["context"]]
        assert len(context_ids) == SMALL.k + 1
        assert r["oracle_doc_id"] not in r["distractor_doc_ids"]
        assert (r["oracle_id"] in context_ids) == r["oracle_present"]
        assert (oracle.text in messages[1]["content"]) == r["oracle_present"]
        if r["oracle_present"]:
            assert context_ids[r["oracle_position"] - 1] == r["oracle_id"]
        else:
            assert r["oracle_position"] is None
        assert all(d["text"] == chunks[d["chunk_id"]].text for d in r["context"]), "documents are stored as data, verbatim"
        hits = [h.chunk_id for h in index.search(embedder.encode([r["question"]])[0], r["question"], SMALL.candidates)]
        for chunk_id, rank in zip(r["distractor_ids"], r["distractor_ranks"]):
            # Hard negatives come from retrieval; only a corpus too small to fill k adds random ones.
            assert hits.index(chunk_id) + 1 == rank if rank else ds.card["distractors"]["short_hard"]
        parsed = parse_output(r["target"])
        assert parsed.well_formed
        if r["oracle_present"]:
            assert parsed.answer == r["answer"] and parsed.quotes
            assert all(q in oracle.text for q in parsed.quotes)
        else:
            assert parsed.answer == "I don't know"
    assert next(r for r in rows if r["id"] == "q2")["oracle_source"] == "guides/pump.md"
    evidence = ds.card["evidence"]
    answered = [r for r in ds.train if r["oracle_present"]]
    assert evidence["embedding_model"] == embedder.name and len(evidence["scores"]) == len(answered) > 0
    one_by_one = sorted(match_sentences(r["question"], example_docs(r), embedder.encode).evidence for r in answered)
    assert evidence["scores"] == pytest.approx(one_by_one, abs=2e-4)  # embedded together, not one context at a time


def test_restricted_documents_never_enter_unless_the_audience_may_see_them(index, embedder):
    chunks = all_chunks(index)
    restricted = {cid for cid, c in chunks.items() if c.access != ["public"]}
    ds = build_dataset(index, embedder, QUESTIONS, SMALL)
    for r in ds.train + ds.eval:
        assert not restricted & {d["chunk_id"] for d in r["context"]}
        assert all(c.text not in example_messages(r)[1]["content"] for c in chunks.values() if c.chunk_id in restricted)
    hr = build_dataset(index, embedder, QUESTIONS, DatasetConfig(k=2, candidates=8, audience=("public", "hr")))
    assert "q4" in {r["id"] for r in hr.train + hr.eval}
    assert hr.card["dropped"]["restricted"] == 1  # kb-3 is for [internal]


def test_train_and_eval_documents_are_disjoint_even_among_distractors(index, embedder):
    ds = build_dataset(index, embedder, QUESTIONS, DatasetConfig(k=3, candidates=10, eval_share=0.3))
    eval_docs = {r["oracle_doc_id"] for r in ds.eval}
    assert ds.eval and ds.train and eval_docs
    for r in ds.train:
        assert r["oracle_doc_id"] not in eval_docs
        assert not eval_docs & set(r["distractor_doc_ids"])


def test_same_seed_gives_identical_files_and_another_seed_does_not(index, embedder, tmp_path):
    first = write_dataset(build_dataset(index, embedder, QUESTIONS, SMALL), tmp_path / "datasets")
    again = write_dataset(build_dataset(index, embedder, QUESTIONS, SMALL), tmp_path / "other")
    assert first[1] == again[1]
    for name in ("train.jsonl", "eval.jsonl", "dataset_card.json"):
        assert (first[0] / name).read_bytes() == (again[0] / name).read_bytes()
    other = build_dataset(index, embedder, QUESTIONS, DatasetConfig(k=2, candidates=8, eval_share=0.25, seed=1))
    assert write_dataset(other, tmp_path / "datasets")[1] != first[1]
    assert latest_dataset(tmp_path / "datasets").name == write_dataset(other, tmp_path / "datasets")[1][:16]
    assert read_card(first[0])["settings"]["seed"] == 0 and read_examples(first[0], "train")


def test_direct_style_answers_without_reasoning(index, embedder):
    ds = build_dataset(index, embedder, QUESTIONS, DatasetConfig(k=2, candidates=8, style="direct", p=1.0))
    for r in ds.train + ds.eval:
        assert r["target"] == f"<ANSWER>: {r['answer']}" and r["style"] == "direct"
        assert "Reply with one line" in example_messages(r)[0]["content"]


def test_memorize_mode_keeps_the_reasoning_without_the_oracle(index, embedder):
    ds = build_dataset(index, embedder, QUESTIONS, DatasetConfig(k=2, candidates=8, p=0.0, no_oracle="memorize"))
    for r in ds.train + ds.eval:
        assert not r["oracle_present"] and parse_output(r["target"]).answer == r["answer"]


def test_unknown_sources_are_named_by_line(index, embedder):
    bad = [Question("x", "What?", "42", "guides/missing.md", line=7), Question("y", "Why?", "1", "kb-99", line=9)]
    with pytest.raises(DatasetError, match=r"line 7: field 'source' names 'guides/missing.md'.*line 9: field 'source' names 'kb-99'"):
        build_dataset(index, embedder, bad, SMALL)


def test_settings_are_checked_once_where_they_are_made():
    with pytest.raises(ValidationError, match="p\n  Input should be less than or equal to 1"):
        DatasetConfig(p=1.5)
    with pytest.raises(ValidationError, match=r"dataset.candidates \(4\) must exceed dataset.k \(4\)"):
        DatasetConfig(k=4, candidates=4)


def test_teacher_reasoning_is_verified_repaired_or_dropped(index, embedder, tmp_path):
    questions = QUESTIONS + [Question("q15", "Please fabricate: how fast is the P200?", "42 litres per minute", "guides/pump.md")]
    with ScriptedTeacher(sloppy=True) as server:
        teacher = Teacher(TeacherConfig(url=server.url, model="scripted"), tmp_path / "cache.jsonl", retry_base_s=0.01)
        ds = build_dataset(index, embedder, questions, DatasetConfig(k=2, candidates=8, p=1.0), teacher)
    chunks = all_chunks(index)
    assert ds.card["quotes"]["repaired"] == len(ds.train + ds.eval) > 0  # every sloppy quote snapped back
    assert ds.card["dropped"]["teacher_unrepairable_quote"] == 1  # the fabricated one
    for r in ds.train + ds.eval:
        assert all(q in chunks[r["oracle_id"]].text for q in parse_output(r["target"]).quotes)
    assert ds.card["sources"]["teacher"]["model"] == "scripted"


def test_teacher_questions_mix_with_the_qa_file(index, embedder, tmp_path):
    with ScriptedTeacher() as server:
        teacher = Teacher(TeacherConfig(url=server.url, model="scripted", questions_per_chunk=2), tmp_path / "cache.jsonl")
        written = teacher_questions(index, teacher, ["public"])
        ds = build_dataset(index, embedder, QUESTIONS + written, SMALL, teacher)
    assert written and all(q.source for q in written)
    assert ds.card["counts"]["from_teacher"] == len(written)
    assert {r["origin"] for r in ds.train + ds.eval} == {"qa", "teacher"}
    restricted_docs = {c.doc_id for c in all_chunks(index).values() if c.access != ["public"]}
    assert not restricted_docs & {q.source for q in written}


def test_cli_builds_a_dataset_and_reports_bad_qa_lines(corpus, tmp_path, capsys):
    from flows.cli import main

    work = tmp_path / "work"
    assert main(["index", "--work-dir", str(work), "--corpus", str(corpus), "--set", "chunking.size=64", "--set", "chunking.min_size=8"]) == 0
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps({"question": q.question, "answer": q.answer, "source": q.source} if q.source else {"question": q.question, "answer": q.answer}) for q in QUESTIONS))
    capsys.readouterr()
    args = ["dataset", "--work-dir", str(work), "--qa", str(qa), "--k", "2", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["train"] + out["eval"] == 9 and out["dropped"]["restricted"] == 2 and out["repaired"] == 0
    assert latest_dataset(work / "datasets").as_posix() == out["path"]

    qa.write_text('{"question": "a?", "answer": "b"}\n{"question": "c?"}\nnot json\n{"question": "d?", "answer": "e", "source": "nowhere.md"}\n')
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "line 2: missing or empty field 'answer'" in err and "line 3: invalid JSON" in err
    qa.write_text('{"question": "d?", "answer": "e", "source": "nowhere.md"}\n')
    assert main(args) == 2
    assert "line 1: field 'source' names 'nowhere.md'" in capsys.readouterr().err
