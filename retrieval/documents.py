"""Documents and the loaders that turn corpus files into them.

A loader gets a file's bytes and returns plain text plus the sections (heading path and
character span) found in it. Everything downstream (chunk offsets, quotes in training
examples, citations at serve time) refers to character positions in `Document.text`, so
a loader's text is the one canonical form of its document.

Supported: .md/.markdown (YAML front matter), .txt, .html/.htm (boilerplate stripped),
.pdf (text extraction), .jsonl (one document per line with `id`, `text`, optional `title`,
`access` and other metadata). Access labels come from front matter, an HTML
`<meta name="access">`, a jsonl `access` field, or a sidecar `<file>.meta.yaml`
(`access: [groups]`, optional `title`); without any, the corpus default (public).

An HTML page that only forwards the browser elsewhere (a `<meta http-equiv="refresh">` with a
URL and next to no text: rustdoc writes one for every re-exported item) is `NotADocument`, and
so is a site's not-found page, `404.html`.

Labels fail closed: the rules (what is certain, look-alikes, the "error" and "warn" modes
of `unknown_metadata`) are in retrieval/access_labels.py, which reads the labels from the
metadata fields the loaders here find.
"""

from __future__ import annotations

import codecs
import hashlib
import html
import io
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# LoadError is defined in access_labels (the label code raises it too, and that module must not
# import this one); it is re-exported here, where the loaders' callers import it from.
from retrieval.access_labels import (
    LoadError, MetaField, UnknownMetadata, label_lines, line_number, looks_like_access, metadata_fields, resolve_access, text_lines, with_sidecar,
    yaml_fields,
)

SIDECAR_SUFFIX = ".meta.yaml"


class NotADocument(LoadError):
    """A well-formed file with nothing to index (a redirect page): left out and reported, not a bad file."""


@dataclass(frozen=True)
class Section:
    """A span of a document's text under one heading path (outermost heading first)."""

    start: int
    end: int
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Document:
    doc_id: str  # path relative to the corpus root, or a jsonl record's id
    source: str  # path of the file relative to the corpus root (posix)
    title: str
    text: str
    sections: tuple[Section, ...]
    access: tuple[str, ...]
    modified: str = ""  # ISO 8601, UTC
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # labels read the most restrictive way (unknown_metadata="warn"); not stored

    @property
    def content_hash(self) -> str:
        """Hash of the text alone: equal for exact duplicate documents."""
        return sha256(self.text.encode())

    @property
    def version_hash(self) -> str:
        """Hash of everything stored for the document: a change here means re-index it."""
        blob = json.dumps([self.title, self.text, sorted(self.access), self.metadata], sort_keys=True, default=str)
        return sha256(blob.encode())


