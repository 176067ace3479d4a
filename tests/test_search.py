"""Search results and access filtering."""

from retrieval.search import search, search_many
from retrieval.sync import sync_corpus


def test_search_finds_the_right_document_with_its_metadata(store, embedder, corpus, settings):
    sync_corpus(store, embedder, corpus, settings)
    hits = search(store, embedder, "What is the thermostat range of the H7 heater?", k=3)
    assert len(hits) == 3
    top = hits[0]
    assert (top.doc_id, top.source, top.title) == ("manuals/heater.pdf", "manuals/heater.pdf", "Heater H7 Manual")
    assert "30 to 75 degrees" in top.text and 0 < top.score <= 1
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_restricted_documents_need_their_group(store, embedder, corpus, settings):
    sync_corpus(store, embedder, corpus, settings)
    question = "salary band S3 engineers"
    assert all(h.doc_id != "salaries.md" for h in search(store, embedder, question, k=20))
    assert all("public" in h.access for h in search(store, embedder, question, k=20))
    hr = search(store, embedder, question, k=1, groups=["hr"])
    assert hr[0].doc_id == "salaries.md" and hr[0].access == ["hr"]
    internal = search(store, embedder, "escalate sev-1 tickets", k=20, groups=["internal"])
    assert "kb-3" in [h.doc_id for h in internal] and "salaries.md" not in [h.doc_id for h in internal]


def test_search_many_answers_each_question(store, embedder, corpus, settings):
    sync_corpus(store, embedder, corpus, settings)
    results = search_many(store, embedder, ["How long is the pump warranty?", "How do I reset the Control Box?"], k=2)
    assert [r[0].doc_id for r in results] == ["web/warranty.html", "kb-1"]
