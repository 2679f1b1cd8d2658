"""The generic engine for Excel workbooks (.xlsx; payroll batches from employers and their result files).

Reading parses the worksheet part itself (the zip's XML, with ElementTree, after the package is checked for bombs
and DTDs), cell by cell as openpyxl reads a workbook by value, without openpyxl's cost per workbook and per cell: a
formula cell counts by its cached value, and one without a cached value is an error for its row. Only the layout's worksheet (`options["sheet"]`) is read; merged cells,
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
import functools
import io
import os
import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
import zlib
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from formats._rows import column_values, render_texts, type_values
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


def _cell_text(value, formula: str | None, f: Field) -> tuple[str | None, tuple[str, str] | None]:
    """A cell (its value, its formula if any) -> (its text in wire form, or a (expected, found) error for the
    row)."""
    if value is None and formula is not None:
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


def _check_package(path: Path, file_name: str) -> dict[str, bytes]:
    """Refuse a workbook that would inflate past `MAX_UNPACKED_BYTES` (a zip bomb) or whose XML parts declare a
    DTD or entities (what defusedxml refuses), before anything is parsed; returns the XML parts by name. The
    sizes checked are the ones the zip declares; zipfile never inflates an entry past its declared size (a lie
    fails its CRC)."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            total = sum(i.file_size for i in infos)
            if len(infos) > MAX_PARTS or total > MAX_UNPACKED_BYTES:
                raise UnsafeXml(file_name, "the workbook inflates past the limit (a zip bomb?)",
                                expected=f"<= {MAX_UNPACKED_BYTES} bytes in <= {MAX_PARTS} parts",
                                found=f"{total} bytes in {len(infos)} parts")
            parts = {}
            for info in infos:
                if info.filename.endswith((".xml", ".rels", ".vml")):
                    parts[info.filename] = data = z.read(info)
                    if _DTD.search(data):
                        raise UnsafeXml(file_name, f"the workbook part {info.filename} declares a DTD or entities, "
                                        "which are never accepted", expected="no DTD and no entities",
                                        found="<!DOCTYPE")
            return parts
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error) as e:
        raise StructureError(file_name, f"not a readable .xlsx workbook ({e})") from None


# The package, as openpyxl finds its way through it: the workbook part by its content type, the sheets by the
# workbook's relationships, the shared strings by their content type.
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_CT = "{http://schemas.openxmlformats.org/package/2006/content-types}"
_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_R_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_SHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.%s+xml"
_WORKBOOK_TYPES = ("application/vnd.ms-excel.template.macroEnabled.main+xml",
                   "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
                   _SHEET_TYPE % "template.main", _SHEET_TYPE % "sheet.main")
_ROW, _CELL, _V, _F, _IS, _T, _R = (_MAIN + t for t in ("row", "c", "v", "f", "is", "t", "r"))
_COLUMNS = {}   # column letters -> 1-based index, A..XFD as openpyxl knows them
for _i in range(1, 16385):
    _n, _letters = _i, ""
    while _n:
        _n, _rem = divmod(_n - 1, 26)
        _letters = chr(65 + _rem) + _letters
    _COLUMNS[_letters] = _i


def _text_content(node) -> str:
    """A string item's text as openpyxl gives it: its plain `t` and the `t` of each rich-text run, not the
    phonetic runs."""
    plain, runs = None, []
    for child in node:
        if child.tag == _T:
            plain = child.text
        elif child.tag == _R:
            t = None
            for part in child:
                if part.tag == _T:
                    t = part.text
            if t is not None:
                runs.append(t)
    return "".join(([plain] if plain is not None else []) + runs)


def _number(text: str) -> int | float:
    return float(text) if "." in text or "E" in text or "e" in text else int(text)


def _formula_text(node, ref: str | None, shared: dict) -> str:
    """A cell's formula as openpyxl gives it: `=` and its text, a shared formula's followers translated from the
    cell that defines it."""
    text = "=" + (node.text or "")
    if node.get("t") == "shared":
        idx = node.get("si")
        if idx in shared:
            return shared[idx].translate_formula(ref)
        if text != "=":
            from openpyxl.formula.translate import Translator  # shared formulas are rare in a batch
            shared[idx] = Translator(text, ref)
    return text


