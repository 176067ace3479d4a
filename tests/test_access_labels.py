"""Access labels fail closed: a label that cannot be read with certainty never makes a document public."""

import dataclasses

import pytest
from conftest import SAMPLE_CORPUS, write
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from contracts.settings import ChecksConfig
from flows.config import ConfigError, load_config
from flows.wiring import index_settings
from retrieval.access_labels import looks_like_access
from retrieval.corpus import scan_corpus
from retrieval.documents import LoadError, parse_file, parse_jsonl, read_sidecar
from retrieval.search import search
from retrieval.sync import IndexSettings, SyncStopped, load_file, sync_corpus

PUBLIC = ("public",)
SECRET = "The Kestrel bonus is EUR 999."
QUESTION = "What is the Kestrel bonus?"

UNCLOSED_MD = "---\ntitle: No closing fence\naccess: [hr]\n\n# Never closed\n\n" + SECRET + "\n"
CAPITAL_MD = "---\ntitle: Kestrel bonus\nAccess: [hr]\n---\n# Kestrel bonus\n\n" + SECRET + "\n"
PLAIN_MD = "# Kestrel bonus\n\n" + SECRET + "\n"
META_HTML = f'<html><head>\n<meta name="ACCESS" content="hr">\n</head><body><h1>Kestrel bonus</h1><p>{SECRET}</p></body></html>'

# finding -> (the document, its files, what the reason must name, whether warn mode can index it)
FINDINGS = {
    "unclosed front matter": ("unclosed.md", {"unclosed.md": UNCLOSED_MD}, "front matter opened at line 1 is never closed", False),
    "capital Access key": ("capital.md", {"capital.md": CAPITAL_MD}, "line 3: key 'Access' looks like 'access'", True),
    "sidecar typo acess": (
        "bonus.md",
        {"bonus.md": PLAIN_MD, "bonus.md.meta.yaml": "acess: [hr]\n"},
        "sidecar bonus.md.meta.yaml line 1: key 'acess' looks like 'access'",
        True,
    ),
    "html meta ACCESS": ("bonus.html", {"bonus.html": META_HTML}, 'line 2: <meta name="ACCESS"> looks like <meta name="access">', True),
}

PUBLIC_DOCS = {
    "falcon.md": "# Falcon bonus\n\nThe Falcon team bonus is paid every March.\n",
    "pump.md": "# Pump P200\n\nThe P200 pump moves 42 litres per minute at 3.5 bar.\n",
    "valve.md": "# Valve V10\n\nThe V10 valve closes in 1.2 seconds.\n",
    "holidays.md": "# Holidays\n\nThe office is closed between Christmas and New Year.\n",
}


def make_corpus(root, files):
    for rel, content in {**PUBLIC_DOCS, **files}.items():
        write(root, rel, content)
    return root


def kestrel_hits(store, embedder, groups):
    return [h for h in search(store, embedder, QUESTION, k=10, groups=groups) if "Kestrel" in h.text]


# --- each finding of the issue, end to end ------------------------------------------------


@pytest.mark.parametrize("finding", FINDINGS)
def test_error_mode_skips_the_file_naming_the_line(store, embedder, settings, tmp_path, finding):
    source, files, reason, _ = FINDINGS[finding]
    corpus = make_corpus(tmp_path / "corpus", files)
    report = sync_corpus(store, embedder, corpus, settings)  # checks.unknown_metadata defaults to error
    assert [s.source for s in report.skipped] == [source]
    assert reason in report.skipped[0].reason
    assert report.warnings == []
    assert kestrel_hits(store, embedder, PUBLIC) == []
    assert kestrel_hits(store, embedder, ("public", "hr")) == [], "a skipped file is not indexed for anyone"


@pytest.mark.parametrize("finding", FINDINGS)
def test_warn_mode_indexes_with_the_restrictive_reading(store, embedder, settings, tmp_path, finding):
    source, files, reason, indexable = FINDINGS[finding]
    corpus = make_corpus(tmp_path / "corpus", files)
    report = sync_corpus(store, embedder, corpus, dataclasses.replace(settings, checks=ChecksConfig(unknown_metadata="warn")))
    assert kestrel_hits(store, embedder, PUBLIC) == []
    if not indexable:  # nothing restrictive to apply: skipped in warn mode too
        assert [s.source for s in report.skipped] == [source] and reason in report.skipped[0].reason
        assert report.warnings == []
        return
    assert report.skipped == []
    assert [w.source for w in report.warnings] == [source]
    assert reason in report.warnings[0].message and "indexed with access [hr]" in report.warnings[0].message
    hits = kestrel_hits(store, embedder, ("public", "hr"))
    assert hits and {h.source for h in hits} == {source} and all(h.access == ["hr"] for h in hits)


