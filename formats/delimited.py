"""The generic engine for delimited files: `|` (PBOC), `@|$` with a trailing separator (housing fund), CSV with
RFC 4180 quoting (payroll, ledger).

Each line is **decoded before it is split**: in GBK the second byte of a Chinese character may be 0x7C (`|`),
so splitting raw bytes would cut a name in two. Line ends are ASCII and never a GBK trail byte, so splitting the
file into lines on bytes is safe. Records are placed by position: the layout's records before its detail record
take the first lines (header, headings), those after it the last lines (trailer); every line in between is a
detail. With `variant_by`, the header field it names selects the detail record (BDC103 vs BDC104 items).

Two levels of failure, as in `fixed_width`: a bad line is quarantined (its line, field, what was expected and
what was found); a bad file raises a `FileRejected` subclass (wrong line ends, wrong encoding, a header or
trailer missing or unreadable, a control total off, a summed amount unreadable).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from formats._rows import (RawRow, column_values, layout_tables, render_column, rows_of_files, type_columns, type_rows,
                           value_bytes, write_rendered)
from formats.errors import EncodingError, StructureError, UnwritableValue
from formats.flag import Flag
from formats.layout import FileLayout, Record
from formats.result import Batch, OutFile, ReadResult, Totals

_MULTIBYTE = ("gbk", "gb18030", "gb2312")


BLOCK_BYTES = 16 << 20  # an RFC 4180 extract is parsed by Arrow a block at a time

def read(path: Path, layout: FileLayout, flag: Flag | None = None) -> ReadResult:
    """Read a delimited file. Bad lines are quarantined; a bad file raises a `FileRejected` subclass.

    `_line` is the physical line number (1-based) where a record starts. Empty lines hold no record and are
    skipped. `flag`, when given, must count the detail lines."""
    path = Path(path)
    totals, batches = Totals(layout), []
    for batch in iter_batches(path, layout):
        totals.add(batch)
        batches.append(batch)
    return totals.finish(path.name, batches, flag)


def read_to_parquet(path: Path, layout: FileLayout, out: Path, flag: Flag | None = None) -> ReadResult:
    """Read into a zstd Parquet file of the detail records, which appears (atomic rename) only when the file has
    been read and its controls hold; the result is as `read`'s with an empty `records` table. A headed RFC 4180
    extract (the ledger journal) streams in bounded memory."""
    path, out = Path(path), Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    totals, kept = Totals(layout), []
    schema = layout_tables(layout).schema
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in iter_batches(path, layout):
                totals.add(batch)
                if batch.records.num_rows:
                    writer.write_table(batch.records)
                kept.append(Batch(_empty_records(layout), batch.quarantine, batch.others, batch.lines))
        result = totals.finish(path.name, kept, flag)
        os.replace(tmp, out)
        return result
    finally:
        tmp.unlink(missing_ok=True)


def iter_batches(path: Path, layout: FileLayout):
    """The file as batches of typed records. A headed RFC 4180 extract (a heading line, then only details) goes
    through Arrow's CSV reader in blocks; any other layout, or such a file with a malformed row, is read whole:
    an unquoted file split a column at a time (`_Lines`), a quoted one line by line by the csv module."""
    if _arrow_csv_applies(layout):
        yielded = False
        try:
            for batch in _arrow_csv_batches(path, layout):
                yielded = True
                yield batch
            return
        except _RowShapeError as e:
            if yielded:  # batches already handed on cannot be taken back: reading again would count them twice
                raise StructureError(path.name, "a row has the wrong number of fields, found after the first "
                                     "block of the streamed extract", line=e.line, expected=f"{e.expected} fields",
                                     found=f"{e.found} fields") from None
            # a row with the wrong number of fields: the line-by-line path finds and quarantines it
    yield _read_lines(path, layout)


def _read_lines(path: Path, layout: FileLayout) -> Batch:
    data = path.read_bytes()
    _check_encoding(data, layout, path.name)
    lines = _Lines(data, layout, path.name)
    if layout.quoting == "none":
        count, record = len(lines.records), lines.record
    else:
        records = _logical_records(lines.as_tuples(), layout, path.name)
        count, record = len(records), records.__getitem__
    leading, trailing, detail_of = _placement(layout, path.name)
    if count < len(leading) + len(trailing):
        missing = (leading + trailing)[count:] if count >= len(leading) else leading[count:]
        raise StructureError(path.name, f"the file ends before its {missing[0].name} line "
                             f"({count} non-empty lines)", expected=len(leading) + len(trailing), found=count)
    head = [record(k) for k in range(len(leading))]
    tail = [record(k) for k in range(count - len(trailing), count)]
    others: dict[str, pa.Table] = {}
    for rec, (line, raw, values, err) in [*zip(leading, head), *zip(trailing, tail)]:
        values = _fit_record(rec, line, raw, values, err, path.name)
        if (i := _stray_carriage_return(values, layout)) is not None:
            raise StructureError(path.name, f"the {rec.name} line holds a carriage return inside "
                                 f"{rec.fields[i].name if i < len(rec.fields) else 'a value'}", line=line,
                                 expected="no line break inside a value", found=values[i])
        table, q = type_rows([RawRow(line, raw, values)], rec, layout, path.name)
        if q is not None:
            bad = q.to_pylist()[0]
            raise StructureError(path.name, f"the {rec.name} line is unreadable at {bad['_field']}", line=line,
                                 expected=bad["_expected"], found=bad["_actual"])
        others[rec.name] = table
    detail = detail_of(others)
    body = range(len(leading), count - len(trailing))
    if not body:
        table, q = _empty_records(layout), None
    elif layout.quoting == "none":
        table, q = lines.type_records(body, detail, layout, path.name)
    else:
        rows = [_detail_row(*record(k), detail, layout) for k in body]
        table, q = type_rows(rows, detail, layout, path.name, schema_record=layout.detail)
    return Batch(table, q if q is not None else layout_tables(layout).quarantine, others, lines.physical)


def _detail_row(line: int, raw: bytes, values: list[str], err, detail: Record, layout: FileLayout) -> RawRow:
    """A detail line's row, with the first fault of its shape: not its record type, a wrong number of fields, a
    carriage return inside a value."""
    if err is None and detail.match is not None and values and values[0] != detail.match:
        err = (detail.fields[0].name, repr(detail.match), values[0])
    if err is None and len(values) != len(detail.fields):
        err = ("record", f"{len(detail.fields)} fields", f"{len(values)} fields")
    if err is None and (i := _stray_carriage_return(values, layout)) is not None:
        err = (detail.fields[i].name, "a value without a line break", values[i])
    return RawRow(line, raw, values if err is None or err[0] != "record" else [], err)


class _Lines:
    """The physical lines of a file, cut and decoded once for the whole file (NumPy and Arrow), not line by line.

    A line end is checked against the layout (the first wrong one raises). Each line's text is its bytes without
    the line end, decoded (null when they do not decode); `records` are the lines that are not blank. Splitting
    on bytes is safe: a line end is never part of a GBK, GB18030 or UTF-8 character."""

    def __init__(self, data: bytes, layout: FileLayout, file_name: str) -> None:
        octets = np.frombuffer(data, dtype=np.uint8)
        breaks = np.flatnonzero(octets == 10)
        starts, ends = np.r_[0, breaks + 1], np.r_[breaks, len(data)]
        if starts[-1] == len(data):   # after a final line end (or in an empty file) there is no line
            starts, ends = starts[:-1], ends[:-1]
        with_cr = (ends > starts) & (octets[np.maximum(ends - 1, 0)] == 13) if len(data) else np.zeros(0, bool)
        if layout.line_end == b"\r\n":
            lf_only = ~with_cr
            if len(lf_only) and not data.endswith(b"\n"):
                lf_only[-1] = False   # the last line may lack its line end
            if lf_only.any():
                raise StructureError(file_name, "line ends are LF, the layout requires CRLF",
                                     line=int(np.argmax(lf_only)) + 1, expected="CRLF", found="LF")
            ends = ends - with_cr
        elif with_cr.any():
            raise StructureError(file_name, "line ends are CRLF, this counterparty's files use LF",
                                 line=int(np.argmax(with_cr)) + 1, expected="LF", found="CRLF")
        self.data, self.starts, self.ends, self.physical = data, starts, ends, len(starts)
        self.texts = self._decode(layout.encoding, with_cr if layout.line_end == b"\r\n" else None)
        blank = pc.fill_null(pc.equal(pc.utf8_trim(self.texts, " "), ""), False).to_numpy(zero_copy_only=False)
        self.records = np.flatnonzero(~blank)
        self.layout = layout

    def _decode(self, encoding: str, with_cr: np.ndarray | None) -> pa.Array:
        try:
            text = self.data.decode(encoding)
        except UnicodeDecodeError:   # a broken file: find the lines that do not decode, one by one
            texts = []
            for s, e in zip(self.starts.tolist(), self.ends.tolist()):
                try:
                    texts.append(self.data[s:e].decode(encoding))
                except UnicodeDecodeError:
                    texts.append(None)
            return pa.array(texts, pa.string())
        lines = pc.list_flatten(pc.split_pattern(pa.array([text], pa.large_string()), "\n"))
        lines = lines.slice(0, self.physical).cast(pa.string())
        if with_cr is not None and with_cr.any():
            lines = pc.if_else(pa.array(with_cr), pc.utf8_slice_codeunits(lines, 0, -1), lines)
        return lines

    def raw(self, i: int) -> bytes:
        return self.data[self.starts[i]:self.ends[i]]

    def as_tuples(self) -> list[tuple[int, bytes, str | None]]:
        """Every physical line as (line number, raw bytes without line end, text or None)."""
        return [(i + 1, self.raw(i), t) for i, t in enumerate(self.texts.to_pylist())]

    def record(self, k: int) -> tuple[int, bytes, list[str], tuple | None]:
        """Non-blank line `k` as (line number, raw bytes, field texts, error or None)."""
        i = int(self.records[k])
        text = self.texts[i].as_py()
        if text is None:
            return i + 1, self.raw(i), [], ("record", f"text in {self.layout.encoding.upper()}", "undecodable bytes")
        return i + 1, self.raw(i), *_split(text, self.layout)

    def type_records(self, body: range, detail: Record, layout: FileLayout, file_name: str):
        """`type_rows` of the non-blank lines `body` as `detail` records, split a column at a time. A line of
        another shape (undecodable, no trailing separator, a wrong number of fields, a carriage return) is
        rare and goes through `_detail_row`, one by one."""
        index = self.records[body.start:body.stop]
        texts = self.texts.take(pa.array(index))
        shaped = pc.is_valid(texts)
        if layout.trailing_delimiter:
            ends_right = pc.fill_null(pc.ends_with(texts, layout.delimiter), False)
            shaped = pc.and_(shaped, ends_right)
            texts = pc.if_else(ends_right, pc.utf8_slice_codeunits(texts, 0, -len(layout.delimiter)), texts)
        parts = pc.split_pattern(texts, layout.delimiter)
        n = len(detail.fields)
        shaped = pc.and_(shaped, pc.equal(pc.list_value_length(parts), n))
        shaped = pc.fill_null(pc.and_(shaped, pc.invert(pc.match_substring(texts, "\r"))), False)
        shaped = shaped.to_numpy(zero_copy_only=False)
        regular, odd = np.flatnonzero(shaped), np.flatnonzero(~shaped)
        flat = pc.list_flatten(parts.take(pa.array(regular)))
        columns = [flat.take(pa.array(np.arange(j, len(flat), n))) for j in range(n)]
        pre: dict[int, tuple[str, str, str]] = {}
        if detail.match is not None:
            for j in np.flatnonzero(pc.not_equal(columns[0], detail.match).to_numpy(zero_copy_only=False)):
                pre[int(regular[j])] = (detail.fields[0].name, repr(detail.match), columns[0][int(j)].as_py())
        if len(odd):
            rows = [_detail_row(*self.record(body.start + int(j)), detail, layout) for j in odd]
            pre.update({int(j): r.error for j, r in zip(odd, rows) if r.error is not None})
            order = pa.array(np.argsort(np.r_[regular, odd], kind="stable"))
            columns = [pa.concat_arrays([col, pa.array([r.values[j] if j < len(r.values) else None for r in rows],
                                                       pa.string())]).take(order)
                       for j, col in enumerate(columns)]
        return type_columns({f.name: col for f, col in zip(detail.fields, columns)}, index + 1,
                            lambda i: self.raw(int(index[i])), detail, layout, file_name, layout.detail, pre)


def _stray_carriage_return(values: list, layout: FileLayout) -> int | None:
    """The first value holding a CR, in a layout without quoting (where no value can hold a line break, and the
    writer refuses one): a broken line end, never text."""
    if layout.quoting != "none":
        return None
    return next((i for i, v in enumerate(values) if isinstance(v, str) and "\r" in v), None)


class _RowShapeError(Exception):
    def __init__(self, row=None) -> None:
        super().__init__()
        self.line = row.number if row is not None else None
        self.expected = row.expected_columns if row is not None else None
        self.found = row.actual_columns if row is not None else None


def _arrow_csv_applies(layout: FileLayout) -> bool:
    kinds = [r.kind for r in layout.records]
    return layout.quoting == "rfc4180" and kinds == ["heading", "detail"] and not layout.variant_by


def _arrow_csv_batches(path: Path, layout: FileLayout):
    """Arrow's CSV reader, in blocks: the heading line checked against the layout, every value read as text,
    then typed a column at a time. `_line` counts lines as records (exact unless a quoted value holds a line
    break)."""
    heading, detail = layout.records
    titles = [f.type.value for f in heading.fields]
    with open(path, "rb") as f:
        first = f.readline()
    found = "CRLF" if first.endswith(b"\r\n") else "LF"
    wanted = "CRLF" if layout.line_end == b"\r\n" else "LF"
    if first.endswith(b"\n") and found != wanted:
        raise StructureError(path.name, f"line ends are {found}, the layout requires {wanted}", line=1,
                             expected=wanted, found=found)
    bad_rows: list = []

    def invalid(row) -> str:
        bad_rows.append(row)
        return "skip"

    try:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(encoding=layout.encoding, block_size=BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(delimiter=layout.delimiter, quote_char='"', double_quote=True,
                                              newlines_in_values=True, invalid_row_handler=invalid),
            convert_options=pa_csv.ConvertOptions(column_types={t: pa.string() for t in titles},
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid as e:
        raise _csv_error(path.name, layout, e) from None
    try:
        names = reader.schema.names  # Arrow decodes the heading's names only when asked
    except UnicodeDecodeError as e:
        raise EncodingError(path.name, "the heading line does not decode as its declared encoding", line=1,
                            expected=layout.encoding.upper(), found=repr(e.object[e.start:e.start + 4])) from None
    if names != titles:
        raise StructureError(path.name, "the heading line does not name the layout's columns", line=1,
                             expected=",".join(titles), found=",".join(names))
    heading_table = pa.table({"_line": pa.array([1], pa.int64()),
                              **{f.name: pa.array([f.type.value]) for f in heading.fields}})
    line = 1
    first_batch = True
    while True:
        try:
            rb = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as e:
            raise _csv_error(path.name, layout, e) from None
        if bad_rows:
            raise _RowShapeError(bad_rows[0])
        n = rb.num_rows
        lines = np.arange(line + 1, line + n + 1, dtype=np.int64)
        line += n
        texts = {f.name: rb.column(i) for i, f in enumerate(detail.fields)}

        def raw_of(i: int, rb=rb) -> bytes:
            return layout.delimiter.join(rb.column(k)[i].as_py() for k in range(rb.num_columns)).encode(
                layout.encoding)

        table, q = type_columns(texts, lines, raw_of, detail, layout, path.name)
        others = {heading.name: heading_table} if first_batch else {}
        first_batch = False
        yield Batch(table, q if q is not None else layout_tables(layout).quarantine, others, n + (1 if others else 0))
    if bad_rows:
        raise _RowShapeError(bad_rows[0])
    if first_batch:  # a heading line and no detail
        yield Batch(_empty_records(layout), layout_tables(layout).quarantine, {heading.name: heading_table}, 1)


def _csv_error(file_name: str, layout: FileLayout, e: Exception) -> Exception:
    if "utf8" in str(e).lower() or "decode" in str(e).lower():
        return EncodingError(file_name, "the file does not decode as its declared encoding",
                             expected=layout.encoding.upper(), found=str(e)[:80])
    return StructureError(file_name, f"not readable as CSV ({e})")


def _check_encoding(data: bytes, layout: FileLayout, file_name: str) -> None:
    """A GBK layout given a file that is valid UTF-8 with non-ASCII bytes was written in UTF-8: refuse it whole
    (every Chinese name would be garbled, not one line)."""
    if layout.encoding.lower() not in _MULTIBYTE or data.isascii():
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    # Genuine GBK Chinese is practically never valid UTF-8 holding CJK ideographs; a stray "隆" (C2 A1) is.
    if any("\u4e00" <= ch <= "\u9fff" for ch in text):
        raise EncodingError(file_name, "the file is encoded in UTF-8", expected=layout.encoding.upper(),
                            found="UTF-8")


def _logical_records(lines, layout: FileLayout, file_name: str) -> list[tuple[int, bytes, list[str], tuple | None]]:
    """Lines -> records: (first line, raw bytes, field texts, error or None). Empty lines are dropped."""
    out = []
    if layout.quoting == "rfc4180":
        # A quoted field may span lines, so the csv module reads on from line to line; an undecodable line
        # is replaced by a marker that fails its record.
        undecodable = {i for i, _, text in lines if text is None}
        texts = [(text if text is not None else "\ufffd") + "\n" for _, _, text in lines]
        numbers = [i for i, _, _ in lines]
        raws = [raw for _, raw, _ in lines]
        reader = csv.reader(iter(texts), delimiter=layout.delimiter, quotechar='"', strict=True)
        start = 0
        while True:
            try:
                values = next(reader)
                err = None
            except StopIteration:
                break
            except csv.Error as e:
                values, err = [], ("record", "RFC 4180 quoting", str(e))
            end = reader.line_num
            span = range(start, end)
            start = end
            if not values and err is None:
                continue  # an empty line
            raw = layout.line_end.join(raws[k] for k in span)
            if any(numbers[k] in undecodable for k in span):
                values, err = [], ("record", f"text in {layout.encoding.upper()}", "undecodable bytes")
            out.append((numbers[span[0]], raw, values, err))
        return out
    for i, raw, text in lines:
        if raw.strip(b" ") == b"":
            continue
        if text is None:
            out.append((i, raw, [], ("record", f"text in {layout.encoding.upper()}", "undecodable bytes")))
            continue
        out.append((i, raw, *_split(text, layout)))
    return out


def _split(text: str, layout: FileLayout) -> tuple[list[str], tuple | None]:
    if layout.trailing_delimiter:
        if not text.endswith(layout.delimiter):
            return [], ("record", f"a line ending with {layout.delimiter!r}", text[-len(layout.delimiter):])
        text = text[: -len(layout.delimiter)]
    return text.split(layout.delimiter), None


def _placement(layout: FileLayout, file_name: str = ""):
    """(records on the first lines, records on the last lines, header values -> detail record)."""
    kinds = [r.kind for r in layout.records]
    first = kinds.index("detail")
    last = len(kinds) - 1 - kinds[::-1].index("detail")
    leading, trailing = list(layout.records[:first]), list(layout.records[last + 1:])
    if not layout.variant_by:
        return leading, trailing, lambda others: layout.detail
    rec_name, _, fname = layout.variant_by.partition(".")
    by_value = {d.variant: d for d in layout.details}

    def detail_of(others: dict[str, pa.Table]) -> Record:
        value = others[rec_name][fname][0].as_py()
        if value not in by_value:
            raise StructureError(file_name, f"{layout.variant_by} {value!r} selects no detail layout",
                                 expected=" or ".join(by_value), found=value)
        return by_value[value]

    return leading, trailing, detail_of


def _fit_record(rec: Record, line: int, raw: bytes, values: list[str], err, file_name: str) -> list[str]:
    """Check a header, heading or trailer line's shape (its prefix, its record type, its field count)."""
    if err is not None:
        raise StructureError(file_name, f"the {rec.name} line is unreadable", line=line, expected=err[1],
                             found=err[2])
    if rec.prefix:
        if not values or not values[0].startswith(rec.prefix):
            raise StructureError(file_name, f"line {line} should be the {rec.name} line, opening with "
                                 f"{rec.prefix!r}", line=line, expected=rec.prefix, found=raw[:40])
        values = [values[0][len(rec.prefix):], *values[1:]]
    if rec.match is not None and (not values or values[0] != rec.match):
        raise StructureError(file_name, f"line {line} should be the {rec.name} line ({rec.match!r} first); "
                             f"is the {rec.name} missing?", line=line, expected=rec.match,
                             found=values[0] if values else "")
    if len(values) != len(rec.fields):
        raise StructureError(file_name, f"the {rec.name} line has the wrong number of fields", line=line,
                             expected=len(rec.fields), found=len(values))
    return values


