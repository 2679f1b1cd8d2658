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

import dataclasses
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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from formats._rows import column_values, render_column, rows_of_files, type_values, value_bytes, write_rendered
from formats.errors import StructureError, UnsafeXml, UnwritableValue
from formats.flag import Flag
from formats.layout import Code, Const, Date8, Digits, Field, FileLayout, Int, Record, Text, Yuan
from formats.result import Batch, OutFile, ReadResult, Totals, empty_quarantine

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
            col, out, with_formula = 0, [], {}
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
                        # openpyxl's reading of a number: a float if it has a point or an exponent
                        value = float(value) if "." in value or "E" in value or "e" in value else int(value)
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
                # as openpyxl: a cell at a column already seen replaces it, the row is as wide as its last cell
                if col > len(out):
                    if col != len(out) + 1:
                        out.extend([None] * (col - 1 - len(out)))
                    out.append(value)
                else:
                    out[col - 1] = value
                    with_formula.pop(col - 1, None)
                formula = c.find(_F)
                if formula is not None:
                    with_formula[col - 1] = _formula_text(formula, ref, shared_formulas)
            del out[col:]
            # openpyxl's read-only rows: missing rows are empty, a row number not above the last is skipped
            while len(values) < row_number - 1:
                values.append(())
                formulas.append(_NO_FORMULAS)
            if len(values) < row_number:
                values.append(tuple(out))
                formulas.append({c: text for c, text in with_formula.items() if c < col} if with_formula
                                else _NO_FORMULAS)
        return values, formulas
    except StructureError:
        raise
    except Exception as e:  # noqa: BLE001 - see the docstring: any parse failure is an unreadable workbook
        raise StructureError(file_name, f"not a readable .xlsx workbook ({type(e).__name__}: {e})") from None


_EXACT = 2 ** 53                    # an int of fewer bits is a whole float
_NO_FORMULAS: dict[int, str] = {}  # shared by the rows without a formula: never changed


def _raw(cells: tuple) -> bytes:
    return repr(cells).encode("utf-8")


def _texts(rows: list[tuple], formulas: list[dict[int, str]], rec: Record) -> tuple[list[list], dict]:
    """The rows' cells -> per field the column of texts, and per row index its first cell error."""
    columns, pre = [], {}
    for i, f in enumerate(rec.fields):
        texts = []
        is_text, is_yuan, is_int = (isinstance(f.type, t) for t in (_TEXT_TYPES, Yuan, Int))
        for n, (cells, with_formula) in enumerate(zip(rows, formulas)):
            v = cells[i] if i < len(cells) else None
            # the common cases, as _cell_text reads them, without the call
            if is_text and type(v) is str:
                texts.append(v.strip(" "))
                continue
            if is_yuan and (type(v) is float or type(v) is int):
                texts.append(_yuan_text(v))
                continue
            if is_int and type(v) is int and -_EXACT < v < _EXACT:
                texts.append(str(v))
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


def _record_cells(rec: Record, values: list[tuple], formulas: list[dict[int, str]], end: int
                 ) -> tuple[tuple, dict[int, str], int]:
    """The cells of a header, heading or trailer record (a header's and heading's at their references, the
    trailer's in row `end`), their formulas by field index, and the record's line."""
    if rec.kind == "trailer":
        return values[end - 1], formulas[end - 1], end
    refs = [_col_row(f.at) for f in rec.fields]
    cells, with_formula = [], {}
    for i, (c, r) in enumerate(refs):
        row = values[r - 1] if r - 1 < len(values) else ()
        cells.append(row[c] if c < len(row) else None)
        if r - 1 < len(formulas) and c in formulas[r - 1]:
            with_formula[i] = formulas[r - 1][c]
    return tuple(cells), with_formula, refs[0][1]


