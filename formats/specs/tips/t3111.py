"""TIPS 3111 reconciliation (批量对账), `TIPS_3111_{PayBkCode}_{ChkDate}_{ChkAcctOrd}_{CurPackNo}.xml`:
specs/tips.md, "3111".

One `BatchHead3111`, then one `BankCompare3111` per deduction TIPS recorded as successful. A reconciliation may
be split into `ChildPackNum` files: this file's controls are `CurPackNum`/`CurPackAmt`; that all child packs add
up to `AllNum`/`AllAmt` is checked by the caller once all have arrived.
"""
from formats.layout import Code, Column, Count, Date8, Digits, FileLayout, Int, Record, Sum, Text, Yuan
from formats.specs.tips.cfx import ENCODINGS, head

BATCH_HEAD = Record("batch_head", kind="header", at="MSG/BatchHead3111", fields=(
    Column("PayBkCode",       Digits(length=12)),
    Column("ChkDate",         Date8()),
    Column("ChkAcctOrd",      Digits(length=4)),   # 对账批次
    Column("PriorChkAcctOrd", Text()),
    Column("PayeeBankNo",     Text()),
    Column("ChkAcctType",     Code({"0": "日间 intraday", "1": "日切 day-end"})),
    Column("AllNum",          Int()),              # the whole reconciliation, over all child packs
    Column("AllAmt",          Yuan()),
    Column("ChildPackNum",    Int()),
    Column("CurPackNo",       Int()),              # 1..ChildPackNum
    Column("CurPackNum",      Int()),              # items in this file
    Column("CurPackAmt",      Yuan()),
))
COMPARE = Record("compare", at="MSG/BankCompare3111", fields=(
    Column("PayOpBkCode",    Digits(length=12)),
    Column("PayAcct",        Text(blank=False)),
    Column("OriTaxOrgCode",  Text(blank=False)),
    Column("OriEntrustDate", Date8()),
    Column("OriPackNo",      Digits(length=8)),
    Column("OriTraNo",       Digits(length=8)),
    Column("TraAmt",         Yuan()),
    Column("TaxVouNo",       Text()),
    Column("TaxPayName",     Text()),
    Column("ProtocolNo",     Text()),
))

LAYOUT = FileLayout(
    name="tips.3111",
    framing="xml", encoding="gbk",
    records=(head("3111"), BATCH_HEAD, COMPARE),
    controls=(Count("compare", equals="batch_head.CurPackNum"),
              Sum("compare.TraAmt", equals="batch_head.CurPackAmt")),
    key=("OriTaxOrgCode", "OriEntrustDate", "OriPackNo", "OriTraNo"),
    options={"root": "CFX", "encodings": ENCODINGS},
)
