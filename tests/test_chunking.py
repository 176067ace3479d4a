"""Chunk offsets, token limits, overlap, heading paths and deterministic ids."""

from conftest import PUMP_MD

from contracts.settings import ChunkingConfig
from retrieval.chunking import chunk_document
from retrieval.documents import parse_file

LONG = "# Manual\n\n" + " ".join(f"Sentence number {i} explains step {i} of the procedure." for i in range(120)) + "\n## Tail\nShort."


def doc_of(text, name="m.md"):
    return parse_file(text.encode(), name, {}, ("public",))[0]


def test_offsets_are_exact_and_tokens_bounded(tokenizer):
    doc = doc_of(LONG)
    chunks = chunk_document(doc, tokenizer, ChunkingConfig(size=48, overlap=8, min_size=0))
    assert len(chunks) > 5
    for i, c in enumerate(chunks):
        assert c.index == i
        assert doc.text[c.start : c.end] == c.text
        assert len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) <= 48
        assert c.text == c.text.strip()


def test_windows_overlap_and_end_at_sentences(tokenizer):
    doc = doc_of(LONG)
    body = [c for c in chunk_document(doc, tokenizer, ChunkingConfig(size=48, overlap=8, min_size=0)) if c.headings == ("Manual",)]
    for a, b in zip(body, body[1:]):
        assert b.start < a.end, "consecutive windows share tokens"
    assert all(c.text.endswith(".") for c in body)


def test_chunks_never_cross_sections_and_keep_heading_path(tokenizer):
    doc = doc_of(PUMP_MD)
    chunks = chunk_document(doc, tokenizer, ChunkingConfig(size=40, overlap=5, min_size=0))
    for c in chunks:
        inside = [s for s in doc.sections if s.start <= c.start and c.end <= s.end]
        assert inside and inside[0].headings == c.headings
    assert any(c.headings == ("Pump P200 Guide", "Maintenance", "Error codes") for c in chunks)


def test_small_sections_merge_into_next(tokenizer):
    doc = doc_of("# Guide\n## Specs\n### Size\nThe unit is 40 cm wide and 12 kg heavy, and fits any standard rack.\n")
    chunks = chunk_document(doc, tokenizer, ChunkingConfig(size=64, overlap=8, min_size=12))
    assert len(chunks) == 1
    assert chunks[0].text.startswith("# Guide") and chunks[0].headings == ("Guide", "Specs", "Size")


def test_point_ids_are_deterministic_and_content_bound(tokenizer):
    a = chunk_document(doc_of(PUMP_MD), tokenizer, ChunkingConfig(size=40, overlap=5, min_size=0))
    b = chunk_document(doc_of(PUMP_MD), tokenizer, ChunkingConfig(size=40, overlap=5, min_size=0))
    assert [c.point_id for c in a] == [c.point_id for c in b]
    edited = chunk_document(doc_of(PUMP_MD.replace("60 Nm", "65 Nm")), tokenizer, ChunkingConfig(size=40, overlap=5, min_size=0))
    changed = [x.point_id != y.point_id for x, y in zip(a, edited)]
    assert any(changed) and not all(changed)


def test_embedding_text_carries_title_and_headings(tokenizer):
    doc = doc_of(PUMP_MD)
    c = [c for c in chunk_document(doc, tokenizer, ChunkingConfig(size=40, overlap=5, min_size=0)) if c.headings[-1:] == ("Error codes",)][0]
    assert c.embedding_text(doc.title).startswith("Pump P200 Guide > Maintenance > Error codes\n")
