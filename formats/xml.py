"""The generic engine for XML messages (TIPS CFX): one message per file, records at element paths.

Safety first, as defusedxml does it, with the standard library's expat only: a document type declaration, an
entity declaration or an external entity reference refuses the file (`UnsafeXml`) before anything is built, and
so does a file larger than `MAX_BYTES` or nested deeper than `MAX_DEPTH`. The encoding is the one the XML
prolog declares (it must be one of the layout's `options["encodings"]`); the bytes are decoded with Python's
codec (expat itself knows no GBK) and a file that does not decode is refused (`EncodingError`).

Each record of the layout sits at its element path below the root (`at`, e.g. `MSG/Payment3102`); a header or
trailer record occurs once, the detail record any number of times, one record per element. A field is the text
of the child element of its name; a `Repeated` field collects the items of a list element. `_line` is the line
of the record element's start tag. Writing serialises in layout order with fixed indentation and CRLF, so a
rerun writes identical bytes.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from xml.parsers import expat

import pyarrow as pa

from formats._rows import RawRow, column_values, render_texts, type_rows
from formats.errors import EncodingError, StructureError, UnsafeXml, UnwritableValue
from formats.flag import Flag
from formats.layout import FileLayout, Record, Repeated
from formats.result import Batch, ReadResult, Totals, empty_quarantine

MAX_BYTES = 256 << 20      # a TIPS pack is at most tens of thousands of payments: a few MB
MAX_DEPTH = 16             # CFX nests 5 deep; anything far deeper is an attack or a wrong file
_PROLOG = re.compile(rb'^\s*<\?xml\s[^>]*?encoding\s*=\s*["\']([A-Za-z0-9._-]+)["\'][^>]*\?>')


class _Node:
    __slots__ = ("tag", "line", "children", "text")

    def __init__(self, tag: str, line: int) -> None:
        self.tag, self.line, self.children, self.text = tag, line, [], []

    def find_all(self, tag: str) -> list[_Node]:
        return [c for c in self.children if c.tag == tag]

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


def parse_document(data: bytes, file_name: str, encodings: tuple[str, ...] = ("GBK", "GB18030")) -> tuple[_Node, str]:
    """Bytes -> (root element, declared encoding), refusing anything unsafe. Never resolves an entity."""
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

    parser = expat.ParserCreate("utf-8")  # the text is re-encoded as UTF-8 below: override the prolog's name
    stack: list[_Node] = []
    root: list[_Node] = []

    def refuse(what: str):
        def handler(*args):
            raise UnsafeXml(file_name, f"the XML contains {what}, which is never accepted",
                            line=parser.CurrentLineNumber, expected="no DTD and no entities", found=what)
        return handler

    def start(tag, attrs):
        if len(stack) >= MAX_DEPTH:
            raise UnsafeXml(file_name, "the XML nests deeper than the limit", line=parser.CurrentLineNumber,
                            expected=f"<= {MAX_DEPTH} levels", found=len(stack) + 1)
        node = _Node(tag, parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)

    def end(tag):
        stack.pop()

    def data_(chunk):
        if stack:
            stack[-1].text.append(chunk)

    parser.StartDoctypeDeclHandler = refuse("a document type declaration (DOCTYPE)")
    parser.EntityDeclHandler = refuse("an entity declaration")
    parser.UnparsedEntityDeclHandler = refuse("an unparsed entity declaration")
    parser.ExternalEntityRefHandler = refuse("an external entity reference")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data_
    try:
        parser.Parse(text.encode("utf-8"), True)
    except expat.ExpatError as e:
        raise StructureError(file_name, f"the XML is not well-formed: {expat.ErrorString(e.code)}",
                             line=e.lineno) from None
    return root[0], encoding


def _at(root: _Node, path: str) -> list[_Node]:
    nodes = [root]
    for part in path.split("/"):
        nodes = [c for n in nodes for c in n.find_all(part)]
    return nodes


def _row(node: _Node, rec: Record) -> RawRow:
    values = []
    for f in rec.fields:
        found = node.find_all(f.element)
        if isinstance(f.type, Repeated):
            items = [it for lst in found for it in lst.find_all(f.type.item)]
            values.append([{c.tag: c.value() for c in it.children} for it in items])
        else:
            values.append(found[0].value() if found else None)
    raw = node.serialise().encode("utf-8")
    return RawRow(node.line, raw, values)


def read(path: Path, layout: FileLayout, flag: Flag | None = None) -> ReadResult:
    """Read one XML message. Bad detail elements are quarantined; an unsafe, undecodable or malformed file, a
    header element missing, twice or unreadable, or a control off, raises a `FileRejected` subclass.

    `flag`, when given, must count the detail elements. The result's `extra["encoding"]` is the declared
    encoding (the bank answers in it)."""
    path = Path(path)
    data = path.read_bytes()
    root, encoding = parse_document(data, path.name, tuple(layout.options.get("encodings", (layout.encoding,))))
    expected_root = layout.options.get("root")
    if expected_root and root.tag != expected_root:
        raise StructureError(path.name, "wrong root element", line=root.line, expected=expected_root,
                             found=root.tag)
    others: dict[str, pa.Table] = {}
    detail = layout.detail
    table, q = None, None
    for rec in layout.records:
        nodes = _at(root, rec.at)
        if rec.kind == "detail":
            if nodes:
                table, q = type_rows([_row(n, rec) for n in nodes], rec, layout, path.name)
            continue
        if len(nodes) != 1:
            raise StructureError(path.name, f"the message must have exactly one {rec.at} element"
                                 + (" (missing)" if not nodes else ""), expected=1, found=len(nodes))
        t, bad = type_rows([_row(nodes[0], rec)], rec, layout, path.name)
        if bad is not None:
            b = bad.to_pylist()[0]
            raise StructureError(path.name, f"{rec.at}/{b['_field']} is unreadable", line=b["_line"],
                                 expected=b["_expected"], found=b["_actual"])
        others[rec.name] = t
    if table is None:
        table = pa.schema([("_line", pa.int64()), *detail.arrow_schema]).empty_table()
    batch = Batch(table, q if q is not None else empty_quarantine(layout), others, data.count(b"\n") + 1)
    totals = Totals(layout)
    totals.add(batch)
    return totals.finish(path.name, [batch], flag, extra={"encoding": encoding})


# --- writing --------------------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(layout: FileLayout, records: pa.Table, header: dict | None = None, trailer: dict | None = None,
           encoding: str | None = None) -> bytes:
    """The bytes `write` would write: prolog, root, records in layout order, two-space indent, CRLF."""
    encoding = encoding or layout.encoding.upper()
    root = layout.options.get("root", "root")
    # (path of parent elements) -> lines; records sharing a parent (MSG) are written in layout order under it
    lines = [f'<?xml version="1.0" encoding="{encoding}"?>', f"<{root}>"]
    open_path: list[str] = []

    def move_to(parents: list[str]) -> None:
        while open_path and open_path != parents[: len(open_path)]:
            lines.append("  " * len(open_path) + f"</{open_path.pop()}>")
        for p in parents[len(open_path):]:
            lines.append("  " * (len(open_path) + 1) + f"<{p}>")
            open_path.append(p)

    for rec in layout.records:
        *parents, tag = rec.at.split("/")
        move_to(parents)
        if rec.kind == "detail":
            source, n = records, records.num_rows
        else:
            source = header if rec.kind == "header" else trailer
            if source is None:
                raise UnwritableValue(rec.name, "*", None, f"no {rec.kind} values given")
            n = 1
        depth = len(parents) + 1
        columns = {}
        for f in rec.fields:
            values = column_values(source, f, rec, n)
            columns[f.name] = values.to_pylist() if isinstance(f.type, Repeated) else render_texts(values, f, rec,
                                                                                                    layout)
        for i in range(n):
            lines.append("  " * depth + f"<{tag}>")
            for f in rec.fields:
                lines += _field_lines(f, columns[f.name][i], depth + 1, rec, layout)
            lines.append("  " * depth + f"</{tag}>")
    move_to([])
    lines.append(f"</{root}>")
    text = "\r\n".join(lines) + "\r\n"
    try:
        return text.encode(encoding)
    except UnicodeEncodeError as e:
        raise UnwritableValue(layout.name, "?", text[e.start:e.end], f"not representable in {encoding}") from None


def _field_lines(f, value, depth: int, rec: Record, layout: FileLayout) -> list[str]:
    pad = "  " * depth
    if isinstance(f.type, Repeated):
        out = [pad + f"<{f.element}>"]
        sub = f.type.record
        for item in value or []:
            out.append(pad + f"  <{f.type.item}>")
            for g in sub.fields:
                text = render_texts(pa.array([item.get(g.name)], g.type.arrow_type), g, sub, layout)[0]
                out.append(pad + f"    <{g.element}>{_escape(text or '')}</{g.element}>")
            out.append(pad + f"  </{f.type.item}>")
        out.append(pad + f"</{f.element}>")
        return out
    return [pad + f"<{f.element}>{_escape(value or '')}</{f.element}>"]


def write(path: Path, layout: FileLayout, records: pa.Table, header: dict | None = None,
          trailer: dict | None = None, encoding: str | None = None) -> int:
    """Write one XML message atomically (tmp + rename); returns the number of detail elements.

    `header` is the merged dict of the header records' fields (as `read` returns it); `encoding` is the one to
    declare and write in (the request's, for a reply), by default the layout's. The same input always gives the
    same bytes."""
    path = Path(path)
    data = render(layout, records, header, trailer, encoding)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return records.num_rows