def sha256(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def read_sidecar(path: Path) -> list[MetaField]:
    """The fields of the `<file>.meta.yaml` beside `path`; none when there is no sidecar.

    A sidecar that exists but cannot be read is a LoadError naming it (and the line): it
    holds labels, so it must never read as "no labels".
    """
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not os.path.lexists(sidecar):
        return []
    where = f"sidecar {sidecar.name}"
    try:
        raw = sidecar.read_bytes()
    except OSError as e:
        raise LoadError(f"{where} is unreadable ({e.strerror or e}): check its permissions") from None
    try:
        text = decode_text(raw)
    except LoadError as e:
        raise LoadError(f"{where}: {e}") from None
    return yaml_fields(text, 1, f"{where} line", "sidecar")


def parse_file(
    raw: bytes,
    source: str,
    sidecar: Mapping[str, Any] | list[MetaField],
    default_access: tuple[str, ...],
    unknown_metadata: UnknownMetadata = "error",
) -> list[Document]:
    """Parse one corpus file (its bytes) into documents. Raises LoadError for a bad file.

    `sidecar` is what `read_sidecar` returned, or a plain mapping. A .jsonl file holds many
    documents and is read with `parse_jsonl` instead.
    """
    suffix = Path(source).suffix.lower()
    decoding = None  # a warning on how an HTML page's bytes were read
    if suffix == ".pdf":
        text, sections, title, fields = _parse_pdf(raw)
    elif suffix in (".html", ".htm"):
        if Path(source).stem == "404":
            # Static hosts serve it for any missing page ("Page Not Found"): every site generator writes one.
            raise NotADocument("a site's not-found page (404): no content to index")
        content, decoding = decode_html(raw)
        text, sections, title, fields = _parse_html(content)
        if len(text) < _REDIRECT_TEXT and (target := _redirect(content)):
            raise NotADocument(f"a redirect to {target} (<meta http-equiv=\"refresh\">): no text of its own to index")
    elif suffix in (".md", ".markdown"):
        text, sections, title, fields = _parse_markdown(decode_text(raw))
    else:
        text, sections, title, fields = _parse_plain(decode_text(raw))
    if not text.strip():
        raise LoadError("empty document: no text found" + (" (a scanned PDF? run OCR on it first)" if suffix == ".pdf" else ""))
    if isinstance(sidecar, Mapping):
        sidecar = metadata_fields((key, value, "sidecar") for key, value in sidecar.items())
    fields = with_sidecar(fields, sidecar)
    access, warnings = resolve_access([f for f in fields if f.is_label], default_access, unknown_metadata)
    meta = {f.key: f.value for f in fields if not f.is_label}
    title = str(meta.pop("title", None) or title or Path(source).stem)
    warnings = [decoding, *warnings] if decoding else warnings
    return [Document(source, source, title, text, tuple(sections), access, metadata=_plain(meta), warnings=tuple(warnings))]


def parse_jsonl(
    raw: bytes, source: str, default_access: tuple[str, ...], unknown_metadata: UnknownMetadata = "error"
) -> tuple[list[Document], list[tuple[int, str]]]:
    """Documents of a .jsonl file, and (line number, message naming the field) per bad line.

    A record's labels follow the same rules as a file's (see retrieval.access_labels); its
    warnings start with its line number.
    """
    content = decode_text(raw)
    docs, problems = [], []
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=_JsonObject)
        except json.JSONDecodeError as e:
            problems.append((lineno, f"invalid JSON ({e.msg} at column {e.colno})"))
            continue
        if not isinstance(record, dict):
            problems.append((lineno, f"expected a JSON object, got {type(record).__name__}"))
            continue
        missing = [f for f in ("id", "text") if f not in record or record[f] in (None, "")]
        if missing:
            problems.append((lineno, f"missing field {', '.join(repr(m) for m in missing)}"))
            continue
        if not isinstance(record["text"], str):
            problems.append((lineno, "field 'text' must be a string"))
            continue
        fields = metadata_fields((key, value, "") for key, value in record.pairs if key not in ("id", "text", "title"))
        try:
            access, warnings = resolve_access([f for f in fields if f.is_label], default_access, unknown_metadata)
        except LoadError as e:
            problems.append((lineno, str(e)))
            continue
        meta = {f.key: f.value for f in fields if not f.is_label}
        text = record["text"]
        doc_id = str(record["id"])
        title = str(record.get("title") or doc_id)
        docs.append(Document(doc_id, source, title, text, (Section(0, len(text)),), access, metadata=_plain(meta),
                             warnings=tuple(f"line {lineno}: {w}" for w in warnings)))
    return docs, problems


class _JsonObject(dict):
    """A JSON object that keeps every key/value pair: json.loads lets a repeated key win silently."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def decode_text(raw: bytes) -> str:
    """Bytes of a text file as str; LoadError for binary content or invalid UTF-8."""
    if b"\x00" in raw[:8192]:
        raise LoadError("binary content (NUL bytes) in a text file: remove it or give it the right extension")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LoadError(f"invalid UTF-8 at {_position(raw, e)}: re-save the file as UTF-8") from None


# Where an HTML page names its character encoding: an XML declaration, <meta charset>, or
# <meta http-equiv="Content-Type" content="text/html; charset=...">, in the head (browsers look at
# its first bytes; 8 KiB leaves room for a long head before it).
_XML_ENCODING = re.compile(rb"""^<\?xml[^>]*?\bencoding\s*=\s*["']([-\w.:]+)""")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_META_CHARSET = re.compile(rb"""<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([-\w.:]+)""", re.I)
# As browsers do (WHATWG Encoding): a page labelled Latin-1 or ASCII is read as windows-1252.
_AS_BROWSERS_READ = {"iso8859-1", "ascii", "cp1252"}


