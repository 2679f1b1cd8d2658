"""What the delimited, XML and Excel engines share: typing rows of field texts, and rendering typed columns.

An engine splits its framing into `RawRow`s (one per record: its line, its raw bytes, the text of each field),
or gathers the field texts column-wise; `type_rows` / `type_values` turn the rows of one record type into a typed
Arrow table and a quarantine, a column at a time, with the field types of `layout.py`. Nothing here knows about
lines, separators, elements or cells.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from formats.errors import FieldOverflow, FormatError, RecordRuleBroken, UnwritableValue
from formats.layout import Const, CountOf, Field, FileLayout, Record, Repeated, SumOf, Text
from formats.result import OutFile, empty_quarantine, quarantine_table


@dataclass
class RawRow:
    """One record as the engine found it: `values[i]` is the text of field i (None: absent; for a `Repeated`
    field, a list of dicts of item texts). `error` = (field, expected, found) when the engine already knows the
    row is bad (wrong number of fields, a number cell where text belongs, undecodable bytes)."""

    line: int
    raw: bytes
    values: list
    error: tuple[str, str, str] | None = None
    cell_errors: dict[int, tuple[str, str]] = field(default_factory=dict)  # field index -> (expected, found)


class LayoutTables(NamedTuple):
    """What every file of a layout starts from, built once per layout (a night reads thousands of small files)."""

    schema: pa.Schema       # the detail records with `_line`
    records: pa.Table       # no detail records
    quarantine: pa.Table    # no quarantined records


_LAYOUT_TABLES: dict[int, tuple[FileLayout, LayoutTables]] = {}


def layout_tables(layout: FileLayout) -> LayoutTables:
    """The layout's `LayoutTables`, built on first use."""
    cached = _LAYOUT_TABLES.get(id(layout))
    if cached is None or cached[0] is not layout:  # the layout is held here, so no other can take its id
        schema = pa.schema([("_line", pa.int64()), *layout.arrow_schema()])
        cached = _LAYOUT_TABLES[id(layout)] = (layout, LayoutTables(schema, schema.empty_table(),
                                                                    empty_quarantine(layout)))
    return cached[1]


def _byte_lengths(texts: pa.Array, encoding: str) -> np.ndarray:
    if pc.all(pc.fill_null(pc.string_is_ascii(texts), True)).as_py() in (True, None):
        return pc.fill_null(pc.binary_length(texts.cast(pa.binary())), 0).to_numpy(zero_copy_only=False)
    return np.array([len(t.encode(encoding, "replace")) if t is not None else 0 for t in texts.to_pylist()])


def _parse_repeated(items_per_row: list, ftype: Repeated, layout: FileLayout):
    """A `Repeated` field of every row (per row a list of item dicts, or None) -> a list<struct> array, and per
    row the first bad item field (or None)."""
    items_per_row = [items or [] for items in items_per_row]
    offsets = np.zeros(len(items_per_row) + 1, dtype=np.int32)
    np.cumsum([len(x) for x in items_per_row], out=offsets[1:])
    flat = [item for items in items_per_row for item in items]
    owner = np.repeat(np.arange(len(items_per_row)), np.diff(offsets))
    children, bad_item = [], [None] * len(items_per_row)
    for f in ftype.record.fields:
        texts = pa.array([item.get(f.element) for item in flat], pa.string())
        parsed = f.type.parse(texts)
        children.append(parsed.values)
        for i in np.flatnonzero(parsed.bad):
            r = int(owner[i])
            if bad_item[r] is None:
                bad_item[r] = (f"{f.name}", f.type.expected, texts[int(i)].as_py())
    struct = pa.StructArray.from_arrays(children, names=list(ftype.record.names)) if flat else \
        pa.array([], ftype.arrow_type.value_type)
    return pa.ListArray.from_arrays(pa.array(offsets), struct), bad_item


