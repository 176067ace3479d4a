"""Access labels: which groups may read a document, read from its metadata so that they fail closed.

The loaders in retrieval/documents.py find a document's metadata (markdown front matter, an
HTML `<meta>`, a jsonl record's fields, a sidecar `<file>.meta.yaml`) and hand it here as
MetaFields; `resolve_access` turns those that are, or may be meant as, labels into the
document's labels. Without any, a document gets the corpus default (public).

Labels fail closed: a label that cannot be read with certainty is never read as "no labels".

Certain: only a top-level, lower-case `access` key (front matter, sidecar, jsonl record) and
`<meta name="access" content="…">`, whose value is a non-empty list of group names
(`[hr, finance]`) or a comma-separated string (`hr, finance`). A sidecar's `access`
replaces the document's own.

Everything else that may be meant as labels is a finding (a MetaField with a `doubt`, or a
LoadError), reported with the file and line:

- a look-alike key, at the top level or nested in a value (labels count at the top level
  only): after lower-casing and dropping everything but letters and digits, within two
  edits (insert, delete, replace, swap neighbours; unrestricted Damerau-Levenshtein) of
  `access`, alone or followed by group(s), label(s), list, level, control or rights; or one
  of acl(s), groups, allowed_groups, permissions, visibility (`looks_like_access`);
- a `<meta>` whose name, property, itemprop or http-equiv is such a look-alike (the loader
  reads them from the raw HTML, comments included);
- a line of a markdown or text body (outside fenced code blocks), or of front matter or a
  sidecar that YAML does not read as a key, that reads like labels: a spelling of `access`,
  `:` or `=`, then single words separated by commas, or a `- item` list below it
  (`access: [hr]` after a lost fence, `#access: [hr]`);
- front matter or a sidecar that is not valid YAML or not a mapping; front matter that never
  closes and a sidecar that exists but cannot be read (both found by the loaders);
- a label value that is not a non-empty list of names (`access: []`, `access:`,
  `access: [hr, 7]`), and label fields that disagree (two `access` keys, a key and its
  look-alike).

`checks.unknown_metadata` (`mode` here, `unknown_metadata` in the loaders) decides what a
finding does:

- "error" (the default): any finding is a LoadError naming the line; the file (or, in a
  .jsonl file, that line) is skipped.
- "warn": a look-alike (key, `<meta>` or label line) is read as the labels, the document
  is readable only by those groups, and it carries a warning per such field.

Skipped (a LoadError) even in "warn" mode: findings with nothing to read as labels (front
matter that never closes, invalid YAML or no mapping, an unreadable sidecar, an empty or
malformed value) and readings that disagree, as there is no safe way to pick one.

Not findings: keys such as `accessibility`, `accessories`, `last_accessed`, `title` in any
case, and prose such as `Access: via the north gate`. Harmless look-alikes must be renamed
(`success:` is two edits from `access`).
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from contracts.settings import UnknownMetadata


# Raised by the label code as well as the loaders; defined here because retrieval.documents
# imports this module and not the other way round. retrieval.documents re-exports it.
class LoadError(ValueError):
    """A file that cannot be turned into a document; the message says why and what to do."""


# Usual names for an access list besides `access` itself (compared after normalising).
_LABEL_SYNONYMS = frozenset({"acl", "acls", "allowedgroups", "groups", "permissions", "visibility"})
# `access` (or a misspelling of it) followed by one of these is still meant as labels: access_groups.
_LABEL_SUFFIXES = ("", "group", "groups", "label", "labels", "list", "level", "control", "rights")


@dataclass(frozen=True)
class MetaField:
    """One metadata key as a loader found it, and where (for messages).

    `doubt` is None for everything but a field that may be meant as access labels without
    being a plain `access` key; then it says why it is uncertain and how to fix it.
    """

    key: str
    value: Any
    where: str = ""  # "line 3", "sidecar a.md.meta.yaml line 1"; "" in a jsonl record (its line is reported with it)
    doubt: str | None = None

    @property
    def is_label(self) -> bool:
        """True when the field is, or may be meant as, the document's access labels."""
        return self.key == "access" or self.doubt is not None


def looks_like_access(key: str) -> bool:
    """True for a key a writer may have meant as `access`: see `_access_spelling`, or acl, groups,
    permissions, visibility (any case and punctuation)."""
    return _normalise(key) in _LABEL_SYNONYMS or _access_spelling(key)


def _access_spelling(key: str) -> bool:
    """`access` in any case or punctuation, with up to two typos, alone or with a suffix like `_groups`."""
    norm = _normalise(key)
    return any(norm.endswith(suffix) and _within_two_edits(norm[: len(norm) - len(suffix)], "access") for suffix in _LABEL_SUFFIXES)


def _normalise(key: str) -> str:
    return "".join(ch for ch in key.casefold() if ch.isalnum())