def decode_html(raw: bytes) -> tuple[str, str | None]:
    """An HTML page's bytes as str, and a warning when how they were read is a guess.

    UTF-8 when the bytes are UTF-8 (a page that declares Latin-1 but is UTF-8 is a common slip,
    and Latin-1 text with accents is almost never valid UTF-8); else the encoding the page declares
    (older documentation is often ISO-8859-1, read as windows-1252 as browsers do); a page that
    declares none is read as windows-1252 too, with the warning. LoadError for an unknown encoding,
    or bytes invalid in the declared one.
    """
    head = raw[:8192]
    if b"\x00" in head:
        return decode_text(raw), None  # binary: its LoadError
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        bad = _position(raw, e)
    found = _XML_ENCODING.match(head.lstrip()) or _META_CHARSET.search(head)
    if not found:
        return _as_windows_1252(raw), (f"not UTF-8 at {bad} and no encoding declared: read as windows-1252, as browsers do; "
                                       "declare the page's charset or re-save it as UTF-8")
    label = found.group(1).decode("ascii")
    try:
        name = codecs.lookup(label).name
    except LookupError:
        raise LoadError(f"the page declares the unknown character encoding {label!r}: correct it or re-save the page as UTF-8") from None
    if name in _AS_BROWSERS_READ:
        return _as_windows_1252(raw), None
    if not name.startswith("utf"):  # UTF-16 or -32 cannot be declared in ASCII inside the page itself (WHATWG: UTF-8)
        try:
            return raw.decode(name), None
        except UnicodeDecodeError as e:
            bad = _position(raw, e)
    raise LoadError(f"invalid {label} at {bad}, the encoding the page declares: correct the declaration or re-save the page as UTF-8")


def _position(raw: bytes, error: UnicodeDecodeError) -> str:
    line = raw[: error.start].count(b"\n") + 1
    return f"byte {error.start} (line {line})"


def _as_windows_1252(raw: bytes) -> str:
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:  # the five bytes windows-1252 leaves undefined: ISO-8859-1 maps every byte
        return raw.decode("latin-1")


def _plain(meta: dict[str, Any]) -> dict[str, Any]:
    """Metadata as JSON-safe values (YAML front matter may hold dates)."""
    return json.loads(json.dumps(meta, default=str))


# --- Markdown and plain text ---------------------------------------------------------------

_FENCE = re.compile(r"[\s\ufeff]*-{3,}[\s\ufeff]*")
_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")


def _parse_markdown(content: str) -> tuple[str, list[Section], str, list[MetaField]]:
    fields: list[MetaField] = []
    body_line = 1
    front = _front_matter(content)
    if front:
        yaml_text, first_line, body_start = front
        fields = yaml_fields(yaml_text, first_line, "line", "front matter")
        body_line = line_number(content, body_start)
        content = content[body_start:]
    sections, title = _markdown_sections(content)
    return content, sections, title, fields + label_lines(content, body_line, "line", "is part of the text", code_fences=True)


def _front_matter(content: str) -> tuple[str, int, int] | None:
    """(YAML text, line number of its first line, offset where the body starts), or None.

    Front matter opens when the first line that is not blank (BOMs count as blank) is a
    fence of three or more dashes, and closes at the next such line; one that never closes
    is a LoadError, as its labels would otherwise become text of a public document.
    """
    lines = text_lines(content)
    first = next((i for i, (_, line, _) in enumerate(lines) if line.replace("\ufeff", "").strip()), None)
    if first is None or not _FENCE.fullmatch(lines[first][1]):
        return None
    close = next((i for i in range(first + 1, len(lines)) if _FENCE.fullmatch(lines[i][1])), None)
    if close is None:
        raise LoadError(f"front matter opened at line {first + 1} is never closed: add a line '---' after it "
                        "(to start the text with a horizontal rule, use '***')")
    return content[lines[first][2] : lines[close][0]], first + 2, lines[close][2]


def _markdown_sections(text: str) -> tuple[list[Section], str]:
    """Split at ATX headings (outside code fences); each section starts at its heading line."""
    starts: list[tuple[int, tuple[str, ...]]] = [(0, ())]
    path: list[tuple[int, str]] = []
    title, in_fence, pos = "", False, 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
        elif not in_fence and (m := _MD_HEADING.match(stripped)):
            level, heading = len(m.group(1)), m.group(2).strip()
            title = title or (heading if level == 1 else "")
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, heading)]
            starts.append((pos, tuple(h for _, h in path)))
        pos += len(line)
    return _sections_from_starts(starts, len(text)), title


def _sections_from_starts(starts: list[tuple[int, tuple[str, ...]]], length: int) -> list[Section]:
    bounds = [s for s, _ in starts[1:]] + [length]
    return [Section(start, end, heads) for (start, heads), end in zip(starts, bounds) if end > start]


def _parse_plain(content: str) -> tuple[str, list[Section], str, list[MetaField]]:
    title = next((line.strip() for line in content.splitlines() if line.strip()), "")
    return content, [Section(0, len(content))], title, label_lines(content, 1, "line", "is part of the text")


# --- HTML --------------------------------------------------------------------------------

