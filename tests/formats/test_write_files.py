"""`write_files` (many files of one layout in one call, a night's returns) writes what `write` writes, file by file.

The fixed-width and delimited engines render all the files' rows in one pass and cut them per file: each file must
still get exactly its own bytes, whatever the order of its slice in the table, and a value that cannot be written
must be reported as a lone `write` of its file would report it (its field, its row in its file), naming the file.
"""
from __future__ import annotations

import csv
import io

import pyarrow as pa
import pytest

from formats import delimited, registry
from formats.errors import FieldOverflow, UnwritableValue
from formats.registry import LAYOUTS
from formats.result import OutFile

from .conftest import data_file, layout_of, sample_cases

BATCHED = [c for c in sample_cases() if c.name.startswith("ok_")
           and LAYOUTS[layout_of(c)].framing in ("fixed", "delimited")]


def _ids(cases):
    return [f"{layout_of(c)}:{c.name[: -len('.expected.json')]}" for c in cases]


def _three_files(expected, tmp_path):
    """The sample's records three times over in one table (the middle copy first in the table), and three
    OutFiles cutting it back into the sample's three copies."""
    name, path = layout_of(expected), data_file(expected)
    result = registry.read(path, name)
    rows = result.records.drop_columns(["_line"])
    n = rows.num_rows
    table = pa.concat_tables([rows, rows, rows])
    files = [OutFile(tmp_path / f"{k}_{path.name}", offset, n, result.header, result.trailer)
             for k, offset in enumerate((n, 0, 2 * n))]
    return name, path, rows, table, files


@pytest.mark.parametrize("expected", BATCHED, ids=_ids(BATCHED))
def test_each_file_gets_the_bytes_of_its_own_write(expected, tmp_path):
    name, path, _, table, files = _three_files(expected, tmp_path)
    registry.write_files(name, table, files)
    for f in files:
        assert f.path.read_bytes() == path.read_bytes(), f.path.name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.path.name for f in files)  # no tmp file left


@pytest.mark.parametrize("expected", BATCHED, ids=_ids(BATCHED))
def test_a_bad_value_is_reported_as_by_the_write_of_its_file(expected, tmp_path):
    name, path, rows, table, files = _three_files(expected, tmp_path)
    if rows.num_rows < 2:
        pytest.skip("one record: no row inside the file to find")
    layout = LAYOUTS[name]
    required = [f for f in layout.detail.fields if f.name in rows.column_names and not getattr(f.type, "blank", False)]
    field = required[0]
    bad_row = rows.num_rows - 1
    values = table.column(field.name).combine_chunks().to_pylist()
    values[2 * rows.num_rows + bad_row] = None          # the last row of the third file (the last in the table)
    table = table.set_column(table.schema.get_field_index(field.name), field.name,
                             pa.array(values, table.schema.field(field.name).type))
    with pytest.raises((UnwritableValue, FieldOverflow)) as lone:
        registry.write(tmp_path / "lone", name, table.slice(2 * rows.num_rows, rows.num_rows), files[2].header,
                       files[2].trailer)
    with pytest.raises(type(lone.value)) as batched:
        registry.write_files(name, table, files)
    assert str(batched.value) == str(lone.value)
    assert (batched.value.field, batched.value.row) == (field.name, bad_row)
    assert any(files[2].path.name in note for note in batched.value.__notes__)
    assert files[0].path.read_bytes() == files[1].path.read_bytes() == path.read_bytes()  # written before it
    assert not files[2].path.exists()


def test_fixed_width_text_in_gbk_is_encoded_in_one_call_and_cut_right(tmp_path):
    """Values of differing GBK lengths (ASCII, Chinese, mixed, empty) keep their own bytes and padding."""
    layout = LAYOUTS["utility.hp"]
    result = registry.read(data_file(next(c for c in BATCHED if layout_of(c) == "utility.hp")), layout.name)
    rows = result.records.drop_columns(["_line"])
    names = ["张三", "", "ACME 公司", "欧阳娜娜娜娜娜娜娜娜娜娜娜娜娜娜娜娜娜娜"][: rows.num_rows]
    names += ["李" * (k % 20) for k in range(rows.num_rows - len(names))]
    rows = rows.set_column(rows.schema.get_field_index("account_name"), "account_name", pa.array(names))
    out = tmp_path / "HP.txt"
    registry.write(out, layout.name, rows, result.header)
    lines = out.read_bytes().split(b"\r\n")[1:-1]
    assert [line[61:101].decode("gbk").rstrip(" ") for line in lines] == names
    assert {len(line) for line in lines} == {200}


def test_csv_values_are_quoted_as_the_csv_module_quotes_them(tmp_path):
    """RFC 4180 quoting is assembled in Arrow: it must equal the csv module's (QUOTE_MINIMAL)."""
    layout = LAYOUTS["payroll.result_csv"]
    result = registry.read(data_file(next(c for c in BATCHED if layout_of(c) == layout.name)), layout.name)
    rows = result.records.drop_columns(["_line"])
    remarks = ['a,b', 'say "hi"', '"', ' lead and trail ', 'tab\there', '', '逗号，全角', 'x' * 300][: rows.num_rows]
    rows = rows.set_column(rows.schema.get_field_index("remark"), "remark", pa.array(remarks))
    text = delimited.render(layout, rows, result.header, result.trailer).decode("gbk")
    for remark in remarks:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(["x", remark, "y"])
        assert buf.getvalue()[1:-1] in text


def test_a_csv_value_holding_a_line_feed_is_quoted_and_reads_back(tmp_path):
    """Quoted whether or not it also holds a comma (the csv module, given no line terminator for one row, left
    a bare line feed unquoted, which split the record)."""
    layout = LAYOUTS["ledger.journal"]
    case = next(c for c in BATCHED if layout_of(c) == layout.name)
    rows = registry.read(data_file(case), layout.name).records.drop_columns(["_line"])
    memo = rows.schema.get_field_index("memo")
    memos = ["line\nbreak", "with, comma\nand break", *rows["memo"].to_pylist()[2:]][: rows.num_rows]
    rows = rows.set_column(memo, "memo", pa.array(memos))
    out = tmp_path / "CORE_JOURNAL_20261121.csv"
    delimited.write(out, layout, rows)
    back = registry.read(out, layout.name)
    assert back.quarantined == 0 and back.records["memo"].to_pylist() == memos
