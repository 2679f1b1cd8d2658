"""The 差错 file: every break with its reason, proposed action and yuan amount; CSV (BOM, CRLF) and a workbook that
reads well; identical bytes on two writes; card numbers masked."""
from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile

import openpyxl
import pyarrow as pa

from clearing.error_file import write_error_file
from tests.clearing.conftest import RESULT_SCHEMA, mask

T = dt.date(2026, 11, 21)
PAN = "6222021234567890123"


def row(side, key, outcome, amount, status="S", cp=None, lg=None, cp_status=None, lg_status=None, line=None,
        channel="unionpay_acq", date=T):
    return {f.name: None for f in RESULT_SCHEMA} | {
        "channel": channel, "business_date": date, "side": side, "record_ref": f"{side}:{key}", "match_ref": key,
        "outcome": outcome, "reason": f"constructed {outcome}", "amount_fen": amount, "status": status,
        "counterparty_amount_fen": cp, "ledger_amount_fen": lg, "counterparty_status": cp_status,
        "ledger_status": lg_status, "account_masked": mask(PAN), "sign": 1,
        "source_file": "IND26112101ACOMN" if side == "counterparty" else None, "source_line": line}


# (row, expected action)
CASES = [
    (row("counterparty", "K1", "AMOUNT_MISMATCH", 10000, cp=10000, lg=9000, cp_status="S", lg_status="S", line=1),
     "ask"),
    (row("ledger", "K1", "AMOUNT_MISMATCH", 9000, cp=10000, lg=9000, cp_status="S", lg_status="S"), "ask"),
    (row("counterparty", "K2", "STATUS_MISMATCH", 700, cp=700, lg=700, cp_status="S", lg_status="F", line=2), "post"),
    (row("counterparty", "K3", "STATUS_MISMATCH", 800, cp=800, lg=800, cp_status="F", lg_status="S", line=3),
     "reverse"),
    (row("counterparty", "K4", "STATUS_MISMATCH", 900, cp=900, lg=900, cp_status="S", lg_status="R", line=4), "ask"),
    (row("counterparty", "K5", "COUNTERPARTY_ONLY", 12345, cp=12345, cp_status="S", line=5), "post"),
    (row("ledger", "K6", "LEDGER_ONLY", 5000, lg=5000, lg_status="S"), "reverse"),
    (row("ledger", "K7", "LEDGER_ONLY", 400, "F", lg=400, lg_status="F"), "hold"),
    (row("counterparty", "K8", "DUPLICATE", 100, line=6), "ask"),
    (row("counterparty", "K8", "DUPLICATE", 100, line=7), "ask"),
    (row("ledger", "K9", "DUPLICATE", 250), "reverse"),
]
NOT_BREAKS = [row("counterparty", "M1", "MATCHED", 1, line=8), row("ledger", "P1", "PENDING", 2),
              row("counterparty", "Q1", "QUARANTINED", 3, line=9),
              row("counterparty", "X1", "LEDGER_ONLY", 4, channel="cnaps2"),
              row("ledger", "X2", "LEDGER_ONLY", 5, date=T - dt.timedelta(days=1))]


def results() -> pa.Table:
    return pa.Table.from_pylist([c[0] for c in CASES] + NOT_BREAKS, schema=RESULT_SCHEMA)


def test_csv_lists_every_break_once_with_its_action_and_yuan(tmp_path):
    csv_path, _ = write_error_file(results(), "unionpay_acq", T, tmp_path)
    assert csv_path.name == "CHACUO_unionpay_acq_20261121.csv"
    data = csv_path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and data.count(b"\r\n") == len(CASES) + 1 and b"\n" not in data.replace(
        b"\r\n", b"")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert sorted(r["记录"] for r in rows) == sorted(c[0]["record_ref"] for c in CASES)
    by_ref = {(r["记录"], r["行号"]): r for r in rows}
    for case, action in CASES:
        got = by_ref[(case["record_ref"], str(case["source_line"] or ""))]
        assert got["action"] == action, case
    assert sum(int(r["金额(元)"].replace(".", "")) for r in rows) == sum(c[0]["amount_fen"] for c in CASES)
    k1 = next(r for r in rows if r["记录"] == "counterparty:K1")
    assert (k1["金额(元)"], k1["差额(元)"], k1["建议处理"], k1["差错类型"]) == ("100.00", "10.00", "向对方查询", "金额不符")
    assert PAN.encode() not in data and mask(PAN) in data.decode("utf-8-sig")


def test_workbook_reads_well_and_adds_up(tmp_path):
    _, xlsx = write_error_file(results(), "unionpay_acq", T, tmp_path)
    wb = openpyxl.load_workbook(xlsx)
    assert wb.sheetnames == ["差错明细", "汇总"]
    ws = wb["差错明细"]
    headings = [c.value for c in ws[1]]
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == f"A1:T{len(CASES) + 1}"
    amount = headings.index("金额(元)") + 1
    assert ws.cell(2, amount).number_format == "#,##0.00"
    assert all(ws.column_dimensions[c].width > 8 for c in "ABFR")
    cells = [ws.cell(r, amount).value for r in range(2, ws.max_row + 1)]
    assert round(sum(cells) * 100) == sum(c[0]["amount_fen"] for c in CASES)
    s = wb["汇总"]
    total = [r for r in s.iter_rows(values_only=True) if r and r[0] == "合计"][0]
    assert total[2] == len(CASES) and round(total[3] * 100) == sum(c[0]["amount_fen"] for c in CASES)
    assert wb.properties.created == wb.properties.modified == dt.datetime(2026, 11, 21)
    with zipfile.ZipFile(xlsx) as z:
        assert {i.date_time for i in z.infolist()} == {(2026, 11, 21, 0, 0, 0)}
        assert not any(PAN.encode() in z.read(n) for n in z.namelist())


def test_two_writes_give_identical_bytes(tmp_path):
    a = write_error_file(results(), "unionpay_acq", T, tmp_path / "a")
    b = write_error_file(results().take(list(reversed(range(results().num_rows)))), "unionpay_acq", T, tmp_path / "b")
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes()


def test_a_day_without_breaks_still_gets_both_files(tmp_path):
    csv_path, xlsx = write_error_file(pa.Table.from_pylist(NOT_BREAKS, schema=RESULT_SCHEMA), "unionpay_acq", T,
                                      tmp_path)
    assert csv_path.read_bytes().count(b"\r\n") == 1
    assert openpyxl.load_workbook(xlsx)["差错明细"].max_row == 1
