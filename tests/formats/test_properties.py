"""Property tests, for every layout in the registry: any table the writer accepts reads back identical.

The strategies are derived from the layout declaration itself (one strategy per field type), so a new layout is
covered without a line here. What a valid file needs beyond its fields' types is derived from the declaration
too: header and trailer totals from the layout's `Count`/`Sum` controls, a record's `SumOf`/`CountOf` rules,
unique values for `Unique`, a balancing line for `Balanced`, and the header value that selects a variant.

Text is drawn from ASCII and from GBK Chinese, including characters whose second GBK byte is 0x7C (`|`), which
break any reader that splits raw bytes, and characters that need escaping in XML and quoting in CSV; values
are sized in bytes of the file's encoding, the unit of the specs. Fixed-width and delimited files must also
rewrite byte for byte from what was read back.
"""
from __future__ import annotations

import datetime as dt
import string

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from formats import registry
from formats.errors import FieldOverflow, UnwritableValue
from formats.layout import (Balanced, Code, Const, Count, CountOf, Date8, Digits, Int, IsoDate, IsoTimestamp,
                            Repeated, SignedFen, Sum, SumOf, Text, Timestamp14, Unique, Yuan)
from formats.registry import LAYOUTS

CHINESE = "张王李赵东方億東亅倈商贸有限公司银行中国"   # includes GBK chars with a 0x7C second byte
PRINTABLE = string.ascii_letters + string.digits + " -_/.()"
SPECIAL = {"xml": "<>&'\"", "excel": "=+'<&", "delimited": ""}
FILE_NAMES = {  # names the writers accept (Excel takes its timestamps from the date in the name)
    "payroll.batch_xlsx": "DF_EMP0000001_20261121_01.xlsx", "payroll.result_xlsx": "DF_EMP0000001_20261121_01_RESULT.xlsx",
}
BUSINESS_DATE = dt.date(2026, 11, 21)
EXAMPLES = {"fixed": 20, "delimited": 20, "xml": 15, "excel": 8}  # a workbook takes ~50 ms to write and read


def _width(f, layout) -> int | None:
    return f.width if layout.framing == "fixed" else None


def _text(layout, f) -> st.SearchStrategy[str]:
    t = f.type
    max_bytes = _width(f, layout) or t.max_bytes or 30
    extra = SPECIAL.get(layout.framing, "")
    if layout.framing == "delimited":
        extra = ',"' if layout.quoting == "rfc4180" else ""
    chars = st.sampled_from(PRINTABLE + CHINESE + extra)
    s = st.text(chars, max_size=max_bytes).map(str.strip)
    s = s.filter(lambda v: len(v.encode("gb18030" if layout.encoding == "utf-8" else layout.encoding)) <= max_bytes
                 and len(v.encode(layout.encoding)) <= max_bytes)
    if layout.delimiter and layout.quoting == "none":
        s = s.filter(lambda v: layout.delimiter not in v)
    if not t.blank:
        return s.filter(bool)
    return s.map(lambda v: v or None) if layout.empty_is_null else s  # the ledger extract: empty is NULL


def value_strategy(f, layout) -> st.SearchStrategy:
    """Values of one field that its type accepts, within its width (fixed-width) or its declared length."""
    t, width = f.type, _width(f, layout)
    if isinstance(t, Const):
        return st.just(t.value)
    if isinstance(t, Code):
        return st.sampled_from(sorted(t.table))
    if isinstance(t, Digits):
        n = t.length or width
        return st.text(st.sampled_from(string.digits), min_size=n or 1, max_size=n or 10)
    if isinstance(t, SignedFen):
        return st.integers(-(10 ** (width - 1) - 1), 10 ** (width - 1) - 1)
    if isinstance(t, Int):  # Fen too
        return st.integers(1 if t.positive else 0, 10 ** min(width or 12, 18) - 1)
    if isinstance(t, Yuan):
        return st.integers(1 if t.positive else 0, 10**12)
    if isinstance(t, (Date8, IsoDate)):
        return st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31))
    if isinstance(t, (Timestamp14, IsoTimestamp)):
        return st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2099, 12, 31)).map(lambda v: v.replace(microsecond=0))
    if isinstance(t, Repeated):
        return st.lists(st.fixed_dictionaries({g.name: value_strategy(g, layout) for g in t.record.fields}),
                        min_size=1, max_size=3)
    if isinstance(t, Text):
        return _text(layout, f)
    raise AssertionError(f"{layout.name}: no strategy for {f.name} ({t!r}); add one for the new type")


