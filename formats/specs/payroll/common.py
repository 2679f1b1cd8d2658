"""What the four payroll layouts share (specs/payroll.md): the detail columns, the result columns, the texts."""
from formats.layout import Code, Column, Count, Int, Sum, Text, Yuan

SHEET = "代发明细"
SUCCESS, FAILURE = "成功", "失败"
# core reason code -> 失败原因 text (a row error's own text is used for a row that never reached the core)
REASON_TEXTS = {"E001": "余额不足", "E002": "账户不存在或已销户", "E003": "户名不符", "E004": "账户冻结或止付",
                "E999": "其他错误"}
BATCH_CHECK_FAILED = "批次校验失败: "   # + the check that failed, on every row of a batch rejected whole

BATCH_TITLES = ("付款账号", "付款户名", "用途", "笔数", "总金额")          # the CSV's first line
DETAIL_TITLES = ("序号", "收款账号", "收款户名", "金额", "备注")
RESULT_TITLES = DETAIL_TITLES + ("处理结果", "失败原因")

DETAIL_FIELDS = (
    Column("seq_no",       Int()),                # 1..n, unique in the batch
    # A number cell loses leading zeros and digits past 15: the account must be text (Excel: a number cell is
    # a row error).
    Column("account_no",   Text(blank=False)),
    Column("account_name", Text(blank=False)),
    Column("amount_fen",   Yuan(exact_decimals=False, positive=True)),   # yuan, at most two decimals, > 0
    Column("remark",       Text()),
)
# The result echoes the batch's rows: a row whose amount was unreadable is written with an empty amount.
RESULT_FIELDS = (
    *DETAIL_FIELDS[:3],
    Column("amount_fen",   Yuan(exact_decimals=False, blank=True)),
    DETAIL_FIELDS[4],
    Column("result",       Code({SUCCESS: "success", FAILURE: "failure"})),
    Column("fail_reason",  Text()),               # empty on success
)

# A result file's trailer counts and sums its successful and failed rows (payroll.md), in either framing; an
# unreadable amount (echoed from the batch) is left out of the sums.
RESULT_CONTROLS = (
    Count("detail", equals="trailer.success_count", where=("result", SUCCESS)),
    Sum("detail.amount_fen", equals="trailer.success_amount_fen", where=("result", SUCCESS), unreadable="skip"),
    Count("detail", equals="trailer.fail_count", where_not=("result", SUCCESS)),
    Sum("detail.amount_fen", equals="trailer.fail_amount_fen", where_not=("result", SUCCESS), unreadable="skip"),
)
