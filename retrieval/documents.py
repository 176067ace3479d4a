"""Documents and the loaders that turn corpus files into them.

A loader gets a file's bytes and returns plain text plus the sections (heading path and
character span) found in it. Everything downstream (chunk offsets, quotes in training
examples, citations at serve time) refers to character positions in `Document.text`, so
a loader's text is the one canonical form of its document.

Supported: .md/.markdown (YAML front matter), .txt, .html/.htm (the text a reader sees:
retrieval/html_text.py), .pdf (text extraction), .jsonl (one document per line with `id`,
`text`, optional `title`, `access` and other metadata). Access labels come from front matter, an HTML
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
import io
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# LoadError is defined in access_labels (the label code raises it too, and that module must not
# import this one); it is re-exported here, where the loaders' callers import it from.
from retrieval.access_labels import (
    LoadError, MetaField, UnknownMetadata, label_lines, line_number, metadata_fields, resolve_access, text_lines, with_sidecar,
    yaml_fields,
)
from retrieval.html_text import REDIRECT_TEXT, meta_fields, page_text, redirect_target

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
        raise LoadError(f"{where} is unreadable ({e.strerror or e}): make it a readable YAML file, or delete it") from None
    try:
        text = decode_text(raw)
    except LoadError as e:
        raise LoadError(f"{where}: {e}") from None
    if not any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()):
        # An empty sidecar is likely one being written, or cut short: its labels are unknown, not absent.
        raise LoadError(f"{where} holds no fields: write its labels (e.g. 'access: [hr]') or delete it")
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
        if len(text) < REDIRECT_TEXT and (target := redirect_target(content)):
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
        except RecursionError:
            problems.append((lineno, "JSON nested too deeply to read: flatten it"))
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


# --- HTML (the page's text: retrieval/html_text.py) ----------------------------------------


def _parse_html(content: str) -> tuple[str, list[Section], str, list[MetaField]]:
    text, starts, title = page_text(content)
    return text, _sections_from_starts([(0, ())] + starts, len(text)), title, meta_fields(content)


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
