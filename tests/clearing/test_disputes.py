"""ERRR dispute replies: one case per decision rule of unionpay.md (first rule that fits wins), the P queue, the
quarantined RPM, the breaks an accepted CRA resolves; the reply read back with the format engine and its flag."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from clearing.disputes import reply_disputes
from clearing.entries import reversal_vouchers, suspense_vouchers
from connectors.ledger import JOURNAL_SCHEMA
from formats import registry
from formats.flag import parse_flag, verify_file
from formats.specs.unionpay.acomn import LAYOUT as ACOMN
from tests.clearing.conftest import RESULT_SCHEMA, SAMPLES

T = dt.date(2026, 11, 22)
EARLIER = dt.date(2026, 11, 21)
ERRN_FILE = "IND26112201ERRN"
SAMPLE = registry.read(SAMPLES / "unionpay/errn/ok_chinese_merchant_name.txt", "unionpay.errn")
PAN = "6222021234567800"


def dispute(stan: str, err_type: str, reason: str, orig_stan: str, amount: int = 12800,
            orig_time: str = "1121081502") -> dict:
    row = SAMPLE.records.to_pylist()[0]
    row.update(stan=stan, txn_time="1122100000", err_type=err_type, reason_code=reason, orig_stan=orig_stan,
               orig_txn_time=orig_time, amount_fen=amount, pan=PAN)
    return row


def journal_row(key: str, status: str = "S", n: int = 1, date: dt.date = EARLIER) -> dict:
    return {"acct_date": date, "journal_no": f"J{key}{n}", "seq_no": 1, "channel": "UNIONPAY_ACQ",
            "channel_ref": key, "batch_no": None, "txn_time": dt.datetime(2026, 11, 21, 8, 15, 2),
            "account_no": PAN, "account_name": "张三", "dr_cr": "D", "amount_fen": 12800, "currency": "CNY",
            "status": status, "reason_code": None if status != "F" else "E001", "reversal_of": None, "memo": "POS"}


def refund(stan: str, orig_stan: str, orig_time: str = "1121081502") -> dict:
    row = {f.name: "" for f in ACOMN.detail.fields}
    row.update(stan=stan, txn_time="1121190000", amount_fen=12800, partial_amount_fen=0, cardholder_fee_fen=0,
               msg_type="0200", proc_code="200000", resp_code="00", pan=PAN, orig_stan=orig_stan,
               orig_txn_time=orig_time, acq_fee_receivable=0, acq_fee_payable=0, switch_fee=0,
               instalment_fee_fen=0, _line=1)
    return row


def ledger_only_break(key: str, date: dt.date) -> dict:
    return {f.name: None for f in RESULT_SCHEMA} | {
        "channel": "unionpay_acq", "business_date": date, "side": "ledger", "record_ref": f"J{key}1:1",
        "match_ref": key, "outcome": "LEDGER_ONLY", "reason": f"no counterparty file row with key {key}",
        "amount_fen": 12800, "ledger_amount_fen": 12800, "status": "S", "ledger_status": "S", "sign": 1,
        "journal_no": f"J{key}1", "origin_date": date}


# (dispute, expected decision, expected rule, expected reply reason)
CASES = [
    (dispute("300001", "CB1", "4512", "100001"), "R", 1, "4512"),                # ledger shows it once
    (dispute("300002", "CB2", "4512", "100002"), "P", 5, ""),                    # ledger shows it twice
    (dispute("300003", "CB1", "4531", "100003"), "R", 2, "4531"),                # refund made and posted
    (dispute("300004", "CB1", "4531", "100004"), "P", 5, ""),                    # refund in ACOMN, not posted
    (dispute("300005", "CB1", "4570", "100005"), "R", 3, "4522"),                # original reversed
    (dispute("300006", "CB1", "4522", "100006"), "R", 3, "4522"),                # original declined
    (dispute("300007", "CRA", "4531", "100007", amount=5000), "A", 4, ""),       # ledger-only on an earlier day
    (dispute("300008", "CRA", "4531", "100008"), "P", 5, ""),                    # ledger-only, but on T itself
    (dispute("300009", "RTR", "4514", "100001"), "P", 5, ""),                    # retrieval: always P
    (dispute("300010", "DBA", "4507", "100001"), "P", 5, ""),
    (dispute("300011", "CB1", "4512", "100011"), "P", 5, ""),                    # not in the ledger at all
]


def night():
    key = lambda stan: stan + "1121081502"                                      # noqa: E731
    journal = [journal_row(key("100001")), journal_row(key("100002")), journal_row(key("100002"), n=2),
               journal_row(key("100003")), journal_row("9000031121190000"), journal_row(key("100004")),
               journal_row(key("100005"), "R"), journal_row(key("100006"), "F")]
    acomn = [refund("900003", "100003"), refund("900004", "100004")]
    breaks = [ledger_only_break(key("100007"), EARLIER), ledger_only_break(key("100008"), T)]
    schema = pa.schema([*ACOMN.arrow_schema(), ("_line", pa.int64())])
    errn = [c[0] | {"_line": i} for i, c in enumerate(CASES, start=1)]
    return (pa.Table.from_pylist(errn, schema=SAMPLE.records.schema), pa.Table.from_pylist(acomn, schema=schema),
            pa.Table.from_pylist(journal, schema=JOURNAL_SCHEMA), pa.Table.from_pylist(breaks, schema=RESULT_SCHEMA))


def read_back(path):
    flag = parse_flag(path.with_name(path.name + ".ok").read_bytes())
    verify_file(path, flag)
    return registry.read(path, "unionpay.errr", flag)


def test_each_dispute_gets_the_decision_of_the_first_rule_that_fits(tmp_path):
    errn, acomn, journal, breaks = night()
    reply = reply_disputes(ERRN_FILE, errn, SAMPLE.quarantine, acomn, journal, breaks, T, tmp_path)
    d = reply.decisions
    assert d["stan"].to_pylist() == [c[0]["stan"] for c in CASES]
    assert list(zip(d["decision"].to_pylist(), d["rule"].to_pylist(), d["reply_reason"].to_pylist())) == [
        c[1:] for c in CASES]
    assert d["decision_amount_fen"].to_pylist() == [5000 if c[1] == "A" else 0 for c in CASES]
    assert set(d["pan_masked"].to_pylist()) == {"622202******7800"}
    assert "9000031121190000" in d["remark"][2].as_py()                         # the refund it points to

    assert reply.path.name == "IND26112201ERRR"
    back = read_back(reply.path)
    assert all(c.ok for c in back.controls)
    r = back.records
    assert [(e, s, t) for e, s, t in zip(r["err_type"].to_pylist(), r["stan"].to_pylist(),
                                         r["txn_time"].to_pylist())] == [
        (c[0]["err_type"], c[0]["stan"], c[0]["txn_time"]) for c in CASES]       # every dispute answered once
    assert r["decision"].to_pylist() == [c[1] for c in CASES]
    assert back.trailer["total_decision_amount_fen"] == 5000
    assert (back.header["business_date"], back.header["file_seq"], back.header["acq_inst_id"]) == (
        T + dt.timedelta(days=1), "01", "48020000")


def test_undecided_disputes_form_the_analysts_queue(tmp_path):
    errn, acomn, journal, breaks = night()
    queue = reply_disputes(ERRN_FILE, errn, SAMPLE.quarantine, acomn, journal, breaks, T, tmp_path).queue
    assert queue["stan"].to_pylist() == [c[0]["stan"] for c in CASES if c[1] == "P"]
    assert "pan" not in queue.column_names and PAN not in str(queue.to_pylist())


def test_an_accepted_cra_resolves_the_earlier_ledger_only_break(tmp_path):
    errn, acomn, journal, breaks = night()
    resolved = reply_disputes(ERRN_FILE, errn, SAMPLE.quarantine, acomn, journal, breaks, T, tmp_path).resolved
    assert resolved["match_ref"].to_pylist() == ["1000071121081502"]
    assert resolved["business_date"].to_pylist() == [EARLIER] and resolved["resolved_on"].to_pylist() == [T]


def test_an_err_type_outside_the_table_is_quarantined_and_not_answered(tmp_path):
    rpm = registry.read(SAMPLES / "unionpay/errn/rpm_err_type_line2.txt", "unionpay.errn")
    assert rpm.quarantine["_line"].to_pylist() == [2]
    _, acomn, journal, breaks = night()
    reply = reply_disputes(ERRN_FILE, rpm.records, rpm.quarantine, acomn, journal, breaks, T, tmp_path)
    d = reply.decisions
    assert d["source_line"].to_pylist() == [1, 2, 3]                             # every ERRN record accounted for
    assert d["decision"][1].as_py() is None and "err_type" in d["remark"][1].as_py()
    back = read_back(reply.path)
    assert back.records.num_rows == 2 and "RPM" not in back.records["err_type"].to_pylist()


def test_a_rerun_writes_the_same_reply(tmp_path):
    errn, acomn, journal, breaks = night()
    a = reply_disputes(ERRN_FILE, errn, SAMPLE.quarantine, acomn, journal, breaks, T, tmp_path / "a").path
    b = reply_disputes(ERRN_FILE, errn, SAMPLE.quarantine, acomn, journal.take([7, 6, 5, 4, 3, 2, 1, 0]), breaks, T,
                       tmp_path / "b").path
    assert a.read_bytes() == b.read_bytes()
    assert a.with_name(a.name + ".ok").read_bytes() == b.with_name(b.name + ".ok").read_bytes()


@pytest.mark.parametrize("name", ["IND261122ERRN", "DISPUTES.txt"])
def test_a_file_not_named_as_an_errn_is_refused(tmp_path, name):
    errn, acomn, journal, breaks = night()
    with pytest.raises(ValueError, match="ERRN"):
        reply_disputes(name, errn, SAMPLE.quarantine, acomn, journal, breaks, T, tmp_path)


def test_the_break_an_accepted_cra_resolves_gets_its_suspense_reversed(tmp_path):
    errn, acomn, journal, breaks = night()
    resolved = reply_disputes(ERRN_FILE, errn, SAMPLE.quarantine, acomn, journal, breaks, T, tmp_path).resolved
    posted = suspense_vouchers(breaks.filter(pa.compute.equal(breaks["business_date"], EARLIER)), "UNIONPAY_ACQ",
                               "CUPS-CLR", EARLIER)
    reversal = reversal_vouchers(resolved, "UNIONPAY_ACQ", "CUPS-CLR", T)
    assert [(ln.voucher_no, ln.account_no, ln.dr_cr, ln.amount_fen) for ln in posted] == [
        ("SUS-UNIONPAY_ACQ-20261121-1000071121081502", "SUSPENSE", "D", 12800),
        ("SUS-UNIONPAY_ACQ-20261121-1000071121081502", "CUPS-CLR", "C", 12800)]
    assert [(ln.voucher_no, ln.account_no, ln.dr_cr, ln.amount_fen) for ln in reversal] == [
        ("REV-SUS-UNIONPAY_ACQ-20261121-1000071121081502", "CUPS-CLR", "D", 12800),
        ("REV-SUS-UNIONPAY_ACQ-20261121-1000071121081502", "SUSPENSE", "C", 12800)]
