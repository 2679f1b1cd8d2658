"""Write the sample nights of every channel (the counterparties' files and the core journal) for 2026-11-21 and
2026-11-22.

Run once: `python sample_files/nights/make_nights.py`; the files are committed as bytes. Each record is chosen
to exercise one outcome of the mission (see the comments); the tests read the files, not this script.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pyarrow as pa

from formats import fixed_width, registry
from formats.flag import write_flag
from formats.specs.unionpay.acomn import LAYOUT

HERE = Path(__file__).resolve().parent
PAN_A, PAN_B, PAN_C = "6222021234567890123", "6217000010001234567", "6228480012345678"
JOURNAL_COLUMNS = ("acct_date", "journal_no", "seq_no", "channel", "channel_ref", "batch_no", "txn_time",
                   "account_no", "account_name", "dr_cr", "amount_fen", "currency", "status", "reason_code",
                   "reversal_of", "memo")


def rec(stan, time, amount, *, pan=PAN_A, msg="0200", proc="000000", resp="00", orig_stan="000000",
        orig_time="0000000000", order="", fee_recv=0, fee_pay=0, switch=0):
    row = {f.name: "" for f in LAYOUT.detail.fields}
    row.update(acq_inst_id="48020000", fwd_inst_id="00010000", stan=stan, txn_time=time, pan=pan,
               amount_fen=amount, partial_amount_fen=0, cardholder_fee_fen=0, msg_type=msg, proc_code=proc,
               mcc="5411", terminal_id="T8800001", merchant_id="102310054110001", rrn=f"33{stan}{time[:4]}",
               pos_cond="00", auth_code="A1B2C3" if resp == "00" else "", rcv_inst_id="01020000",
               orig_stan=orig_stan, resp_code=resp, pos_entry="071", acq_fee_receivable=fee_recv,
               acq_fee_payable=fee_pay, switch_fee=switch, single_dual_flag="1", card_seq_no="001",
               terminal_capability="6", ic_cond_code="0", orig_txn_time=orig_time, issuer_inst_id="01020000",
               region_flag="0", terminal_type="03", eci="", instalment_fee_fen=0, order_id=order, pay_mode="0001")
    return row


def jrow(date, no, ref, time, amount, *, pan=PAN_A, dr="D", status="S", channel="UNIONPAY_ACQ", reversal_of="",
         reason="", memo="POS 消费"):
    return (date, no, 1, channel, ref, "", time, pan, "张三", dr, amount, "CNY", status, reason, reversal_of, memo)


def night_21():
    d = "2026-11-21"
    fee = dict(fee_recv=35, fee_pay=-12, switch=-6)
    acomn = [
        rec("100001", "1121081502", 12800, order="ORD-20261121-0001", **fee),          # MATCHED
        rec("100002", "1121091133", 5600, pan=PAN_B, order="超市订单0002", **fee),       # MATCHED, GBK order id
        rec("100003", "1121101010", 199900, pan=PAN_C, **fee),                         # MATCHED
        rec("100004", "1121112233", 880, **fee),                                       # MATCHED
        rec("100005", "1121120001", 45000, proc="200000", pan=PAN_B),                  # MATCHED refund
        rec("100006", "1121123000", 100000, proc="010000", pan=PAN_C, **fee),          # MATCHED withdrawal
        rec("100007", "1121130500", 15000, **fee),                                     # AMOUNT_MISMATCH (14850)
        rec("100008", "1121131000", 7700, resp="51"),                                  # declined, no row: MATCHED
        rec("100009", "1121132000", 3300, resp="05", pan=PAN_B),                       # declined but posted: STATUS
        rec("100010", "1121140000", 26000, pan=PAN_C, **fee),                         # reversed original: MATCHED
        rec("100011", "1121140200", 26000, msg="0420", pan=PAN_C, orig_stan="100010",  # its reversal: MATCHED
            orig_time="1121140000"),
        rec("100012", "1121150000", 6600, pan=PAN_B, **fee),                           # COUNTERPARTY_ONLY
        rec("100013", "1121160000", 4200, **fee),                                      # DUPLICATE (twice in file)
        rec("100013", "1121160000", 4200, **fee),                                      # DUPLICATE
        rec("100015", "1120233012", 9900, pan=PAN_C, **fee),                           # 20th 23:30 -> T=21: no row
        rec("100016", "1121170000", 31400, order="ORD-20261121-0016", **fee),          # MATCHED
        rec("100017", "1121180000", 2500, pan=PAN_B, **fee),                           # QUARANTINED (bad amount)
        rec("100018", "1121190000", 18800, **fee),                                     # MATCHED
    ]
    ledger = [
        jrow(d, "20261121000000000001", "1000011121081502", f"{d} 08:15:02", 12800),
        jrow(d, "20261121000000000002", "1000021121091133", f"{d} 09:11:33", 5600, pan=PAN_B),
        jrow(d, "20261121000000000003", "1000031121101010", f"{d} 10:10:10", 199900, pan=PAN_C),
        jrow(d, "20261121000000000004", "1000041121112233", f"{d} 11:22:33", 880),
        jrow(d, "20261121000000000005", "1000051121120001", f"{d} 12:00:01", 45000, pan=PAN_B, dr="C",
             memo="POS 退货"),
        jrow(d, "20261121000000000006", "1000061121123000", f"{d} 12:30:00", 100000, pan=PAN_C, memo="ATM 取现"),
        jrow(d, "20261121000000000007", "1000071121130500", f"{d} 13:05:00", 14850),
        jrow(d, "20261121000000000009", "1000091121132000", f"{d} 13:20:00", 3300, pan=PAN_B),
        jrow(d, "20261121000000000010", "1000101121140000", f"{d} 14:00:00", 26000, pan=PAN_C, status="R"),
        jrow(d, "20261121000000000011", "1000111121140200", f"{d} 14:02:00", 26000, pan=PAN_C, dr="C",
             reversal_of="20261121000000000010", memo="POS 冲正"),
        jrow(d, "20261121000000000012", "1000991121150300", f"{d} 15:03:00", 6600, pan=PAN_B),  # LEDGER_ONLY
        jrow(d, "20261121000000000013", "1000131121160000", f"{d} 16:00:00", 4200),             # DUPLICATE
        jrow(d, "20261121000000000016", "1000161121170000", f"{d} 17:00:00", 31400),
        jrow(d, "20261121000000000017", "1000171121180000", f"{d} 18:00:00", 2500, pan=PAN_B),  # LEDGER_ONLY
        jrow(d, "20261121000000000018", "1000181121190000", f"{d} 19:00:00", 18800),
        jrow(d, "20261121000000000019", "1000191121234010", f"{d} 23:40:10", 52000, pan=PAN_C),  # PENDING
        jrow(d, "20261121000000000020", "beps.121:313100000013:20261121000000012345", f"{d} 10:00:00", 880000,
             channel="CNAPS", pan="6217000010009999999", memo="跨行汇款"),                     # other channel
    ]
    return acomn, ledger


def night_22():
    d = "2026-11-22"
    acomn = [
        rec("100019", "1121234010", 52000, pan=PAN_C),                                 # carried row: MATCHED
        rec("200001", "1122090000", 7300, order="ORD-20261122-0001"),                  # MATCHED
        rec("200002", "1122100000", 1200, pan=PAN_B),                                  # MATCHED
    ]
    ledger = [
        jrow(d, "20261122000000000001", "2000011122090000", f"{d} 09:00:00", 7300),
        jrow(d, "20261122000000000002", "2000021122100000", f"{d} 10:00:00", 1200, pan=PAN_B),
    ]
    return acomn, ledger


def write_night(date: dt.date, acomn: list[dict], ledger: list[tuple], corrupt: dict[int, tuple[int, bytes]]):
    outbox = HERE / "unionpay_acq" / "outbox" / f"{date:%Y%m%d}"
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"IND{date:%y%m%d}01ACOMN"
    fixed_width.write(path, LAYOUT, pa.Table.from_pylist(acomn, schema=LAYOUT.arrow_schema()))
    data = bytearray(path.read_bytes())
    for index, (offset, raw) in corrupt.items():
        at = index * 502 + offset
        data[at: at + len(raw)] = raw
    path.write_bytes(bytes(data))
    write_flag(path, len(acomn))
    ledger_dir = HERE / "ledger"
    ledger_dir.mkdir(exist_ok=True)
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(JOURNAL_COLUMNS)
    out.writerows(ledger)
    csv_path = ledger_dir / f"CORE_JOURNAL_{date:%Y%m%d}.csv"
    csv_path.write_bytes(buf.getvalue().encode("utf-8"))
    write_flag(csv_path, len(ledger))


# --- the other five channels: one module-level builder per channel and date, in the counterparties' formats ----
# Journal numbers: YYYYMMDD, a digit per channel, an 11-digit counter (20 characters, as the core's).
CHANNEL_DIGIT = {"CNAPS": 1, "TIPS": 2, "HOUSING_FUND": 3, "UTILITY": 4, "PAYROLL": 5}
BANK = "313100000013"


def journal(channel: str, date: str, n: int, ref: str, amount: int, *, acct: str, dr: str = "D", status: str = "S",
            batch: str = "", reason: str = "", time: str = "10:00:00", name: str = "张三", memo: str = "") -> tuple:
    no = f"{date.replace('-', '')}{CHANNEL_DIGIT[channel]}{n:011d}"
    reason = reason or ("E001" if status == "F" else "")
    return (date, no, 1, channel, ref, batch, f"{date} {time}", acct, name, dr, amount, "CNY", status, reason, "",
            memo or channel.lower())


def write_file(date: dt.date, channel: str, name: str, layout: str, records: list[dict], header: dict | None = None,
               trailer: dict | None = None, patch: list[tuple[bytes, bytes]] | None = None, **options) -> Path:
    """Write one counterparty file with the format engine (so it conforms) and its flag; `patch` then spoils
    values in place (each occurring once), for a record that must be quarantined."""
    outbox = HERE / channel / "outbox" / f"{date:%Y%m%d}"
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / name
    schema = registry.get(layout).arrow_schema()
    registry.write(path, layout, pa.Table.from_pylist(records, schema=schema), header, trailer, **options)
    for old, new in patch or []:
        data = path.read_bytes()
        assert data.count(old) == 1, old
        path.write_bytes(data.replace(old, new))
    write_flag(path, len(records))
    return path


def cnaps(msg_type, msg_id, dr, amount, status, acct, *, at="2026-11-21 09:30:00", instr=BANK):
    payer, payee = (acct, "6228000012121212") if dr == "D" else ("11001234567890", acct)
    return {"record_type": "D", "msg_type": msg_type, "msg_id": msg_id, "instr_bank": instr,
            "entrust_date": dt.date.fromisoformat(at[:10]), "dr_cr": dr,
            "payer_bank": BANK if dr == "D" else "102100099996", "payer_acct": payer, "payer_name": "付款人",
            "payee_bank": "103100000026" if dr == "D" else BANK, "payee_acct": payee, "payee_name": "收款人",
            "amount": amount, "status": status, "process_time": dt.datetime.fromisoformat(at)}


def cnaps_night(date: dt.date, rows: list[dict], patch=None) -> None:
    hdr = {"record_type": "H", "bank_code": BANK, "work_date": date, "file_seq": "01", "record_count": len(rows),
           "debit_total": sum(r["amount"] for r in rows if r["dr_cr"] == "D"),
           "credit_total": sum(r["amount"] for r in rows if r["dr_cr"] == "C"),
           "created_at": dt.datetime.combine(date + dt.timedelta(days=1), dt.time(1, 30))}
    write_file(date, "cnaps2", f"CNAPS2_DZMX_{BANK}_{date:%Y%m%d}_01.txt", "pboc.cnaps2_dzmx", rows, hdr, patch=patch)


def cnaps_21():
    d, ref = "2026-11-21", lambda t, m, i=BANK: f"{t}:{i}:{m}"
    a1, a2, a3 = "6217000010009999999", "6222000011112222", "6222000055556666"
    rows = [
        cnaps("beps.121", "20261121000000012345", "D", 880000, "PR00", a1, at=f"{d} 10:00:00"),  # MATCHED
        cnaps("hvps.111", "20261121000000000077", "C", 50000000, "PR00", a2, instr="102100099996"),  # MATCHED
        cnaps("beps.125", "20261121000000012400", "D", 8800, "PR09", a3),           # rejected, no row: MATCHED
        cnaps("beps.121", "20261121000000012401", "D", 6000, "PR09", a3),           # rejected, row F: MATCHED
        cnaps("beps.121", "20261121000000012402", "D", 7000, "PR09", a3),           # rejected, row S: STATUS
        cnaps("beps.121", "20261121000000012403", "D", 20000, "PR00", a2),          # AMOUNT_MISMATCH (2000)
        cnaps("beps.121", "20261121000000012404", "D", 15000, "PR00", a2),          # direction differs
        cnaps("beps.121", "20261121000000012499", "D", 100, "PR05", a3),            # queued, debited: PENDING
        cnaps("hvps.111", "20261121000000000078", "C", 300000, "PR05", a2, instr="102100099996"),  # PENDING
        cnaps("beps.121", "20261121000000012498", "D", 2500, "PR05", a1),           # queued, never settles
        cnaps("beps.121", "20261121000000012405", "C", 4500, "PR00", a3, at=f"{d} 11:00:00",
              instr="105100000017"),                                              # COUNTERPARTY_ONLY
        cnaps("beps.121", "20261121000000012407", "D", 1000, "PR00", a1),           # DUPLICATE (2 journal rows)
        cnaps("beps.121", "20261121000000012408", "D", 1200, "PR00", a1),           # QUARANTINED (bad status)
    ]
    # the last record's status is spoiled in the file (PR00 -> PRX0): quarantined with its line and field
    cnaps_night(dt.date(2026, 11, 21), rows, patch=[(b"|12.00|PR00|", b"|12.00|PRX0|")])
    j = lambda n, r, amt, acct, **kw: journal("CNAPS", d, n, r, amt, acct=acct, **kw)  # noqa: E731
    return [
        j(2, ref("hvps.111", "20261121000000000077", "102100099996"), 50000000, a2, dr="C"),
        j(3, ref("beps.121", "20261121000000012401"), 6000, a3, status="F"),
        j(4, ref("beps.121", "20261121000000012402"), 7000, a3),
        j(5, ref("beps.121", "20261121000000012403"), 2000, a2),
        j(6, ref("beps.121", "20261121000000012404"), 15000, a2, dr="C"),
        j(7, ref("beps.121", "20261121000000012499"), 100, a3),
        j(8, ref("beps.121", "20261121000000012498"), 2500, a1),
        j(9, ref("beps.121", "20261121000000012406", "105100000017"), 4500, a3, dr="C", time="11:04:00"),  # LEDGER_ONLY
        j(10, ref("beps.121", "20261121000000012407"), 1000, a1),
        j(11, ref("beps.121", "20261121000000012407"), 1000, a1),
    ]


def cnaps_22():
    d, a2, a3 = "2026-11-22", "6222000011112222", "6222000055556666"
    rows = [
        cnaps("beps.121", "20261121000000012499", "D", 100, "PR00", a3, at=f"{d} 08:00:00"),  # settles T's PR05
        cnaps("hvps.111", "20261121000000000078", "C", 300000, "PR00", a2, at=f"{d} 08:01:00",
              instr="102100099996"),                                                         # settles, credited
        cnaps("beps.121", "20261122000000000001", "D", 5000, "PR00", a2, at=f"{d} 09:00:00"),  # MATCHED
    ]
    cnaps_night(dt.date(2026, 11, 22), rows)
    return [journal("CNAPS", d, 1, f"hvps.111:102100099996:20261121000000000078", 300000, acct=a2, dr="C"),
            journal("CNAPS", d, 2, f"beps.121:{BANK}:20261122000000000001", 5000, acct=a2)]


TAX_ORG, PAY_BK = "13201000000", "313301000019"


def tips_payment(no: int, amount: int) -> dict:
    return {"TraNo": f"{no:08d}", "PayOpBkCode": PAY_BK, "PayAcct": f"32001100000000{no:04d}",
            "HandOrgName": "南京某某科技有限公司", "TraAmt": amount, "TaxVouNo": f"3201000000{no:04d}",
            "TaxPayName": "南京某某科技有限公司", "ProtocolNo": f"P320100{no:05d}", "TaxTypeNum": 1,
            "TaxTypeList3102": [{"ProjectId": "1", "TaxTypeName": "增值税", "TaxStartDate": "20261001",
                                 "TaxEndDate": "20261031", "TaxTypeAmt": amount}]}


def tips_head(date: dt.date, msg_no: str, seq: int) -> dict:
    msg_id = f"{date:%Y%m%d}{msg_no}{seq:08d}"
    return {"VER": "1.0", "SRC": "100000000000", "DES": PAY_BK, "APP": "TIPS", "MsgNo": msg_no, "MsgID": msg_id,
            "MsgRef": msg_id, "WorkDate": date}


def tips_pack(date: dt.date, pack: str, payments: list[dict]) -> str:
    hdr = {**tips_head(date, "3102", int(pack)), "TaxOrgCode": TAX_ORG, "EntrustDate": date, "PackNo": pack,
           "AllNum": len(payments), "AllAmt": sum(p["TraAmt"] for p in payments), "ReturnTerm": 1,
           "HandleType": "1", "PayeeBankNo": "011301000007", "PayeeOrgCode": "1320100",
           "PayeeAcct": "270100000001", "PayeeName": "国家金库南京市中心支库", "PayBkCode": PAY_BK}
    write_file(date, "tips", f"TIPS_3102_{TAX_ORG}_{date:%Y%m%d}_{pack}.xml", "tips.3102", payments, hdr)
    return f"{TAX_ORG}{date:%Y%m%d}{pack}"


def tips_3111(date: dt.date, order: str, kind: str, parts: list[list[tuple[str, dict]]]) -> None:
    """One 3111 reconciliation (ChkAcctOrd `order`, ChkAcctType `kind`) split into len(parts) files."""
    every = [p for part in parts for p in part]
    for n, part in enumerate(parts, start=1):
        items = [{"PayOpBkCode": PAY_BK, "PayAcct": p["PayAcct"], "OriTaxOrgCode": TAX_ORG,
                  "OriEntrustDate": date, "OriPackNo": pack, "OriTraNo": p["TraNo"], "TraAmt": p["TraAmt"],
                  "TaxVouNo": p["TaxVouNo"], "TaxPayName": p["TaxPayName"], "ProtocolNo": p["ProtocolNo"]}
                 for pack, p in part]
        hdr = {**tips_head(date, "3111", int(order) * 10 + n), "PayBkCode": PAY_BK, "ChkDate": date,
               "ChkAcctOrd": order, "PriorChkAcctOrd": "", "PayeeBankNo": "011301000007", "ChkAcctType": kind,
               "AllNum": len(every), "AllAmt": sum(p["TraAmt"] for _, p in every), "ChildPackNum": len(parts),
               "CurPackNo": n, "CurPackNum": len(items), "CurPackAmt": sum(i["TraAmt"] for i in items)}
        write_file(date, "tips", f"TIPS_3111_{PAY_BK}_{date:%Y%m%d}_{order}_{n}.xml", "tips.3111", items, hdr)


def tips_21():
    date, d = dt.date(2026, 11, 21), "2026-11-21"
    pays = [tips_payment(1, 82379809),   # journal S: MATCHED (3102) and MATCHED (3111)
            tips_payment(2, 16500),      # journal F: MATCHED (3102), absent from 3111 and from its ledger side
            tips_payment(3, 5000),       # no journal row: COUNTERPARTY_ONLY (3102); in 3111: COUNTERPARTY_ONLY
            tips_payment(4, 7000),       # two journal rows: DUPLICATE on both reconciliations
            tips_payment(5, 9100)]       # journal 9000: AMOUNT_MISMATCH on both
    pack = tips_pack(date, "00000001", pays)
    p1, p3, p4, p5 = pays[0], pays[2], pays[3], pays[4]
    tips_3111(date, "0001", "0", [[("00000001", p1)]])  # intraday: registered, not reconciled
    tips_3111(date, "0002", "1", [[("00000001", p1), ("00000001", p5)], [("00000001", p3), ("00000001", p4)]])
    j = lambda n, tra, amt, **kw: journal("TIPS", d, n, pack + tra, amt, batch=pack,  # noqa: E731
                                          acct=f"32001100000000{int(tra):04d}", **kw)
    other = f"{TAX_ORG}{date:%Y%m%d}00000009"   # a pack executed without a 3102 in the files: LEDGER_ONLY twice
    return [j(1, "00000001", 82379809), j(2, "00000002", 16500, status="F"), j(3, "00000004", 7000),
            j(4, "00000004", 7000), j(5, "00000005", 9000),
            journal("TIPS", d, 6, other + "00000001", 3300, batch=other, acct="320011000000009901")]


def tips_22():
    date, d = dt.date(2026, 11, 22), "2026-11-22"
    pays = [tips_payment(11, 120000), tips_payment(12, 4400)]
    pack = tips_pack(date, "00000002", pays)
    tips_3111(date, "0001", "1", [[("00000002", pays[0])]])
    return [journal("TIPS", d, 1, pack + "00000011", 120000, batch=pack, acct="320011000000000011"),
            journal("TIPS", d, 2, pack + "00000012", 4400, batch=pack, acct="320011000000000012", status="F")]


UNIT_NO = "320100000000001"
CENTRE_ACCT = "32001881236052500001"


def bdc(date: dt.date, seq: str, tx_code: str, items: list[tuple[str, int, int, int]], patch=None) -> str:
    """A housing-fund batch: items (acct_no, amount, principal, interest); returns its batch number."""
    batch = UNIT_NO + seq
    rows = []
    for n, (acct, amount, principal, interest) in enumerate(items, start=1):
        row = {"seq_no": n, "amount": amount, "acct_no": acct, "acct_name": "张三", "summary": "",
               "fund_acct": f"3201000000{n:02d}", "fund_txn_no": f"GJ{date:%Y%m%d}{seq[-4:]}{n:03d}"}
        if tx_code == "BDC103":
            row |= {"fund_txn_no2": "", "principal": principal, "interest": interest}
        rows.append(row)
    hdr = {"record_type": "H", "tx_code": tx_code, "batch_no": batch, "center_acct": CENTRE_ACCT,
           "center_acct_name": "南京住房公积金管理中心", "entrust_date": date, "record_count": len(rows),
           "total_amount": sum(r["amount"] for r in rows), "bus_type": "11" if tx_code == "BDC103" else "01",
           "summary": ""}
    write_file(date, "housing_fund", f"BDC_BAT_{batch}.DAT", "housing_fund.bdc_bat", rows, hdr, patch=patch)
    return batch


def housing_21():
    date, d = dt.date(2026, 11, 21), "2026-11-21"
    m = [f"62170000111100{i:02d}" for i in range(10)]
    # BDC104 collection: items 1 and 3 debited, 2 failed; the centre's credit equals the successes: all MATCHED
    a = bdc(date, "20261121000001", "BDC104", [(m[1], 150000, 0, 0), (m[2], 80000, 0, 0), (m[3], 120000, 0, 0)])
    # BDC103 payment: item 2 never executed (COUNTERPARTY_ONLY); item 4's principal + interest differ from its
    # amount (QUARANTINED); the centre's debit is 1000 fen more than the successes (AMOUNT_MISMATCH of the batch)
    b = bdc(date, "20261121000002", "BDC103", [(m[4], 500000, 500000, 0), (m[5], 60000, 60000, 0),
                                                (m[6], 70000, 69000, 1000), (m[7], 9900, 9900, 0)],
            patch=[(b"@|$99.00@|$0.00@|$", b"@|$98.00@|$0.00@|$")])
    j = lambda n, ref, amt, acct, **kw: journal("HOUSING_FUND", d, n, ref, amt, acct=acct, **kw)  # noqa: E731
    return [j(1, f"{a}:1", 150000, m[1], batch=a), j(2, f"{a}:2", 80000, m[2], batch=a, status="F"),
            j(3, f"{a}:3", 120000, m[3], batch=a), j(4, a, 270000, CENTRE_ACCT, batch=a, dr="C"),
            j(5, f"{b}:1", 500000, m[4], batch=b, dr="C"), j(6, f"{b}:3", 70000, m[6], batch=b, dr="C"),
            j(7, b, 571000, CENTRE_ACCT, batch=b)]


def housing_22():
    date, d = dt.date(2026, 11, 22), "2026-11-22"
    c = bdc(date, "20261122000001", "BDC104", [("6217000011110021", 33300, 0, 0)])
    return [journal("HOUSING_FUND", d, 1, f"{c}:1", 33300, acct="6217000011110021", batch=c),
            journal("HOUSING_FUND", d, 2, c, 33300, acct=CENTRE_ACCT, batch=c, dr="C")]


def dk(date: dt.date, utility: str, batch: str, settle: str, bills: list[tuple[str, int]]) -> None:
    rows = [{"record_type": "D", "serial_no": f"{i:08d}", "contract_no": f"{utility[:2]}{i:010d}", "account_no": acct,
             "account_name": "张三", "amount_fen": amount, "billing_period": "202610", "remark": "", "filler": ""}
            for i, (acct, amount) in enumerate(bills, start=1)]
    hdr = {"record_type": "H", "utility_code": utility, "biz_type": "01" if utility.startswith("WATER") else "02",
           "batch_no": batch, "batch_date": date, "record_count": len(rows),
           "total_amount_fen": sum(r["amount_fen"] for r in rows), "settle_account": settle, "filler": ""}
    write_file(date, "utility", f"DK_{utility}_{date:%Y%m%d}_01.txt", "utility.dk", rows, hdr)


def utility_21():
    date, d = dt.date(2026, 11, 21), "2026-11-21"
    c = [f"62170000222200{i:02d}" for i in range(10)]
    # water: 1 S, 2 F, 3 debited 4600 for a 4560 bill (AMOUNT_MISMATCH), 4 never executed (COUNTERPARTY_ONLY),
    # 5 S; the settlement credit equals the successful debits (1, 3 as debited, 5): MATCHED
    dk(date, "WATER001", "WB2026112101", "32001881236052500099",
       [(c[1], 4560), (c[2], 12800), (c[3], 4560), (c[4], 30000), (c[5], 99)])
    # power: 1 S, 2 debited twice (DUPLICATE); the settlement credit is 100 fen short: AMOUNT_MISMATCH
    dk(date, "POWER001", "PB2026112101", "32001881236052500088", [(c[6], 25000), (c[7], 18000)])
    j = lambda n, ref, amt, acct, batch, **kw: journal("UTILITY", d, n, ref, amt, acct=acct, batch=batch,  # noqa: E731
                                                        **kw)
    w, p = "WB2026112101", "PB2026112101"
    return [j(1, f"{w}00000001", 4560, c[1], w), j(2, f"{w}00000002", 12800, c[2], w, status="F"),
            j(3, f"{w}00000003", 4600, c[3], w), j(4, f"{w}00000005", 99, c[5], w),
            j(5, w, 4560 + 4600 + 99, "32001881236052500099", w, dr="C"),
            j(6, f"{p}00000001", 25000, c[6], p), j(7, f"{p}00000002", 18000, c[7], p),
            j(8, f"{p}00000002", 18000, c[7], p), j(9, p, 25000 + 2 * 18000 - 100, "32001881236052500088", p, dr="C")]


def utility_22():
    date, d, w = dt.date(2026, 11, 22), "2026-11-22", "WB2026112201"
    dk(date, "WATER001", w, "32001881236052500099", [("6217000022220011", 3300), ("6217000022220012", 4400)])
    return [journal("UTILITY", d, 1, f"{w}00000001", 3300, acct="6217000022220011", batch=w),
            journal("UTILITY", d, 2, f"{w}00000002", 4400, acct="6217000022220012", batch=w),
            journal("UTILITY", d, 3, w, 7700, acct="32001881236052500099", batch=w, dr="C")]


EMPLOYER_ACCT = "32001881236052500777"


def payroll_batch(date: dt.date, employer: str, ext: str, rows: list[tuple[str, int]], patch=None) -> str:
    records = [{"seq_no": i, "account_no": acct, "account_name": "张三", "amount_fen": amount, "remark": "工资"}
               for i, (acct, amount) in enumerate(rows, start=1)]
    name = f"DF_{employer}_{date:%Y%m%d}_01.{ext}"
    total = sum(amount for _, amount in rows)
    if ext == "xlsx":
        write_file(date, "payroll", name, "payroll.batch_xlsx", records,
                   {"title": "XX科技有限公司2026年11月工资", "payer_acct": EMPLOYER_ACCT, "payer_name": "XX科技有限公司",
                    "purpose": "工资"}, {"record_count": len(rows), "total_amount_fen": total}, business_date=date)
    else:
        write_file(date, "payroll", name, "payroll.batch_csv", records,
                   {"payer_acct": EMPLOYER_ACCT, "payer_name": "XX科技有限公司", "purpose": "工资",
                    "record_count": len(rows), "total_amount_fen": total}, patch=patch)
    return f"{employer}{date:%Y%m%d}01"


def payroll_21():
    date, d = dt.date(2026, 11, 21), "2026-11-21"
    e = [f"62220212345600{i:02d}" for i in range(10)]
    # Excel batch: 1 S, 2 F (name mismatch, refunded), 3 S, 4 never executed (COUNTERPARTY_ONLY); the employer
    # was debited the whole total and refunded only row 2: debit and refund are 700000 fen off (AMOUNT_MISMATCH)
    a = payroll_batch(date, "EMP0000001", "xlsx", [(e[1], 1234550), (e[2], 800000), (e[3], 500000), (e[4], 700000)])
    # CSV batch: rows 1 and 2 S; row 3's amount has three decimals (a row error: QUARANTINED, not in the total,
    # never in the core); the debit equals the successes: MATCHED
    b = payroll_batch(date, "EMP0000002", "csv", [(e[5], 300000), (e[6], 250050), (e[7], 10000)],
                      patch=[(b",100.00,", b",100.005,"), (b",3,5600.50", b",2,5500.50")])
    j = lambda n, ref, amt, acct, batch, **kw: journal("PAYROLL", d, n, ref, amt, acct=acct, batch=batch,  # noqa: E731
                                                        **kw)
    return [j(1, f"{a}:1", 1234550, e[1], a, dr="C"), j(2, f"{a}:2", 800000, e[2], a, dr="C", status="F",
                                                          reason="E003"),
            j(3, f"{a}:3", 500000, e[3], a, dr="C"), j(4, a, 3234550, EMPLOYER_ACCT, a),
            j(5, f"{a}:REFUND", 800000, EMPLOYER_ACCT, a, dr="C"),
            j(6, f"{b}:1", 300000, e[5], b, dr="C"), j(7, f"{b}:2", 250050, e[6], b, dr="C"),
            j(8, b, 550050, EMPLOYER_ACCT, b)]


def payroll_22():
    date, d = dt.date(2026, 11, 22), "2026-11-22"
    a = payroll_batch(date, "EMP0000001", "csv", [("6222021234560011", 100000), ("6222021234560012", 200000)])
    return [journal("PAYROLL", d, 1, f"{a}:1", 100000, acct="6222021234560011", batch=a, dr="C"),
            journal("PAYROLL", d, 2, f"{a}:2", 200000, acct="6222021234560012", batch=a, dr="C"),
            journal("PAYROLL", d, 3, a, 300000, acct=EMPLOYER_ACCT, batch=a)]


if __name__ == "__main__":
    acomn, ledger = night_21()
    others = cnaps_21() + tips_21() + housing_21() + utility_21() + payroll_21()
    # record 17 (index 16): a letter in the amount field (bytes 63-74) -> quarantined with line and field
    write_night(dt.date(2026, 11, 21), acomn, ledger + others, {16: (62 + 5, b"O")})
    acomn, ledger = night_22()
    others = cnaps_22() + tips_22() + housing_22() + utility_22() + payroll_22()
    write_night(dt.date(2026, 11, 22), acomn, ledger + others, {})
