"""PBOC CNAPS2 daily reconciliation detail (往来账对账明细), `CNAPS2_DZMX_{bank_code}_{YYYYMMDD}_{NN}.txt`:
specs/pboc.md.

Delimited by `|` (0x7C), GBK, CRLF, no quoting; no trailing separator. One header line (`H`) with the count and
the debit and credit totals, then one detail line (`D`) per payment message. GBK names can hold the byte 0x7C
as a second byte: the engine decodes each line before splitting it. Amounts are yuan with exactly two
decimals, read into int64 fen (the columns keep the spec's names: `amount` holds fen).
"""
from formats.layout import (Code, Column, Const, Count, Date8, Digits, FileLayout, Int, Record, Sum, Text,
                            Timestamp14, Yuan)

MSG_TYPES = {
    "hvps.111": "大额 HVPS customer credit transfer",
    "beps.121": "小额 BEPS customer credit transfer",
    "beps.125": "小额 BEPS real-time credit transfer",
}
DR_CR = {"D": "sent by the bank (money out)", "C": "received by the bank (money in)"}
STATUSES = {"PR00": "已清算 settled", "PR09": "已拒绝 rejected", "PR05": "排队 queued, settles next work date"}

HEADER = Record("header", kind="header", match="H", fields=(
    Column("record_type",  Const("H")),
    Column("bank_code",    Digits(length=12)),
    Column("work_date",    Date8()),
    Column("file_seq",     Digits(length=2)),
    Column("record_count", Int()),
    Column("debit_total",  Yuan()),          # Σ amount where dr_cr = D, whatever the status
    Column("credit_total", Yuan()),          # Σ amount where dr_cr = C, whatever the status
    Column("created_at",   Timestamp14()),
))
DETAIL = Record("detail", match="D", fields=(
    Column("record_type",  Const("D")),
    Column("msg_type",     Code(MSG_TYPES)),
    Column("msg_id",       Text(blank=False, max_bytes=20)),   # 20 characters; unique per msg_type and sender
    Column("instr_bank",   Digits(length=12)),
    Column("entrust_date", Date8()),
    Column("dr_cr",        Code(DR_CR)),
    Column("payer_bank",   Digits(length=12)),
    Column("payer_acct",   Text(blank=False, max_bytes=32)),
    Column("payer_name",   Text(max_bytes=60)),                # GBK
    Column("payee_bank",   Digits(length=12)),
    Column("payee_acct",   Text(blank=False, max_bytes=32)),
    Column("payee_name",   Text(max_bytes=60)),                # GBK
    Column("amount",       Yuan()),
    Column("status",       Code(STATUSES)),
    Column("process_time", Timestamp14()),
))

LAYOUT = FileLayout(
    name="pboc.cnaps2_dzmx",
    framing="delimited", encoding="gbk", delimiter="|",
    records=(HEADER, DETAIL),
    controls=(Count("detail", equals="header.record_count"),
              Sum("detail.amount", equals="header.debit_total", where=("dr_cr", "D")),
              Sum("detail.amount", equals="header.credit_total", where=("dr_cr", "C"))),
    key=("msg_type", "instr_bank", "msg_id"),
)