_DROP_TAGS = ["script", "style", "noscript", "nav", "form", "iframe", "svg", "template", "button"]
# ARIA landmarks that mark the same chrome as <nav>, <header>, <footer> and <aside> on sites built
# from <div>s (Node.js's API docs: the site menu and the page's table of contents).
# A footnote's link back to where it is cited ("↩", "↩2") is navigation too: DPUB-ARIA's role, or
# the class GitHub's Markdown, mdBook, Python-Markdown and Pandoc give it.
_CHROME_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "doc-backlink"}
# Widgets' classes, as parts of a class name ("sphinxsidebar", "md-sidebar__inner"); Sphinx's
# :menuselection: ("File ‣ Save") and AsciiDoc's sidebar blocks ("sidebarblock", a box of the
# page's text) are text.
_CHROME_CLASS = re.compile(
    r"cookie|consent|banner|breadcrumb|sidebar(?!block)|navbar|menu(?!selection)|advert|share|skip-link|skip-to|backref|footnote-back"
    r"|lineno"  # the line-number gutter of a code block (Pygments: "linenos", "linenodiv")
    r"|table-of-contents|tableofcontents|edit-this-page"  # Docusaurus' page contents and edit link
    r"|\btsd-index-group\b"  # TypeDoc's index of a page's members, a table of contents
    r"|\bboring\b"  # mdBook's hidden lines of a Rust example ("fn main() {"), shown only on request
    r"|viewcode-link|viewcode-back|\bhideme\b"  # Sphinx's "[source]" and "[docs]" links; rustdoc's "Expand description" toggle
    r"|\bpage-nav\b|\bpagination(-links|-nav)?\b"  # the links to the previous and next page (Hugo's Doks theme, Starlight)
    r"|\bsr-only\b|\bvisually-hidden\b|\bscreen-reader-text\b"  # text for screen readers only: "Section titled “Install”"
    r"|\bfooter\b", re.I)  # a footer by class ("Generated by Doxygen 1.9.4", Sphinx's "Created using Sphinx")
# An id is most often a heading's anchor, made of its words ("shared-cache", "cookies"): it marks
# chrome only as a whole word ("sidebar", "main-menu", "cookie-banner"), and never on a heading or
# a section (Sphinx's <section id="menu"> is the section "Menu").
_CHROME_ID_WORDS = {"cookie", "consent", "banner", "breadcrumb", "breadcrumbs", "sidebar", "navbar", "menu", "advert", "share", "toc",
                    "titlearea",  # Doxygen's project name and logo, atop every page
                    "footer"}  # Asciidoctor's "Last updated 2026-12-06 02:00:33 UTC"
# A footnote's number in the text runs into the word before it ("rotate daily1."): Goldmark (Hugo),
# Python-Markdown and Pandoc ("footnote-ref"), mdBook ("footnote-reference"), DPUB-ARIA's role,
# GitHub's attribute, or a superscript that is only an in-page link with a number. The note itself
# stays, at the end of the page.
_FOOTNOTE_MARK_CLASS = re.compile(r"\bfootnote-ref(erence)?\b", re.I)
_FOOTNOTE_NUMBER = re.compile(r"\d{1,3}")
_ID_WORD = re.compile(r"[^-_.\s]+")
_READ_MORE = re.compile(r"read more\W*", re.I)
# A link to edit the page's source ("Edit page" at the foot of Starlight's pages, "Edit this page on GitHub").
_EDIT_LINK = re.compile(r"(suggest an? )?edits? (to )?(this )?page( on \w+)?\W*|edit on \w+\W*|improve this (page|doc)\W*", re.I)
_BLOCKS = {"p", "div", "section", "article", "main", "ul", "ol", "li", "table", "tr", "pre", "blockquote",
           "dl", "dt", "dd", "figure", "figcaption", "caption", "hr", "thead", "tbody", "tfoot", "address",
           "label",  # outside forms (dropped), a label names a tab of content tabs (MkDocs Material, Docusaurus)
           "details", "summary"}  # a collapsible block and its title line
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
# A badge beside a heading's text is a word of its own: TypeDoc's "Optional maxWorkers", VitePress'
# and Docusaurus' badges ("beta").
_BADGE = re.compile(r"badge|^tsd-tag$", re.I)


