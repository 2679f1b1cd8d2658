"""Property tests: any table the writer accepts reads back identical (ACOMN fixed-width, PBOC delimited).

Text is drawn from ASCII and from GBK Chinese, including characters whose second GBK byte is 0x7C (`|`), which
break any reader that splits raw bytes; values are sized in bytes of GBK, the unit of the specs.
"""
from __future__ import annotations

import datetime as dt
import string

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formats import delimited, fixed_width
from formats.layout import Code, Digits, Fen, SignedFen, Text, Timestamp14, Yuan, Date8
from formats.registry import LAYOUTS

ACOMN, PBOC = LAYOUTS["unionpay.acomn"], LAYOUTS["pboc.cnaps2_dzmx"]
CHINESE = "张王李赵东方億東亅倈商贸有限公司银行中国"   # includes GBK chars with a 0x7C second byte
PRINTABLE = string.ascii_letters + string.digits + " -_/.()"


def _text(max_bytes: int, blank: bool = True, extra: str = "") -> st.SearchStrategy[str]:
    chars = st.sampled_from(PRINTABLE + CHINESE + extra)
    s = st.text(chars, max_size=max_bytes).map(str.strip).filter(lambda v: len(v.encode("gbk")) <= max_bytes)
    return s if blank else s.filter(bool)


def _value(f, width: int):
    t = f.type
    if isinstance(t, Code):
        return st.sampled_from(sorted(t.table))
    if isinstance(t, Digits):
        return st.text(st.sampled_from(string.digits), min_size=width, max_size=width)
    if isinstance(t, SignedFen):
        return st.integers(-(10 ** (width - 1) - 1), 10 ** (width - 1) - 1)
    if isinstance(t, Fen):
        return st.integers(0, 10 ** min(width, 18) - 1)
    if isinstance(t, Text):
        return _text(width, t.blank)
    raise AssertionError(f"no strategy for {f.name}")


def _rows(layout, value_of, min_size=1, max_size=20):
    fields = layout.detail.fields
    row = st.fixed_dictionaries({f.name: value_of(f) for f in fields})
    return st.lists(row, min_size=min_size, max_size=max_size)


def _table(layout, rows):
    return pa.table({f.name: pa.array([r[f.name] for r in rows], f.type.arrow_type) for f in layout.detail.fields})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows(ACOMN, lambda f: _value(f, f.width)))
def test_acomn_any_writable_table_reads_back_identical(tmp_path_factory, rows):
    table = _table(ACOMN, rows)
    path = tmp_path_factory.mktemp("acomn") / "IND26112101ACOMN"
    fixed_width.write(path, ACOMN, table)
    result = fixed_width.read(path, ACOMN)
    assert result.quarantined == 0, result.quarantine.to_pylist()[:1]
    assert result.records.drop_columns(["_line"]).equals(table)
    assert len(path.read_bytes()) == len(rows) * 502


def _pboc_value(f):
    t = f.type
    if f.name == "record_type":
        return st.just("D")
    if isinstance(t, Yuan):
        return st.integers(0, 10**12)
    if isinstance(t, Date8):
        return st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31))
    if isinstance(t, Timestamp14):
        return st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2099, 12, 31)).map(lambda v: v.replace(microsecond=0))
    if isinstance(t, Digits):
        return st.text(st.sampled_from(string.digits), min_size=t.length or 1, max_size=t.length or 8)
    if isinstance(t, Code):
        return st.sampled_from(sorted(t.table))
    if isinstance(t, Text):
        return _text(t.max_bytes or 30, t.blank, extra='"@$,')
    raise AssertionError(f"no strategy for {f.name}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows(PBOC, _pboc_value, min_size=0))
def test_cnaps2_any_writable_table_reads_back_identical(tmp_path_factory, rows):
    table = _table(PBOC, rows)
    header = {"bank_code": "313100000013", "work_date": dt.date(2026, 11, 21), "file_seq": "01",
              "record_count": len(rows), "created_at": dt.datetime(2026, 11, 22, 1, 30),
              "debit_total": sum(r["amount"] for r in rows if r["dr_cr"] == "D"),
              "credit_total": sum(r["amount"] for r in rows if r["dr_cr"] == "C")}
    path = tmp_path_factory.mktemp("pboc") / "CNAPS2_DZMX_313100000013_20261121_01.txt"
    delimited.write(path, PBOC, table, header)
    result = delimited.read(path, PBOC)
    assert result.quarantined == 0, result.quarantine.to_pylist()[:1]
    assert result.records.drop_columns(["_line"]).equals(table)
    assert result.header == {"record_type": "H", **header}
    assert delimited.render(PBOC, result.records.drop_columns(["_line"]), result.header) == path.read_bytes()
