"""The bank's dispute reply ERRR (差错回复) to UnionPay CUPS, `IND{YYMMDD}{NN}ERRR`: specs/unionpay.md, "ERRR".

A layout agreed with CUPS for this project: fixed-width GBK, 120 bytes a record, no separators, CRLF; one header
(`H`), one detail (`D`) per dispute answered, one trailer (`T`) with the count and the total decided amount.
"""
from formats.layout import Code, Const, Count, Date8, Digits, Fen, Field, FileLayout, Int, Record, Sum, Text

DECISIONS = {"A": "accept", "R": "reject (represent)", "P": "still investigating"}

HEADER = Record("header", kind="header", match="H", fields=(
    Field("record_type",     1,   1, Const("H")),
    Field("file_type",       2,   5, Const("ERRR")),
    Field("acq_inst_id",     6,  16, Text(blank=False)),
    Field("business_date",  17,  24, Date8()),                  # 回复日期 YYYYMMDD
    Field("file_seq",       25,  26, Digits()),
    Field("filler",         27, 120, Text()),
))
DETAIL = Record("detail", match="D", fields=(
    Field("record_type",          1,   1, Const("D")),
    Field("err_type",             2,   4, Text(blank=False)),   # from the ERRN record
    Field("stan",                 5,  10, Digits()),            # from the ERRN record
    Field("txn_time",            11,  20, Digits()),            # from the ERRN record
    Field("case_ref",            21,  24, Text()),              # spaces, or the bank's own reference
    Field("decision",            25,  25, Code(DECISIONS)),
    Field("decision_amount_fen", 26,  37, Fen()),               # 0 when R or P
    Field("reason_code",         38,  41, Text()),              # for R: why rejected
    Field("remark",              42, 101, Text()),              # GBK
    Field("reserved",           102, 120, Text()),
))
TRAILER = Record("trailer", kind="trailer", match="T", fields=(
    Field("record_type",                1,   1, Const("T")),
    Field("record_count",               2,  11, Int()),
    Field("total_decision_amount_fen", 12,  27, Fen()),
    Field("filler",                    28, 120, Text()),
))

LAYOUT = FileLayout(
    name="unionpay.errr",
    framing="fixed", encoding="gbk", record_bytes=120,
    records=(HEADER, DETAIL, TRAILER),
    controls=(Count("detail", equals="trailer.record_count"),
              Sum("detail.decision_amount_fen", equals="trailer.total_decision_amount_fen")),
    key=("err_type", "stan", "txn_time"),
)