@functools.lru_cache(maxsize=1 << 16)  # a night's sheets use the same few thousand references
def _column(ref: str) -> int:
    """The 1-based column of a cell reference, read as openpyxl does (letters up to the first digit)."""
    idx = next((i for i, ch in enumerate(ref) if ch in "0123456789"), len(ref) - 1)
    int(ref[idx:])  # a reference without a row number is malformed
    return _COLUMNS[ref[:idx].upper()]


def _date(number: int | float, duration: bool, workbook: ET.Element):
    """A number in a date style, as openpyxl reads it: a date (or a duration), by the workbook's epoch."""
    from openpyxl.utils.datetime import CALENDAR_MAC_1904, CALENDAR_WINDOWS_1900, from_excel  # dates only
    pr = workbook.find(_MAIN + "workbookPr")
    epoch = CALENDAR_MAC_1904 if pr is not None and pr.get("date1904") in ("1", "true") else CALENDAR_WINDOWS_1900
    try:
        return from_excel(number, epoch, timedelta=duration)
    except (OverflowError, ValueError):
        return "#VALUE!"  # openpyxl's error value for a date out of range


# Built-in number formats that show no date (general, numbers, percentages, fractions, accounting, text).
_NO_DATE_FORMATS = frozenset([*range(0, 14), *range(37, 45), 48, 49])


@functools.lru_cache(maxsize=64)  # the workbooks of one writer share their styles part
def _date_styles(styles: bytes | None) -> tuple[frozenset, frozenset]:
    """The indexes of the cell styles whose number format is a date, and of those that are a duration."""
    if styles is None:
        return frozenset(), frozenset()
    root = ET.fromstring(styles)
    custom = {int(n.get("numFmtId")): n.get("formatCode") for n in root.iter(_MAIN + "numFmt")}
    xfs = root.find(_MAIN + "cellXfs")
    fmt_ids = [int(xf.get("numFmtId", 0)) for xf in (xfs if xfs is not None else ())]
    if all(i in _NO_DATE_FORMATS and i not in custom for i in fmt_ids):
        return frozenset(), frozenset()
    from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format, is_timedelta_format  # dates only
    formats = [custom[i] if i in custom else BUILTIN_FORMATS.get(i) for i in fmt_ids]
    return (frozenset(i for i, fmt in enumerate(formats) if is_date_format(fmt)),
            frozenset(i for i, fmt in enumerate(formats) if is_timedelta_format(fmt)))


def _sheet_path(parts: dict[str, bytes], sheet: str, file_name: str) -> tuple[str, ET.Element]:
    """The zip path of the named worksheet (hidden or not), and the workbook element."""
    types = ET.fromstring(parts["[Content_Types].xml"])
    overrides = [(o.get("PartName"), o.get("ContentType")) for o in types.iter(_CT + "Override")]
    part = next((name for ct in _WORKBOOK_TYPES for name, t in overrides if t == ct), None)
    if part is None:
        if not {d.get("ContentType") for d in types.iter(_CT + "Default")} & set(_WORKBOOK_TYPES):
            raise ValueError("File contains no valid workbook part")
        part = "/xl/workbook.xml"
    wb_path = part[1:]
    workbook = ET.fromstring(parts[wb_path])
    folder, name = posixpath.split(wb_path)
    rels_path = posixpath.join(folder, "_rels", f"{name}.rels")
    targets = {}
    for rel in ET.fromstring(parts[rels_path]).iter(_PKG_REL + "Relationship"):
        target = rel.get("Target")
        if rel.get("TargetMode") != "External":
            target = target[1:] if target.startswith("/") else \
                posixpath.normpath(posixpath.join(posixpath.split(posixpath.dirname(rels_path))[0], target))
        targets[rel.get("Id")] = target
    names, found = [], None
    for node in workbook.iter(_MAIN + "sheet"):
        rid = node.get(_R_ID)
        if not rid:
            continue
        target = targets[rid]
        if target not in parts:
            continue
        names.append(node.get("name"))
        if node.get("name") == sheet and found is None:
            found = target
    if found is None:
        raise StructureError(file_name, "the workbook has no worksheet of that name", expected=sheet,
                             found=", ".join(names))
    return found, workbook