def _empty_records(layout: FileLayout) -> pa.Table:
    return layout_tables(layout).records


# --- writing --------------------------------------------------------------------------------------------------


def write(path: Path, layout: FileLayout, records: pa.Table, header: dict | None = None,
          trailer: dict | None = None) -> int:
    """Write a delimited file in `layout`, atomically (tmp + rename); returns the number of detail records.

    `header` / `trailer` hold the values of the header and trailer records (merged dicts, as `read` returns
    them); headings are written from the layout. A text longer than its `max_bytes` raises `FieldOverflow`; a
    null where a value is required, or a separator inside an unquoted field, raises `UnwritableValue`."""
    write_files(layout, records, [OutFile(Path(path), 0, records.num_rows, header, trailer)])
    return records.num_rows


def write_files(layout: FileLayout, records: pa.Table, files: list[OutFile]) -> None:
    """Write many files of `layout`, each atomically, file `k`'s details being its slice of `records`.

    Every record type is rendered once for all files (the details of all files in one table, the headers of all
    files in another: a few Arrow calls per field, whatever the number of files), then cut per file at its lines.
    A value that cannot be written raises as a lone `write` of its file would, naming the file
    (`_rows.write_rendered`)."""
    write_rendered(_render_files, layout, records, files)


def render(layout: FileLayout, records: pa.Table, header: dict | None = None, trailer: dict | None = None) -> bytes:
    """The bytes of the file `write` would write."""
    return _render_files(layout, records, [OutFile(Path(), 0, records.num_rows, header, trailer)])[0]


