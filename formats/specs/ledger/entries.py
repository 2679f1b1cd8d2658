"""The accounting entries file (会计分录) duizhang posts back to the core, `ENTRIES_{CHANNEL}_{YYYYMMDD}_{NN}.csv`:
specs/ledger.md, "The accounting entries file".

UTF-8, comma-separated, one header line with the column names, CRLF. The spec does not mention quoting: the
layout uses RFC 4180 quoting so that a memo holding a comma stays one field (a value without a comma, quote or
line break is written bare, so ordinary files are unchanged by it).
"""
from formats.layout import Balanced, Code, Column, FileLayout, Fen, Int, IsoDate, Record, Text, heading

DETAIL = Record("detail", fields=(
    Column("voucher_no", Text(blank=False)),    # one voucher (传票) per business event; its lines balance
    Column("line_no",    Int(positive=True)),   # 1..n within the voucher
    Column("acct_date",  IsoDate()),
    Column("account_no", Text(blank=False)),
    Column("dr_cr",      Code({"D": "debit", "C": "credit"})),
    Column("amount_fen", Fen(positive=True)),
    Column("currency",   Code({"CNY": "renminbi"})),
    Column("memo",       Text()),
    Column("source_ref", Text()),
))
COLUMNS = DETAIL.names

LAYOUT = FileLayout(
    name="ledger.entries",
    framing="delimited", encoding="utf-8", delimiter=",", quoting="rfc4180",
    records=(heading("column_names", COLUMNS), DETAIL),
    # "every voucher balances; the file's total debits equal its total credits"
    controls=(Balanced("detail.amount_fen", side="dr_cr", by="voucher_no"),),
    key=("voucher_no", "line_no"),
)
