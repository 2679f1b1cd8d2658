"""Behaviour of the engines that the sample files alone do not pin down: writers refusing what does not fit,
XML safety limits, streaming equal to reading whole, what a rejected file still tells its caller."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from formats import delimited, excel, fixed_width, registry, xml
from formats.errors import (ControlTotalMismatch, EncodingError, FieldOverflow, FileRejected, FlagMismatch,
                            StructureError, UnsafeXml, UnwritableValue)
from formats.flag import Flag, md5_of, parse_flag
from formats.registry import LAYOUTS

from .conftest import SAMPLES

ACOMN = LAYOUTS["unionpay.acomn"]
ERRN = LAYOUTS["unionpay.errn"]


# --- fixed width ---------------------------------------------------------------------------------------------

def test_errn_fields_after_the_chinese_merchant_name_are_read_at_their_byte_positions():
    """merchant_name (411-450) holds GBK text: 2 bytes a character. Every later field must still be found by
    byte position, which character slicing of decoded text would shift."""
    path = SAMPLES / "unionpay" / "errn" / "ok_chinese_merchant_name.txt"
    raw = path.read_bytes().split(b"\r\n")[1]
    result = registry.read(path, "unionpay.errn")
    row = result.records.filter(pa.compute.equal(result.records["_line"], 2)).to_pylist()[0]
    assert row["merchant_name"] == "香港東方百貨有限公司深圳分公司"
    for name in ("special_fee_type", "special_fee_level", "reserved1", "card_product", "orig_txn_code",
                 "initiator", "acct_settle_type", "orig_txn_type", "merchant_fee", "merchant_settle_bank",
                 "merchant_settle_bank_fee"):
        f = ERRN.detail.field(name)
        assert row[name] == raw[f.start - 1: f.end].decode("ascii").rstrip(" "), name
    assert row["merchant_settle_bank_fee"] == "000000030"
    # the decoded line is shorter than 581 characters: slicing it by the byte positions would be wrong
    assert len(raw.decode("gbk")) < 581


def test_writer_refuses_a_value_longer_than_its_field(tmp_path):
    row = fixed_width.read(SAMPLES / "unionpay" / "acomn" / "ok_20261121.txt", ACOMN).records.drop_columns(["_line"])
    too_long = row.set_column(row.schema.get_field_index("order_id"), "order_id",
                              pa.array(["订" * 21] * row.num_rows))          # 42 bytes in GBK, the field has 40
    with pytest.raises(FieldOverflow, match="order_id.*40 bytes"):
        fixed_width.write(tmp_path / "x", ACOMN, too_long)
    big = row.set_column(row.schema.get_field_index("amount_fen"), "amount_fen",
                         pa.array([10**12] * row.num_rows, pa.int64()))    # 13 digits, the field has 12
    with pytest.raises(FieldOverflow, match="amount_fen"):
        fixed_width.write(tmp_path / "x", ACOMN, big)
    assert not (tmp_path / "x").exists()


def test_delimited_writer_refuses_overflow_separators_and_missing_values(tmp_path):
    layout = LAYOUTS["pboc.cnaps2_dzmx"]
    result = registry.read(SAMPLES / "pboc" / "cnaps2_dzmx" / "ok_20261121.txt", layout.name)
    rows = result.records.drop_columns(["_line"])
    i = rows.schema.get_field_index("payer_name")
    with pytest.raises(FieldOverflow, match="payer_name.*60 bytes"):
        delimited.render(layout, rows.set_column(i, "payer_name", pa.array(["公司" * 16] * rows.num_rows)),
                         result.header)
    with pytest.raises(UnwritableValue, match="separator"):
        delimited.render(layout, rows.set_column(i, "payer_name", pa.array(["A|B"] * rows.num_rows)), result.header)
    j = rows.schema.get_field_index("amount")
    with pytest.raises(UnwritableValue, match="required"):
        delimited.render(layout, rows.set_column(j, "amount", pa.array([None] * rows.num_rows, pa.int64())),
                         result.header)


def test_xml_writer_refuses_overflow():
    layout = LAYOUTS["tips.3102"]
    result = registry.read(SAMPLES / "tips" / "3102" / "ok_pack_gbk.xml", layout.name)
    rows = result.records.drop_columns(["_line"])
    i = rows.schema.get_field_index("HandOrgName")
    with pytest.raises(FieldOverflow, match="HandOrgName"):
        xml.render(layout, rows.set_column(i, "HandOrgName", pa.array(["南京" * 16] * rows.num_rows)), result.header)


def test_streaming_to_parquet_equals_reading_whole_across_batch_boundaries(tmp_path, monkeypatch):
    from bench.gen_acomn import chunk
    mat = chunk(0, 1000, dt.date(2026, 11, 21), np.random.default_rng(3))
    mat[99, 62:74] = np.frombuffer(b"00000000X000", dtype=np.uint8)       # a bad amount at a batch edge
    data = mat.tobytes()
    data = data[: 500 * 502] + data[500 * 502: 501 * 502 - 3] + b"\r\n" + data[501 * 502:]  # a short line
    path = tmp_path / "IND26112101ACOMN"
    path.write_bytes(data)
    monkeypatch.setattr(fixed_width, "BATCH_RECORDS", 64)
    whole = fixed_width.read(path, ACOMN)
    out = tmp_path / "out.parquet"
    streamed = fixed_width.read_to_parquet(path, ACOMN, out, row_group_rows=256)
    assert streamed.detail_count == whole.detail_count == 1000
    assert [(r["_line"], r["_field"]) for r in streamed.quarantine.to_pylist()] == [(100, "amount_fen"),
                                                                                    (501, "record")]
    table = pq.read_table(out)
    assert table.equals(whole.records.combine_chunks())
    assert pq.ParquetFile(out).metadata.num_row_groups == 4
    assert table["order_id"].to_pylist()[7].startswith("订单号")


def _faulty_acomn(tmp_path, n=3000) -> Path:
    """An ACOMN file with faults at and across batch edges: a bad amount, a short line, a 70 KB line (longer
    than the read buffer), GBK rows, and a last line without its line end."""
    from bench.gen_acomn import chunk
    mat = chunk(0, n, dt.date(2026, 11, 21), np.random.default_rng(4))
    mat[63, 62:74] = np.frombuffer(b"00000000X000", dtype=np.uint8)
    data = mat.tobytes()
    data = (data[: 640 * 502] + b"9" * 70_000 + b"\r\n" + data[640 * 502: 1001 * 502 - 3] + b"\r\n"
            + data[1001 * 502: -2])
    path = tmp_path / "IND26112101ACOMN"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("batch", [64, 100, 4096])
def test_parallel_parsing_gives_what_one_thread_gives(tmp_path, monkeypatch, batch):
    path = _faulty_acomn(tmp_path)
    monkeypatch.setattr(fixed_width, "BATCH_RECORDS", batch)
    results = []
    for workers in (1, 2, 3):
        monkeypatch.setattr(fixed_width, "WORKERS", workers)
        results.append(fixed_width.read(path, ACOMN))
    one = results[0]
    assert one.detail_count == 3001 and one.lines == 3001
    assert [(r["_line"], r["_field"]) for r in one.quarantine.to_pylist()] == [(64, "amount_fen"), (641, "record"),
                                                                               (1002, "record")]
    for other in results[1:]:
        assert other.records.equals(one.records) and other.quarantine.equals(one.quarantine)
        assert (other.detail_count, other.lines) == (one.detail_count, one.lines)


def test_a_rejected_chunk_in_the_middle_stops_the_read_and_frees_the_threads(tmp_path, monkeypatch):
    """An error parsing one chunk is raised when its turn comes, in file order; an early stop of the consumer
    neither hangs nor leaves parsing threads behind."""
    import threading
    monkeypatch.setattr(fixed_width, "BATCH_RECORDS", 100)
    path = _faulty_acomn(tmp_path)
    data = bytearray(path.read_bytes())
    start = 2000 * 502 + 70_002 - 1  # lines 2001.. (after the long line, and the short one a byte short)
    order = ACOMN.detail.field("order_id")
    chinese = "订单号码".encode("utf-8")  # 12 bytes
    for k in range(2000, 2100):
        at = start + (k - 2000) * 502 + order.start - 1
        data[at: at + len(chinese)] = chinese
    path.write_bytes(bytes(data))
    before = threading.active_count()
    with pytest.raises(EncodingError, match="UTF-8") as info:
        fixed_width.read(path, ACOMN)
    assert info.value.line == 2002  # line 2001 of records, after the 70 KB line
    batches = fixed_width.iter_batches(path, ACOMN)
    next(batches)
    batches.close()
    assert threading.active_count() == before


def test_a_rejected_file_leaves_no_parquet(tmp_path):
    path = SAMPLES / "unionpay" / "acomn" / "ok_20261121.txt"
    wrong = Flag(path.name, path.stat().st_size, 6, md5_of(path))
    out = tmp_path / "out.parquet"
    with pytest.raises(FlagMismatch):
        fixed_width.read_to_parquet(path, ACOMN, out, wrong)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ControlTotalMismatch):
        registry.read_to_parquet(SAMPLES / "pboc" / "cnaps2_dzmx" / "debit_total_off.txt", "pboc.cnaps2_dzmx", out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, sample", [
    ("pboc.cnaps2_dzmx", "pboc/cnaps2_dzmx/ok_20261121.txt"), ("tips.3102", "tips/3102/ok_pack_gbk.xml"),
    ("payroll.batch_xlsx", "payroll/batch_xlsx/ok_20261121.xlsx"), ("ledger.journal", "ledger/journal/ok_20261121.csv"),
    ("utility.dk", "utility/dk/ok_20261121.txt"),
])
def test_read_to_parquet_for_every_framing(tmp_path, name, sample):
    whole = registry.read(SAMPLES / sample, name)
    result = registry.read_to_parquet(SAMPLES / sample, name, tmp_path / "o.parquet")
    assert result.detail_count == whole.detail_count and result.records.num_rows == 0
    # Parquet has no second-resolution timestamps: they come back as milliseconds, the same instants
    back = pq.read_table(tmp_path / "o.parquet").cast(whole.records.schema)
    assert back.equals(whole.records.combine_chunks())


# --- delimited ------------------------------------------------------------------------------------------------

def test_delimited_lines_of_another_shape_are_quarantined_one_by_one_among_the_columns_split_whole(tmp_path):
    """The unquoted reader splits the whole file a column at a time; the odd lines (undecodable, a field too many,
    a carriage return inside a value, another record type) keep their own reasons and raw bytes, blank lines are
    skipped, and every other line keeps its place."""
    header, *details = (SAMPLES / "pboc" / "cnaps2_dzmx" / "ok_20261121.txt").read_bytes().split(b"\r\n")[:-1]
    odd = [details[0][:20] + b"\x81" + details[0][21:], details[1] + b"|x", details[2].replace(b"|20261121|", b"|2026\r1121|", 1),
           b"X" + details[3][1:]]
    path = tmp_path / "odd.txt"
    path.write_bytes(b"\r\n".join([header, b"", *odd, b"   ", *details]) + b"\r\n")
    with pytest.raises(ControlTotalMismatch) as info:
        registry.read(path, "pboc.cnaps2_dzmx")
    read = info.value.partial
    q = read.quarantine.to_pylist()
    assert [(r["_line"], r["_field"], r["_expected"]) for r in q] == [
        (3, "record", "text in GBK"), (4, "record", "15 fields"), (5, "entrust_date", "a value without a line break"),
        (6, "record_type", "'D'")]
    assert [r["_raw"] for r in q] == odd
    assert read.records["_line"].to_pylist() == list(range(8, 8 + len(details)))
    assert read.records["msg_id"].to_pylist() == [d.split(b"|")[2].decode() for d in details]


# --- XML safety ----------------------------------------------------------------------------------------------

def _cfx(body: str, encoding: str = "GBK") -> bytes:
    return f'<?xml version="1.0" encoding="{encoding}"?>\r\n<CFX>{body}</CFX>\r\n'.encode("gbk")


def test_xml_refuses_depth_and_size_past_the_limits(tmp_path, monkeypatch):
    path = tmp_path / "deep.xml"
    path.write_bytes(_cfx("<a>" * 40 + "</a>" * 40))
    with pytest.raises(UnsafeXml, match="deeper"):
        registry.read(path, "tips.3102")
    monkeypatch.setattr(xml, "MAX_BYTES", 100)
    path.write_bytes(_cfx("<HEAD>" + " " * 200 + "</HEAD>"))
    with pytest.raises(UnsafeXml, match="larger"):
        registry.read(path, "tips.3102")


def test_xml_needs_a_declared_encoding_and_the_right_root(tmp_path):
    path = tmp_path / "x.xml"
    path.write_bytes(b"<CFX></CFX>")
    with pytest.raises(EncodingError, match="declares no encoding"):
        registry.read(path, "tips.3102")
    path.write_bytes(b'<?xml version="1.0" encoding="GBK"?><ROOT></ROOT>')
    with pytest.raises(StructureError, match="root"):
        registry.read(path, "tips.3102")


def test_xml_entities_are_never_expanded():
    sample = SAMPLES / "tips" / "3102" / "xml_doctype_entity.xml"
    with pytest.raises(UnsafeXml) as info:
        registry.read(sample, "tips.3102")
    assert info.value.line == 2


def test_xml_fields_come_from_direct_children_and_a_quarantined_record_keeps_its_normalised_element(tmp_path):
    """The reader gathers fields while expat reads (no tree): a field is the first child element of its name,
    text of its own only; a Repeated field holds the items of every list element; a quarantined record's `_raw`
    is its element rebuilt (no attributes, no whitespace between elements, leaf text trimmed and re-escaped)."""
    text = (SAMPLES / "tips" / "3102" / "ok_pack_gbk.xml").read_bytes().decode("gbk")
    first = text.index("<Payment3102>")
    payment = text[first:text.index("</Payment3102>") + len("</Payment3102>")]
    odd = (payment.replace("<Payment3102>", '<Payment3102 note="a > b" n=\'2\' >')
           .replace("<PayAcct>320011000000000001</PayAcct>", "<PayAcct> </PayAcct><PayAcct>9</PayAcct>")
           .replace("<HandOrgName>南京某某科技有限公司", "<HandOrgName> A &amp; B<x>inner</x><![CDATA[<c>]]> ")
           .replace("</TaxType3102>\r\n        <TaxType3102>", "</TaxType3102></TaxTypeList3102><TaxTypeList3102>"
                    "<TaxType3102>"))
    path = tmp_path / "odd.xml"
    path.write_bytes((text[:first] + odd + '<Payment3102 a="/>"/>' + text[first + len(payment):]).encode("gbk"))
    with pytest.raises(ControlTotalMismatch) as info:   # AllNum counts 2 payments, the file now has 3
        registry.read(path, "tips.3102")
    q = info.value.partial.quarantine.to_pylist()
    assert [(r["_line"], r["_field"]) for r in q] == [(30, "PayAcct"), (55, "TraNo")]
    assert q[0]["HandOrgName"] == "A & B<c>" and [t["ProjectId"] for t in q[0]["TaxTypeList3102"]] == ["1", "2"]
    assert q[0]["_raw"].decode("utf-8").startswith(
        "<Payment3102><TraNo>00000001</TraNo><PayOpBkCode>313301000019</PayOpBkCode><PayAcct></PayAcct>"
        "<PayAcct>9</PayAcct><HandOrgName><x>inner</x></HandOrgName><TraAmt>823798.09</TraAmt>")
    assert q[0]["_raw"].endswith(b"<TaxTypeAmt>23798.09</TaxTypeAmt></TaxType3102></TaxTypeList3102></Payment3102>")
    assert q[1]["_raw"] == b"<Payment3102></Payment3102>"


# --- what a rejected batch still tells its caller ------------------------------------------------------------

def test_a_rejected_pack_keeps_what_was_read_for_the_reply():
    """TIPS: a pack failing a check is answered with a 2102 echoing AllNum/AllAmt; payroll: a rejected batch
    still gets a result file carrying every row. The exception carries what was read."""
    with pytest.raises(ControlTotalMismatch) as info:
        registry.read(SAMPLES / "tips" / "3102" / "allnum_off.xml", "tips.3102")
    assert info.value.partial.header["AllNum"] == 3 and info.value.partial.header["PackNo"] == "00000001"
    with pytest.raises(FileRejected) as info:
        registry.read(SAMPLES / "payroll" / "batch_csv" / "total_off.csv", "payroll.batch_csv")
    assert info.value.partial.records.num_rows == 3


def test_summary_names_controls_and_quarantine_reasons():
    result = registry.read(SAMPLES / "utility" / "dk" / "zero_amount_line4.txt", "utility.dk")
    summary = result.summary()
    assert summary["records"] == 4 and summary["loaded"] == 3 and summary["quarantined"] == 1
    assert "count of detail = header.record_count: 4 = 4" in summary["controls"]
    assert summary["quarantine_reasons"][0].startswith("line 4 detail.amount_fen: expected amount in fen")
    json.dumps(summary, ensure_ascii=False)


def test_quarantine_keeps_the_amount_for_conservation():
    result = registry.read(SAMPLES / "utility" / "dk" / "zero_amount_line4.txt", "utility.dk")
    q = result.quarantine.to_pylist()[0]
    assert q["amount_fen"] == 0 and q["_raw"].startswith(b"D00000003")
    assert q["_expected"] == "amount in fen (digits, > 0)" and q["_actual"] == "000000000000000"


# --- CSV extracts --------------------------------------------------------------------------------------------

def test_journal_extract_streams_and_keeps_quoted_line_breaks(tmp_path):
    layout = LAYOUTS["ledger.journal"]
    base = registry.read(SAMPLES / "ledger" / "journal" / "ok_20261121.csv", layout.name).records.drop_columns(["_line"])
    rows = pa.concat_tables([base] * 3000)
    memo = rows.schema.get_field_index("memo")
    rows = rows.set_column(memo, "memo", pa.array([f"第{i}行,\n备注" if i == 5 else f"m{i}" for i in range(rows.num_rows)]))
    path = tmp_path / "CORE_JOURNAL_20261121.csv"
    delimited.write(path, layout, rows)
    result = registry.read(path, layout.name)
    assert result.detail_count == 9000 and result.quarantined == 0
    assert result.records.drop_columns(["_line"]).equals(rows)
    assert result.records["memo"][5].as_py() == "第5行,\n备注"


def test_a_malformed_row_past_the_first_block_of_an_extract_is_never_counted_twice(tmp_path, monkeypatch):
    """A streamed extract hands on its blocks as they are read; a row with the wrong number of fields found
    after that cannot send the file back to the line-by-line reader (it would count the first blocks twice)."""
    layout = LAYOUTS["ledger.journal"]
    base = registry.read(SAMPLES / "ledger" / "journal" / "ok_20261121.csv", layout.name).records.drop_columns(["_line"])
    rows = pa.concat_tables([base] * 1000)
    path = tmp_path / "CORE_JOURNAL_20261121.csv"
    delimited.write(path, layout, rows)
    lines = path.read_bytes().split(layout.line_end)
    lines[2500] += b",one too many"
    path.write_bytes(layout.line_end.join(lines))
    monkeypatch.setattr(delimited, "BLOCK_BYTES", 4096)
    try:
        result = registry.read(path, layout.name)
    except StructureError as e:
        assert "wrong number of fields" in str(e)
    else:  # Arrow had read ahead past the row before handing on the first block: the line reader took over
        assert result.detail_count == rows.num_rows and result.quarantined == 1


def test_excel_number_cell_account_is_a_row_error_with_its_text():
    result = registry.read(SAMPLES / "payroll" / "batch_xlsx" / "excel_account_as_number_row7.xlsx",
                           "payroll.batch_xlsx")
    q = result.quarantine.to_pylist()[0]
    assert (q["_line"], q["_field"], q["_expected"]) == (7, "account_no", "a text cell")
    assert "62170000333" in q["_actual"] and "leading zeros" in q["_actual"]
    # the row error leaves the row out of nothing else: its amount still counts toward the 合计 check
    assert result.trailer["total_amount_fen"] == 2034555


def test_writers_refuse_values_their_own_reader_would_quarantine(tmp_path):
    """Strict both ways: no writer produces a record the other end must quarantine."""
    rows = fixed_width.read(SAMPLES / "unionpay" / "acomn" / "ok_20261121.txt", ACOMN).records.drop_columns(["_line"])
    for name, value in (("amount_fen", pa.array([-5] * rows.num_rows, pa.int64())),
                        ("msg_type", pa.array(["0100"] * rows.num_rows)),
                        ("order_id", pa.array(["line\r\nbreak"] * rows.num_rows)),
                        ("pan", pa.array([""] * rows.num_rows))):
        bad = rows.set_column(rows.schema.get_field_index(name), name, value)
        with pytest.raises(UnwritableValue, match=name):
            fixed_width.write(tmp_path / "x", ACOMN, bad)
    layout = LAYOUTS["pboc.cnaps2_dzmx"]
    result = registry.read(SAMPLES / "pboc" / "cnaps2_dzmx" / "ok_20261121.txt", layout.name)
    good = result.records.drop_columns(["_line"])
    bad = good.set_column(good.schema.get_field_index("instr_bank"), "instr_bank", pa.array(["31310000001"] * 4))
    with pytest.raises(UnwritableValue, match="instr_bank.*12 digits"):
        delimited.render(layout, bad, result.header)
