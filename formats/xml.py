"""The generic engine for XML messages (TIPS CFX): one message per file, records at element paths.

Safety first, as defusedxml does it, with the standard library's expat only: a document type declaration, an
entity declaration or an external entity reference refuses the file (`UnsafeXml`) before anything is built, and
so does a file larger than `MAX_BYTES` or nested deeper than `MAX_DEPTH`. The encoding is the one the XML
prolog declares (it must be one of the layout's `options["encodings"]`); the bytes are decoded with Python's
codec (expat itself knows no GBK) and a file that does not decode is refused (`EncodingError`).

A document in the layout's plain form (what `render` writes: every record with all its fields in order, plain
leaf texts; a night's packs all are) is matched whole by regular expressions built once per layout, with no
Python call per element; such a document is well-formed and safe by its form. Any other document is read by
expat's handlers, which refuse it or say what is wrong; both ways give the same records (tests/formats).

Each record of the layout sits at its element path below the root (`at`, e.g. `MSG/Payment3102`); a header or
trailer record occurs once, the detail record any number of times, one record per element. A field is the text
of the child element of its name; a `Repeated` field collects the items of a list element. `_line` is the line
of the record element's start tag. Writing serialises in layout order with fixed indentation and CRLF, so a
rerun writes identical bytes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Callable
from xml.parsers import expat

import pyarrow as pa
import pyarrow.compute as pc

from formats._rows import column_values, render_texts, type_values, write_rendered
from formats.errors import EncodingError, StructureError, UnsafeXml, UnwritableValue
from formats.flag import Flag
from formats.layout import Const, FileLayout, Record, Repeated, Text
from formats.result import Batch, OutFile, ReadResult, Totals, empty_quarantine

MAX_BYTES = 256 << 20      # a TIPS pack is at most tens of thousands of payments: a few MB
MAX_DEPTH = 16             # CFX nests 5 deep; anything far deeper is an attack or a wrong file
_PROLOG = re.compile(rb'^\s*<\?xml\s[^>]*?encoding\s*=\s*["\']([A-Za-z0-9._-]+)["\'][^>]*\?>')


class _Node:
    """An element as `_raw` rebuilds it for a quarantined record: its tag, child elements and direct text."""

    __slots__ = ("tag", "children", "text")

    def __init__(self, tag: str) -> None:
        self.tag, self.children, self.text = tag, [], []

    def value(self) -> str:
        return "".join(self.text).strip()

    def serialise(self) -> str:
        if not self.children:
            return f"<{self.tag}>{_escape(self.value())}</{self.tag}>"
        return f"<{self.tag}>" + "".join(c.serialise() for c in self.children) + f"</{self.tag}>"


def declared_encoding(data: bytes, file_name: str = "") -> str:
    """The encoding named in the XML prolog; a file without one is refused."""
    m = _PROLOG.match(data[:400])
    if not m:
        raise EncodingError(file_name, "the XML prolog declares no encoding", line=1,
                            expected='<?xml version="1.0" encoding="GBK"?>', found=data[:60])
    return m.group(1).decode("ascii")


def _decode(data: bytes, file_name: str, encodings: tuple[str, ...]) -> tuple[str, str]:
    """Bytes -> (the document's text, declared encoding), refusing a file too large, declaring an
    encoding the message may not use, or not decoding as declared."""
    if len(data) > MAX_BYTES:
        raise UnsafeXml(file_name, "the XML file is larger than the limit", expected=f"<= {MAX_BYTES} bytes",
                        found=len(data))
    encoding = declared_encoding(data, file_name)
    if encoding.upper() not in {e.upper() for e in encodings}:
        raise EncodingError(file_name, "the XML prolog declares an encoding this message may not use", line=1,
                            expected=" or ".join(encodings), found=encoding)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise EncodingError(file_name, f"the file does not decode as its declared {encoding}", line=line,
                            expected=encoding, found=data[e.start:e.start + 4]) from None
    return text, encoding


def _safe_parser(file_name: str) -> expat.XMLParserType:
    """An expat parser of UTF-8 (the prolog's name is overridden: `read` re-encoded the text) that refuses a
    DTD, an entity declaration or an external entity reference the moment it meets one."""
    parser = expat.ParserCreate("utf-8")

    def refuse(what: str):
        def handler(*args):
            raise UnsafeXml(file_name, f"the XML contains {what}, which is never accepted",
                            line=parser.CurrentLineNumber, expected="no DTD and no entities", found=what)
        return handler

    parser.StartDoctypeDeclHandler = refuse("a document type declaration (DOCTYPE)")
    parser.EntityDeclHandler = refuse("an entity declaration")
    parser.UnparsedEntityDeclHandler = refuse("an unparsed entity declaration")
    parser.ExternalEntityRefHandler = refuse("an external entity reference")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True   # one text event per run of text, not one per line or entity
    return parser


def _run(parser: expat.XMLParserType, text: bytes, file_name: str) -> None:
    try:
        parser.Parse(text, True)
    except expat.ExpatError as e:
        raise StructureError(file_name, f"the XML is not well-formed: {expat.ErrorString(e.code)}",
                             line=e.lineno) from None


class _Found:
    """The elements of one record type, gathered while expat reads: per element its line, where it starts and
    ends in the UTF-8 text, and its field texts (`rows[i][j]`: field j of element i, None when absent; for a
    `Repeated` field, the list of its items' {element: text})."""

    __slots__ = ("rec", "fields", "repeated", "lines", "starts", "ends", "rows")

    def __init__(self, rec: Record) -> None:
        self.rec = rec
        # child element -> [(field index, item element or None)]: a field is its element's first occurrence,
        # a Repeated field the items of every occurrence of its list element
        self.fields: dict[str, list[tuple[int, str | None]]] = {}
        for i, f in enumerate(rec.fields):
            self.fields.setdefault(f.element, []).append((i, f.type.item if isinstance(f.type, Repeated) else None))
        self.repeated = [i for i, f in enumerate(rec.fields) if isinstance(f.type, Repeated)]
        self.lines: list[int] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.rows: list[list] = []

    def open(self, line: int, start: int) -> list:
        row = [None] * len(self.rec.fields)
        for i in self.repeated:
            row[i] = []
        self.lines.append(line)
        self.starts.append(start)
        self.rows.append(row)
        return row


@dataclass
class _Elements:
    """The elements of one record type: per element its line, per field the column of its texts (a `Repeated`
    field: per element the list of its items' {element: text}), and `raw_of(i)`, element i as quarantined."""

    lines: list[int]
    columns: list[list]
    raw_of: Callable[[int], bytes]


def _gather_plain(text: str, layout: FileLayout) -> tuple[tuple[str, int], list[_Elements]] | None:
    """`_gather` for a document in the layout's plain form, several times faster: None for any other document, which
    `_gather` then reads (and says what is wrong with it, if anything).

    The plain form is the one `render` writes, whitespace between elements aside: the prolog, then every record
    in layout order under its parents, each with all its fields in order (a list field: items with all theirs),
    leaf texts holding no character reference, no entity but the five predefined ones, no character XML refuses,
    no lone CR. Such a document is well-formed, has no DTD, no entity to expand and the layout's depth; one
    regular expression matches it whole, another finds each detail record's field texts: no Python call per
    element. `text` is the decoded document (positions are characters; `_raw` wants UTF-8 bytes)."""
    form = _remembered(("plain form", id(layout)), layout, lambda: _plain_form(layout))
    whole = form.document.fullmatch(text)
    if whole is None or "]]>" in text or text.count("\r") != text.count("\r\n"):
        return None
    line_of = _Lines(text)
    utf8 = _Utf8(text)
    gathered = []
    for rec, group in zip(layout.records, form.groups):
        if rec.kind != "detail":
            fields = [whole.group(group + 1 + j) for j in range(len(rec.fields))]
            starts, ends = [whole.start(group)], [whole.end(group)]
            columns = [[_leaf(v)] for v in fields]
        else:
            matches = list(form.details[rec.name].finditer(text, whole.start(group), whole.end(group)))
            starts, ends = [m.start() for m in matches], [m.end() for m in matches]
            texts = list(zip(*(m.groups() for m in matches))) or [()] * len(rec.fields)
            columns = [[_items(v, form.items[f.name]) for v in col] if isinstance(f.type, Repeated)
                       else _leaves(col) for f, col in zip(rec.fields, texts)]
        tag = rec.at.rsplit("/", 1)[-1]
        gathered.append(_Elements(
            [line_of(s) for s in starts], columns,
            lambda i, starts=starts, ends=ends, tag=tag: _raw(utf8.bytes, utf8.at(starts[i]),
                                                             utf8.at(ends[i] - len(tag) - 3), tag)))
    root = whole.start("root")
    return (layout.options.get("root", "root"), line_of(root)), gathered


@dataclass
class _PlainForm:
    document: re.Pattern             # the whole document; group `groups[k]` is record k (a detail: all of them)
    groups: list[int]
    details: dict[str, re.Pattern]   # one detail record, a group per field (a list field: its items)
    items: dict[str, tuple[re.Pattern, tuple[str, ...]]]   # one item of a list field, a group per item field


_S = r"[ \t\r\n]*+"                                  # XML's white space between elements
_CHARS = r"[^<&\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]*+"    # text but what XML refuses
_TEXT = f"{_CHARS}(?:&(?:amp|lt|gt|quot|apos);{_CHARS})*+"                     # and the five entities


def _plain_form(layout: FileLayout) -> _PlainForm:
    """The expressions of the layout's plain form."""
    def element(tag: str, inner: str) -> str:
        return f"{_S}<{re.escape(tag)}>{inner}{_S}</{re.escape(tag)}>"

    def leaf(tag: str, capture: bool) -> str:
        return f"{_S}<{re.escape(tag)}>({'' if capture else '?:'}{_TEXT})</{re.escape(tag)}>"

    def record(rec: Record, capture: bool) -> str:
        return element(rec.at.rsplit("/", 1)[-1], "".join(
            element(f.element, f"({'' if capture else '?:'}(?:{item(f.type, False)})*+)")
            if isinstance(f.type, Repeated) else leaf(f.element, capture) for f in rec.fields))

    def item(t: Repeated, capture: bool) -> str:
        return element(t.item, "".join(leaf(g.element, capture) for g in t.record.fields))

    root = re.escape(layout.options.get("root", "root"))
    parts = [r'<\?xml version="1\.0" encoding="[A-Za-z][A-Za-z0-9._-]*"\?>', f"{_S}(?P<root><){root}>"]
    open_path: list[str] = []
    groups, group = [], 1
    for rec in layout.records:
        *parents, _ = rec.at.split("/")
        while open_path and open_path != parents[: len(open_path)]:
            parts.append(f"{_S}</{re.escape(open_path.pop())}>")
        for p in parents[len(open_path):]:
            parts.append(f"{_S}<{re.escape(p)}>")
            open_path.append(p)
        group += 1
        groups.append(group)
        if rec.kind == "detail":
            parts.append(f"((?:{record(rec, False)})*+)")
        else:
            parts.append(f"{_S}({record(rec, True).removeprefix(_S)})")
            group += len(rec.fields)
    parts += [f"{_S}</{re.escape(p)}>" for p in reversed(open_path)] + [f"{_S}</{root}>{_S}"]
    lists = [f for r in layout.records for f in r.fields if isinstance(f.type, Repeated)]
    return _PlainForm(re.compile("".join(parts)), groups,
                      {r.name: re.compile(record(r, True).removeprefix(_S)) for r in layout.records
                       if r.kind == "detail"},
                      {f.name: (re.compile(item(f.type, True).removeprefix(_S)),
                                tuple(g.element for g in f.type.record.fields)) for f in lists})


def _leaf(raw: str) -> str:
    """A leaf's text as expat gives it (line ends normalised, the five entities replaced), trimmed."""
    if "\r" in raw:
        raw = raw.replace("\r\n", "\n")
    if "&" in raw:
        raw = raw.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&apos;", "'") \
            .replace("&amp;", "&")
    return raw.strip()


def _leaves(raws: tuple[str, ...]) -> list[str]:
    """`_leaf` of each text of a column; most are plain (no CR, no entity), so checked for it once."""
    joined = "".join(raws)
    if "\r" in joined or "&" in joined:
        return [_leaf(v) for v in raws]
    return [v.strip() for v in raws]


def _items(raw: str, item: tuple[re.Pattern, tuple[str, ...]]) -> list[dict]:
    """A list field's items, as `_gather` keeps them: per item {element: text}."""
    pattern, elements = item
    return [dict(zip(elements, map(_leaf, m))) for m in pattern.findall(raw)]


class _Lines:
    """Line numbers of character positions met in increasing order, counting only what lies between."""

    def __init__(self, text: str) -> None:
        self.text, self.at, self.line = text, 0, 1

    def __call__(self, position: int) -> int:
        if position < self.at:
            self.at, self.line = 0, 1
        self.line += self.text.count("\n", self.at, position)
        self.at = position
        return self.line


class _Utf8:
    """The document as UTF-8 bytes, and character positions as byte positions, made when first asked (for the raw
    bytes of a quarantined record); positions met in increasing order cost only what lies between."""

    def __init__(self, text: str) -> None:
        self.text, self.char, self.byte = text, 0, 0

    @cached_property
    def bytes(self) -> bytes:
        return self.text.encode("utf-8")

    def at(self, position: int) -> int:
        if position < self.char:
            self.char, self.byte = 0, 0
        self.byte += len(self.text[self.char:position].encode("utf-8"))
        self.char = position
        return self.byte


# What an open element is to the records being gathered (a list of roles, or None: nothing).
_RECORD, _FIELD, _LIST, _ITEM, _ITEM_FIELD = range(5)


def _gather(text: bytes, file_name: str, layout: FileLayout) -> tuple[tuple[str, int], list[_Elements]]:
    """Read the UTF-8 document once with expat: (root tag and line, per layout record its elements).

    The reader of any document, and the one that says what is wrong with a bad one. No tree is built: each
    element's role (a record, one of its fields, a list, an item, an item's field) is decided when it opens, and
    its direct text is kept only when a field needs it."""
    parser = _safe_parser(file_name)
    found = [_Found(rec) for rec in layout.records]
    paths: tuple[dict, list] = ({}, [])          # element path below the root: (children, records there)
    for rec, f in zip(layout.records, found):
        node = paths
        for part in rec.at.split("/"):
            node = node[0].setdefault(part, ({}, []))
        node[1].append(f)
    roles_of: list = []                           # per open element, as a stack
    texts: list = [None]                          # per open element: its text chunks when a field wants them
    at_path: list = []                            # per open element: its node in `paths`, or None
    root: list = []

    def start(tag, attrs):
        depth = len(roles_of)
        if depth >= MAX_DEPTH:
            raise UnsafeXml(file_name, "the XML nests deeper than the limit", line=parser.CurrentLineNumber,
                            expected=f"<= {MAX_DEPTH} levels", found=depth + 1)
        roles, chunks = None, None
        if depth:
            parent = roles_of[-1]
            if parent is not None:
                for role in parent:
                    kind = role[0]
                    if kind is _RECORD:
                        row = role[2]
                        for i, item in role[1].fields.get(tag, ()):
                            if item is None:
                                if row[i] is None:
                                    roles = [*(roles or ()), (_FIELD, row, i)]
                                    chunks = []
                            else:
                                roles = [*(roles or ()), (_LIST, row[i], item)]
                    elif kind is _LIST:
                        if tag == role[2]:
                            item_texts: dict = {}
                            role[1].append(item_texts)
                            roles = [*(roles or ()), (_ITEM, item_texts)]
                    elif kind is _ITEM:
                        roles = [*(roles or ()), (_ITEM_FIELD, role[1], tag)]
                        chunks = []
            node = at_path[-1]
            node = node[0].get(tag) if node is not None else None
            if node is not None and node[1]:
                for f in node[1]:
                    row = f.open(parser.CurrentLineNumber, parser.CurrentByteIndex)
                    roles = [*(roles or ()), (_RECORD, f, row)]
        else:
            root.append((tag, parser.CurrentLineNumber))
            node = paths
        roles_of.append(roles)
        texts.append(chunks)
        at_path.append(node)

    def end(tag):
        roles = roles_of.pop()
        chunks = texts.pop()
        at_path.pop()
        if roles is None:
            return
        value = "".join(chunks).strip() if chunks is not None else None
        for role in roles:
            kind = role[0]
            if kind is _FIELD:
                role[1][role[2]] = value
            elif kind is _ITEM_FIELD:
                role[1][role[2]] = value
            elif kind is _RECORD:
                role[1].ends.append(parser.CurrentByteIndex)

    def data(chunk):
        chunks = texts[-1]
        if chunks is not None:
            chunks.append(chunk)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    _run(parser, text, file_name)
    return root[0], [_Elements(f.lines, list(zip(*f.rows)) or [[]] * len(f.rec.fields),
                               lambda i, f=f: _raw(text, f.starts[i], f.ends[i], f.rec.at.rsplit("/", 1)[-1]))
                     for f in found]


# An element's start tag (attribute values may hold ">"); group 1 is "/" for an empty-element tag.
_START_TAG = re.compile(rb"""<[^\s/>]+(?:\s+[^\s=]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*(/?)>""")


def _raw(text: bytes, start: int, end: int, tag: str) -> bytes:
    """The record element at `start` (its end tag at `end`) as the reader quarantines it: child elements and
    trimmed leaf texts, re-escaped, no attributes and no whitespace between elements."""
    m = _START_TAG.match(text, start)
    fragment = m.group(0) if m.group(1) else text[start:end] + f"</{tag}>".encode("utf-8")
    parser = expat.ParserCreate("utf-8")  # a fragment of a document already read safely: no DTD, no entity
    stack: list[_Node] = [_Node("")]

    def open_(name, attrs):
        node = _Node(name)
        stack[-1].children.append(node)
        stack.append(node)

    parser.StartElementHandler = open_
    parser.EndElementHandler = lambda name: stack.pop()
    parser.CharacterDataHandler = lambda chunk: stack[-1].text.append(chunk)
    parser.Parse(fragment, True)
    return stack[0].children[0].serialise().encode("utf-8")


def read(path: Path, layout: FileLayout, flag: Flag | None = None) -> ReadResult:
    """Read one XML message. Bad detail elements are quarantined; an unsafe, undecodable or malformed file, a
    header element missing, twice or unreadable, or a control off, raises a `FileRejected` subclass.

    `flag`, when given, must count the detail elements. The result's `extra["encoding"]` is the declared
    encoding (the bank answers in it)."""
    path = Path(path)
    data = path.read_bytes()
    text, encoding = _decode(data, path.name, tuple(layout.options.get("encodings", (layout.encoding,))))
    # expat reads UTF-8 (its own name for the encoding overridden), and knows no GBK
    (root_tag, root_line), found = _gather_plain(text, layout) or _gather(text.encode("utf-8"), path.name, layout)
    expected_root = layout.options.get("root")
    if expected_root and root_tag != expected_root:
        raise StructureError(path.name, "wrong root element", line=root_line, expected=expected_root,
                             found=root_tag)
    others: dict[str, pa.Table] = {}
    detail = layout.detail
    table, q = None, None
    for rec, f in zip(layout.records, found):
        if rec.kind == "detail":
            if f.lines:
                table, q = type_values(f.columns, f.lines, f.raw_of, rec, layout, path.name)
            continue
        if len(f.lines) != 1:
            raise StructureError(path.name, f"the message must have exactly one {rec.at} element"
                                 + (" (missing)" if not f.lines else ""), expected=1, found=len(f.lines))
        t, bad = _typed_header(f, rec, layout, path.name)
        if bad is not None:
            b = bad.to_pylist()[0]
            raise StructureError(path.name, f"{rec.at}/{b['_field']} is unreadable", line=b["_line"],
                                 expected=b["_expected"], found=b["_actual"])
        others[rec.name] = t
    if table is None:
        table = pa.schema([("_line", pa.int64()), *detail.arrow_schema]).empty_table()
    if q is None:
        q = _remembered(("no quarantine", id(layout)), layout, lambda: empty_quarantine(layout))
    batch = Batch(table, q, others, data.count(b"\n") + 1)
    totals = Totals(layout)
    totals.add(batch)
    return totals.finish(path.name, [batch], flag, extra={"encoding": encoding})


# Typed values remembered across the files a process reads (a night's packs repeat most header values):
# key -> (the objects the key's ids are of, value); dropped whole when it grows past the limit.
_REMEMBERED: dict[tuple, tuple[tuple, object]] = {}
REMEMBER_AT_MOST = 20_000


def _remembered(key: tuple, owners, make):
    known = _REMEMBERED.get(key)
    if known is not None and known[0] is owners:
        return known[1]
    if len(_REMEMBERED) >= REMEMBER_AT_MOST:
        _REMEMBERED.clear()
    value = make()
    _REMEMBERED[key] = (owners, value)
    return value


def _typed_header(found: _Elements, rec: Record, layout: FileLayout,
                  file_name: str) -> tuple[pa.Table, pa.Table | None]:
    """`type_values` of a header record's one element, the typed value of each (field, text) remembered: only the
    texts not met before (a pack's number, its message id) are typed, together, by `type_values`; a text of one
    field types the same in any file. A record with checks, or a value that does not type, goes whole to
    `type_values` (its quarantine and error as always)."""
    texts = [column[0] for column in found.columns]
    if rec.checks or any(isinstance(f.type, Repeated) for f in rec.fields):
        return type_values(found.columns, found.lines, found.raw_of, rec, layout, file_name)
    values, new = {}, []
    for f, text in zip(rec.fields, texts):
        key = ("header value", id(layout), id(f), text)
        known = _REMEMBERED.get(key)
        if known is not None and known[0] is layout:
            values[f.name] = known[1]
        else:
            new.append((f, text, key))
    if new:
        fields = replace(rec, fields=tuple(f for f, _, _ in new))
        typed, bad = type_values([[text] for _, text, _ in new], found.lines, found.raw_of, fields, layout,
                                 file_name)
        if bad is not None:
            return type_values(found.columns, found.lines, found.raw_of, rec, layout, file_name)
        for f, _, key in new:
            values[f.name] = _remembered(key, layout, lambda f=f: typed.column(f.name).combine_chunks())
    lines = pa.array(found.lines, pa.int64())
    return pa.table({"_line": lines, **{f.name: values[f.name] for f in rec.fields}}), None


# --- writing --------------------------------------------------------------------------------------------------


def render(layout: FileLayout, records: pa.Table, header: dict | None = None, trailer: dict | None = None,
           encoding: str | None = None) -> bytes:
    """The bytes `write` would write: prolog, root, records in layout order, two-space indent, CRLF."""
    out = OutFile(Path(), 0, records.num_rows, header, trailer, {"encoding": encoding} if encoding else {})
    return _encoded(layout, _documents(layout, records, [out])[0], out)


def write_files(layout: FileLayout, records: pa.Table, files: list[OutFile]) -> None:
    """Write many messages of one layout, each atomically as `write` does: file k's detail elements are
    `records.slice(files[k].offset, files[k].length)`, its header and trailer values and `encoding=` its own.

    Every field is rendered once over the whole table (a night's returns: 1,000 files of 100 rows), then cut per
    file. A value that cannot be written raises as `write` a file would (its row counted in its file, the files
    before it written; `_rows.write_rendered`)."""
    write_rendered(_render_files, layout, records, files)


def _render_files(layout: FileLayout, records: pa.Table, files: list[OutFile]) -> list[bytes]:
    return [_encoded(layout, document, out) for out, document in zip(files, _documents(layout, records, files))]


def _encoded(layout: FileLayout, document: str, out: OutFile) -> bytes:
    encoding = out.options.get("encoding") or layout.encoding.upper()
    try:
        return document.encode(encoding)
    except UnicodeEncodeError as e:
        raise UnwritableValue(layout.name, "?", document[e.start:e.end], f"not representable in {encoding}") \
            from None


def _documents(layout: FileLayout, records: pa.Table, files: list[OutFile]) -> list[str]:
    """The text of each file's message: records under their parent elements in layout order."""
    root = layout.options.get("root", "root")
    documents = [[f'<?xml version="1.0" encoding="{out.options.get("encoding") or layout.encoding.upper()}"?>\r\n'
                  f"<{root}>\r\n"] for out in files]
    open_path: list[str] = []

    def move_to(parents: list[str]) -> None:
        lines = []
        while open_path and open_path != parents[: len(open_path)]:
            lines.append("  " * len(open_path) + f"</{open_path.pop()}>\r\n")
        for p in parents[len(open_path):]:
            lines.append("  " * (len(open_path) + 1) + f"<{p}>\r\n")
            open_path.append(p)
        for document in documents:
            document += lines

    for rec in layout.records:
        *parents, _ = rec.at.split("/")
        move_to(parents)
        if rec.kind == "detail":
            elements = _elements(rec, records, len(parents) + 1, layout)
            for document, out in zip(documents, files):
                document += elements[out.offset:out.offset + out.length]
            continue
        values = [out.header if rec.kind == "header" else out.trailer for out in files]
        if any(v is None for v in values):
            raise UnwritableValue(rec.name, "*", None, f"no {rec.kind} values given")
        for document, element in zip(documents, _elements(rec, _one_row_each(values, rec), len(parents) + 1,
                                                          layout)):
            document.append(element)
    move_to([])
    return ["".join(document) + f"</{root}>\r\n" for document in documents]


def _one_row_each(values: list[dict], rec: Record) -> pa.Table:
    """The header (or trailer) values of many files as one table, a row a file: a missing Const is its constant,
    a missing Text null, any other missing field refused (as `column_values` does for one file)."""
    columns = {}
    for f in rec.fields:
        if all(f.name in v for v in values):
            columns[f.name] = pa.array([v.get(f.name) for v in values], f.type.arrow_type)
        elif isinstance(f.type, (Const, Text)):
            columns[f.name] = pa.array([v[f.name] if f.name in v else f.type.value if isinstance(f.type, Const)
                                        else None for v in values], f.type.arrow_type)
        else:
            raise UnwritableValue(rec.name, f.name, None, "no value given (missing column)")
    return pa.table(columns)


def _elements(rec: Record, source: pa.Table, depth: int, layout: FileLayout) -> list[str]:
    """Each row of `source` as its element's lines (CRLF-ended), every field rendered and escaped once over all
    rows; a list field's items (only a 3102 request has them) one by one."""
    pad, tag, n = "  " * depth, rec.at.rsplit("/", 1)[-1], source.num_rows
    lines: list = [f"{pad}<{tag}>\r\n"]
    repeated = []
    for f in rec.fields:
        values = column_values(source, f, rec, n)
        if isinstance(f.type, Repeated):
            repeated.append((len(lines), f, values.to_pylist()))
            lines.append(None)
            continue
        texts = pa.array(render_texts(values, f, rec, layout), pa.string()).fill_null("")
        lines.append(pc.binary_join_element_wise(f"{pad}  <{f.element}>", _escaped(texts), f"</{f.element}>\r\n",
                                                 ""))
    for at, f, items in repeated:
        lines[at] = pa.array(["".join(_item_lines(f, row_items, depth + 1, layout)) for row_items in items],
                             pa.string())
    lines.append(f"{pad}</{tag}>\r\n")
    return pc.binary_join_element_wise(*lines, "").to_pylist() if n else []


def _escaped(texts: pa.Array) -> pa.Array:
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        texts = pc.replace_substring(texts, char, entity)
    return texts


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _item_lines(f, items: list | None, depth: int, layout: FileLayout) -> list[str]:
    pad = "  " * depth
    out = [pad + f"<{f.element}>\r\n"]
    sub = f.type.record
    for item in items or []:
        out.append(pad + f"  <{f.type.item}>\r\n")
        for g in sub.fields:
            text = render_texts(pa.array([item.get(g.name)], g.type.arrow_type), g, sub, layout)[0]
            out.append(pad + f"    <{g.element}>{_escape(text or '')}</{g.element}>\r\n")
        out.append(pad + f"  </{f.type.item}>\r\n")
    out.append(pad + f"</{f.element}>\r\n")
    return out


def write(path: Path, layout: FileLayout, records: pa.Table, header: dict | None = None,
          trailer: dict | None = None, encoding: str | None = None) -> int:
    """Write one XML message atomically (tmp + rename); returns the number of detail elements.

    `header` is the merged dict of the header records' fields (as `read` returns it); `encoding` is the one to
    declare and write in (the request's, for a reply), by default the layout's. The same input always gives the
    same bytes."""
    write_files(layout, records, [OutFile(Path(path), 0, records.num_rows, header, trailer,
                                          {"encoding": encoding} if encoding else {})])
    return records.num_rows