def _fixed_one_by_one(values: list[tuple], formulas: list[dict[int, str]], end: int, layout: FileLayout,
                      path: Path) -> dict[str, pa.Table]:
    """The header, heading and trailer records typed one by one, raising at the first one unreadable (and at a
    missing 合计 row, after the header)."""
    others: dict[str, pa.Table] = {}
    for rec in layout.records:
        if rec.kind not in ("header", "heading", "trailer"):
            continue
        if rec.kind == "trailer" and end > len(values):
            raise StructureError(path.name, f"no {rec.match} row after the data (the first row whose column A "
                                 f"is {rec.match!r})", expected=rec.match, found="none")
        cells, with_formula, line = _record_cells(rec, values, formulas, end)
        table, q = _type_cells([cells], [with_formula], [line], rec, layout, path.name)
        if q is not None:
            b = q.to_pylist()[0]
            if rec.kind == "trailer":
                raise StructureError(path.name, f"the {rec.match} row is unreadable at {b['_field']}", line=end,
                                     expected=b["_expected"], found=b["_actual"])
            cell = rec.field(b["_field"]).at if b["_field"] in rec.names else "?"
            raise StructureError(path.name, f"cell {cell} ({rec.name}.{b['_field']}) is unreadable",
                                 line=b["_line"], expected=b["_expected"], found=b["_actual"])
        others[rec.name] = table
    return others


def _fixed_records(values: list[tuple], formulas: list[dict[int, str]], end: int, layout: FileLayout,
                   path: Path) -> dict[str, pa.Table]:
    """The header, heading and trailer records, typed as one row of all their fields (per record, a few Arrow
    calls a field cost more than a sheet's cells). Any error, a record with checks or a missing 合计 row: typed
    one by one instead, which raises as it always did."""
    recs = [r for r in layout.records if r.kind in ("header", "heading", "trailer")]
    if any(r.checks for r in recs) or any(r.kind == "trailer" for r in recs) and end > len(values):
        return _fixed_one_by_one(values, formulas, end, layout, path)
    cells, with_formula, fields, lines = [], {}, [], {}
    for rec in recs:
        row, row_formulas, lines[rec.name] = _record_cells(rec, values, formulas, end)
        for i, f in enumerate(rec.fields):
            if i in row_formulas:
                with_formula[len(cells)] = row_formulas[i]
            cells.append(row[i] if i < len(row) else None)
            fields.append(dataclasses.replace(f, name=f"{rec.name}.{f.name}"))
    table, q = _type_cells([tuple(cells)], [with_formula], [0], Record("fixed", tuple(fields), kind="header"),
                           layout, path.name)
    if q is not None:
        return _fixed_one_by_one(values, formulas, end, layout, path)
    return {rec.name: pa.table({"_line": pa.array([lines[rec.name]], pa.int64()),
                                **{f.name: table.column(f"{rec.name}.{f.name}") for f in rec.fields}})
            for rec in recs}


def read(path: Path, layout: FileLayout, flag: Flag | None = None) -> ReadResult:
    """Read the layout's worksheet. Row errors are quarantined; a workbook that cannot be opened, a missing
    sheet, header cell, heading or 合计 row, or a control off, raises a `FileRejected` subclass."""
    path = Path(path)
    values, formulas = _load(path, layout.options["sheet"], path.name)
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
    others = _fixed_records(values, formulas, end, layout, path)
    if rows:
        table, q = _type_cells(rows, row_formulas, lines, layout.detail, layout, path.name)
    else:
        table, q = pa.schema([("_line", pa.int64()), *layout.arrow_schema()]).empty_table(), None
    batch = Batch(table, q if q is not None else empty_quarantine(layout), others, len(values))
    totals = Totals(layout)
    totals.add(batch)
    return totals.finish(path.name, [batch], flag, extra={"sheet": layout.options["sheet"]})


# --- writing --------------------------------------------------------------------------------------------------
#
# The workbook is written part by part, as the minimal SpreadsheetML package: one worksheet of inline strings and
# numbers, three cell styles (0 general, 1 text `@`, 2 amounts `0.00`). The cells are those openpyxl wrote before
# (same values, same types, numbers in openpyxl's "%.16g" form), so a workbook reads back as it did.