def _render_files(layout: FileLayout, records: pa.Table, files: list[OutFile]) -> list[bytes]:
    """The bytes of each file, its lines in the layout's order of records. Each record type's lines are rendered
    for all files at once (one Arrow string array, each line with its line end), then each file's text is cut
    from them and encoded."""
    if not files:
        return []
    for rec in layout.records:
        if rec.kind == "header" and any(f.header is None for f in files):
            raise UnwritableValue(rec.name, "*", None, "no header values given")
    detail_of = _placement(layout)[2]
    parts: list[list[pa.Array]] = [[] for _ in files]
    for rec in layout.records:
        if rec.kind == "detail":
            if rec is not layout.detail:
                continue
            for detail, ks in _detail_records(layout, rec, files, detail_of):
                lines = _render_lines(rows_of_files(records, [files[k] for k in ks]), detail, layout)
                at = 0
                for k in ks:
                    parts[k].append(lines.slice(at, files[k].length))
                    at += files[k].length
        elif rec.kind == "heading":
            line = _render_lines(None, rec, layout, n=1)
            for part in parts:
                part.append(line)
        else:
            if rec.kind != "header" and any(f.trailer is None for f in files):
                raise UnwritableValue(rec.name, "*", None, "no trailer values given")
            lines = _render_lines(_values_table([f.header if rec.kind == "header" else f.trailer for f in files],
                                                rec), rec, layout)
            for k, part in enumerate(parts):
                part.append(lines.slice(k, 1))
    return [_encoded(part, layout) for part in parts]


