"""Payroll result file for a CSV batch, `DF_{employer_code}_{YYYYMMDD}_{NN}_RESULT.csv`: specs/payroll.md,
"Result file".

The batch's first two lines as received, the detail titles with `处理结果,失败原因` added, one line per employee,
and a last line `合计,<success count>,<success total>,<failure count>,<failure total>` (yuan, two decimals).
"""
from formats.layout import Column, Const, FileLayout, Int, Record, Yuan, heading
from formats.specs.payroll.batch_csv import HEADER
from formats.specs.payroll.common import BATCH_TITLES, RESULT_CONTROLS, RESULT_FIELDS, RESULT_TITLES

TRAILER = Record("trailer", kind="trailer", match="合计", fields=(
    Column("label",              Const("合计")),
    Column("success_count",      Int()),
    Column("success_amount_fen", Yuan()),
    Column("fail_count",         Int()),
    Column("fail_amount_fen",    Yuan()),
))

LAYOUT = FileLayout(
    name="payroll.result_csv",
    framing="delimited", encoding="gbk", delimiter=",", quoting="rfc4180",
    records=(heading("batch_titles", BATCH_TITLES), HEADER, heading("detail_titles", RESULT_TITLES),
             Record("detail", RESULT_FIELDS), TRAILER),
    controls=RESULT_CONTROLS,
    key=("seq_no",),
)
