"""Incremental sync against the real embedding model and embedded Qdrant."""

import pytest
from conftest import MODEL, write

from contracts.settings import ChunkingConfig, EmbeddingConfig
from retrieval.embedding import Embedder
from retrieval.search import search
from retrieval.sync import IndexSettings, SyncStopped, sync_corpus


def sync(store, embedder, corpus, settings, **kw):
    return sync_corpus(store, embedder, corpus, settings, **kw)


def points(store):
    """doc id -> set of point ids currently behind the alias."""
    return {d: set(s.point_ids) for d, s in store.index_state(store.current()).items()}


def test_first_sync_indexes_every_document(store, embedder, corpus, settings):
    report = sync(store, embedder, corpus, settings)
    assert (report.added, report.updated, report.deleted, report.unchanged) == (9, 0, 0, 0)
    assert report.skipped == []
    assert report.chunks_written == report.embeddings_computed == store.count() > 9
    assert store.current() == "chunks_v1" == report.collection
    assert set(points(store)) == {
        "guides/pump.md", "guides/valve.md", "notes/release-1.4.txt", "web/warranty.html",
        "salaries.md", "manuals/heater.pdf", "kb-1", "kb-2", "kb-3",
    }


def test_rerun_without_change_computes_no_embedding(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    before = points(store)
    fresh = Embedder(MODEL)  # a model that was never loaded: it must stay so
    report = sync(store, fresh, corpus, settings)
    assert (report.added, report.updated, report.deleted, report.unchanged) == (0, 0, 0, 9)
    assert report.embeddings_computed == report.chunks_written == report.chunks_deleted == 0
    assert not fresh.loaded and fresh._tokenizer is None
    assert points(store) == before


def test_editing_one_file_changes_only_its_chunks(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    before = points(store)
    path = corpus / "guides/pump.md"
    path.write_text(path.read_text().replace("60 Nm", "65 Nm"))
    report = sync(store, embedder, corpus, settings)
    assert (report.added, report.updated, report.unchanged) == (0, 1, 8)
    after = points(store)
    assert {d: p for d, p in after.items() if d != "guides/pump.md"} == {d: p for d, p in before.items() if d != "guides/pump.md"}
    new, old = after["guides/pump.md"], before["guides/pump.md"]
    assert new != old and new & old, "unchanged chunks of the edited document keep their ids"
    assert report.embeddings_computed == len(new)
    assert report.chunks_deleted == len(old - new)
    hit = search(store, embedder, "torque for the P200 anchor bolts", k=1)[0]
    assert "65 Nm" in hit.text


def test_deleting_a_file_removes_its_chunks(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    before = points(store)
    (corpus / "guides/valve.md").unlink()
    report = sync(store, embedder, corpus, settings)
    assert (report.deleted, report.unchanged, report.embeddings_computed) == (1, 8, 0)
    assert "guides/valve.md" not in points(store)
    assert store.count() == sum(len(p) for d, p in before.items() if d != "guides/valve.md")


def test_jsonl_record_edit_reembeds_only_that_record(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    before = points(store)
    path = corpus / "kb/articles.jsonl"
    path.write_text(path.read_text().replace("10 seconds", "12 seconds"))
    report = sync(store, embedder, corpus, settings)
    assert (report.updated, report.unchanged) == (1, 8)
    after = points(store)
    assert after["kb-1"] != before["kb-1"] and after["kb-2"] == before["kb-2"]


def test_sidecar_access_change_updates_the_document(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    write(corpus, "notes/release-1.4.txt.meta.yaml", "access: [internal]\n")
    report = sync(store, embedder, corpus, settings)
    assert report.updated == 1
    assert not [h for h in search(store, embedder, "remote restart LAN port", k=10) if h.doc_id == "notes/release-1.4.txt"]
    assert [h for h in search(store, embedder, "remote restart LAN port", k=10, groups=["internal"]) if h.doc_id == "notes/release-1.4.txt"]


def test_whitespace_only_change_is_restamped_not_reembedded(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    path = corpus / "web/warranty.html"
    path.write_text(path.read_text().replace("<main>", "<main>\n\n   "))
    report = sync(store, embedder, corpus, settings)
    assert (report.updated, report.embeddings_computed) == (0, 0)
    fresh = Embedder(MODEL)
    sync(store, fresh, corpus, settings)
    assert fresh._tokenizer is None, "after the restamp the file is recognised by its hash alone"


@pytest.mark.parametrize(
    "rel, content, reason",
    [
        ("guides/valve.md", b"\xff\xfe broken \x80 bytes", "invalid UTF-8"),
        ("guides/valve.md", b"", "empty document"),
        ("manuals/heater.pdf", None, "truncated PDF"),
        ("notes/release-1.4.txt", b"\x00\x01\x02binary", "binary content"),
    ],
)
def test_bad_file_is_skipped_and_its_last_good_version_kept(store, embedder, corpus, settings, rel, content, reason):
    sync(store, embedder, corpus, settings)
    before = points(store)
    path = corpus / rel
    path.write_bytes(content if content is not None else path.read_bytes()[:500])
    write(corpus, "guides/new.md", "# New guide\nThe new gasket kit is part GK-77.\n")
    report = sync(store, embedder, corpus, settings)
    assert [(s.source, reason in s.reason) for s in report.skipped] == [(rel, True)]
    assert report.added == 1, "the bad file does not stop the others"
    assert report.deleted == 0
    assert points(store)[rel] == before[rel]


def test_a_file_that_cannot_be_opened_keeps_its_last_good_version(store, embedder, corpus, settings):
    # A link into a mount that went away (tests run as root here, so no permission bit can stand in).
    sync(store, embedder, corpus, settings)
    before = points(store)
    (corpus / "guides/valve.md").unlink()
    (corpus / "guides/valve.md").symlink_to(corpus.parent / "gone" / "valve.md")
    report = sync(store, embedder, corpus, settings)
    assert [(s.source, "unreadable" in s.reason) for s in report.skipped] == [("guides/valve.md", True)]
    assert report.deleted == 0 and points(store)["guides/valve.md"] == before["guides/valve.md"]


def test_a_file_nested_too_deeply_is_skipped_by_name_and_the_rest_indexed(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    write(corpus, "deep.html", "<html><body><main>" + "<div>" * 5000 + "text" + "</div>" * 5000 + "</main></body></html>")
    write(corpus, "guides/new.md", "# New guide\nThe new gasket kit is part GK-77.\n")
    report = sync(store, embedder, corpus, settings)
    assert [(s.source, "nested too deeply" in s.reason) for s in report.skipped] == [("deep.html", True)]
    assert report.added == 1


def test_a_skipped_file_says_who_may_still_read_its_last_version(store, embedder, corpus, settings):
    # Restricting a public file with a typo: the old, public version stays, and the skip says so.
    sync(store, embedder, corpus, settings)
    write(corpus, "guides/valve.md.meta.yaml", "access: [hr\n")
    report = sync(store, embedder, corpus, settings)
    [skipped] = report.skipped
    assert skipped.source == "guides/valve.md" and "not valid YAML" in skipped.reason
    assert "its last indexed version stays searchable, readable by [public]" in skipped.reason
    write(corpus, "guides/fresh.md.meta.yaml", "access: [hr\n")
    write(corpus, "guides/fresh.md", "# Fresh\nNever indexed before.\n")
    fresh = next(s for s in sync(store, embedder, corpus, settings).skipped if s.source == "guides/fresh.md")
    assert "stays searchable" not in fresh.reason, "a file never indexed has no last version to name"


def test_html_page_not_in_utf8_is_read_and_the_reason_reported(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    page = corpus / "web/warranty.html"
    edited = page.read_text().replace("serial number.", "serial number and the caf\u00e9\u2019s receipt.")
    page.write_bytes(edited.encode("cp1252"))  # as an old editor saves it, with no charset declared
    report = sync(store, embedder, corpus, settings)
    assert report.skipped == [] and report.updated == 1
    assert [w.source for w in report.warnings] == ["web/warranty.html"] and "read as windows-1252" in report.warnings[0].message
    hit = search(store, embedder, "send warranty claims with the serial number", k=1)[0]
    assert hit.doc_id == "web/warranty.html" and "caf\u00e9\u2019s receipt" in hit.text


def test_redirect_and_not_found_pages_are_left_out_without_counting_as_bad_files(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    redirect = '<html><head><meta http-equiv="refresh" content="0; url={0}"></head><body>Redirecting to {0}...</body></html>'
    (corpus / "web/warranty.html").write_text(redirect.format("support/warranty.html"))  # the page moved away
    write(corpus, "web/old-pump.html", redirect.format("../guides/pump.html"))
    write(corpus, "web/old-valve.html", redirect.format("../guides/valve.html"))
    write(corpus, "web/404.html", "<html><body><h1>Page Not Found</h1><p>We could not find what you were looking for.</p></body></html>")
    # 4 of 10 files: more than checks.max_skipped_share (25%) if they counted as unreadable.
    report = sync(store, embedder, corpus, settings)
    assert sorted(s.source for s in report.skipped) == ["web/404.html", "web/old-pump.html", "web/old-valve.html", "web/warranty.html"]
    assert [s.reason.startswith("a redirect to ") for s in sorted(report.skipped, key=lambda s: s.source)] == [False, True, True, True]
    assert report.deleted == 1 and "web/warranty.html" not in points(store), "a page that became a redirect leaves the index"
    assert report.added == 0


def test_bad_jsonl_line_keeps_its_old_record(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    path = corpus / "kb/articles.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:40]  # kb-2 becomes invalid JSON
    path.write_text("\n".join(lines) + "\n")
    report = sync(store, embedder, corpus, settings)
    assert [s.source for s in report.skipped] == ["kb/articles.jsonl:2"]
    assert "invalid JSON" in report.skipped[0].reason
    assert report.deleted == 0 and "kb-2" in points(store)


def test_exact_duplicates_are_skipped(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    write(corpus, "copies/pump-copy.md", (corpus / "guides/pump.md").read_bytes())
    report = sync(store, embedder, corpus, settings)
    assert [(s.source, s.reason) for s in report.skipped] == [("copies/pump-copy.md", "exact duplicate of guides/pump.md: remove one copy")]
    assert report.added == 0 and "copies/pump-copy.md" not in points(store)


def test_shrinking_corpus_stops_unless_forced(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    before = points(store)
    for rel in ("guides/pump.md", "guides/valve.md", "web/warranty.html", "salaries.md"):
        (corpus / rel).unlink()
    with pytest.raises(SyncStopped, match="4 of 9 indexed documents are gone") as stopped:
        sync(store, embedder, corpus, settings)
    assert stopped.value.report.deleted == 4
    assert points(store) == before, "nothing written when a check stops the sync"
    report = sync(store, embedder, corpus, settings, force=True)
    assert report.deleted == 4 and len(points(store)) == 5


def test_many_bad_files_stop_the_sync(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    before = points(store)
    for rel in ("guides/pump.md", "guides/valve.md", "salaries.md"):
        (corpus / rel).write_bytes(b"\xff\xfe\x80")
    with pytest.raises(SyncStopped, match="3 of 7 corpus files cannot be read"):
        sync(store, embedder, corpus, settings)
    assert points(store) == before


def test_missing_or_empty_corpus_is_an_error(store, embedder, tmp_path, settings):
    from retrieval.corpus import CorpusError

    with pytest.raises(CorpusError, match="does not exist"):
        sync(store, embedder, tmp_path / "nope", settings)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no documents"):
        sync(store, embedder, tmp_path / "empty", settings)


def test_settings_change_reindexes_everything(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    wider = IndexSettings(EmbeddingConfig(model=MODEL), ChunkingConfig(size=96, overlap=8, min_size=8))
    report = sync(store, embedder, corpus, wider)
    assert report.updated == 9 and report.unchanged == 0
    assert sync(store, embedder, corpus, wider).embeddings_computed == 0


def test_rebuild_switches_alias_only_when_complete(store, embedder, corpus, settings):
    sync(store, embedder, corpus, settings)
    (corpus / "guides/valve.md").write_bytes(b"")  # bad now: its last good version must survive the rebuild
    store.create_version(384)  # a rebuild that died half-way earlier
    seen = []
    original = store.upsert

    def spying_upsert(collection, *args, **kw):
        seen.append(store.current())  # searches still go to the old version while the new one fills
        return original(collection, *args, **kw)

    store.upsert = spying_upsert
    report = sync(store, embedder, corpus, settings, rebuild=True)
    assert set(seen) == {"chunks_v1"}
    assert report.rebuilt and report.collection == "chunks_v2" == store.current()
    assert store.versions() == ["chunks_v2"], "the old version and the half-built one are dropped"
    assert report.added == 8 and "guides/valve.md" in points(store)
    assert search(store, embedder, "How fast does the V10 valve close?", k=1)[0].doc_id == "guides/valve.md"
