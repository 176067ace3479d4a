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
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SIDECAR_SUFFIX = ".meta.yaml"


class LoadError(ValueError):
    """A file that cannot be turned into a document; the message says why and what to do."""


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


def read_sidecar(path: Path) -> dict[str, Any]:
    """The `<file>.meta.yaml` beside `path`, or {} when there is none."""
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.is_file():
        return {}
    try:
        meta = yaml.safe_load(sidecar.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise LoadError(f"sidecar {sidecar.name} is not valid YAML: {e}") from None
    if not isinstance(meta, dict):
        raise LoadError(f"sidecar {sidecar.name} must be a YAML mapping (e.g. 'access: [hr]')")
    return meta


def parse_file(raw: bytes, source: str, sidecar: dict[str, Any], default_access: tuple[str, ...]) -> list[Document]:
    """Parse one corpus file (its bytes) into documents. Raises LoadError for a bad file.

    A .jsonl file holds many documents and is read with `parse_jsonl` instead.
    """
    suffix = Path(source).suffix.lower()
    if suffix == ".pdf":
        text, sections, title, meta = _parse_pdf(raw)
    else:
        content = decode_text(raw)
        if suffix in (".html", ".htm"):
            text, sections, title, meta = _parse_html(content)
        elif suffix in (".md", ".markdown"):
            text, sections, title, meta = _parse_markdown(content)
        else:
            text, sections, title, meta = _parse_plain(content)
    if not text.strip():
        raise LoadError("empty document: no text found" + (" (a scanned PDF? run OCR on it first)" if suffix == ".pdf" else ""))
    meta = {**meta, **sidecar}
    title = str(meta.pop("title", None) or title or Path(source).stem)
    access = _access(meta.pop("access", None), default_access, source)
    return [Document(source, source, title, text, tuple(sections), access, metadata=_plain(meta))]


def parse_jsonl(raw: bytes, source: str, default_access: tuple[str, ...]) -> tuple[list[Document], list[tuple[int, str]]]:
    """Documents of a .jsonl file, and (line number, message naming the field) per bad line."""
    content = decode_text(raw)
    docs, problems = [], []
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
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
        meta = {k: v for k, v in record.items() if k not in ("id", "text", "title", "access")}
        text = record["text"]
        try:
            access = _access(record.get("access"), default_access, f"{source} line {lineno}")
        except LoadError as e:
            problems.append((lineno, str(e)))
            continue
        doc_id = str(record["id"])
        title = str(record.get("title") or doc_id)
        docs.append(Document(doc_id, source, title, text, (Section(0, len(text)),), access, metadata=_plain(meta)))
    return docs, problems


def decode_text(raw: bytes) -> str:
    """Bytes of a text file as str; LoadError for binary content or invalid UTF-8."""
    if b"\x00" in raw[:8192]:
        raise LoadError("binary content (NUL bytes) in a text file: remove it or give it the right extension")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise LoadError(f"invalid UTF-8 at byte {e.start} (line {line}): re-save the file as UTF-8") from None


def _access(value: Any, default: tuple[str, ...], where: str) -> tuple[str, ...]:
    if value is None:
        return tuple(default)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise LoadError(f"access labels in {where} must be a list of group names, e.g. [internal, hr]")
    return tuple(sorted(set(value)))


def _plain(meta: dict[str, Any]) -> dict[str, Any]:
    """Metadata as JSON-safe values (YAML front matter may hold dates)."""
    return json.loads(json.dumps(meta, default=str))


# --- Markdown and plain text ---------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")


def _parse_markdown(content: str) -> tuple[str, list[Section], str, dict[str, Any]]:
    meta: dict[str, Any] = {}
    match = _FRONT_MATTER.match(content)
    if match:
        try:
            meta = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as e:
            raise LoadError(f"front matter is not valid YAML: {e}") from None
        if not isinstance(meta, dict):
            raise LoadError("front matter must be a YAML mapping (e.g. 'title: …' and 'access: [hr]')")
        content = content[match.end() :]
    sections, title = _markdown_sections(content)
    return content, sections, title, meta


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


def _parse_plain(content: str) -> tuple[str, list[Section], str, dict[str, Any]]:
    title = next((line.strip() for line in content.splitlines() if line.strip()), "")
    return content, [Section(0, len(content))], title, {}


# --- HTML --------------------------------------------------------------------------------

_DROP_TAGS = ["script", "style", "noscript", "nav", "aside", "form", "iframe", "svg", "template", "button"]
_BOILERPLATE = re.compile(r"cookie|consent|banner|breadcrumb|sidebar|navbar|menu|advert|share|skip-link", re.I)
_BLOCKS = {"p", "div", "section", "article", "main", "ul", "ol", "li", "table", "tr", "pre", "blockquote",
           "dl", "dt", "dd", "figure", "figcaption", "caption", "hr", "thead", "tbody", "tfoot", "address"}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


def _parse_html(content: str) -> tuple[str, list[Section], str, dict[str, Any]]:
    from bs4 import BeautifulSoup, Comment

    soup = BeautifulSoup(content, "lxml")
    meta: dict[str, Any] = {}
    tag = soup.find("meta", attrs={"name": "access"})
    if tag and tag.get("content"):
        meta["access"] = tag["content"]
    page_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for node in soup(_DROP_TAGS):
        node.decompose()
    for node in soup.find_all(string=lambda s: isinstance(s, Comment)):
        node.extract()
    for node in soup.find_all(True):
        # Page chrome lives in <header>/<footer> outside the article, and in classed widgets.
        if node.decomposed:
            continue
        is_chrome = node.name in ("header", "footer") and not node.find_parent(["article", "main"])
        names = " ".join(node.get("class") or []) + " " + (node.get("id") or "")
        if is_chrome or (node.name not in ("body", "html", "main", "article") and _BOILERPLATE.search(names)):
            node.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    writer = _HtmlText()
    writer.walk(root)
    text, starts = writer.finish()
    h1 = next((heads[0] for _, heads in starts if heads), "")
    return text, _sections_from_starts([(0, ())] + starts, len(text)), h1 or page_title, meta


class _HtmlText:
    """Renders an element tree to text: one line per block, table cells joined by ' | '."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.length = 0  # characters of text emitted so far, newlines included
        self.current: list[str] = []
        self.heading_starts: list[tuple[int, tuple[str, ...]]] = []
        self.path: list[tuple[int, str]] = []

    def walk(self, node: Any) -> None:
        from bs4 import NavigableString, Tag

        for child in node.children:
            if isinstance(child, NavigableString):
                self.current.append(str(child))
            elif isinstance(child, Tag):
                name = child.name
                if name in _HEADINGS:
                    self.flush()
                    heading = " ".join(child.get_text(" ").split())
                    if heading:
                        level = int(name[1])
                        self.path = [(lvl, h) for lvl, h in self.path if lvl < level] + [(level, heading)]
                        self.heading_starts.append((self.length, tuple(h for _, h in self.path)))
                        self._emit(heading)
                elif name == "br":
                    self.flush()
                elif name == "pre":
                    self.flush()
                    for line in child.get_text().strip("\n").splitlines():
                        self._emit(line)
                elif name in ("td", "th"):
                    if self.current and "".join(self.current).strip():
                        self.current.append(" | ")
                    self.walk(child)
                elif name in _BLOCKS:
                    self.flush()
                    if name == "li":
                        self.current.append("- ")
                    self.walk(child)
                    self.flush()
                else:
                    self.walk(child)

    def flush(self) -> None:
        line = " ".join("".join(self.current).split())
        if line and line != "-":
            self._emit(line)
        self.current = []

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        self.length += len(line) + 1

    def finish(self) -> tuple[str, list[tuple[int, tuple[str, ...]]]]:
        self.flush()
        return "\n".join(self.lines), self.heading_starts


# --- PDF ---------------------------------------------------------------------------------


def _parse_pdf(raw: bytes) -> tuple[str, list[Section], str, dict[str, Any]]:
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
    return text, sections, title, {}
