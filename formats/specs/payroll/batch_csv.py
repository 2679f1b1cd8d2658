"""Payroll batch from an employer as GBK CSV (代发), `DF_{employer_code}_{YYYYMMDD}_{NN}.csv`:
specs/payroll.md, "CSV batch".

GBK, CRLF, comma-separated with RFC 4180 quoting (names may contain commas). Line 1 the titles
`付款账号,付款户名,用途,笔数,总金额`, line 2 their values, line 3 the detail titles, then one line per employee.
Payroll's own rule: a row whose amount is unreadable is a row error, left out of the count and the total that
line 2 must match; a count or total that still differs, or a repeated 序号, rejects the batch whole.
"""
from formats.layout import Column, Count, FileLayout, Int, Record, Sum, Text, Unique, Yuan, heading
from formats.specs.payroll.common import BATCH_TITLES, DETAIL_FIELDS, DETAIL_TITLES

HEADER = Record("header", kind="header", fields=(
    Column("payer_acct",       Text(blank=False)),
    Column("payer_name",       Text(blank=False)),
    Column("purpose",          Text()),                      # 工资 / 奖金 / 报销
    Column("record_count",     Int()),
    Column("total_amount_fen", Yuan(exact_decimals=False)),
))

LAYOUT = FileLayout(
    name="payroll.batch_csv",
    framing="delimited", encoding="gbk", delimiter=",", quoting="rfc4180",
    records=(heading("batch_titles", BATCH_TITLES), HEADER, heading("detail_titles", DETAIL_TITLES),
             Record("detail", DETAIL_FIELDS)),
    controls=(Count("detail", equals="header.record_count", readable="amount_fen"),
              Sum("detail.amount_fen", equals="header.total_amount_fen", unreadable="skip"),
              Unique("detail.seq_no")),
    key=("seq_no",),
)