def _within_two_edits(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance of at most 2: inserting, deleting, replacing a character or
    swapping two neighbours is one edit each, in any order (unrestricted, unlike optimal string
    alignment, so 'accsnes' is two edits from 'access' as it takes two)."""
    if abs(len(a) - len(b)) > 2:
        return False
    far = len(a) + len(b)
    d = [[far] * (len(b) + 2)] + [[far, *range(len(b) + 1)]] + [[far, i] + [0] * len(b) for i in range(1, len(a) + 1)]
    last_row: dict[str, int] = {}  # character -> last row of a it was seen in
    for i in range(1, len(a) + 1):
        last_col = 0
        for j in range(1, len(b) + 1):
            k, m = last_row.get(b[j - 1], 0), last_col
            same = a[i - 1] == b[j - 1]
            last_col = j if same else last_col
            d[i + 1][j + 1] = min(d[i][j] + (not same), d[i + 1][j] + 1, d[i][j + 1] + 1, d[k][m] + (i - k - 1) + 1 + (j - m - 1))
        last_row[a[i - 1]] = i
    return d[len(a) + 1][len(b) + 1] <= 2


def _at(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


def _key_field(key: str, value: Any, where: str) -> MetaField:
    doubt = None
    if key != "access" and looks_like_access(key):
        doubt = _at(where, f"key {key!r} looks like 'access' (labels are read from a lower-case 'access' key only): "
                           "rename it to 'access', or to something unlike it if it holds no labels")
    return MetaField(key, value, where, doubt)


def _nested_fields(key: str, value: Any, where: str) -> list[MetaField]:
    """Keys inside a metadata value that look like `access`: labels count at the top level only."""
    found, stack, seen = [], [(key, value)], set()
    while stack:
        path, current = stack.pop()
        if id(current) in seen:  # YAML aliases can make a structure recursive
            continue
        seen.add(id(current))
        items = current.items() if isinstance(current, dict) else enumerate(current) if isinstance(current, list) else ()
        for name, child in items:
            inner = f"{path}.{name}"
            if isinstance(name, str) and looks_like_access(name):
                doubt = _at(where, f"key {inner!r} looks like access labels nested in {key!r}: labels are read from a "
                                   "top-level 'access' key only: move them there, or rename the key")
                found.append(MetaField(inner, child, where, doubt))
            stack.append((inner, child))
    return found


def metadata_fields(items: Iterable[tuple[Any, Any, str]]) -> list[MetaField]:
    """(key, value, where) triples as fields, plus one per nested key that looks like `access`."""
    out: list[MetaField] = []
    for key, value, where in items:
        out.append(_key_field(str(key), value, where))
        out.extend(_nested_fields(str(key), value, where))
    return out


def with_sidecar(own: list[MetaField], sidecar: list[MetaField]) -> list[MetaField]:
    """A document's fields and its sidecar's, the sidecar's last: its keys win, its `access` replaces the document's."""
    if any(f.key == "access" and f.doubt is None for f in sidecar):
        own = [f for f in own if not (f.key == "access" and f.doubt is None)]
    return own + sidecar


def resolve_access(fields: list[MetaField], default: tuple[str, ...], mode: UnknownMetadata) -> tuple[tuple[str, ...], list[str]]:
    """The access labels from every label field, and a warning per doubtful field read as labels.

    LoadError: a doubtful field in "error" mode; in both modes a value that is no list of
    names, or fields that disagree (there is no safe way to pick one).
    """
    doubtful = [f for f in fields if f.doubt]
    if doubtful and mode == "error":
        raise LoadError(doubtful[0].doubt + (f" (and {len(doubtful) - 1} more)" if len(doubtful) > 1 else ""))
    readings = [(f, _labels(f)) for f in fields]
    if len({labels for _, labels in readings}) > 1:
        said = ", ".join(f"{' '.join(filter(None, [f.where, repr(f.key)]))} gives [{', '.join(labels)}]" for f, labels in readings)
        raise LoadError(f"access labels disagree: {said}: keep one")
    if not readings:
        return tuple(default), []
    access = readings[0][1]
    return access, [f"{f.doubt} (indexed with access [{', '.join(access)}] meanwhile)" for f in doubtful]


def _labels(field: MetaField) -> tuple[str, ...]:
    """A field's value as sorted labels; LoadError unless it is a non-empty list (or comma list) of names."""
    value = field.value
    parts = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
    labels = [p.strip() for p in parts if isinstance(p, str)]
    if not labels or len(labels) != len(parts) or not all(labels):
        raise LoadError(_at(field.where, f"access labels under {field.key!r} must be a list of group names, "
                                         f"e.g. [internal, hr], not {repr(value):.60}"))
    return tuple(sorted(set(labels)))


def yaml_fields(text: str, first_line: int, where: str, what: str) -> list[MetaField]:
    """The top-level keys of a YAML mapping (front matter, a sidecar), each with its line,
    plus a doubtful field per line that reads like access labels but is no key to YAML.

    `first_line` is the file's line number of the text's first line; `where` comes before
    line numbers in messages ("line", "sidecar a.md.meta.yaml line").
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and not isinstance(node, yaml.MappingNode):
            raise LoadError(f"{where} {first_line + node.start_mark.line}: {what} must be a YAML mapping "
                            "(e.g. 'title: …' and 'access: [hr]')")
        fields: list[MetaField] = []
        if node is not None:
            loader.flatten_mapping(node)  # `<<: *anchor` merges keys in, as safe_load would
            fields = metadata_fields(
                (loader.construct_object(k, deep=True), loader.construct_object(v, deep=True), f"{where} {first_line + k.start_mark.line}")
                for k, v in node.value
            )
        # e.g. 'access:[hr]' under an indented title is more title to YAML, '#access: [hr]' a comment.
        unread = f"{what} does not read it as a key"
        return fields + label_lines(text, first_line, where, unread, skip=_key_lines(node))
    except yaml.YAMLError as e:
        # The context mark is where the broken construct starts (an opening bracket), the problem mark where YAML gave up.
        mark = getattr(e, "context_mark", None) or getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise LoadError(f"{where} {first_line + (mark.line if mark else 0)}: {what} is not valid YAML ({problem}): fix it") from None
    finally:
        loader.dispose()


def _key_lines(root: yaml.Node | None) -> set[int]:
    """Lines (0-based) on which a mapping key starts, at any depth."""
    lines, stack, seen = set(), [root] if root is not None else [], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines.update(k.start_mark.line for k, _ in node.value)
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return lines


_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")  # the line breaks YAML counts
_ASSIGNMENT = re.compile(r"(?P<key>[^:=]{1,40}?)\s*[:=]\s*(?P<value>.*)")
_WRAPPERS = " \t[]{}()\"'`*"
_EMPHASIS = " \t*_`"  # markdown around a value: **Access:** hr


def text_lines(text: str) -> list[tuple[int, str, int]]:
    """(start offset, the line without its break, offset after the break) per line."""
    out, start = [], 0
    for m in _LINE_BREAK.finditer(text):
        out.append((start, text[start : m.start()], m.end()))
        start = m.end()
    if start < len(text):
        out.append((start, text[start:], len(text)))
    return out


def line_number(text: str, offset: int) -> int:
    """The 1-based line number of `offset` in `text`, counting the line breaks YAML counts."""
    return len(_LINE_BREAK.findall(text, 0, offset)) + 1


def label_lines(text: str, first_line: int, where: str, reads_as: str, skip: Container[int] = (), code_fences: bool = False) -> list[MetaField]:
    """A doubtful field per line that reads like access labels (`access: [hr]`) but is not read
    as a key (`reads_as` says what it is instead), so such a line never passes as text.

    Lines with an index in `skip` are keys already; fenced code blocks (when `code_fences`)
    are left alone, as that is where documents show examples.
    """
    found, in_code, lines = [], False, text_lines(text)
    for index, (_, line, _) in enumerate(lines):
        stripped = line.strip()
        if code_fences and stripped.startswith(("```", "~~~")):
            in_code = not in_code
            continue
        m = None if in_code or index in skip or not (":" in line or "=" in line) else _ASSIGNMENT.fullmatch(stripped)
        written = _written_labels(lines, index, m["value"]) if m and _access_spelling(m["key"]) else None
        if written is not None:
            at = f"{where} {first_line + index}"
            doubt = (f"{at}: {stripped!r} reads like access labels but {reads_as}: put labels under a top-level 'access' "
                     "key, in front matter between '---' lines or in a sidecar .meta.yaml, or reword the line")
            value = _yaml_value(written) if isinstance(written, str) else [item.strip(_WRAPPERS) for item in written]
            found.append(MetaField(m["key"].strip(), value, at, doubt))
    return found


def _written_labels(lines: list[tuple[int, str, int]], index: int, inline: str) -> str | list[str] | None:
    """What the label-looking line `index` assigns when that reads like labels: its value
    (`[hr, finance]`, `hr`) or else the `- item` lines below it; None when it reads like prose."""
    inline = inline.strip(_EMPHASIS)
    if inline:
        return inline if _label_like(inline) else None
    items = []
    for _, line, _ in lines[index + 1 :]:
        item = re.fullmatch(r"\s*-\s+(.*?)\s*", line)
        if not item or not item[1].strip("- \t"):  # '- - -' is a horizontal rule, not an item
            break
        items.append(item[1])
    return items if items and all(_label_like(item) for item in items) else None


def _label_like(value: str) -> bool:
    """Single words separated by commas, bracketed or not: `[hr, finance]`, `hr`."""
    return all(len(part.strip(_WRAPPERS).split()) <= 1 for part in value.split(","))


def _yaml_value(value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value  # read as written: a label nobody has, never public