def type_rows(rows: list[RawRow], rec: Record, layout: FileLayout, file_name: str,
              schema_record: Record | None = None) -> tuple[pa.Table, pa.Table | None]:
    """Type the rows of one record type. Returns (good rows with `_line`, quarantine or None).

    A row is quarantined at its first failing field: an engine-found error first, then each field's type, then
    the record's `checks`. A check with `reject_file` raises `RecordRuleBroken` instead. `schema_record` (a
    variant layout's widest detail) gives the output columns; fields it has and `rec` lacks are null."""
    pre: dict[int, tuple[str, str, str]] = {}
    for i, r in enumerate(rows):
        if r.error is not None:
            pre[i] = r.error
        elif r.cell_errors:
            idx = min(r.cell_errors)
            pre[i] = (rec.fields[idx].name, *r.cell_errors[idx])
    values = [[r.values[idx] if idx < len(r.values) else None for r in rows] for idx in range(len(rec.fields))]
    return type_values(values, [r.line for r in rows], lambda i: rows[i].raw, rec, layout, file_name,
                       schema_record, pre)


def type_values(values: list, lines: list[int], raw_of, rec: Record, layout: FileLayout, file_name: str,
                schema_record: Record | None = None,
                pre: dict[int, tuple[str, str, str]] | None = None) -> tuple[pa.Table, pa.Table | None]:
    """`type_rows` for rows held column-wise: `values[i]` is the sequence of field i's texts, one per row (a
    `Repeated` field: per row its list of item dicts, or None). `raw_of(i)` gives the raw bytes of row i (asked
    only for quarantined rows)."""
    texts: dict[str, pa.Array] = {}
    repeated: dict[str, tuple[pa.Array, list]] = {}
    for f, column in zip(rec.fields, values):
        if isinstance(f.type, Repeated):
            repeated[f.name] = _parse_repeated(column, f.type, layout)
        else:
            texts[f.name] = pa.array(column, pa.string())
    return type_columns(texts, np.array(lines, dtype=np.int64), raw_of, rec, layout, file_name, schema_record, pre,
                        repeated)


def type_columns(texts: dict[str, pa.Array], lines: np.ndarray, raw_of, rec: Record, layout: FileLayout,
                 file_name: str, schema_record: Record | None = None,
                 pre: dict[int, tuple[str, str, str]] | None = None,
                 repeated: dict[str, tuple[pa.Array, list]] | None = None) -> tuple[pa.Table, pa.Table | None]:
    """`type_rows` for rows already held as Arrow text columns (one per field): the vectorised core.

    `raw_of(i)` gives the raw bytes of row i (asked only for quarantined rows); `pre` holds errors the engine
    found before typing, by row index; `repeated` the already-parsed `Repeated` fields."""
    n = len(lines)
    first_bad = np.zeros(n, dtype=bool)
    reasons: dict[int, tuple[str, str, str]] = {}

    def mark(bad: np.ndarray, why) -> None:
        for i in np.flatnonzero(bad & ~first_bad):
            first_bad[i] = True
            reasons[int(i)] = why(int(i))

    if pre:
        pre_bad = np.zeros(n, dtype=bool)
        pre_bad[list(pre)] = True
        mark(pre_bad, lambda i: pre[i])
    columns: dict[str, pa.Array] = {"_line": pa.array(lines, pa.int64())}
    texts_of: dict[str, pa.Array] = {}
    for f in rec.fields:
        if isinstance(f.type, Repeated):
            values, bad_item = repeated[f.name]
            columns[f.name] = values
            mark(np.array([b is not None for b in bad_item], dtype=bool),
                 lambda i, f=f, bad_item=bad_item: (f"{f.name}.{bad_item[i][0]}", bad_item[i][1], bad_item[i][2]))
            continue
        col = texts[f.name]
        if layout.empty_is_null:
            col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
        texts_of[f.name] = col
        parsed = f.type.parse(col)
        bad = parsed.bad.copy()
        if isinstance(f.type, Text) and f.type.max_bytes:
            bad |= _byte_lengths(col, layout.encoding) > f.type.max_bytes
        mark(bad, lambda i, f=f, col=col: (f.name, f.type.expected, col[i].as_py()))
        columns[f.name] = parsed.values
    for chk in rec.checks:
        _apply_check(chk, rec, columns, lines, mark, file_name)
    out_rec = schema_record or rec
    table = pa.table({"_line": columns["_line"],
                      **{f.name: columns[f.name] if f.name in columns else pa.nulls(n, f.type.arrow_type)
                         for f in out_rec.fields}})
    bad_rows = np.flatnonzero(first_bad)
    if not len(bad_rows):
        return table, None
    q_rows = [(int(lines[i]), raw_of(int(i)), rec.name, *reasons[int(i)]) for i in bad_rows]
    typed = table.take(pa.array(bad_rows)) if rec.kind == "detail" else None
    quarantine = quarantine_table(layout, q_rows, typed=typed)
    return table.filter(pa.array(~first_bad)), quarantine