def _shared_strings(parts: dict[str, bytes]) -> list[str]:
    types = ET.fromstring(parts["[Content_Types].xml"])
    name = next((o.get("PartName") for o in types.iter(_CT + "Override")
                 if o.get("ContentType") == _SHEET_TYPE % "sharedStrings"), None)
    if name is None:
        return []
    return [_text_content(si).replace("x005F_", "") for si in ET.fromstring(parts[name[1:]]).iter(_MAIN + "si")]


def _load(path: Path, sheet: str, file_name: str) -> tuple[list[tuple], list[dict[int, str]]]:
    """The sheet's rows: per row the cell values (a formula's cached value), and the formulas by column index.

    The cells are read as openpyxl reads them by value (read-only, data_only): a row by its number, a cell by its
    reference or after the previous one, `t="s"` a shared string, `t="inlineStr"` and `t="str"` text, a number
    in a date style a date. A workbook that cannot be parsed in any way (malformed XML, a missing part, a
    reference or index that points nowhere) is reported as unreadable, with the parser's own words."""
    parts = _check_package(path, file_name)
    try:
        sheet_path, workbook = _sheet_path(parts, sheet, file_name)
        shared = _shared_strings(parts)
        date_styles = None  # read from styles.xml at the first styled number cell
        root = ET.fromstring(parts[sheet_path])
        values, formulas = [], []
        row_number, shared_formulas = 0, {}
        for row in root.iter(_ROW):
            r = row.get("r")
            if r is not None:
                try:
                    row_number = int(r)
                except ValueError:
                    as_float = float(r)
                    if not as_float.is_integer():
                        raise ValueError(f"{r} is not a valid row number") from None
                    row_number = int(as_float)
            else:
                row_number += 1
            col, cells, with_formula = 0, [], {}
            for c in row:
                t = c.get("t", "n")
                style = c.get("s", 0)
                if style:
                    style = int(style)
                ref = c.get("r")
                col = _column(ref) if ref else col + 1
                value = None if t == "inlineStr" else (c.findtext(_V, None) or None)
                if value is not None:
                    if t == "n":
                        value = _number(value)
                        if style:
                            if date_styles is None:
                                date_styles = _date_styles(parts.get("xl/styles.xml"))
                            if style in date_styles[0]:
                                value = _date(value, style in date_styles[1], workbook)
                    elif t == "s":
                        value = shared[int(value)]
                    elif t == "b":
                        value = bool(int(value))
                    elif t == "d":
                        from openpyxl.utils.datetime import from_ISO8601  # a date cell: rare
                        value = from_ISO8601(value)
                elif t == "inlineStr":
                    child = c.find(_IS)
                    if child is not None:
                        # the common <is><t>..</t></is> without the call
                        value = (child[0].text or "") if len(child) == 1 and child[0].tag == _T else \
                            _text_content(child)
                formula = c.find(_F)
                if formula is not None:
                    with_formula[col] = _formula_text(formula, ref, shared_formulas)
                cells.append((col, value))
            # openpyxl's read-only rows: missing rows are empty, a row number not above the last is skipped,
            # a row is as wide as its last cell's column
            while len(values) < row_number - 1:
                values.append(())
                formulas.append({})
            if len(values) < row_number:
                out = [None] * (cells[-1][0] if cells else 0)
                for col, value in cells:
                    if col <= len(out):
                        out[col - 1] = value
                values.append(tuple(out))
                formulas.append({c - 1: text for c, text in with_formula.items() if c <= len(out)})
        return values, formulas
    except StructureError:
        raise
    except Exception as e:  # noqa: BLE001 - see the docstring: any parse failure is an unreadable workbook
        raise StructureError(file_name, f"not a readable .xlsx workbook ({type(e).__name__}: {e})") from None


def _raw(cells: tuple) -> bytes:
    return repr(cells).encode("utf-8")


