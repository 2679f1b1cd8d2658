"""The XML writer renders many files in one pass (`xml.write_files`): each file's bytes are those its own `write`
gives, and a value that cannot be written fails as it would in a write of its file alone."""
from __future__ import annotations

import pyarrow as pa
import pytest

from formats import registry, xml
from formats.errors import FieldOverflow, UnwritableValue
from formats.result import OutFile

from .conftest import SAMPLES


def _request_and_reply():
    """A 3102 read from its sample, and the rows and header of a 2102 answering it."""
    request = registry.read(SAMPLES / "tips" / "3102" / "ok_pack_gbk.xml", "tips.3102")
    reply = registry.read(SAMPLES / "tips" / "2102" / "ok_pack_processed.xml", "tips.2102")
    return request, reply


def test_many_files_in_one_pass_are_byte_for_byte_their_own_writes(tmp_path):
    request, reply = _request_and_reply()
    layout = registry.get("tips.2102")
    rows = reply.records.drop_columns(["_line"])
    names = rows.column_names
    odd = rows.set_column(names.index("AddWord"), "AddWord", pa.array(["<a & b>"] + [None] * (rows.num_rows - 1),
                                                                        pa.string()))
    records = pa.concat_tables([rows, odd, rows.slice(0, 0), rows.slice(1)])
    parts = [(0, rows.num_rows), (rows.num_rows, rows.num_rows), (2 * rows.num_rows, 0),
             (2 * rows.num_rows, rows.num_rows - 1)]
    encodings = ["GBK", "GB18030", "GBK", None]
    files = [OutFile(tmp_path / f"many_{k}.xml", offset, length, dict(reply.header, MsgRef=f"{k:020d}"),
                     options={"encoding": enc} if enc else {})
             for k, ((offset, length), enc) in enumerate(zip(parts, encodings))]
    xml.write_files(layout, records, files)
    for k, out in enumerate(files):
        alone = tmp_path / f"alone_{k}.xml"
        registry.write(alone, "tips.2102", records.slice(out.offset, out.length), out.header, **out.options)
        assert out.path.read_bytes() == alone.read_bytes(), k
        assert out.path.read_bytes() == xml.render(layout, records.slice(out.offset, out.length), out.header,
                                                   encoding=encodings[k])
    assert "&lt;a &amp; b&gt;".encode() in files[1].path.read_bytes()
    assert b"<BatchReturn2102>" not in files[2].path.read_bytes()
    again = registry.read(files[0].path, "tips.2102")
    assert again.records.drop_columns(["_line"]).equals(rows)


def test_a_value_that_cannot_be_written_fails_as_in_its_own_file(tmp_path):
    _, reply = _request_and_reply()
    layout = registry.get("tips.2102")
    rows = reply.records.drop_columns(["_line"])
    bad = rows.set_column(rows.column_names.index("OriTraNo"), "OriTraNo",
                          pa.array(["1"] + rows["OriTraNo"].to_pylist()[1:]))
    records = pa.concat_tables([rows, bad])
    files = [OutFile(tmp_path / f"f{k}.xml", k * rows.num_rows, rows.num_rows, reply.header) for k in range(2)]
    with pytest.raises(UnwritableValue) as many:
        xml.write_files(layout, records, files)
    with pytest.raises(UnwritableValue) as alone:
        registry.write(tmp_path / "alone.xml", "tips.2102", bad, reply.header)
    assert str(many.value) == str(alone.value) and many.value.row == 0 and many.value.field == "OriTraNo"
    assert files[0].path.exists() and not files[1].path.exists()    # the files before it are written

    headers = [reply.header, dict(reply.header, WorkDate=None), reply.header]
    files = [OutFile(tmp_path / f"h{k}.xml", 0, 0, h) for k, h in enumerate(headers)]
    with pytest.raises((UnwritableValue, FieldOverflow)) as many:
        xml.write_files(layout, rows.slice(0, 0), files)
    with pytest.raises(type(many.value)) as alone:
        registry.write(tmp_path / "alone.xml", "tips.2102", rows.slice(0, 0), headers[1])
    assert str(many.value) == str(alone.value)
    assert files[0].path.exists() and not files[1].path.exists() and not files[2].path.exists()

    with pytest.raises(UnwritableValue, match="no header values given"):
        xml.write_files(layout, rows, [OutFile(tmp_path / "none.xml", 0, rows.num_rows)])
