"""The Excel writer writes its workbooks part by part: what openpyxl reads back from them is what was written
(values and cell types), `write_files` gives each file the bytes of its own `write`, and a bad value is reported
as the `write` of its file would report it."""
from __future__ import annotations

import datetime as dt

import openpyxl
import pyarrow as pa
import pytest

from formats import excel, registry
from formats.errors import UnwritableValue
from formats.registry import LAYOUTS
from formats.result import OutFile

from .conftest import SAMPLES

DAY = dt.date(2026, 11, 21)


def _sample(name: str):
    layout = LAYOUTS[name]
    folder = SAMPLES.joinpath(*name.split(".", 1))
    result = registry.read(sorted(folder.glob("ok_*.xlsx"))[0], name)
    return layout, result.records.drop_columns(["_line"]), result.header, result.trailer


def test_openpyxl_reads_back_the_values_and_cell_types_written(tmp_path):
    layout, rows, header, trailer = _sample("payroll.result_xlsx")
    assert rows.num_rows == 3
    names = ["=1+1", " lead", "a & <b>"]
    remarks = [None, "  x ", ""]
    rows = rows.set_column(rows.schema.get_field_index("account_name"), "account_name", pa.array(names))
    rows = rows.set_column(rows.schema.get_field_index("remark"), "remark", pa.array(remarks))
    path = tmp_path / "out.xlsx"
    excel.write(path, layout, rows, header, trailer, business_date=DAY)
    ws = openpyxl.load_workbook(path)[layout.options["sheet"]]
    detail = [[(c.value, c.data_type) for c in row] for row in ws.iter_rows(min_row=6, max_row=5 + rows.num_rows)]
    assert [r[2] for r in detail] == [(v, "s") for v in names]  # "=1+1" is text, never a formula
    assert [r[4][0] for r in detail] == [None, "  x ", None]
    assert [r[0] for r in detail] == [(v, "n") for v in rows["seq_no"].to_pylist()]
    assert [r[3][0] for r in detail] == [v / 100 for v in rows["amount_fen"].to_pylist()]
    assert ws["A1"].value == header["title"] and ws["A1"].number_format == "@"
    assert ws.cell(6, 4).number_format == "0.00"
    total = ws.cell(6 + rows.num_rows, 1)
    assert (total.value, ws.cell(6 + rows.num_rows, 2).value) == ("合计", trailer["success_count"])
    back = registry.read(path, layout.name).records  # the reader strips the spaces around a text
    assert back["account_name"].to_pylist() == ["=1+1", "lead", "a & <b>"]
    assert back["remark"].to_pylist() == ["", "x", ""]
    assert back["amount_fen"].equals(rows["amount_fen"])


def test_write_files_gives_each_workbook_the_bytes_of_its_write(tmp_path):
    layout, rows, header, trailer = _sample("payroll.batch_xlsx")
    n = rows.num_rows
    table = pa.concat_tables([rows, rows, rows])
    files = [OutFile(tmp_path / f"{k}.xlsx", offset, n, header, trailer, {"business_date": DAY})
             for k, offset in enumerate((n, 0, 2 * n))]
    excel.write_files(layout, table, files)
    lone = tmp_path / "lone.xlsx"
    excel.write(lone, layout, rows, header, trailer, business_date=DAY)
    assert {f.path.read_bytes() for f in files} == {lone.read_bytes()}
    excel.write(lone, layout, rows, header, trailer, business_date=DAY)
    assert lone.read_bytes() == files[0].path.read_bytes()  # a rerun writes the same bytes


def test_a_bad_value_is_reported_as_by_the_write_of_its_file(tmp_path):
    layout, rows, header, trailer = _sample("payroll.batch_xlsx")
    n = rows.num_rows
    names = rows["account_name"].to_pylist()
    bad = rows.set_column(rows.schema.get_field_index("account_name"), "account_name",
                          pa.array(names[:-1] + ["a\x01b"]))
    table = pa.concat_tables([rows, bad])
    files = [OutFile(tmp_path / f"{k}.xlsx", k * n, n, header, trailer, {"business_date": DAY}) for k in (0, 1)]
    with pytest.raises(UnwritableValue) as lone:
        excel.write(tmp_path / "lone.xlsx", layout, bad, header, trailer, business_date=DAY)
    with pytest.raises(UnwritableValue) as batched:
        excel.write_files(layout, table, files)
    assert str(batched.value) == str(lone.value) and "control character" in str(lone.value)
    assert (batched.value.field, batched.value.row) == ("account_name", n - 1)
    assert files[0].path.exists() and not files[1].path.exists()