def _apply_check(chk, rec: Record, columns, lines: np.ndarray, mark, file_name: str) -> None:
    if isinstance(chk, SumOf):
        n = len(lines)
        known = ~pc.is_null(columns[chk.total]).to_numpy(zero_copy_only=False)
        total = pc.fill_null(columns[chk.total], 0).to_numpy(zero_copy_only=False)
        acc = np.zeros(n, dtype=np.int64)
        for part in chk.parts:
            base, _, sub = part.partition(".")
            col = columns[base]
            if sub:  # Σ over the items of a Repeated field, exact in int64 (np.add.at, not a float bincount)
                lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
                owner = np.repeat(np.arange(n), lengths)
                items = pc.list_flatten(col).field(sub)
                known[owner[pc.is_null(items).to_numpy(zero_copy_only=False)]] = False
                np.add.at(acc, owner, pc.fill_null(items, 0).to_numpy(zero_copy_only=False))
            else:
                known &= ~pc.is_null(col).to_numpy(zero_copy_only=False)
                acc += pc.fill_null(col, 0).to_numpy(zero_copy_only=False)
        broken = known & (total != acc)
        what = " + ".join(chk.parts) if len(chk.parts) > 1 else f"the sum of {chk.parts[0]}"
        if chk.reject_file and broken.any():
            i = int(np.flatnonzero(broken)[0])
            raise RecordRuleBroken(file_name, f"{rec.name}.{chk.total} must equal {what}", line=int(lines[i]),
                                   expected=int(acc[i]), found=int(total[i]))
        mark(broken, lambda i: (chk.total, f"{what} = {acc[i]} fen", f"{total[i]} fen"))
    elif isinstance(chk, CountOf):
        count = columns[chk.count]
        known = ~pc.is_null(count).to_numpy(zero_copy_only=False)
        items = pc.list_value_length(columns[chk.items]).to_numpy(zero_copy_only=False)
        values = pc.fill_null(count, 0).to_numpy(zero_copy_only=False)
        broken = known & (values != items)
        if chk.reject_file and broken.any():
            i = int(np.flatnonzero(broken)[0])
            raise RecordRuleBroken(file_name, f"{rec.name}.{chk.count} must equal the number of {chk.items} items",
                                   line=int(lines[i]), expected=int(items[i]), found=int(values[i]))
        mark(broken, lambda i: (chk.count, f"= number of {chk.items} items ({items[i]})", str(values[i])))


# --- rendering ------------------------------------------------------------------------------------------------


def accepts_empty(f: Field, layout: FileLayout) -> bool:
    """Whether the field may be written empty (a null value): a blank-able type."""
    return bool(getattr(f.type, "blank", False))


def column_values(table_or_row: pa.Table | dict | None, f: Field, rec: Record, n: int) -> pa.Array:
    """The values of field `f` for `n` rows, from a table or a one-row dict; a missing Const is its constant."""
    if isinstance(table_or_row, pa.Table):
        if f.name in table_or_row.column_names:
            return table_or_row.column(f.name).combine_chunks()
    elif table_or_row is not None and f.name in table_or_row:
        return pa.array([table_or_row[f.name]], type=f.type.arrow_type)
    if isinstance(f.type, Const):
        return pa.array([f.type.value] * n, pa.string())
    if isinstance(f.type, Text):
        return pa.nulls(n, pa.string())
    raise UnwritableValue(rec.name, f.name, None, "no value given (missing column)")


def _render_present(f: Field, values: pa.Array) -> pa.Array:
    """The wire texts of the values; a null (in a field that may be empty) stays null, never rendered."""
    if not values.null_count:
        return f.type.render(values)
    present = values.drop_null()
    if not len(present):
        return pa.nulls(len(values), pa.string())
    rendered = f.type.render(values.fill_null(present[0]))
    return pc.if_else(values.is_null(), pa.scalar(None, pa.string()), rendered)


