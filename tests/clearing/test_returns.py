"""Return files (回盘) built from real inbound samples, constructed reconciliation results and journal rows, then
read back with the format engine's reader and their flag: totals add up to the inbound batch, every record is
answered once in its order, and a batch with a record lacking a single final outcome is held with nothing written."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import openpyxl
import pyarrow as pa
import pytest

from clearing.returns import BatchHeld, build_return
from formats import registry
from formats.flag import parse_flag, verify_file
from tests.clearing.conftest import SAMPLES, T, night, read_batch

UTILITY_NAME = "DK_WATER001_20261121_01.txt"
BDC_NAME = "BDC_BAT_32010000000000100000000000000000123.DAT"
PAYROLL_XLSX = "DF_XXKJ000001_20261121_01.xlsx"
PAYROLL_CSV = "DF_XXKJ000001_20261121_02.csv"


def read_back(path: Path, layout: str):
    flag = parse_flag(path.with_name(path.name + ".ok").read_bytes())
    verify_file(path, flag)
    return registry.read(path, layout, flag)


def utility_ref(batch):
    no = batch.header["batch_no"]
    return lambda r: (no + r["serial_no"], no, r["account_no"], "D", r["amount_fen"])


def housing_ref(batch):
    no, dr_cr = batch.header["batch_no"], "C" if batch.header["tx_code"] == "BDC103" else "D"
    return lambda r: (f"{no}:{r['seq_no']}", no, r["acct_no"], dr_cr, r["amount"])


def tips_ref(batch):
    h = batch.header
    no = f"{h['TaxOrgCode']}{h['EntrustDate']:%Y%m%d}{h['PackNo']}"
    return lambda r: (no + r["TraNo"], no, r["PayAcct"], "D", r["TraAmt"])


def payroll_ref(batch):
    code, date, nn = batch.file.split("_")[1:4]
    no = code + date + nn.split(".")[0]
    return lambda r: (f"{no}:{r['seq_no']}", no, r["account_no"], "C", r["amount_fen"])


def total(table: pa.Table, column: str) -> int:
    return sum(v or 0 for v in table[column].to_pylist())


# --- utilities --------------------------------------------------------------------------------------------------

def test_utility_return_answers_every_deduction_once_and_adds_up(out):
    batch = read_batch("utility/dk", "ok_20261121.txt", UTILITY_NAME)
    results, journal = night(batch, "utility", "UTILITY", utility_ref(batch), {3: ("F", "E001"), 5: ("F", "E003")})
    path = build_return(batch, results, journal, T, out)
    assert path.name == "HP_WATER001_20261121_01.txt"
    back = read_back(path, "utility.hp")
    assert all(c.ok for c in back.controls) and back.quarantined == 0
    h, d = back.header, back.records
    assert d["serial_no"].to_pylist() == batch.records["serial_no"].to_pylist()
    assert (h["record_count"], h["total_amount_fen"]) == (batch.header["record_count"],
                                                           batch.header["total_amount_fen"])
    assert d["result_code"].to_pylist() == ["0000", "1001", "0000", "1003"]
    assert d["result_msg"].to_pylist() == ["扣款成功", "余额不足", "扣款成功", "户名不符"]
    succeeded = journal.filter(pa.compute.equal(journal["status"], "S"))
    assert h["success_amount_fen"] == total(succeeded, "amount_fen") == total(d, "deducted_fen")
    assert h["success_amount_fen"] + h["fail_amount_fen"] == batch.header["total_amount_fen"]
    assert d["journal_no"].to_pylist() == [succeeded["journal_no"][0].as_py(), "",
                                           succeeded["journal_no"][1].as_py(), ""]
    assert h["process_date"].isoformat() == "2026-11-22"   # T+1, from T


def test_utility_reversed_or_unlisted_reason_and_quarantined_record_answer_9999(out):
    batch = read_batch("utility/dk", "blank_account_line5.txt", UTILITY_NAME)
    assert batch.quarantine["_line"].to_pylist() == [5]
    results, journal = night(batch, "utility", "UTILITY", utility_ref(batch), {2: ("R",), 3: ("F", "E999")})
    back = read_back(build_return(batch, results, journal, T, out), "utility.hp")
    d = back.records
    assert d["result_code"].to_pylist() == ["9999", "9999", "0000", "9999"]
    assert d["result_msg"][3].as_py() == "记录校验失败: account_no"
    assert d["deducted_fen"].to_pylist() == [0, 0, d["amount_fen"][2].as_py(), 0]
    assert back.header["total_amount_fen"] == batch.header["total_amount_fen"] == total(d, "amount_fen")


@pytest.mark.parametrize("plan, outcome", [({3: "COUNTERPARTY_ONLY"}, "COUNTERPARTY_ONLY"),
                                           ({4: "AMOUNT_MISMATCH"}, "AMOUNT_MISMATCH"),
                                           ({2: "DUPLICATE"}, "DUPLICATE")])
def test_utility_batch_with_a_break_is_held_and_nothing_written(out, plan, outcome):
    batch = read_batch("utility/dk", "ok_20261121.txt", UTILITY_NAME)
    results, journal = night(batch, "utility", "UTILITY", utility_ref(batch), plan)
    with pytest.raises(BatchHeld) as held:
        build_return(batch, results, journal, T, out)
    [(line, got, why)] = held.value.problems
    assert (line, got) == (next(iter(plan)), outcome) and why
    assert f"line {line} {outcome}" in str(held.value) and UTILITY_NAME in str(held.value)
    assert not out.exists() or not any(out.iterdir())


def test_record_with_no_result_two_results_or_a_missing_journal_row_holds_the_batch(out):
    batch = read_batch("utility/dk", "ok_20261121.txt", UTILITY_NAME)
    results, journal = night(batch, "utility", "UTILITY", utility_ref(batch))
    cp = results.filter(pa.compute.equal(results["side"], "counterparty"))
    lines = cp["source_line"].to_pylist()
    no_line_2 = cp.filter(pa.compute.not_equal(cp["source_line"], 2))
    twice_3 = pa.concat_tables([cp, cp.filter(pa.compute.equal(cp["source_line"], 3))])
    first = journal.slice(0, 1)
    conflicting = pa.concat_tables([journal, pa.Table.from_pylist([first.to_pylist()[0] | {"status": "F"}],
                                                                  schema=journal.schema)])
    for bad, journal_given, line in ((no_line_2, journal, 2), (twice_3, journal, 3),
                                     (cp, journal.slice(1), lines[0]), (cp, conflicting, lines[0])):
        with pytest.raises(BatchHeld) as held:
            build_return(batch, bad, journal_given, T, out)
        assert [p[0] for p in held.value.problems] == [line]
    assert not out.exists() or not any(out.iterdir())


def test_a_journal_row_repeated_identically_by_overlapping_extracts_counts_once(tmp_path):
    batch = read_batch("utility/dk", "ok_20261121.txt", UTILITY_NAME)
    results, journal = night(batch, "utility", "UTILITY", utility_ref(batch), {3: ("F", "E001")})
    once = build_return(batch, results, journal, T, tmp_path / "once")
    twice = build_return(batch, results, pa.concat_tables([journal, journal]), T, tmp_path / "twice")
    assert once.read_bytes() == twice.read_bytes()


# --- housing fund -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sample", ["ok_bdc103.dat", "ok_bdc104.dat"])
def test_housing_fund_result_lines_success_and_failure_and_summary_adds_up(out, sample):
    batch = read_batch("housing_fund/bdc_bat", sample, BDC_NAME)
    results, journal = night(batch, "housing_fund", "HOUSING_FUND", housing_ref(batch), {3: ("F", "E003")})
    path = build_return(batch, results, journal, T, out)
    assert path.name == "BDC_RES_32010000000000100000000000000000123.DAT"
    back = read_back(path, "housing_fund.bdc_res")
    assert all(c.ok for c in back.controls)
    s, d, h = back.header, back.records, batch.header
    assert d["seq_no"].to_pylist() == batch.records["seq_no"].to_pylist()
    assert (s["total_count"], s["total_amount"], s["tx_code"], s["batch_no"]) == (
        h["record_count"], h["total_amount"], h["tx_code"], h["batch_no"])
    assert s["succ_amount"] + s["fail_amount"] == h["total_amount"] == total(d, "amount")
    assert d["resp_code"][1].as_py() == "3003" and d["resp_msg"][1].as_py() == "户名不符"
    assert d["host_journal_no"][1].as_py() == "" and d["host_date"][1].as_py() is None
    assert d["host_date"][0].as_py() == T and d["host_journal_no"][0].as_py() == journal["journal_no"][0].as_py()
    assert d["receipt_no"].to_pylist() == batch.records["fund_txn_no"].to_pylist()
    items, centre = batch.records["acct_no"].to_pylist(), [h["center_acct"]] * batch.records.num_rows
    payer, payee = (items, centre) if h["tx_code"] == "BDC104" else (centre, items)
    assert d["payer_acct"].to_pylist() == payer and d["payee_acct"].to_pylist() == payee
    assert s["date"].isoformat() == "2026-11-22"
    assert path.read_bytes().endswith(b"|\n") and b"\r" not in path.read_bytes()


def test_housing_fund_unlisted_reason_answers_3999(out):
    batch = read_batch("housing_fund/bdc_bat", "ok_bdc104.dat", BDC_NAME)
    results, journal = night(batch, "housing_fund", "HOUSING_FUND", housing_ref(batch), {3: ("F", "E005")})
    d = read_back(build_return(batch, results, journal, T, out), "housing_fund.bdc_res").records
    assert d["resp_code"].to_pylist() == ["0000", "3999"] and d["resp_msg"][1].as_py() == "其他"


# --- TIPS -------------------------------------------------------------------------------------------------------

TIPS_NAME = "TIPS_3102_13201000000_20261121_00000001.xml"


def test_tips_2102_answers_each_payment_and_swaps_the_envelope(out):
    batch = read_batch("tips/3102", "ok_pack_gbk.xml", TIPS_NAME)
    results, journal = night(batch, "tips", "TIPS", tips_ref(batch), {57: ("F", "E001")})
    path = build_return(batch, results, journal, T, out)
    assert path.name == "TIPS_2102_13201000000_20261121_00000001.xml"
    back = read_back(path, "tips.2102")
    h, req, d = back.header, batch.header, back.records
    assert all(c.ok for c in back.controls)
    assert (h["SRC"], h["DES"], h["MsgRef"]) == (req["DES"], req["SRC"], req["MsgID"])
    assert h["MsgID"] == "20261122" + "2102" + req["MsgID"][-8:] and h["WorkDate"].isoformat() == "2026-11-22"
    assert (h["AllNum"], h["AllAmt"]) == (req["AllNum"], req["AllAmt"]) == (d.num_rows, total(d, "TraAmt"))
    assert (h["Result"], h["SuccNum"], h["SuccAmt"]) == ("90000", 1, batch.records["TraAmt"][0].as_py())
    assert d["OriTraNo"].to_pylist() == batch.records["TraNo"].to_pylist()
    assert list(zip(d["Result"].to_pylist(), d["AddWord"].to_pylist())) == [("90000", "扣款成功"),
                                                                          ("24020", "余额不足")]
    assert d["TaxDate"].to_pylist() == [T, T]
    assert path.read_bytes().startswith(b'<?xml version="1.0" encoding="GBK"?>')


def test_tips_2102_answers_in_the_request_encoding(out):
    batch = read_batch("tips/3102", "ok_gb18030_four_byte_name.xml", TIPS_NAME)
    assert batch.encoding == "GB18030"
    results, journal = night(batch, "tips", "TIPS", tips_ref(batch))
    path = build_return(batch, results, journal, T, out)
    assert b'encoding="GB18030"' in path.read_bytes()[:60]
    assert read_back(path, "tips.2102").header["SuccNum"] == batch.records.num_rows


def test_tips_payment_quarantined_in_a_processed_pack_answers_94999(out):
    batch = read_batch("tips/3102", "payacct_missing_in_payment2.xml", TIPS_NAME)
    results, journal = night(batch, "tips", "TIPS", tips_ref(batch))
    d = read_back(build_return(batch, results, journal, T, out), "tips.2102").records
    assert d["Result"].to_pylist() == ["90000", "94999"] and d["AddWord"][1].as_py() == "其他错误"
    assert d["TaxDate"][1].as_py() == T   # no debit: the business date the pack was processed on


def test_tips_pack_rejected_whole_is_answered_94999_with_no_returns(out):
    batch = read_batch("tips/3102", "duplicate_trano.xml", TIPS_NAME)
    assert batch.rejected and "TraNo" in batch.rejected
    empty_results, empty_journal = night(dataclasses.replace(batch, records=batch.records.slice(0, 0)),
                                         "tips", "TIPS", tips_ref(batch))
    path = build_return(batch, empty_results, empty_journal, T, out)
    back = read_back(path, "tips.2102")
    h = back.header
    assert back.records.num_rows == 0 and path.with_name(path.name + ".ok").read_bytes().split(b"|")[2] == b"0"
    assert (h["Result"], h["SuccNum"], h["SuccAmt"]) == ("94999", 0, 0)
    assert (h["AllNum"], h["AllAmt"]) == (batch.header["AllNum"], batch.header["AllAmt"])
    assert h["AddWord"].startswith("批量包校验失败: ") and "TraNo" in h["AddWord"]


def test_tips_pack_rejected_whole_but_debited_is_held(out):
    batch = read_batch("tips/3102", "duplicate_trano.xml", TIPS_NAME)
    results, journal = night(batch, "tips", "TIPS", tips_ref(batch))
    with pytest.raises(BatchHeld, match="rejected whole"):
        build_return(batch, results, journal, T, out)
    assert not out.exists() or not any(out.iterdir())


# --- payroll ----------------------------------------------------------------------------------------------------

def payroll_answered(out: Path, kind: str, sample: str, name: str, plan: dict):
    """(batch, the result file read back, its path) for a payroll sample answered per `plan`."""
    batch = read_batch(f"payroll/batch_{kind}", sample, name)
    results, journal = night(batch, "payroll", "PAYROLL", payroll_ref(batch), plan)
    path = build_return(batch, results, journal, T, out)
    back = read_back(path, f"payroll.result_{kind}")
    assert all(c.ok for c in back.controls)
    return batch, back, path


def test_payroll_csv_result_in_the_batch_format(out):
    batch, back, path = payroll_answered(out, "csv", "ok_20261121.csv", PAYROLL_CSV, {5: ("F", "E003")})
    assert path.name == "DF_XXKJ000001_20261121_02_RESULT.csv"
    d, tr = back.records, back.trailer
    assert d["seq_no"].to_pylist() == [1, 2, 3]
    assert d["result"].to_pylist() == ["成功", "失败", "成功"] and d["fail_reason"].to_pylist() == ["", "户名不符", ""]
    assert (tr["success_count"], tr["fail_count"]) == (2, 1)
    assert tr["success_amount_fen"] + tr["fail_amount_fen"] == batch.header["total_amount_fen"]
    received = (SAMPLES / "payroll/batch_csv/ok_20261121.csv").read_bytes().split(b"\r\n")[:2]
    assert path.read_bytes().split(b"\r\n")[:2] == received          # the batch's first two lines as received
    assert path.read_bytes().split(b"\r\n")[-2].decode("gbk") == "合计,2,12345.55,1,8000.00"


def test_payroll_xlsx_result_answers_each_row_in_the_batch_sheet(out):
    batch, back, path = payroll_answered(out, "xlsx", "ok_20261121.xlsx", PAYROLL_XLSX, {8: ("F", "E004")})
    assert path.name == "DF_XXKJ000001_20261121_01_RESULT.xlsx"
    d, tr = back.records, back.trailer
    assert d["result"].to_pylist() == ["成功", "成功", "失败"] and d["fail_reason"][2].as_py() == "账户冻结或止付"
    assert tr["success_amount_fen"] + tr["fail_amount_fen"] == batch.trailer["total_amount_fen"]
    ws = openpyxl.load_workbook(path)["代发明细"]
    assert ws["A1"].value == batch.header["title"] and ws["B2"].value == batch.header["payer_acct"]


def test_payroll_xlsx_result_with_a_row_error(out):
    batch, back, path = payroll_answered(out, "xlsx", "amount_three_decimals_row8.xlsx", PAYROLL_XLSX,
                                         {7: ("F", "E001")})
    d, tr = back.records, back.trailer
    assert d["seq_no"].to_pylist() == [1, 2, 3] and d["result"].to_pylist() == ["成功", "失败", "失败"]
    assert d["fail_reason"][1].as_py() == "余额不足"
    assert d["fail_reason"][2].as_py().startswith("记录校验失败: ") and "amount_fen" in d["fail_reason"][2].as_py()
    assert d["amount_fen"][2].as_py() is None                         # echoed empty: it could not be read
    assert (tr["success_count"], tr["success_amount_fen"], tr["fail_count"], tr["fail_amount_fen"]) == (
        1, batch.records["amount_fen"][0].as_py(), 2, batch.records["amount_fen"][1].as_py())
    ws = openpyxl.load_workbook(path)["代发明细"]
    assert ws["A1"].value == batch.header["title"] and ws["B2"].value == batch.header["payer_acct"]


def test_payroll_batch_rejected_whole_fails_every_row_naming_the_check(out):
    batch = read_batch("payroll/batch_csv", "total_off.csv", PAYROLL_CSV)
    assert batch.rejected
    results, journal = night(dataclasses.replace(batch, records=batch.records.slice(0, 0)),
                             "payroll", "PAYROLL", payroll_ref(batch))
    back = read_back(build_return(batch, results, journal, T, out), "payroll.result_csv")
    d = back.records
    assert d.num_rows == batch.records.num_rows and set(d["result"].to_pylist()) == {"失败"}
    assert all(r.startswith("批次校验失败: ") and "total_amount_fen" in r for r in d["fail_reason"].to_pylist())
    assert (back.trailer["success_count"], back.trailer["fail_amount_fen"]) == (0, total(batch.records, "amount_fen"))


# --- determinism ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, sample, name, channel, ref", [
    ("utility/dk", "ok_20261121.txt", UTILITY_NAME, "UTILITY", utility_ref),
    ("housing_fund/bdc_bat", "ok_bdc103.dat", BDC_NAME, "HOUSING_FUND", housing_ref),
    ("tips/3102", "ok_pack_gbk.xml", TIPS_NAME, "TIPS", tips_ref),
    ("payroll/batch_xlsx", "ok_20261121.xlsx", PAYROLL_XLSX, "PAYROLL", payroll_ref),
    ("payroll/batch_csv", "ok_20261121.csv", PAYROLL_CSV, "PAYROLL", payroll_ref),
])
def test_a_rerun_writes_the_same_bytes(tmp_path, kind, sample, name, channel, ref):
    batch = read_batch(kind, sample, name)
    results, journal = night(batch, channel.lower(), channel, ref(batch), {batch.records["_line"][0].as_py():
                                                                           ("F", "E002")})
    first = build_return(batch, results, journal, T, tmp_path / "a")
    second = build_return(batch, results.take(list(reversed(range(results.num_rows)))), journal, T, tmp_path / "b")
    for a, b in ((first, second), (first.with_name(first.name + ".ok"), second.with_name(second.name + ".ok"))):
        assert a.read_bytes() == b.read_bytes()


def test_each_return_works_on_a_connection_of_its_own():
    """The builders share one in-memory database per process (a new one costs ~25 ms a batch) but not their
    tables: a temporary table of one connection is not seen by the next."""
    from clearing import returns
    first, second = returns._connect(), returns._connect()
    first.execute("CREATE TEMP TABLE lines AS SELECT 1 AS x")
    assert second.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'lines'").fetchone()[0] == 0
    first.close()
    second.execute("CREATE TEMP TABLE lines AS SELECT 2 AS x")
    assert second.execute("SELECT x FROM lines").fetchone()[0] == 2
    second.close()