def _detail_records(layout: FileLayout, rec: Record, files: list[OutFile], detail_of) -> list[tuple[Record, list[int]]]:
    """The detail record of each file (with `variant_by`, chosen by its header), and the files of each."""
    if not layout.variant_by:
        return [(rec, list(range(len(files))))]
    header_recs = [r for r in layout.records if r.kind == "header"]
    by_variant: dict[str | None, tuple[Record, list[int]]] = {}
    for k, f in enumerate(files):
        tables = {r.name: pa.table({g.name: column_values(f.header, g, r, 1) for g in r.fields}) for r in header_recs}
        detail = detail_of(tables)
        by_variant.setdefault(detail.variant, (detail, []))[1].append(k)
    return list(by_variant.values())


def _encoded(lines: list[pa.Array], layout: FileLayout) -> bytes:
    """A file's lines (string arrays, each line with its line end) as bytes of the layout's encoding."""
    text = b"".join(value_bytes(a).to_pybytes() for a in lines if len(a)).decode("utf-8")
    try:
        return text.encode(layout.encoding)
    except UnicodeEncodeError as e:
        raise UnwritableValue("record", "?", text[e.start:e.end], f"not representable in {layout.encoding}") from None


def _values_table(given: list[dict], rec: Record) -> pa.Table:
    """The header (or trailer) values of the files, one row per file. A field a file's dict lacks takes what a
    lone write takes for it (`column_values`: a Const its constant, a text null)."""
    columns = {}
    for f in rec.fields:
        if not any(f.name in values for values in given):
            continue
        lacking = None if all(f.name in values for values in given) else column_values(None, f, rec, 1)[0].as_py()
        columns[f.name] = pa.array([values.get(f.name, lacking) for values in given], type=f.type.arrow_type)
    return pa.table(columns) if columns else pa.table({"_": pa.nulls(len(given))}).drop_columns(["_"])


