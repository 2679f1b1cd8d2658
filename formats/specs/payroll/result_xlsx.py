"""Payroll result file for an Excel batch, `DF_{employer_code}_{YYYYMMDD}_{NN}_RESULT.xlsx`: specs/payroll.md,
"Result file".

Same sheet name and title rows as the batch; the detail titles with `处理结果`, `失败原因` added after `备注`; one
row per employee; a 合计 row giving, in B-E, the success count, success total, failure count and failure total.
"""
from formats.layout import Column, Const, Count, FileLayout, Int, Record, Sum, Yuan, heading
from formats.specs.payroll.batch_xlsx import HEADER
from formats.specs.payroll.common import RESULT_FIELDS, RESULT_TITLES, SHEET, SUCCESS

TRAILER = Record("trailer", kind="trailer", match="合计", fields=(
    Column("label",              Const("合计")),
    Column("success_count",      Int()),
    Column("success_amount_fen", Yuan(exact_decimals=False)),
    Column("fail_count",         Int()),
    Column("fail_amount_fen",    Yuan(exact_decimals=False)),
))

LAYOUT = FileLayout(
    name="payroll.result_xlsx",
    framing="excel", encoding="utf-8",
    records=(HEADER, heading("detail_titles", RESULT_TITLES, at_row=5), Record("detail", RESULT_FIELDS), TRAILER),
    controls=(Count("detail", equals="trailer.success_count", where=("result", SUCCESS)),
              Sum("detail.amount_fen", equals="trailer.success_amount_fen", where=("result", SUCCESS),
                  unreadable="skip"),
              Count("detail", equals="trailer.fail_count", where_not=("result", SUCCESS)),
              Sum("detail.amount_fen", equals="trailer.fail_amount_fen", where_not=("result", SUCCESS),
                  unreadable="skip")),
    key=("seq_no",),
    options={"sheet": SHEET, "first_row": 6},
)