def test_bad_labels_count_towards_max_skipped_share(store, embedder, settings, tmp_path):
    corpus = tmp_path / "corpus"
    write(corpus, "pump.md", PUBLIC_DOCS["pump.md"])
    write(corpus, "capital.md", CAPITAL_MD)
    with pytest.raises(SyncStopped, match="1 of 2 corpus files cannot be read"):
        sync_corpus(store, embedder, corpus, settings)


def test_error_mode_keeps_the_last_good_version(store, embedder, settings, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", {"bonus.md": CAPITAL_MD.replace("Access", "access")})
    sync_corpus(store, embedder, corpus, settings)
    write(corpus, "bonus.md", CAPITAL_MD.replace("EUR 999", "EUR 1200"))
    report = sync_corpus(store, embedder, corpus, settings)
    assert [s.source for s in report.skipped] == ["bonus.md"] and report.deleted == 0
    assert kestrel_hits(store, embedder, PUBLIC) == []
    assert ["EUR 999" in h.text for h in kestrel_hits(store, embedder, ("hr",))] == [True]


def test_warnings_repeat_until_fixed_without_reembedding(store, embedder, settings, tmp_path):
    warn = dataclasses.replace(settings, checks=ChecksConfig(unknown_metadata="warn"))
    corpus = make_corpus(tmp_path / "corpus", {"capital.md": CAPITAL_MD})
    assert len(sync_corpus(store, embedder, corpus, warn).warnings) == 1
    again = sync_corpus(store, embedder, corpus, warn)
    assert [w.source for w in again.warnings] == ["capital.md"]
    assert again.embeddings_computed == 0 and again.unchanged == 5
    write(corpus, "capital.md", CAPITAL_MD.replace("Access", "access"))
    fixed = sync_corpus(store, embedder, corpus, warn)
    assert fixed.warnings == [] and fixed.embeddings_computed == 0, "same labels, same text: restamped only"
    assert kestrel_hits(store, embedder, PUBLIC) == [] and kestrel_hits(store, embedder, ("hr",))


def test_switching_to_error_reaches_files_indexed_under_warn(store, embedder, settings, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", {"capital.md": CAPITAL_MD})
    sync_corpus(store, embedder, corpus, dataclasses.replace(settings, checks=ChecksConfig(unknown_metadata="warn")))
    report = sync_corpus(store, embedder, corpus, settings)
    assert [s.source for s in report.skipped] == ["capital.md"] and report.warnings == []
    assert report.deleted == 0, "the restrictive version indexed under warn stays"
    assert kestrel_hits(store, embedder, PUBLIC) == []


def test_config_key_and_env_var_reach_the_index_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no raft.yaml here: the model's default
    assert index_settings(load_config(environ={})).checks.unknown_metadata == "error"
    assert index_settings(load_config(environ={"RAFT_CHECKS_UNKNOWN_METADATA": "warn"})).checks.unknown_metadata == "warn"
    with pytest.raises(ConfigError, match="checks.unknown_metadata"):
        load_config(overrides={"checks.unknown_metadata": "ignore"}, environ={})


# --- the reasons, per loader -----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, reason",
    [
        (UNCLOSED_MD, "front matter opened at line 1 is never closed: add a line '---' after it"),
        ("\ufeff\n\n---\naccess: [hr]\n# Body\n", "front matter opened at line 3 is never closed"),
        (CAPITAL_MD, "line 3: key 'Access' looks like 'access'"),
        (CAPITAL_MD.replace("Access", "ACCESS"), "line 3: key 'ACCESS' looks like 'access'"),
        (CAPITAL_MD.replace("Access", "acces"), "line 3: key 'acces' looks like 'access'"),
        (CAPITAL_MD.replace("Access", "access_groups"), "line 3: key 'access_groups' looks like 'access'"),
        (CAPITAL_MD.replace("Access", "groups"), "line 3: key 'groups' looks like 'access'"),
        (CAPITAL_MD.replace("Access: [hr]", "access: [hr"), "line 3: front matter is not valid YAML"),
        ("---\n- access\n- hr\n---\n# Body\n", "line 2: front matter must be a YAML mapping"),
        (CAPITAL_MD.replace("Access: [hr]", "access: []"), "line 3: access labels under 'access' must be a list of group names"),
        (CAPITAL_MD.replace("Access: [hr]", "access: ''"), "line 3: access labels under 'access' must be a list"),
        (CAPITAL_MD.replace("Access: [hr]", "access:"), "line 3: access labels under 'access' must be a list"),
        (CAPITAL_MD.replace("Access: [hr]", "access: [hr, 7]"), "line 3: access labels under 'access' must be a list"),
        (CAPITAL_MD.replace("Access: [hr]", "access: [hr]\naccess: [public]"), "access labels disagree: line 3 'access' gives [hr], line 4"),
        (CAPITAL_MD.replace("Access: [hr]", "security:\n  access: [hr]"), "line 3: key 'security.access' looks like access labels nested"),
        (CAPITAL_MD.replace("Access: [hr]", "#access: [hr]"), "line 3: '#access: [hr]' reads like access labels but front matter does not"),
        ("title: Kestrel\naccess: [hr]\n\n# Body\n" + SECRET, "line 2: 'access: [hr]' reads like access labels but is part of the text"),
        ("---\ntitle: K\n---\naccess: [hr]\n---\n# Body\n" + SECRET, "line 4: 'access: [hr]' reads like access labels but is part of the text"),
        ("title: K\nAccess:\n  - hr\n\n# Body\n" + SECRET, "line 2: 'Access:' reads like access labels but is part of the text"),
    ],
)
def test_markdown_reasons_name_the_line(raw, reason):
    with pytest.raises(LoadError) as error:
        parse_file(raw.encode(), "bonus.md", {}, PUBLIC)
    assert reason in str(error.value)


def test_text_file_label_line_and_crlf():
    with pytest.raises(LoadError, match=r"line 2: 'Access: hr' reads like access labels"):
        parse_file(b"Kestrel bonus\r\nAccess: hr\r\n" + SECRET.encode(), "bonus.txt", {}, PUBLIC)


@pytest.mark.parametrize(
    "meta, reason",
    [
        ('<meta name="Access" content="hr">', '<meta name="Access"> looks like'),
        ("<META NAME=access CONTENT=hr>", None),  # attribute names and quoting are free in HTML
        ('<meta property="access" content="hr">', '<meta property="access"> looks like'),
        ('<meta name="acess" content="hr">', '<meta name="acess"> looks like'),
        ('<!-- <meta name="Access" content="hr"> -->', '<meta name="Access"> looks like'),
        ('<meta name="access">', "access labels under 'access' must be a list"),
        ('<meta name="access" content="">', "access labels under 'access' must be a list"),
        ('<meta name="access" content="hr">\n<meta name="access" content="finance">', "access labels disagree"),
    ],
)
def test_html_meta_in_any_form(meta, reason):
    raw = f"<html><head><title>x</title>\n{meta}</head><body><p>{SECRET}</p></body></html>".encode()
    if reason is None:
        assert parse_file(raw, "b.html", {}, PUBLIC)[0].access == ("hr",)
        return
    with pytest.raises(LoadError) as error:
        parse_file(raw, "b.html", {}, PUBLIC)
    assert "line 2" in str(error.value) and reason in str(error.value)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"acess: [hr]\n", "sidecar bonus.md.meta.yaml line 1: key 'acess' looks like 'access'"),
        (b"title: x\naccess: [hr\n", "sidecar bonus.md.meta.yaml line 2: sidecar is not valid YAML"),
        (b"- hr\n", "sidecar bonus.md.meta.yaml line 1: sidecar must be a YAML mapping"),
        (b"title: caf\xe9\n", "sidecar bonus.md.meta.yaml: invalid UTF-8 at byte 10 (line 1)"),
        (b"access: []\n", "sidecar bonus.md.meta.yaml line 1: access labels under 'access' must be a list"),
        (None, "sidecar bonus.md.meta.yaml is unreadable"),
        (b"", "sidecar bonus.md.meta.yaml holds no fields"),  # one being written, or cut short: never "no labels"
        (b"\n  \n# access: [hr]\n", "sidecar bonus.md.meta.yaml holds no fields"),
    ],
)
def test_unreadable_sidecar_names_itself_and_the_line(tmp_path, content, reason):
    doc = write(tmp_path, "bonus.md", PLAIN_MD)
    sidecar = tmp_path / "bonus.md.meta.yaml"
    if content is None:
        sidecar.mkdir()  # exists, but cannot be read as a file
    else:
        sidecar.write_bytes(content)
    with pytest.raises(LoadError) as error:
        parse_file(doc.read_bytes(), "bonus.md", read_sidecar(doc), PUBLIC)
    assert reason in str(error.value)