def _texts(rows: list[tuple], formulas: list[dict[int, str]], rec: Record) -> tuple[list[list], dict]:
    """The rows' cells -> per field the column of texts, and per row index its first cell error."""
    columns, pre = [], {}
    for i, f in enumerate(rec.fields):
        texts = []
        is_text = isinstance(f.type, _TEXT_TYPES)
        for n, (cells, with_formula) in enumerate(zip(rows, formulas)):
            v = cells[i] if i < len(cells) else None
            if is_text and type(v) is str:
                texts.append(v.strip(" "))  # the common case, without the call
                continue
            text, err = _cell_text(v, with_formula.get(i), f)
            texts.append(text)
            if err and n not in pre:
                pre[n] = (f.name, *err)
        columns.append(texts)
    return columns, pre


def _type_cells(rows: list[tuple], formulas: list[dict[int, str]], lines: list[int], rec: Record, layout: FileLayout,
                file_name: str) -> tuple[pa.Table, pa.Table | None]:
    """`type_rows` for rows of cells: a row's raw form is the repr of its cells (one per field)."""
    width = len(rec.fields)
    columns, pre = _texts(rows, formulas, rec)
    return type_values(columns, lines,
                       lambda i: _raw(tuple(rows[i][c] if c < len(rows[i]) else None for c in range(width))),
                       rec, layout, file_name, pre=pre)


def read(path: Path, layout: FileLayout, flag: Flag | None = None) -> ReadResult:
    """Read the layout's worksheet. Row errors are quarantined; a workbook that cannot be opened, a missing
    sheet, header cell, heading or 合计 row, or a control off, raises a `FileRejected` subclass."""
    path = Path(path)
    values, formulas = _load(path, layout.options["sheet"], path.name)

    others: dict[str, pa.Table] = {}
    for rec in layout.records:
        if rec.kind not in ("header", "heading"):
            continue
        refs = [_col_row(f.at) for f in rec.fields]
        # each field's cell, as a row of its own with the field in its place
        cells, with_formula = [], {}
        for i, (c, r) in enumerate(refs):
            row = values[r - 1] if r - 1 < len(values) else ()
            cells.append(row[c] if c < len(row) else None)
            if r - 1 < len(formulas) and c in formulas[r - 1]:
                with_formula[i] = formulas[r - 1][c]
        table, q = _type_cells([tuple(cells)], [with_formula], [refs[0][1]], rec, layout, path.name)
        if q is not None:
            b = q.to_pylist()[0]
            cell = rec.field(b["_field"]).at if b["_field"] in rec.names else "?"
            raise StructureError(path.name, f"cell {cell} ({rec.name}.{b['_field']}) is unreadable",
                                 line=b["_line"], expected=b["_expected"], found=b["_actual"])
        others[rec.name] = table
    first_row = int(layout.options.get("first_row", 2))
    trailer = next((r for r in layout.records if r.kind == "trailer"), None)
    rows, row_formulas, lines, end = [], [], [], len(values) + 1
    for r in range(first_row, len(values) + 1):
        cells = values[r - 1]
        if trailer is not None and cells and isinstance(cells[0], str) and cells[0].strip() == trailer.match:
            end = r
            break
        if not formulas[r - 1] and all(v is None for v in cells):
            continue  # empty rows between data rows are ignored (spec)
        rows.append(cells)
        row_formulas.append(formulas[r - 1])
        lines.append(r)
    if trailer is not None:
        if end > len(values):
            raise StructureError(path.name, f"no {trailer.match} row after the data (the first row whose column A "
                                 f"is {trailer.match!r})", expected=trailer.match, found="none")
        table, q = _type_cells([values[end - 1]], [formulas[end - 1]], [end], trailer, layout, path.name)
        if q is not None:
            b = q.to_pylist()[0]
            raise StructureError(path.name, f"the {trailer.match} row is unreadable at {b['_field']}", line=end,
                                 expected=b["_expected"], found=b["_actual"])
        others[trailer.name] = table
    if rows:
        table, q = _type_cells(rows, row_formulas, lines, layout.detail, layout, path.name)
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
