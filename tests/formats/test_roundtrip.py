"""Writers reproduce what readers read.

Fixed-width and delimited: `write(read(f)) == bytes(f)` for every valid (`ok_*`) sample, byte for byte.
XML and Excel: reading back what was written gives the same content, and writing twice gives the same bytes
(a rerun for the same date must not change a file the bank sends).
"""
from __future__ import annotations

import datetime as dt
import zipfile

import pyarrow as pa
import pytest

from formats import excel, registry
from formats.registry import LAYOUTS

from .conftest import data_file, layout_of, sample_cases

OK = [c for c in sample_cases() if c.name.startswith("ok_")]


def _ids(cases):
    return [f"{layout_of(c)}:{c.name[: -len('.expected.json')]}" for c in cases]


def _content(result):
    return result.records.drop_columns(["_line"]), result.header, result.trailer


TEXT_OK = [c for c in OK if LAYOUTS[layout_of(c)].framing in ("fixed", "delimited")]
OTHER_OK = [c for c in OK if LAYOUTS[layout_of(c)].framing in ("xml", "excel")]


@pytest.mark.parametrize("expected", TEXT_OK, ids=_ids(TEXT_OK))
def test_text_samples_round_trip_byte_for_byte(expected, tmp_path):
    name, path = layout_of(expected), data_file(expected)
    result = registry.read(path, name)
    out = tmp_path / path.name
    registry.write(out, name, result.records.drop_columns(["_line"]), result.header, result.trailer)
    assert out.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("expected", OTHER_OK, ids=_ids(OTHER_OK))
def test_xml_and_excel_samples_round_trip_in_content_and_rewrite_identically(expected, tmp_path):
    name, path = layout_of(expected), data_file(expected)
    layout = LAYOUTS[name]
    result = registry.read(path, name)
    options = {"encoding": result.extra["encoding"]} if layout.framing == "xml" else \
        {"business_date": dt.date(2026, 11, 22)}
    first, second = tmp_path / f"a_{path.name}", tmp_path / f"b_{path.name}"
    for out in (first, second):
        registry.write(out, name, result.records.drop_columns(["_line"]), result.header, result.trailer, **options)
    assert first.read_bytes() == second.read_bytes()
    again = registry.read(first, name)
    records, header, trailer = _content(again)
    assert records.equals(result.records.drop_columns(["_line"]))
    assert header == result.header and trailer == result.trailer
    if layout.framing == "xml":
        assert first.read_bytes() == path.read_bytes()  # the XML samples were written by this writer


def test_excel_timestamps_come_from_the_business_date(tmp_path):
    layout = LAYOUTS["payroll.result_xlsx"]
    rows = pa.table({"seq_no": [1], "account_no": ["6222000011112222"], "account_name": ["张三"],
                     "amount_fen": [100], "remark": [""], "result": ["成功"], "fail_reason": [""]})
    header = {"title": "t", "payer_acct": "1", "payer_name": "n", "purpose": "工资"}
    trailer = {"success_count": 1, "success_amount_fen": 100, "fail_count": 0, "fail_amount_fen": 0}
    out = tmp_path / "DF_EMP0000001_20261121_01_RESULT.xlsx"
    excel.write(out, layout, rows, header, trailer)  # the date comes from the file name
    with zipfile.ZipFile(out) as z:
        assert {i.date_time for i in z.infolist()} == {(2026, 11, 21, 0, 0, 0)}
        core = z.read("docProps/core.xml").decode()
    assert "2026-11-21T00:00:00Z" in core
    from formats.errors import UnwritableValue
    with pytest.raises(UnwritableValue, match="never from the clock"):
        excel.write(tmp_path / "result.xlsx", layout, rows, header, trailer)
