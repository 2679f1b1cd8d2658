"""Utility return file (回盘), `HP_{utility_code}_{YYYYMMDD}_{NN}.txt`, the bank's answer to a DK file:
specs/utilities.md, "Return file".

Fixed-width GBK, 200 bytes a record, no separators, CRLF; one header (`H`) with the batch totals and the
success / failure split, then one detail (`D`) per detail of the deduction file, in the same order.
"""
from formats.layout import Code, Const, Count, Date8, Digits, Fen, Field, FileLayout, Int, Record, Sum, Text
from formats.specs.utility.dk import BIZ_TYPES

SUCCESS = "0000"
RESULT_CODES = {
    "0000": "扣款成功",
    "1001": "余额不足",
    "1002": "账户不存在或已销户",
    "1003": "户名不符",
    "1004": "账户冻结或止付",
    "1005": "未签订代扣协议",
    "9999": "其他错误",
}
# core reason code (ledger.md) -> result code; a reason not listed is 9999.
REASON_TO_RESULT = {"E001": "1001", "E002": "1002", "E003": "1003", "E004": "1004", "E005": "1005"}

HEADER = Record("header", kind="header", match="H", fields=(
    Field("record_type",         1,   1, Const("H")),
    Field("utility_code",        2,   9, Text(blank=False)),   # from the deduction file
    Field("biz_type",           10,  11, Code(BIZ_TYPES)),
    Field("batch_no",           12,  23, Text(blank=False)),
    Field("batch_date",         24,  31, Date8()),
    Field("record_count",       32,  39, Int()),               # equals the deduction file's
    Field("total_amount_fen",   40,  54, Fen()),               # equals the deduction file's
    Field("success_count",      55,  62, Int()),
    Field("success_amount_fen", 63,  77, Fen()),
    Field("fail_count",         78,  85, Int()),               # success_count + fail_count = record_count
    Field("fail_amount_fen",    86, 100, Fen()),
    Field("process_date",      101, 108, Date8()),             # T+1, derived from T (never the clock)
    Field("filler",            109, 200, Text()),
))
DETAIL = Record("detail", match="D", fields=(
    Field("record_type",    1,   1, Const("D")),
    Field("serial_no",      2,   9, Digits()),
    Field("contract_no",   10,  29, Text()),
    Field("account_no",    30,  61, Text()),
    Field("account_name",  62, 101, Text()),                   # GBK
    Field("amount_fen",   102, 116, Fen()),                    # 应扣金额
    Field("deducted_fen", 117, 131, Fen()),                    # 实扣金额: amount_fen on success, 0 on failure
    Field("result_code",  132, 135, Code(RESULT_CODES)),
    Field("result_msg",   136, 175, Text()),                   # GBK, the text of the result code
    Field("journal_no",   176, 195, Text()),                   # spaces on failure
    Field("filler",       196, 200, Text()),
))

LAYOUT = FileLayout(
    name="utility.hp",
    framing="fixed", encoding="gbk", record_bytes=200,
    records=(HEADER, DETAIL),
    controls=(Count("detail", equals="header.record_count"),
              Sum("detail.amount_fen", equals="header.total_amount_fen"),
              Count("detail", equals="header.success_count", where=("result_code", SUCCESS)),
              Sum("detail.deducted_fen", equals="header.success_amount_fen", where=("result_code", SUCCESS)),
              Count("detail", equals="header.fail_count", where_not=("result_code", SUCCESS)),
              Sum("detail.amount_fen", equals="header.fail_amount_fen", where_not=("result_code", SUCCESS))),
    key=("serial_no",),
)