def _parse_html(content: str) -> tuple[str, list[Section], str, list[MetaField]]:
    from bs4 import BeautifulSoup, Comment

    # An XHTML page's XML declaration means nothing to an HTML parser (its encoding is applied
    # already), and BeautifulSoup warns on every such page that it may be XML.
    soup = BeautifulSoup(_XML_DECLARATION.sub("", content, count=1), "lxml")
    page_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    _label_tab_panels(soup)  # before the labels' <nav> and <button>s go
    _drop_source_views(soup)
    for node in soup(_DROP_TAGS):
        node.decompose()
    for node in soup.find_all(string=lambda s: isinstance(s, Comment)):
        node.extract()
    for node in soup.find_all(True):
        if not node.decomposed and _is_chrome(node):
            node.decompose()
    for since in soup.select("span.since[title]"):
        since.string = since["title"]  # rustdoc shows "1.7.0" beside an item, and what it means on hover: "Stable since Rust version 1.7.0"
    root = soup.find("main") or soup.find(attrs={"role": "main"}) or soup.find("article") or soup.body or soup
    writer = _HtmlText()
    writer.walk(root)
    text, starts = writer.finish()
    h1 = next((heads[0] for _, heads in starts if heads), "")
    return text, _sections_from_starts([(0, ())] + starts, len(text)), h1 or page_title, _meta_fields(content)


def _is_chrome(node: Any) -> bool:
    """Page chrome: <header>/<footer> outside the article, an <aside> outside the page's main content,
    widgets by class or id, ARIA landmarks of chrome, links to an item's source or to more text, and
    headings' permalinks."""
    if node.name in ("header", "footer") and not node.find_parent(["article", "main"]):
        return True
    # Outside the content an <aside> is a site's sidebar; inside, it is the page's own text: Sphinx's
    # footnotes, topics and sidebars (docutils 0.18 and later), Starlight's notes and tips.
    if node.name == "aside" and not (node.find_parent(["article", "main"]) or node.find_parent(attrs={"role": "main"})):
        return True
    classes = node.get("class") or []
    # Never a heading by class: Docusaurus gives each one "anchorWithStickyNavbar_…".
    if node.name not in ("body", "html", "main", "article", *_HEADINGS) and _CHROME_CLASS.search(" ".join(classes)):
        return True
    if node.name not in ("body", "html", "main", "article", "section", *_HEADINGS) and "section" not in classes:
        if any(word in _CHROME_ID_WORDS for word in _ID_WORD.findall((node.get("id") or "").lower())):
            return True
    role = (node.get("role") or "").strip().lower()
    if role in _CHROME_ROLES and not (role == "doc-backlink" and _FOOTNOTE_NUMBER.fullmatch(node.get_text().strip())):
        return True  # but docutils makes a note's own number ("[1]") its back-link: the note keeps it
    if node.name not in ("a", "sup"):
        return False
    text = node.get_text().strip()
    if _is_footnote_mark(node, text, role, classes):
        return True
    if node.name != "a":
        return False
    if "src" in classes or _READ_MORE.fullmatch(text):
        return True  # rustdoc's "Source" (a link to the code), and "Read more" (the page it leads to is read itself)
    if _EDIT_LINK.fullmatch(text):
        return True
    # A heading's permalink, an in-page link with no letter or digit ("Path #", "Install ¶", an icon
    # font's glyph: Read the Docs' theme writes U+F0C1), or a footnote's unclassed back-link ("↩2").
    if not (node.get("href") or "").startswith("#"):
        return False
    return not any(ch.isalnum() for ch in text) or text.startswith("\u21a9")


def _is_footnote_mark(node: Any, text: str, role: str, classes: list[str]) -> bool:
    """Whether an <a> or <sup> (its `text`, `role` and `classes`) is a footnote's bare number in the text,
    which links to the note (a bracketed "[1]" reads as it is)."""
    if not _FOOTNOTE_NUMBER.fullmatch(text):
        return False
    if role == "doc-noteref" or node.has_attr("data-footnote-ref"):
        return True
    if _FOOTNOTE_MARK_CLASS.search(" ".join(classes)):
        return True
    link = node.find("a") if node.name == "sup" else None
    return link is not None and (link.get("href") or "").startswith("#")