_TEXT_STYLE, _AMOUNT_STYLE = ' s="1"', ' s="2"'
_MAX_CELL_CHARS = 32767                                       # what an Excel cell holds
_ILLEGAL = "[\x00-\x08\x0b\x0c\x0e-\x1f]"                    # characters XML 1.0 cannot carry
_CONTENT_TYPES = (
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    f'<Override PartName="/xl/workbook.xml" ContentType="{_SHEET_TYPE % "sheet.main"}"/>'
    f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_SHEET_TYPE % "worksheet"}"/>'
    f'<Override PartName="/xl/styles.xml" ContentType="{_SHEET_TYPE % "styles"}"/>'
    '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
    '</Types>')
_ROOT_RELS = (
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" '
    'Target="docProps/core.xml"/>'
    '</Relationships>')
_CORE = (
    '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><dc:creator>duizhang</dc:creator>'
    '<dcterms:created xsi:type="dcterms:W3CDTF">{stamp}</dcterms:created>'
    '<dcterms:modified xsi:type="dcterms:W3CDTF">{stamp}</dcterms:modified>'
    '<cp:lastModifiedBy>duizhang</cp:lastModifiedBy></cp:coreProperties>')
_WORKBOOK = (
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="{sheet}" sheetId="1" r:id="rId1"/></sheets></workbook>')
_WORKBOOK_RELS = (
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" '
    'Target="styles.xml"/>'
    '</Relationships>')
_STYLES = (
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill>'
    '</fills><borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="49" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="2" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>')


def _business_date(path: Path, business_date: dt.date | None) -> dt.date:
    if business_date is not None:
        return business_date
    m = re.search(r"(?<![0-9])(20[0-9]{6})(?![0-9])", path.name)
    if not m:
        raise UnwritableValue("workbook", "business_date", path.name,
                              "no business date given and none (YYYYMMDD) in the file name; the workbook's "
                              "timestamps are derived from it, never from the clock")
    return dt.datetime.strptime(m.group(1), "%Y%m%d").date()


def _letters(col: int) -> str:
    """0-based column index -> its letters."""
    out = ""
    col += 1
    while col:
        col, rem = divmod(col - 1, 26)
        out = chr(65 + rem) + out
    return out


def _cells(texts: pa.Array, f: Field, rec: Record, refs: pa.Array) -> pa.Array:
    """The `<c>` element of each rendered text at its reference: a number field's as a number (amounts styled
    `0.00`), any other as an inline string (styled `@` for a text field: it stays text when a clerk edits it),
    never a formula, whatever it starts with; a null as an empty cell."""
    if isinstance(f.type, (Yuan, Int)):
        numbers = pa.array(["%.16g" % float(t) if t is not None else None for t in texts.to_pylist()], pa.string())
        start = pc.binary_join_element_wise('<c r="', refs, '"' + (_AMOUNT_STYLE if isinstance(f.type, Yuan) else "")
                                            + ' t="n"', "")
        full = pc.binary_join_element_wise(start, "><v>", numbers, "</v></c>", "")
        return pc.coalesce(full, pc.binary_join_element_wise(start, "/>", ""))
    if len(texts) and (texts.null_count < len(texts)):
        illegal = pc.fill_null(pc.match_substring_regex(texts, _ILLEGAL), False)
        long = pc.fill_null(pc.greater(pc.utf8_length(texts), _MAX_CELL_CHARS), False)
        for bad, why in ((illegal, "holds a control character, which a workbook cannot hold"),
                         (long, f"is longer than a cell holds ({_MAX_CELL_CHARS} characters)")):
            if pc.any(bad).as_py():
                row = pc.index(bad, True).as_py()
                raise UnwritableValue(rec.name, f.name, texts[row].as_py(), why, row)
    start = pc.binary_join_element_wise('<c r="', refs, '"' + (_TEXT_STYLE if isinstance(f.type, _TEXT_TYPES) else ""),
                                        "")
    escaped = pc.replace_substring(pc.replace_substring(pc.replace_substring(texts, "&", "&amp;"), "<", "&lt;"),
                                   ">", "&gt;")
    stripped = pc.utf8_trim_whitespace(texts)
    keep_spaces = pc.and_(pc.not_equal(stripped, texts), pc.not_equal(stripped, ""))
    space = pc.if_else(keep_spaces, ' xml:space="preserve"', "")
    full = pc.binary_join_element_wise(start, ' t="inlineStr"><is><t', space, ">", escaped, "</t></is></c>", "")
    empty = pc.binary_join_element_wise(start, ' t="inlineStr"/>', "")
    none = pc.binary_join_element_wise(start, ' t="n"/>', "")
    return pc.if_else(pc.is_null(texts), none, pc.if_else(pc.equal(texts, ""), empty, full))


def _given(rec: Record, values: list[dict | None], n: int) -> pa.Table | None:
    """The header (or trailer) values of `n` files as one table; a field none of them gives is left out (its
    constant, an empty text or the missing-value error come from `column_values`)."""
    if rec.kind == "heading":
        return None
    missing = next((k for k, v in enumerate(values) if v is None), None)
    if missing is not None:
        raise UnwritableValue(rec.name, "*", None, f"no {rec.kind} values given")
    cols = {}
    for f in rec.fields:
        given = [f.name in v for v in values]
        if all(given):
            cols[f.name] = pa.array([v[f.name] for v in values], type=f.type.arrow_type)
        elif any(given):
            cols[f.name] = pa.concat_arrays([column_values(v, f, rec, 1).cast(f.type.arrow_type) for v in values])
    return pa.table(cols) if cols else pa.table({"_": pa.nulls(n)})


def _fixed_cells(layout: FileLayout, rec: Record, values: list[dict | None], rows: list[int] | None
                 ) -> list[list[tuple[int, int, str]]]:
    """Per file, the (row, column, `<c>`) of a header, heading or trailer record: a header's and heading's cells
    at their references, a trailer's in columns A.. of the file's row `rows[k]`."""
    n = len(values)
    table = _given(rec, values, n)
    out = [[] for _ in range(n)]
    for c, f in enumerate(rec.fields):
        if rows is None:
            c, r = _col_row(f.at)
            at = [r] * n
        else:
            at = rows
        texts = render_column(column_values(table, f, rec, n), f, rec, layout)
        refs = pa.array([f"{_letters(c)}{r}" for r in at], pa.string())
        for k, cell in enumerate(_cells(texts, f, rec, refs).to_pylist()):
            out[k].append((at[k], c, cell))
    return out


def _row_xml(cells: list[tuple[int, int, str]]) -> str:
    """Rows of cells given as (row, column, `<c>`), in order."""
    out, row = [], None
    for r, _, cell in sorted(cells):
        if r != row:
            out.append(("</row>" if row is not None else "") + f'<row r="{r}">')
            row = r
        out.append(cell)
    return "".join(out) + ("</row>" if row is not None else "")


def _render_files(layout: FileLayout, records: pa.Table, files: list[OutFile]) -> list[bytes]:
    """The bytes of each workbook: the detail rows of all files rendered in one pass, cut per file."""
    first_row = int(layout.options.get("first_row", 2))
    detail = layout.detail
    lengths = np.array([f.length for f in files], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    fixed: list[list[tuple[int, int, str]]] = [[] for _ in files]
    for rec in layout.records:  # in the layout's order, which is the order of the errors a bad value raises
        if rec.kind == "detail":
            details = rows_of_files(records, files)
            # each detail row's number in its own sheet
            numbers = np.arange(details.num_rows, dtype=np.int64) - np.repeat(starts[:-1], lengths) + first_row
            row_numbers = pa.array(numbers).cast(pa.string())
            cells = [_cells(render_column(column_values(details, f, detail, details.num_rows), f, detail, layout),
                            f, detail, pc.binary_join_element_wise(_letters(c), row_numbers, ""))
                     for c, f in enumerate(detail.fields)]
            rows = pc.binary_join_element_wise('<row r="', row_numbers, '">', *cells, "</row>", "")
            continue
        given = [f.header if rec.kind == "header" else f.trailer if rec.kind == "trailer" else None for f in files]
        at = [first_row + f.length for f in files] if rec.kind == "trailer" else None
        for k, cells_of in enumerate(_fixed_cells(layout, rec, given, at)):
            fixed[k].extend(cells_of)
    width = max([len(detail.fields)] + [c + 1 for cells_of in fixed for _, c, _ in cells_of])
    out = []
    for k, f in enumerate(files):
        head = [cell for cell in fixed[k] if cell[0] < first_row]
        tail = [cell for cell in fixed[k] if cell[0] >= first_row]
        last = max([r for r, _, _ in fixed[k]] + [first_row + f.length - 1, 1])
        sheet = b"".join((
            f'<worksheet xmlns="{_MAIN[1:-1]}"><dimension ref="A1:{_letters(width - 1)}{last}"/><sheetData>'
            f'{_row_xml(head)}'.encode(),
            value_bytes(rows.slice(int(starts[k]), f.length)).to_pybytes() if f.length else b"",
            f'{_row_xml(tail)}</sheetData></worksheet>'.encode()))
        out.append(_package(layout.options["sheet"], sheet,
                            _business_date(Path(f.path), f.options.get("business_date"))))
    return out


def _package(sheet_name: str, sheet: bytes, business_date: dt.date) -> bytes:
    """The workbook's zip: every entry dated the business date (zipfile would stamp the clock), never the clock."""
    stamp = dt.datetime.combine(business_date, dt.time(0, 0, 0))
    parts = (("[Content_Types].xml", _CONTENT_TYPES), ("_rels/.rels", _ROOT_RELS),
             ("docProps/core.xml", _CORE.format(stamp=f"{stamp.isoformat()}Z")),
             ("xl/workbook.xml", _WORKBOOK.format(sheet=sheet_name.replace("&", "&amp;").replace("<", "&lt;")
                                                  .replace('"', "&quot;"))),
             ("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS), ("xl/styles.xml", _STYLES),
             ("xl/worksheets/sheet1.xml", sheet))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts:
            archive.writestr(_entry(name, stamp), data.encode() if isinstance(data, str) else data)
    return buf.getvalue()


def _entry(name: str, stamp: dt.datetime) -> zipfile.ZipInfo:
    """A zip entry dated `stamp` (zipfile stamps entries with the clock)."""
    info = zipfile.ZipInfo(name, date_time=stamp.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o600 << 16
    info.create_system = 0
    return info


def _fix_zip(data: bytes, stamp: dt.datetime) -> bytes:
    """Rewrite a zip with every entry dated `stamp` (a workbook openpyxl wrote, elsewhere in duizhang)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(_entry(info.filename, stamp), src.read(info.filename))
    return out.getvalue()


def render(layout: FileLayout, records: pa.Table, header: dict | None, trailer: dict | None,
           business_date: dt.date) -> bytes:
    """The bytes `write` would write for `business_date`."""
    return _render_files(layout, records, [OutFile(Path("workbook.xlsx"), 0, records.num_rows, header, trailer,
                                                   {"business_date": business_date})])[0]


def write_files(layout: FileLayout, records: pa.Table, files: list[OutFile]) -> None:
    """Write many workbooks of `layout`, each atomically, file `k`'s details being its slice of `records`: the
    cells of all files rendered in one pass (a few Arrow calls per field), then each file's parts zipped. A value
    that cannot be written raises `FieldOverflow` or `UnwritableValue` as a lone `write` of its file would,
    naming the file (`_rows.write_rendered`). Options: `business_date` (see `write`)."""
    write_rendered(_render_files, layout, records, files)


def write(path: Path, layout: FileLayout, records: pa.Table, header: dict | None = None,
          trailer: dict | None = None, business_date: dt.date | None = None) -> int:
    """Write the workbook atomically (tmp + rename); returns the number of data rows.

    The timestamps inside come from `business_date`, or from the `YYYYMMDD` in the file name
    (`DF_..._20261121_01_RESULT.xlsx`); with neither, `UnwritableValue` is raised rather than using the clock.
    Text fields are written as text cells, counts as whole numbers, amounts as numbers with two decimals."""
    write_files(layout, records, [OutFile(Path(path), 0, records.num_rows, header, trailer,
                                          {"business_date": business_date})])
    return records.num_rows
