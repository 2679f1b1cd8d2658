"""TIPS 2102 batch return (批量扣税回执), the bank's answer to a 3102, `TIPS_2102_{TaxOrgCode}_{EntrustDate}_{PackNo}.xml`:
specs/tips.md, "2102".

One `BatchHead2102`, then one `BatchReturn2102` per `Payment3102`, in the request's order; a pack rejected whole
has `Result` 94999, `SuccNum` 0, `SuccAmt` 0.00 and no `BatchReturn2102`. So `AllNum`/`AllAmt` echo the
request and are not a control over the returns; `SuccNum`/`SuccAmt` are.
"""
from formats.layout import Code, Column, Count, Date8, Digits, FileLayout, Int, Record, Sum, Text, Yuan
from formats.specs.tips.cfx import ENCODINGS, PACK_PROCESSED, PACK_REJECTED, RESULTS, head

BATCH_HEAD = Record("batch_head", kind="header", at="MSG/BatchHead2102", fields=(
    Column("OriTaxOrgCode",  Text(blank=False)),
    Column("OriEntrustDate", Date8()),
    Column("OriPackNo",      Digits(length=8)),
    Column("AllNum",         Int()),                 # equal to the request's
    Column("AllAmt",         Yuan()),
    Column("SuccNum",        Int()),
    Column("SuccAmt",        Yuan()),
    Column("Result",         Code({PACK_PROCESSED: "pack processed", PACK_REJECTED: "pack rejected whole"})),
    Column("AddWord",        Text()),
))
RETURN = Record("return", at="MSG/BatchReturn2102", fields=(
    Column("OriTraNo", Digits(length=8)),
    Column("TraAmt",   Yuan()),
    Column("TaxVouNo", Text()),
    Column("TaxDate",  Date8()),                     # the date of the debit
    Column("Result",   Code(RESULTS)),
    Column("AddWord",  Text()),                      # the text of the result, exactly as in RESULTS
))

LAYOUT = FileLayout(
    name="tips.2102",
    framing="xml", encoding="gbk",
    records=(head("2102"), BATCH_HEAD, RETURN),
    controls=(Count("return", equals="batch_head.SuccNum", where=("Result", PACK_PROCESSED)),
              Sum("return.TraAmt", equals="batch_head.SuccAmt", where=("Result", PACK_PROCESSED))),
    key=("OriTraNo",),
    options={"root": "CFX", "encodings": ENCODINGS},
)