def _label_tab_panels(soup: Any) -> None:
    """Content tabs: each panel opens with its tab's label, as a line. Browsers show the labels in a row
    above the panels, often in a <nav> or as <button>s (dropped), so a panel's text ("sudo dnf install
    …") would lose what it is for ("Red Hat"), or follow all the labels at once. The ARIA pattern
    (Bootstrap, so Hugo's Doks; Docusaurus; Starlight) pairs a tab with its panel by `aria-controls`
    or by order; MkDocs Material lists its labels, then its blocks."""
    groups = []
    for tablist in soup.find_all(attrs={"role": "tablist"}):
        tabs = tablist.find_all(attrs={"role": "tab"})
        if any(_links_away(tab) for tab in tabs):
            continue  # a site's sections as tabs, each a link to its page: no panel here is theirs
        nearby = _panels_near(tablist)
        named = [soup.find(id=tab["aria-controls"].split()[0]) if (tab.get("aria-controls") or "").strip() else None for tab in tabs]
        groups.append([(tab, panel or (nearby[i] if i < len(nearby) else None)) for i, (tab, panel) in enumerate(zip(tabs, named))])
    for tabbed in soup.select("div.tabbed-set"):
        groups.append(list(zip(tabbed.select(".tabbed-labels > label"), tabbed.select(".tabbed-content > .tabbed-block"))))
    for pairs in groups:
        for tab, panel in pairs:
            label = tab.get_text(" ", strip=True)
            if panel is None or not label:
                continue
            line = soup.new_tag("p")
            line.string = label
            panel.insert(0, line)
            tab.decompose()


def _drop_source_views(soup: Any) -> None:
    """pdoc's "View Source": each module, class and function carries its whole source code, which
    browsers show only when asked; read, it repeats every docstring among the code."""
    for toggle in soup.select("input.view-source-toggle-state"):  # the checkbox that shows it: the listing follows
        source = toggle.find_next_sibling("div", class_="pdoc-code")
        if source is not None:
            source.decompose()
    for label in soup.select("label.view-source-button"):
        label.decompose()


def _links_away(tab: Any) -> bool:
    """Whether a tab is, or holds, a link to another page."""
    links = [tab] if tab.name == "a" else tab.find_all("a")
    return any(not (link.get("href") or "#").startswith("#") for link in links)


def _panels_near(tablist: Any) -> list[Any]:
    """The tab panels of a tab list's group, in order: those after it in its parent, else in its
    grandparent (Bootstrap sets the list in a <nav> beside the panels); not the panels of tabs
    nested in one of them."""
    following = tablist.find_all_next(attrs={"role": "tabpanel"})
    for container in (tablist.parent, tablist.parent.parent if tablist.parent else None):
        if container is None:
            continue
        inside = [p for p in following if _outer_panel_of(p, container)]
        if inside:
            return inside
    return []


def _outer_panel_of(panel: Any, container: Any) -> bool:
    """Whether `panel` lies in `container` and in no other tab panel there."""
    for up in panel.parents:
        if up is container:
            return True
        if up.get("role") == "tabpanel":
            return False
    return False


# Read from the raw text, not the parsed tree: a tag in any case, in a comment or mangled
# enough that a parser drops it must still be seen.
_META_TAG = re.compile(r"<meta\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*>?", re.I)
_ATTRIBUTE = re.compile(r"([^\s=\"'/>]+)(?:\s*=\s*(\"[^\"]*\"?|'[^']*'?|[^\s\"'>]+))?")
_META_NAMES = ("name", "property", "itemprop", "http-equiv")


_REFRESH_URL = re.compile(r"""\burl\s*=\s*['"]?([^'"\s]+)""", re.I)
# A redirect page says little besides "Redirecting to …" (rustdoc, mkdocs-redirects); a moved
# page that still holds its content is indexed.
_REDIRECT_TEXT = 300


def _meta_tags(content: str) -> Iterator[tuple[int, dict[str, str]]]:
    """Each <meta> tag of a page's raw text: where it starts, and its attributes."""
    for tag in _META_TAG.finditer(content):
        yield tag.start(), _attributes(tag.group())


def _redirect(content: str) -> str | None:
    """Where a page's `<meta http-equiv="refresh" content="0; url=…">` sends the browser, else None."""
    for _, attributes in _meta_tags(content):
        if attributes.get("http-equiv", "").lower() == "refresh" and (url := _REFRESH_URL.search(attributes.get("content", ""))):
            return url.group(1)
    return None


def _meta_fields(content: str) -> list[MetaField]:
    """A field per <meta> whose name looks like `access`; only `<meta name="access">` is certain."""
    fields = []
    for start, attributes in _meta_tags(content):
        where = f"line {line_number(content, start)}"
        for attribute in _META_NAMES:
            name = attributes.get(attribute)
            if name is None or not looks_like_access(name):
                continue
            if attribute == "name" and name == "access":
                fields.append(MetaField("access", attributes.get("content"), where))
            else:
                doubt = (f"{where}: <meta {attribute}=\"{name}\"> looks like <meta name=\"access\">: write it so "
                         "(lower case), or rename it if it holds no labels")
                fields.append(MetaField(name, attributes.get("content"), where, doubt))
    return fields


