"""The generic engine for Excel workbooks (.xlsx; payroll batches from employers and their result files).

Reading uses openpyxl in read-only mode, by value: a formula cell counts by its cached value, and one without a
cached value is an error for its row. Only the layout's worksheet (`options["sheet"]`) is read; merged cells,
styles and hidden sheets play no part. Header and heading fields sit in given cells (`Cell(..., "B2", ...)`);
detail rows start at `options["first_row"]` and run to the trailer row, the first whose column A holds the
trailer's `match` (合计); empty rows between them are ignored. A detail field is the cell of its column (A, B,
...). `_line` is the worksheet row number.

Cell types are part of the contract: a text field needs a text cell (an account stored as a number has lost its
leading zeros and its digits past 15), a number field a number cell. Amounts are read exactly: the cell's number
is taken by its shortest decimal form (`repr`), which is the decimal the workbook stores, so 1234.5 is 123450 fen
and 12.345 is a row error, never a rounded float.

Writing produces identical bytes on a rerun: the workbook's created and modified times are the business date
(never the clock), and every zip entry carries that same timestamp.
"""
from __future__ import annotations

import datetime as dt
import io
import os
import re
import zipfile
import zlib
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from formats._rows import RawRow, column_values, render_texts, type_rows
from formats.errors import StructureError, UnsafeXml, UnwritableValue
from formats.flag import Flag
from formats.layout import Code, Const, Date8, Digits, Field, FileLayout, Int, Record, Text, Yuan
from formats.result import Batch, ReadResult, Totals, empty_quarantine

_TEXT_TYPES = (Text, Const, Code, Digits)
MAX_UNPACKED_BYTES = 64 << 20   # a payroll batch of ten thousand rows is a few MB of sheet XML
MAX_PARTS = 1000
_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def _col_row(ref: str) -> tuple[int, int]:
    m = re.fullmatch(r"([A-Z]+)([0-9]+)", ref)
    col = 0
    for ch in m.group(1):
        col = col * 26 + ord(ch) - 64
    return col - 1, int(m.group(2))


def _yuan_text(value: float | int) -> str:
    # repr gives the shortest decimal that reads back as the same double: the number as the workbook wrote it.
    return format(Decimal(repr(value)), "f")


def _cell_text(value, formula, f: Field) -> tuple[str | None, tuple[str, str] | None]:
    """A cell -> (its text in wire form, or a (expected, found) error for the row)."""
    if value is None and isinstance(formula, str) and formula.startswith("="):
        return None, ("a formula with a cached value", f"formula {formula} without a cached value")
    if value is None:
        return ("" if isinstance(f.type, _TEXT_TYPES) else None), None
    number = isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)
    if isinstance(f.type, _TEXT_TYPES):
        if isinstance(value, str):
            return value.strip(" "), None
        what = f"number {value!r} (a number cell loses leading zeros and digits past 15)" if number else \
            f"{type(value).__name__} {value!r}"
        return None, ("a text cell", what)
    if isinstance(f.type, Yuan):
        if number:
            return _yuan_text(value), None
        return None, ("a number cell (yuan)", f"{type(value).__name__} {value!r}")
    if isinstance(f.type, Int):
        if number and float(value).is_integer():
            return str(int(value)), None
        return None, ("a whole number cell", f"{type(value).__name__} {value!r}")
    if isinstance(f.type, Date8) and isinstance(value, (dt.date, dt.datetime)):
        return value.strftime("%Y%m%d"), None
    return str(value), None


def _row(line: int, values: tuple, formulas: tuple, rec: Record, refs: list[tuple[int, int]] | None = None,
         grid=None) -> RawRow:
    texts, errors = [], {}
    cells = []
    for i, f in enumerate(rec.fields):
        if refs is not None:
            c, r = refs[i]
            v, fm = grid(r, c)
        else:
            v = values[i] if i < len(values) else None
            fm = formulas[i] if i < len(formulas) else None
        cells.append(v)
        text, err = _cell_text(v, fm, f)
        texts.append(text)
        if err:
            errors[i] = err
    raw = repr(tuple(cells)).encode("utf-8")
    return RawRow(line, raw, texts, cell_errors=errors)