def render_texts(values: pa.Array, f: Field, rec: Record, layout: FileLayout) -> list[str | None]:
    """Typed values -> wire texts (None where the value is null and the field may be empty).

    A null where the field is required raises `UnwritableValue`; a text longer than `max_bytes` in the file's
    encoding raises `FieldOverflow`. Nothing is shortened or defaulted."""
    return render_column(values, f, rec, layout).to_pylist()


def render_column(values: pa.Array, f: Field, rec: Record, layout: FileLayout) -> pa.Array:
    """`render_texts` as an Arrow string array, for an engine that assembles its lines in Arrow: the same texts,
    the same errors."""
    nulls = values.is_null().to_numpy(zero_copy_only=False) if values.null_count else None
    if nulls is not None and not accepts_empty(f, layout):
        row = int(np.flatnonzero(nulls)[0])
        raise UnwritableValue(rec.name, f.name, None, f"the field is required ({f.type.expected})", row)
    if values.type == pa.string() and isinstance(f.type, (Text, Const)) or values.type == pa.null():
        texts = values.cast(pa.string())
    else:
        try:
            texts = _render_present(f, values)
        except ValueError as e:
            raise UnwritableValue(rec.name, f.name, None, str(e)) from None
    # Strict both ways: a wire form its own type would not read back is refused, not written.
    check = texts if not layout.empty_is_null else pc.if_else(pc.equal(texts, ""), pa.scalar(None, pa.string()),
                                                                texts)
    bad = f.type.parse(check).bad
    if nulls is not None:
        bad &= ~nulls
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UnwritableValue(rec.name, f.name, texts[row].as_py(), f"is not {f.type.expected}", row)
    if isinstance(f.type, Text) and f.type.max_bytes:
        lengths = _byte_lengths(texts, layout.encoding)
        over = np.flatnonzero(lengths > f.type.max_bytes)
        if len(over):
            r = int(over[0])
            raise FieldOverflow(rec.name, f.name, f.type.max_bytes, texts[r].as_py(), r)
    if isinstance(f.type, Const):
        wrong = np.flatnonzero(pc.fill_null(pc.not_equal(texts, f.type.value), False).to_numpy(zero_copy_only=False))
        if len(wrong):
            r = int(wrong[0])
            raise UnwritableValue(rec.name, f.name, texts[r].as_py(), f"must be {f.type.value!r}", r)
    return texts


# --- writing many files at once -------------------------------------------------------------------------------


def write_rendered(render_files: Callable[[FileLayout, pa.Table, list[OutFile]], list[bytes]], layout: FileLayout,
                   records: pa.Table, files: list[OutFile]) -> None:
    """An engine's `write_files`: `render_files` gives the bytes of every file at once (all their rows rendered
    in one pass), each is then written atomically (tmp + rename).

    A value that cannot be written raises as a lone `write` of its file would (its field, its row within its
    file), with a note naming the file: the files before it are written, it and those after it are not. The
    one-pass render only tells that some file holds one, so the files are then rendered again one at a time."""
    try:
        contents = render_files(layout, records, files)
    except (FormatError, pa.ArrowException) as e:   # FieldOverflow, UnwritableValue, a value Arrow cannot cast
        if len(files) == 1:
            e.add_note(f"writing {files[0].path}")
            raise
        for f in files:   # each with its own rows: an error counts its row within its file
            write_rendered(render_files, layout, records.slice(f.offset, f.length), [replace(f, offset=0)])
        raise
    for f, data in zip(files, contents):
        path = Path(f.path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def rows_of_files(records: pa.Table, files: list[OutFile]) -> pa.Table:
    """The detail rows of `files`, file after file: `records` itself when they are all of it, in order."""
    at = 0
    for f in files:
        if f.offset != at:
            return pa.concat_tables([records.slice(f.offset, f.length) for f in files])
        at += f.length
    return records if at == records.num_rows else records.slice(0, at)


def value_bytes(arr: pa.Array) -> pa.Buffer:
    """The bytes of the values of a binary or string array, one after the other (a view, not a copy)."""
    large = pa.types.is_large_binary(arr.type) or pa.types.is_large_string(arr.type)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if large else np.int32)
    first, last = int(offsets[arr.offset]), int(offsets[arr.offset + len(arr)])
    return arr.buffers()[2][first:last] if last > first else pa.py_buffer(b"")
