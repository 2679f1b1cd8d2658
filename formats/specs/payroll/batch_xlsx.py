"""Payroll batch from an employer as Excel (代发), `DF_{employer_code}_{YYYYMMDD}_{NN}.xlsx`: specs/payroll.md,
"Excel batch".

Only the worksheet `代发明细` is read, by value (a formula by its cached value). A1 title; A2:B4 label and value
of the payer's account, name and purpose; row 5 the detail titles; one employee a row from row 6; then the
合计 row (the first row whose column A is `合计`): B the count, D the total in yuan. Empty rows between data rows
are ignored. Row errors (an account stored as a number, an amount with more than two decimals, a formula with
no cached value) quarantine the row; payroll's count and total rule is as for the CSV batch.
"""
from formats.layout import (Cell, Column, Const, Count, FileLayout, Int, Record, Sum, Text, Unique, Yuan,
                            heading)
from formats.specs.payroll.common import DETAIL_FIELDS, DETAIL_TITLES, SHEET

HEADER = Record("header", kind="header", fields=(
    Cell("title",            "A1", Text()),             # free text, e.g. XX公司2026年11月工资
    Cell("payer_acct_label", "A2", Const("付款账号")),
    Cell("payer_acct",       "B2", Text(blank=False)),
    Cell("payer_name_label", "A3", Const("付款户名")),
    Cell("payer_name",       "B3", Text(blank=False)),
    Cell("purpose_label",    "A4", Const("用途")),
    Cell("purpose",          "B4", Text()),
))
TRAILER = Record("trailer", kind="trailer", match="合计", fields=(
    Column("label",            Const("合计")),          # A
    Column("record_count",     Int()),                  # B
    Column("blank_c",          Text()),                 # C
    Column("total_amount_fen", Yuan(exact_decimals=False)),  # D
))

LAYOUT = FileLayout(
    name="payroll.batch_xlsx",
    framing="excel", encoding="utf-8",
    records=(HEADER, heading("detail_titles", DETAIL_TITLES, at_row=5), Record("detail", DETAIL_FIELDS), TRAILER),
    controls=(Count("detail", equals="trailer.record_count", readable="amount_fen"),
              Sum("detail.amount_fen", equals="trailer.total_amount_fen", unreadable="skip"),
              Unique("detail.seq_no")),
    key=("seq_no",),
    options={"sheet": SHEET, "first_row": 6},
)