def _check_package(path: Path, file_name: str) -> None:
    """Refuse a workbook that would inflate past `MAX_UNPACKED_BYTES` (a zip bomb) or whose XML parts declare a
    DTD or entities (what defusedxml refuses), before openpyxl parses anything. The sizes checked are the ones
    the zip declares; zipfile never inflates an entry past its declared size (a lie fails its CRC)."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            total = sum(i.file_size for i in infos)
            if len(infos) > MAX_PARTS or total > MAX_UNPACKED_BYTES:
                raise UnsafeXml(file_name, "the workbook inflates past the limit (a zip bomb?)",
                                expected=f"<= {MAX_UNPACKED_BYTES} bytes in <= {MAX_PARTS} parts",
                                found=f"{total} bytes in {len(infos)} parts")
            for info in infos:
                if info.filename.endswith((".xml", ".rels", ".vml")) and _DTD.search(z.read(info)):
                    raise UnsafeXml(file_name, f"the workbook part {info.filename} declares a DTD or entities, "
                                    "which are never accepted", expected="no DTD and no entities", found="<!DOCTYPE")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error) as e:
        raise StructureError(file_name, f"not a readable .xlsx workbook ({e})") from None


def _load(path: Path, sheet: str, file_name: str) -> tuple[list[tuple], list[tuple]]:
    """The sheet's rows twice: cell values (a formula's cached value) and cell formulas.

    openpyxl fails on a malformed workbook in many ways (a ParseError, a TypeError from an unknown attribute, a
    KeyError for a missing part...): whatever it raises while parsing means the workbook cannot be read, and is
    reported as such, with openpyxl's own words."""
    import openpyxl  # imported here: only Excel layouts need it
    _check_package(path, file_name)
    books = []
    try:
        for data_only in (True, False):
            books.append(openpyxl.load_workbook(path, read_only=True, data_only=data_only))
        if sheet not in books[0].sheetnames:
            raise StructureError(file_name, "the workbook has no worksheet of that name", expected=sheet,
                                 found=", ".join(books[0].sheetnames))
        out = []
        for wb in books:
            ws = wb[sheet]
            ws.reset_dimensions()  # trust the cells, not a dimension tag some writers get wrong
            out.append([tuple(r) for r in ws.iter_rows(values_only=True)])
        return out[0], out[1]
    except StructureError:
        raise
    except Exception as e:  # noqa: BLE001 - see the docstring: any parse failure is an unreadable workbook
        raise StructureError(file_name, f"not a readable .xlsx workbook ({type(e).__name__}: {e})") from None
    finally:
        for wb in books:
            wb.close()


def read(path: Path, layout: FileLayout, flag: Flag | None = None) -> ReadResult:
    """Read the layout's worksheet. Row errors are quarantined; a workbook that cannot be opened, a missing
    sheet, header cell, heading or 合计 row, or a control off, raises a `FileRejected` subclass."""
    path = Path(path)
    values, formulas = _load(path, layout.options["sheet"], path.name)

    def grid(r: int, c: int):
        row = values[r - 1] if r - 1 < len(values) else ()
        frow = formulas[r - 1] if r - 1 < len(formulas) else ()
        return (row[c] if c < len(row) else None), (frow[c] if c < len(frow) else None)

    others: dict[str, pa.Table] = {}
    for rec in layout.records:
        if rec.kind not in ("header", "heading"):
            continue
        refs = [_col_row(f.at) for f in rec.fields]
        raw = _row(refs[0][1], (), (), rec, refs, grid)
        table, q = type_rows([raw], rec, layout, path.name)
        if q is not None:
            b = q.to_pylist()[0]
            cell = rec.field(b["_field"]).at if b["_field"] in rec.names else "?"
            raise StructureError(path.name, f"cell {cell} ({rec.name}.{b['_field']}) is unreadable",
                                 line=b["_line"], expected=b["_expected"], found=b["_actual"])
        others[rec.name] = table
    first_row = int(layout.options.get("first_row", 2))
    trailer = next((r for r in layout.records if r.kind == "trailer"), None)
    rows, end = [], len(values) + 1
    for r in range(first_row, len(values) + 1):
        cells = values[r - 1]
        if trailer is not None and cells and isinstance(cells[0], str) and cells[0].strip() == trailer.match:
            end = r
            break
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in cells) and \
                all(v is None for v in formulas[r - 1]):
            continue  # empty rows between data rows are ignored (spec)
        rows.append(_row(r, cells, formulas[r - 1], layout.detail))
    if trailer is not None:
        if end > len(values):
            raise StructureError(path.name, f"no {trailer.match} row after the data (the first row whose column A "
                                 f"is {trailer.match!r})", expected=trailer.match, found="none")
        table, q = type_rows([_row(end, values[end - 1], formulas[end - 1], trailer)], trailer, layout, path.name)
        if q is not None:
            b = q.to_pylist()[0]
            raise StructureError(path.name, f"the {trailer.match} row is unreadable at {b['_field']}", line=end,
                                 expected=b["_expected"], found=b["_actual"])
        others[trailer.name] = table
    if rows:
        table, q = type_rows(rows, layout.detail, layout, path.name)
    else:
        table, q = pa.schema([("_line", pa.int64()), *layout.arrow_schema()]).empty_table(), None
    batch = Batch(table, q if q is not None else empty_quarantine(layout), others, len(values))
    totals = Totals(layout)
    totals.add(batch)
    return totals.finish(path.name, [batch], flag, extra={"sheet": layout.options["sheet"]})