def _fill_record_rules(rec, row: dict) -> dict:
    """Make one record obey its own rules (`SumOf`, `CountOf`)."""
    for chk in rec.checks:
        if isinstance(chk, SumOf):
            total = 0
            for part in chk.parts:
                base, _, sub = part.partition(".")
                total += sum(item[sub] for item in row[base]) if sub else row[base]
            row[chk.total] = total
        elif isinstance(chk, CountOf):
            row[chk.count] = len(row[chk.items])
    return row


def _matches(row: dict, where, where_not) -> bool:
    return (not where or row[where[0]] == where[1]) and (not where_not or row[where_not[0]] != where_not[1])


@st.composite
def files(draw, layout):
    """(records table, header dict, trailer dict) of a valid file of `layout`."""
    header_recs = [r for r in layout.records if r.kind == "header"]
    trailer_recs = [r for r in layout.records if r.kind == "trailer"]
    header = {f.name: draw(value_strategy(f, layout)) for r in header_recs for f in r.fields} or None
    trailer = {f.name: draw(value_strategy(f, layout)) for r in trailer_recs for f in r.fields} or None
    rec = layout.detail
    if layout.variant_by:
        rec = draw(st.sampled_from(layout.details))
        header[layout.variant_by.partition(".")[2]] = rec.variant
    uniques = [c.of.partition(".")[2] for c in layout.controls if isinstance(c, Unique)]
    row = st.fixed_dictionaries({f.name: value_strategy(f, layout) for f in rec.fields}).map(
        lambda r: _fill_record_rules(rec, r))
    rows = draw(st.lists(row, min_size=1, max_size=12,
                         unique_by=tuple((lambda r, u=u: r[u]) for u in uniques) or None))
    for c in layout.controls:
        if isinstance(c, Balanced):  # each line gets its mirror on the other side: every voucher balances
            side = rec.field(c.side).type
            rows = [r for row in rows for r in (row, {**row, c.side: c.credit if row[c.side] == c.debit else c.debit})]
            assume(all(r[c.side] in (c.debit, c.credit) for r in rows) and isinstance(side, Code))
            numbered = [f.name for f in rec.fields if type(f.type) is Int and f.type.positive]
            for name in numbered:  # line numbers stay distinct
                for i, r in enumerate(rows, start=1):
                    r[name] = i
    values = {"header": header, "trailer": trailer}
    for c in layout.controls:
        if isinstance(c, (Count, Sum)) and c.equals != "flag":
            target = next(r.kind for r in layout.records if r.name == c.equals.partition(".")[0])
            chosen = [r for r in rows if _matches(r, c.where, c.where_not)]
            total = len(chosen) if isinstance(c, Count) else sum(r[c.of.partition(".")[2]] for r in chosen)
            values[target][c.equals.partition(".")[2]] = total
    for r in header_recs + trailer_recs:
        for f in r.fields:  # a total that does not fit its field: not a table the writer could accept
            v = values[r.kind][f.name]
            if isinstance(f.type, Int) and layout.framing == "fixed":
                assume(v < 10**f.width)
            if isinstance(f.type, Yuan):
                assume(v < 10**18)
    table = pa.table({f.name: pa.array([r[f.name] for r in rows], f.type.arrow_type) for f in rec.fields})
    return table, header, trailer


def _write(tmp_path, layout, table, header, trailer):
    path = tmp_path / FILE_NAMES.get(layout.name, "file")
    options = {"business_date": BUSINESS_DATE} if layout.framing == "excel" else {}
    try:
        registry.write(path, layout.name, table, header, trailer, **options)
    except (UnwritableValue, FieldOverflow):
        assume(False)  # the property is about tables the writer accepts
    return path


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_any_writable_table_reads_back_identical(name, tmp_path_factory):
    layout = LAYOUTS[name]

    @settings(max_examples=EXAMPLES[layout.framing], deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.function_scoped_fixture])
    @given(files(layout))
    def check(drawn):
        table, header, trailer = drawn
        path = _write(tmp_path_factory.mktemp(name.replace(".", "_")), layout, table, header, trailer)
        result = registry.read(path, name)
        assert result.quarantined == 0, result.quarantine.to_pylist()[:1]
        records = result.records.drop_columns(["_line"])
        assert records.select(table.column_names).equals(table), (records.to_pylist()[:2], table.to_pylist()[:2])
        for other in set(records.column_names) - set(table.column_names):  # another variant's fields
            assert records[other].null_count == records.num_rows
        for part, written in (("header", header), ("trailer", trailer)):
            if written:
                read = getattr(result, part)
                assert {k: read[k] for k in written} == written, part
        if layout.framing in ("fixed", "delimited"):  # and the bytes rewrite identically from what was read
            again = path.with_name("again")
            registry.write(again, name, records.select(table.column_names), result.header, result.trailer)
            assert again.read_bytes() == path.read_bytes()

    check()
