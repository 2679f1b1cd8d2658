"""Utility batch deduction file (批量代扣), `DK_{utility_code}_{YYYYMMDD}_{NN}.txt`: specs/utilities.md.

Fixed-width GBK, 180 bytes a record, no separators, CRLF; one header (`H`) carrying the control totals, then
details (`D`); no trailer. Key of a detail: (`batch_no`, `serial_no`).
"""
from formats.layout import Code, Const, Count, Date8, Digits, Fen, Field, FileLayout, Int, Record, Sum, Text

BIZ_TYPES = {"01": "water 水", "02": "power 电", "03": "gas 燃气", "04": "telecom 通信"}

HEADER = Record("header", kind="header", match="H", fields=(
    Field("record_type",       1,   1, Const("H")),
    Field("utility_code",      2,   9, Text(blank=False)),
    Field("biz_type",         10,  11, Code(BIZ_TYPES)),
    Field("batch_no",         12,  23, Text(blank=False)),     # unique per utility; key of the batch
    Field("batch_date",       24,  31, Date8()),               # 委托日期
    Field("record_count",     32,  39, Int()),
    Field("total_amount_fen", 40,  54, Fen()),
    Field("settle_account",   55,  86, Text(blank=False)),     # the utility's account at the bank
    Field("filler",           87, 180, Text()),
))
DETAIL = Record("detail", match="D", fields=(
    Field("record_type",      1,   1, Const("D")),
    Field("serial_no",        2,   9, Digits()),               # 1..N, kept as its 8 digits: channel_ref uses them
    Field("contract_no",     10,  29, Text(blank=False)),      # the utility's customer number
    Field("account_no",      30,  61, Text(blank=False)),
    Field("account_name",    62, 101, Text(blank=False)),      # GBK: up to 20 Chinese characters
    Field("amount_fen",     102, 116, Fen(positive=True)),
    Field("billing_period", 117, 122, Digits()),               # YYYYMM
    Field("remark",         123, 152, Text()),                 # GBK
    Field("filler",         153, 180, Text()),
))

LAYOUT = FileLayout(
    name="utility.dk",
    framing="fixed", encoding="gbk", record_bytes=180,
    records=(HEADER, DETAIL),
    controls=(Count("detail", equals="header.record_count"),
              Sum("detail.amount_fen", equals="header.total_amount_fen")),
    key=("serial_no",),
)
