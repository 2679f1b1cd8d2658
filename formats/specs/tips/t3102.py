"""TIPS 3102 batch tax deduction request (批量扣税请求), `TIPS_3102_{TaxOrgCode}_{EntrustDate}_{PackNo}.xml`:
specs/tips.md, "3102".

XML (CFX), GBK or GB18030 as the prolog declares. One `BatchHead3102`, one `TurnAccount3102`, `AllNum`
`Payment3102` elements (the detail records), each with its `TaxType3102` items. The checks the spec makes before
executing reject the pack whole: `AllNum`/`AllAmt` against the payments, `TraAmt` against the sum of its tax
types, `TraNo` unique. Amount columns keep the element names and hold int64 fen.
"""
from formats.layout import (Column, Count, CountOf, Date8, Digits, FileLayout, Int, Record, Repeated, Sum, SumOf,
                            Text, Unique, Yuan)
from formats.specs.tips.cfx import ENCODINGS, head

BATCH_HEAD = Record("batch_head", kind="header", at="MSG/BatchHead3102", fields=(
    Column("TaxOrgCode",  Text(blank=False, max_bytes=11)),
    Column("EntrustDate", Date8()),
    Column("PackNo",      Digits(length=8)),       # (TaxOrgCode, EntrustDate, PackNo) identifies the pack
    Column("AllNum",      Int()),
    Column("AllAmt",      Yuan()),
    Column("ReturnTerm",  Int()),
))
TURN_ACCOUNT = Record("turn_account", kind="header", at="MSG/TurnAccount3102", fields=(
    Column("HandleType",   Text()),
    Column("PayeeBankNo",  Digits(length=12)),
    Column("PayeeOrgCode", Text()),
    Column("PayeeAcct",    Text()),
    Column("PayeeName",    Text()),
    Column("PayBkCode",    Digits(length=12)),
))
TAX_TYPE = Record("tax_type", at="TaxType3102", fields=(
    Column("ProjectId",    Text()),
    Column("TaxTypeName",  Text()),
    Column("TaxStartDate", Text()),
    Column("TaxEndDate",   Text()),
    Column("TaxTypeAmt",   Yuan()),
))
PAYMENT = Record("payment", at="MSG/Payment3102", fields=(
    Column("TraNo",           Digits(length=8)),   # unique in the pack
    Column("PayOpBkCode",     Digits(length=12)),
    Column("PayAcct",         Text(blank=False, max_bytes=32)),
    Column("HandOrgName",     Text(max_bytes=60)),
    Column("TraAmt",          Yuan()),
    Column("TaxVouNo",        Text(max_bytes=20)),
    Column("TaxPayName",      Text()),
    Column("ProtocolNo",      Text()),             # 三方协议号
    Column("TaxTypeNum",      Int()),
    Column("TaxTypeList3102", Repeated(TAX_TYPE, item="TaxType3102")),
), checks=(SumOf("TraAmt", ("TaxTypeList3102.TaxTypeAmt",), reject_file=True),
           CountOf("TaxTypeNum", "TaxTypeList3102", reject_file=True)))

LAYOUT = FileLayout(
    name="tips.3102",
    framing="xml", encoding="gbk",
    records=(head("3102"), BATCH_HEAD, TURN_ACCOUNT, PAYMENT),
    controls=(Count("payment", equals="batch_head.AllNum"),
              Sum("payment.TraAmt", equals="batch_head.AllAmt"),
              Unique("payment.TraNo")),
    key=("TraNo",),
    options={"root": "CFX", "encodings": ENCODINGS},
)
