"""Payroll result file for an Excel batch, `DF_{employer_code}_{YYYYMMDD}_{NN}_RESULT.xlsx`: specs/payroll.md,
"Result file".

Same sheet name and title rows as the batch; the detail titles with `处理结果`, `失败原因` added after `备注`; one
row per employee; a 合计 row giving, in B-E, the success count, success total, failure count and failure total.
"""
from formats.layout import Column, Const, FileLayout, Int, Record, Yuan, heading
from formats.specs.payroll.batch_xlsx import HEADER
from formats.specs.payroll.common import RESULT_CONTROLS, RESULT_FIELDS, RESULT_TITLES, SHEET

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
    controls=RESULT_CONTROLS,
    key=("seq_no",),
    options={"sheet": SHEET, "first_row": 6},
)