def test_sidecar_access_still_wins_over_front_matter(tmp_path):
    doc = write(tmp_path, "bonus.md", CAPITAL_MD.replace("Access: [hr]", "access: [public]"))
    write(tmp_path, "bonus.md.meta.yaml", "access: [hr]\n")
    assert parse_file(doc.read_bytes(), "bonus.md", read_sidecar(doc), PUBLIC)[0].access == ("hr",)


def test_warn_mode_reads_look_alikes_but_not_conflicts_or_unreadable_values():
    [doc] = parse_file(CAPITAL_MD.encode(), "bonus.md", {}, PUBLIC, "warn")
    assert doc.access == ("hr",) and doc.warnings[0].startswith("line 3: key 'Access' looks like 'access'")
    both = CAPITAL_MD.replace("Access: [hr]", "access: [hr]\nAccess: [hr]")
    assert parse_file(both.encode(), "bonus.md", {}, PUBLIC, "warn")[0].access == ("hr",)
    with pytest.raises(LoadError, match="access labels disagree: line 3 'access' gives \\[hr\\], line 4 'Access' gives \\[public\\]"):
        parse_file(CAPITAL_MD.replace("Access: [hr]", "access: [hr]\nAccess: [public]").encode(), "bonus.md", {}, PUBLIC, "warn")
    with pytest.raises(LoadError, match="line 3: access labels under 'Access' must be a list"):
        parse_file(CAPITAL_MD.replace("[hr]", "").encode(), "bonus.md", {}, PUBLIC, "warn")