def _attributes(tag: str) -> dict[str, str]:
    """A tag's attributes (names in lower case, values unquoted and unescaped); the first of a name wins."""
    found: dict[str, str] = {}
    for name, value in _ATTRIBUTE.findall(tag[len("<meta") :]):
        found.setdefault(name.lower(), html.unescape(value.strip("\"'")))
    return found


def _code_blocks(pre: Any) -> list[Any]:
    """A <pre>'s code blocks: each <code> child apart when it holds nothing else (Node.js's docs put
    an example's CommonJS and ES module versions side by side so), else the <pre> whole."""
    children = [c for c in pre.children if c.get_text().strip()]  # not the whitespace, or a toggle's <input>
    codes = [c for c in children if getattr(c, "name", None) == "code"]
    return codes if len(codes) > 1 and len(codes) == len(children) else [pre]


def _data_row(row: Any) -> bool:
    """Whether a table row holds data, not a page's layout: text in more than one cell (old sites box
    their text in one-cell tables, or indent it with empty cells beside: pydoc), and no cell that
    holds a heading or a table (a page's columns)."""
    cells = row.find_all(["td", "th"], recursive=False) if row is not None else []
    with_text = [cell for cell in cells if cell.get_text().strip()]
    return len(with_text) > 1 and not any(cell.find(["table", *_HEADINGS]) for cell in cells)


def _own_line(block: Any) -> None:
    """Put a block inside a <pre> on a line of its own, as browsers show it (rustdoc's
    "#[non_exhaustive]" above "pub enum ErrorKind {"), adding no line break where one is, on either
    side of its edge."""
    before, after, text = block.previous_sibling, block.next_sibling, block.get_text()
    if before is not None and not (isinstance(before, str) and before.endswith("\n")) and not text.startswith("\n"):
        block.insert_before("\n")
    if after is not None and not (isinstance(after, str) and after.startswith("\n")) and not text.endswith("\n"):
        block.insert_after("\n")


def _in_reading_order(node: Any) -> list[Any]:
    """A node's children, a <section>'s heading first: what a section holds belongs under its
    heading, also what is written before it (rustdoc floats a method's version beside its
    heading, before it in the page: it would end the section above). Its heading is its first,
    when that is a child of its own."""
    children = list(node.children)
    heading = node.find(list(_HEADINGS)) if node.name == "section" else None
    if heading is not None and heading.parent is node:
        at = next(i for i, child in enumerate(children) if child is heading)
        children.insert(0, children.pop(at))
    return children


def _is_page_heading(node: Any) -> bool:
    """Doxygen's page heading ("pool.h File Reference"), a <div> where other generators write an <h1>."""
    return node.name == "div" and "headertitle" in (node.get("class") or [])


# javadoc (JDK 16 and later) writes its summaries as a <div> of <div> cells that CSS lays out in
# rows, and names the column count in a class.
_GRID_COLUMNS = {"two-column-summary": 2, "three-column-summary": 3, "four-column-summary": 4}


def _grid_columns(node: Any) -> int:
    """Cells per row of a grid of <div> cells laid out as a table (javadoc's summaries), else 0."""
    classes = node.get("class") or []
    return next((_GRID_COLUMNS[c] for c in classes if c in _GRID_COLUMNS), 0) if "summary-table" in classes else 0