def _render_lines(source, rec: Record, layout: FileLayout, n: int | None = None) -> pa.Array:
    """The lines of `rec` for the rows of `source` (a table, or a table / dict of the values of `n` records), each
    with its line end, as an Arrow string array."""
    if n is None:
        n = source.num_rows
    delimiter = layout.delimiter
    columns = []
    for f in rec.fields:
        texts = pc.fill_null(render_column(column_values(source, f, rec, n), f, rec, layout), "")
        if layout.quoting == "none":
            held = np.flatnonzero(_holds(texts, (delimiter, "\r", "\n")))
            if len(held):
                r = int(held[0])
                raise UnwritableValue(rec.name, f.name, texts[r].as_py(), f"holds the separator {delimiter!r} or a "
                                      "line break, and this layout has no quoting", r)
        else:
            texts = _quoted(texts, delimiter, alone=len(rec.fields) == 1)
        columns.append(texts)
    if not columns:
        columns = [pa.array([""] * n, pa.string())]
    lines = pc.binary_join_element_wise(*columns, delimiter)
    if layout.quoting == "none" and layout.trailing_delimiter:
        lines = pc.binary_join_element_wise(lines, delimiter, "")
    return pc.binary_join_element_wise(rec.prefix, lines, layout.line_end.decode("ascii"), "")


def _quoted(texts: pa.Array, delimiter: str, alone: bool) -> pa.Array:
    """RFC 4180 as the csv module writes it (QUOTE_MINIMAL, line terminator LF): a value holding the delimiter, a
    double quote or a line feed is quoted, its quotes doubled; so is an empty value alone on its line."""
    needs = _holds(texts, (delimiter, '"', "\n"))
    if alone:
        needs |= pc.equal(texts, "").to_numpy(zero_copy_only=False)
    if not needs.any():
        return texts
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(texts, '"', '""'), '"', "")
    return pc.if_else(pa.array(needs), quoted, texts)


def _holds(texts: pa.Array, needles: tuple[str, ...]) -> np.ndarray:
    """Per value, whether it holds any of `needles` (literal texts)."""
    held = np.zeros(len(texts), dtype=bool)
    for needle in needles:
        held |= pc.match_substring(texts, needle).to_numpy(zero_copy_only=False)
    return held