def test_jsonl_look_alike_field_and_repeated_key():
    lines = [
        '{"id": "k1", "text": "Kestrel bonus", "Access": ["hr"]}',
        '{"id": "k2", "text": "Kestrel bonus again", "access": ["hr"], "access": ["public"]}',
        '{"id": "k3", "text": "Falcon bonus", "access": null}',
    ]
    raw = ("\n".join(lines) + "\n").encode()
    docs, problems = parse_jsonl(raw, "kb.jsonl", PUBLIC)
    assert docs == []
    starts = ["key 'Access' looks like 'access'", "access labels disagree: 'access' gives [hr], 'access' gives [public]",
              "access labels under 'access' must be a list of group names"]
    assert [n for n, _ in problems] == [1, 2, 3] and all(m.startswith(s) for (_, m), s in zip(problems, starts))
    docs, problems = parse_jsonl(raw, "kb.jsonl", PUBLIC, "warn")
    assert [(d.doc_id, d.access) for d in docs] == [("k1", ("hr",))] and docs[0].warnings[0].startswith("line 1: key 'Access'")
    assert [n for n, _ in problems] == [2, 3]


# --- what must stay as it was ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "---\nTitle: Gate access\nowner: facilities\n---\n# Gate\n\nAccess: via the north gate after 7:00.\n",
        "# Gate\n\n**Access:**\n- via the north gate\n- badge readers on both doors\n",
        "# Labels\n\nTo restrict a document, add this front matter:\n\n```yaml\n---\naccess: [hr]\n---\n```\n",
        "# Notes\n\nThe accessories list is in the appendix.\naccessibility: WCAG AA\n",
        "---\n---\n# Empty front matter\n\nBody.\n",
    ],
)
def test_ordinary_documents_stay_public(raw):
    [doc] = parse_file(raw.encode(), "a.md", {}, PUBLIC)
    assert doc.access == PUBLIC and doc.warnings == ()


def test_sample_corpus_has_no_label_findings():
    settings = IndexSettings()
    files, skipped = scan_corpus(SAMPLE_CORPUS, list(settings.corpus.include))
    assert skipped == [] and len(files) > 40
    for file in files:
        docs, bad = load_file(file, settings)
        assert bad == [] and all(d.warnings == () for d in docs), file.source