# --- writing --------------------------------------------------------------------------------------------------


def _cell_value(f: Field, text: str | None):
    """A typed value -> what goes into the cell: text for text fields, a number for numbers (amounts as
    Decimal, written as their exact decimal text)."""
    if text is None:
        return None
    if isinstance(f.type, Yuan):
        return Decimal(text)
    if isinstance(f.type, Int):
        return int(text)
    return text


def _business_date(path: Path, business_date: dt.date | None) -> dt.date:
    if business_date is not None:
        return business_date
    m = re.search(r"(?<![0-9])(20[0-9]{6})(?![0-9])", path.name)
    if not m:
        raise UnwritableValue("workbook", "business_date", path.name,
                              "no business date given and none (YYYYMMDD) in the file name; the workbook's "
                              "timestamps are derived from it, never from the clock")
    return dt.datetime.strptime(m.group(1), "%Y%m%d").date()


def render(layout: FileLayout, records: pa.Table, header: dict | None, trailer: dict | None,
           business_date: dt.date) -> bytes:
    """The bytes `write` would write for `business_date`."""
    from openpyxl import Workbook
    from openpyxl.writer.excel import ExcelWriter

    wb = Workbook()
    ws = wb.active
    ws.title = layout.options["sheet"]
    stamp = dt.datetime.combine(business_date, dt.time(0, 0, 0))
    wb.properties.created = stamp
    wb.properties.modified = stamp
    wb.properties.creator = "duizhang"
    wb.properties.lastModifiedBy = "duizhang"

    def put(row: int, col: int, f: Field, text: str | None) -> None:
        cell = ws.cell(row=row, column=col + 1, value=_cell_value(f, text))
        if isinstance(f.type, Yuan):
            cell.number_format = "0.00"
        elif isinstance(f.type, _TEXT_TYPES):
            cell.number_format = "@"   # text cells stay text when a clerk edits them
            if text:
                cell.data_type = "s"   # a name starting with "=" is text, never a formula openpyxl would make it

    for rec in layout.records:
        if rec.kind not in ("header", "heading"):
            continue
        if rec.kind == "header" and header is None:
            raise UnwritableValue(rec.name, "*", None, "no header values given")
        for f in rec.fields:
            c, r = _col_row(f.at)
            put(r, c, f, render_texts(column_values(header if rec.kind == "header" else None, f, rec, 1), f, rec,
                                      layout)[0])
    row = int(layout.options.get("first_row", 2))
    detail = layout.detail
    columns = [render_texts(column_values(records, f, detail, records.num_rows), f, detail, layout)
               for f in detail.fields]
    for i in range(records.num_rows):
        for c, f in enumerate(detail.fields):
            put(row, c, f, columns[c][i])
        row += 1
    for rec in layout.records:
        if rec.kind == "trailer":
            if trailer is None:
                raise UnwritableValue(rec.name, "*", None, "no trailer values given")
            for c, f in enumerate(rec.fields):
                put(row, c, f, render_texts(column_values(trailer, f, rec, 1), f, rec, layout)[0])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(wb, archive).write_data()  # not save_workbook(): it stamps `modified` with the clock
    return _fix_zip(buf.getvalue(), stamp)


def _fix_zip(data: bytes, stamp: dt.datetime) -> bytes:
    """Rewrite a zip with every entry dated `stamp` (zipfile stamps entries with the clock)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=stamp.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o600 << 16
            fixed.create_system = 0
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


def write(path: Path, layout: FileLayout, records: pa.Table, header: dict | None = None,
          trailer: dict | None = None, business_date: dt.date | None = None) -> int:
    """Write the workbook atomically (tmp + rename); returns the number of data rows.

    The timestamps inside come from `business_date`, or from the `YYYYMMDD` in the file name
    (`DF_..._20261121_01_RESULT.xlsx`); with neither, `UnwritableValue` is raised rather than using the clock.
    Text fields are written as text cells, counts as whole numbers, amounts as numbers with two decimals."""
    path = Path(path)
    data = render(layout, records, header, trailer, _business_date(path, business_date))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return records.num_rows
