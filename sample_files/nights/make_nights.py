"""Write the demo nights (UnionPay ACOMN files and the core journal) for 2026-11-21 and 2026-11-22.

Run once: `python sample_files/nights/make_nights.py`; the files are committed as bytes. Each record is chosen
to exercise one outcome of the mission (see the comments); the tests read the files, not this script.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pyarrow as pa

from formats import fixed_width
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


if __name__ == "__main__":
    acomn, ledger = night_21()
    # record 17 (index 16): a letter in the amount field (bytes 63-74) -> quarantined with line and field
    write_night(dt.date(2026, 11, 21), acomn, ledger, {16: (62 + 5, b"O")})
    acomn, ledger = night_22()
    write_night(dt.date(2026, 11, 22), acomn, ledger, {})