@pytest.mark.parametrize("key", ["access", "Access", "ACCESS", "acess", "acces", "accesss", "acecss", "acsess", "Access-Groups", "acl", "permissions"])
def test_access_look_alikes(key):
    assert looks_like_access(key)


@pytest.mark.parametrize("key", ["title", "owner", "accessibility", "accessories", "last_accessed", "address", "tags", "audience"])
def test_not_access_look_alikes(key):
    assert not looks_like_access(key)


# --- property: no mangled restricted document is ever public ---------------------------------

TOKEN = "zq-kestrel-7731"
BODY = ["", "# Kestrel bonus", "", f"The Kestrel bonus is EUR 999 ({TOKEN})."]


@st.composite
def access_keys(draw):
    """`access` with up to two typos, in any case, with separators or quotes around it."""
    key = list("access")
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(key) - 1))
        edit = draw(st.sampled_from(["delete", "double", "swap", "replace", "insert"]))
        letter = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz"))
        if edit == "delete" and len(key) > 1:
            del key[i]
        elif edit == "double":
            key.insert(i, key[i])
        elif edit == "swap" and i + 1 < len(key):
            key[i], key[i + 1] = key[i + 1], key[i]
        elif edit == "replace":
            key[i] = letter
        elif edit == "insert":
            key.insert(i, letter)
    key = "".join(c.upper() if draw(st.booleans()) else c for c in key) if draw(st.booleans()) else "".join(key)
    around = draw(st.sampled_from(["{}", "{}", "{}", "{}_", "_{}", "'{}'", '"{}"', "{} ", "ac cess" if key == "access" else "{}"]))
    return around.format(key)


VALUES = ["[hr]", " [hr]", "[ hr ]", " hr", " 'hr'", ' "hr"', " [hr", " hr]", "\n  - hr", "\n- hr", " [hr,]", "\t[hr]", "[hr]  ", " (hr)"]
FENCES = ["--", "----", "- - -", "***", "+++", "...", "--- ", " ---", "---\t", "\ufeff---", "\u2014"]


@st.composite
def mangled_restricted_markdown(draw):
    """A restricted markdown document whose front matter is damaged the ways people and tools damage it.

    Only the lines before the text are mangled and truncation cuts from the end, so the access
    line stays, in some form, before the secret: any text holding the secret also holds the
    intent to restrict it.
    """
    label = draw(access_keys()) + draw(st.sampled_from([":", " :", "\t:"])) + draw(st.sampled_from(VALUES))
    head = ["---", "title: Kestrel bonus", label, "---"] if draw(st.booleans()) else ["---", "title: Kestrel bonus", "---", label]
    for _ in range(draw(st.integers(0, 5))):
        op = draw(st.sampled_from(["drop", "double", "fence", "indent", "blank", "swap", "trailing", "bom", "junk"]))
        i = draw(st.integers(0, len(head) - 1))
        fences = [j for j, line in enumerate(head) if line == "---"]
        if op in ("drop", "double", "fence") and fences:
            f = draw(st.sampled_from(fences))
            if op == "drop":
                del head[f]
            elif op == "double":
                head.insert(f, "---")
            else:
                head[f] = draw(st.sampled_from(FENCES))
        elif op == "indent":
            head[i] = draw(st.sampled_from([" ", "  ", "\t", "    "])) + head[i]
        elif op == "blank":
            head.insert(i, draw(st.sampled_from(["", " ", "\t"])))
        elif op == "swap" and i + 1 < len(head):
            head[i], head[i + 1] = head[i + 1], head[i]
        elif op == "trailing":
            head[i] += draw(st.sampled_from([" ", "\t", "  "]))
        elif op == "bom":
            head[i] = "\ufeff" + head[i]
        elif op == "junk":
            head.insert(i, draw(st.sampled_from(["note: see wiki", "owner: hr-team", "# comment", "x"])))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = draw(st.sampled_from(["", "\ufeff", "\n\n", " \n", "\ufeff\n"])) + newline.join(head + BODY)
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    return text


@hypothesis_settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=mangled_restricted_markdown(), mode=st.sampled_from(["error", "warn"]))
def test_no_mangled_restricted_document_is_public(text, mode):
    if TOKEN not in text:
        return  # the secret was truncated away: nothing left to protect
    try:
        [doc] = parse_file(text.encode(), "bonus.md", {}, PUBLIC, mode)
    except LoadError:
        return
    assert "public" not in doc.access, f"public: {text!r}"