class _HtmlText:
    """Renders an element tree to text: one line per block, a table row's cells joined by ' | ' on
    one line (the blocks inside a cell too: Sphinx wraps every cell's text in a <p>, Node.js's
    version tables some, and a row split over lines parts a value from what it belongs to). A row
    that lays out a page (`_data_row`) keeps its blocks on lines of their own. A <pre> keeps its
    lines, also in a cell (a code block laid out as a table beside its line numbers)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.length = 0  # characters of text emitted so far, newlines included
        self.current: list[str] = []
        self.heading_starts: list[tuple[int, tuple[str, ...]]] = []
        self.path: list[tuple[int, str]] = []
        self.in_cell = 0  # how many table cells the walk is inside
        self.marker = ""  # a list item's "- ", for its first line of text (also when a <p> in it holds that text)
        self.data_rows: dict[int, bool] = {}  # `_data_row` of each <tr> met, decided once per row

    def walk(self, node: Any) -> None:
        from bs4 import NavigableString, Tag

        for child in _in_reading_order(node):
            if isinstance(child, NavigableString):
                self.current.append(str(child))
            elif isinstance(child, Tag):
                name = child.name
                if name in ("td", "th"):
                    row = child.parent
                    data = self.data_rows.get(id(row))
                    if data is None:
                        data = self.data_rows[id(row)] = _data_row(row)
                    self.cell(child, data)
                elif name == "div" and (columns := _grid_columns(child)):
                    self.grid(child, columns)
                elif name == "table" and "memname" in (child.get("class") or []):
                    self.flush()  # Doxygen lays a function's signature out as a table: it is one line of code
                    self.current.append(child.get_text())
                    self.flush()
                elif self.in_cell and name != "pre" and (name in _BLOCKS or name in _HEADINGS or name == "br"):
                    self.current.append(" ")  # a break within the cell's line
                    self.walk(child)
                    self.current.append(" ")
                elif name in _HEADINGS or _is_page_heading(child):
                    self.flush()
                    for br in child.find_all("br"):
                        br.replace_with(" ")  # a line break or a block parts words; other tags do not ("-h/--help: help")
                    for block in child.find_all(list(_BLOCKS)) + child.find_all(class_=_BADGE):
                        block.insert_before(" ")  # rustdoc: "impl<T> Any for T" and its <div> "where T: 'static"
                        block.insert_after(" ")
                    heading = " ".join(child.get_text().split())
                    if heading:
                        level = int(name[1]) if name in _HEADINGS else 1
                        self.path = [(lvl, h) for lvl, h in self.path if lvl < level] + [(level, heading)]
                        self.heading_starts.append((self.length, tuple(h for _, h in self.path)))
                        self._emit(heading)
                elif name == "br":
                    self.flush()
                elif name == "pre":
                    self.flush()
                    for br in child.find_all("br"):
                        br.replace_with("\n")  # Docusaurus ends each line of code with a <br>, not a newline
                    for block in child.find_all(list(_BLOCKS)):
                        _own_line(block)
                    for block in _code_blocks(child):
                        for line in block.get_text().strip("\n").splitlines():
                            self._emit(line)
                elif name in _BLOCKS:
                    self.flush()
                    if name == "li":
                        self.marker = "- "
                    self.walk(child)
                    self.flush()
                    if name == "li":
                        self.marker = ""  # an item with no text of its own (or only code) has no line to mark
                else:
                    self.walk(child)

    def cell(self, cell: Any, data: bool) -> None:
        """A table cell: in a data row, on the row's line after a ' | '; in a layout row, as any element."""
        if data and "".join(self.current).strip():
            self.current.append(" | ")
        self.in_cell += data
        self.walk(cell)
        self.in_cell -= data

    def grid(self, grid: Any, columns: int) -> None:
        """A grid's cells, `columns` to a row, each row one line as a table's data row."""
        self.flush()
        cells = [cell for cell in grid.children if getattr(cell, "name", None)]
        for start in range(0, len(cells), columns):
            for cell in cells[start : start + columns]:
                self.cell(cell, True)
            self.flush()

    def flush(self) -> None:
        line = " ".join("".join(self.current).split()).removesuffix(" ·")  # what a dropped link left: rustdoc's "1.0.0 · Source"
        if line:
            self._emit(self.marker + line)
        self.current = []

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        self.length += len(line) + 1
        self.marker = ""

    def finish(self) -> tuple[str, list[tuple[int, tuple[str, ...]]]]:
        self.flush()
        return "\n".join(self.lines), self.heading_starts


# --- PDF ---------------------------------------------------------------------------------


def _parse_pdf(raw: bytes) -> tuple[str, list[Section], str, list[MetaField]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not raw.startswith(b"%PDF-"):
        raise LoadError("not a PDF file (no %PDF- header): re-export it or fix its extension")
    if b"%%EOF" not in raw[-2048:]:
        # A truncated upload still parses partly; indexing it would replace the good version.
        raise LoadError("truncated PDF (no %%EOF marker at the end): re-export or re-upload the file")
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            raise LoadError("encrypted PDF: remove the password before adding it to the corpus")
        pages = [" ".join((page.extract_text() or "").split()) for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or ""
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise LoadError(f"unreadable PDF ({type(e).__name__}: {e}): re-export the file") from None
    text, starts = "", []
    for page in pages:
        if not page:
            continue
        if text:
            text += "\n\n"
        starts.append(len(text))  # sections follow pages, so no chunk spans a page break
        text += page
    sections = [Section(s, e) for s, e in zip(starts, starts[1:] + [len(text)])]
    title = str(title).strip() or next((line for line in pages if line), "")[:80]
    return text, sections, title, []
