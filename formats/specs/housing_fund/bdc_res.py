"""Housing fund batch result (批量结果, BDC108 下载), `BDC_RES_{unit_no}{send_seq_no}.DAT`, the bank's answer to
a BDC_BAT file: specs/housing_fund.md, "Batch result".

Delimited by `|` with a trailing `|` on every line; GBK; LF line ends. One summary line opening with `$`, then
one item line per item of the instruction, in its order. The success and failure lists (批量成功/失败清单)
are the item lines whose `resp_code` is `0000` / anything else.
"""
from formats.layout import Code, Column, Const, Count, Date8, Digits, FileLayout, Int, Record, Sum, Text, Yuan
from formats.specs.housing_fund.bdc_bat import TX_CODES

SUCCESS = "0000"
RESP_CODES = {
    "0000": "成功",
    "3001": "余额不足",
    "3002": "账户不存在或已销户",
    "3003": "户名不符",
    "3004": "账户冻结或止付",
    "3999": "其他",
}
REASON_TO_RESP = {"E001": "3001", "E002": "3002", "E003": "3003", "E004": "3004"}  # any other reason: 3999

SUMMARY = Record("summary", kind="header", prefix="$", fields=(
    Column("date",         Date8()),             # processing date
    Column("unit_no",      Digits(length=15)),
    Column("batch_no",     Digits()),
    Column("tx_code",      Code(TX_CODES)),
    Column("bus_type",     Digits(length=2)),
    Column("currency",     Const("156")),        # CNY
    Column("cash_flag",    Const("0")),          # 钞汇
    Column("total_count",  Int()),               # equal to the instruction's
    Column("total_amount", Yuan()),
    Column("succ_count",   Int()),
    Column("succ_amount",  Yuan()),
    Column("fail_count",   Int()),
    Column("fail_amount",  Yuan()),
    Column("summary",      Text()),
))
ITEM = Record("item", fields=(
    Column("seq_no",          Int()),
    Column("currency",        Const("156")),
    Column("cash_flag",       Const("0")),
    Column("amount",          Yuan()),
    Column("payer_acct",      Text()),           # BDC104: the item's account; BDC103: the centre's
    Column("payer_name",      Text()),
    Column("payer_balance",   Text()),           # left empty (balances are not disclosed)
    Column("payee_acct",      Text()),
    Column("payee_name",      Text()),
    Column("payee_balance",   Text()),           # left empty
    Column("resp_code",       Code(RESP_CODES)),
    Column("resp_msg",        Text()),
    Column("host_date",       Date8(blank=True)),  # the core's accounting date; empty on failure
    Column("host_journal_no", Text()),           # empty on failure
    Column("receipt_no",      Text()),           # the item's fund_txn_no, echoed
    Column("bank_ext",        Text()),           # empty
))

LAYOUT = FileLayout(
    name="housing_fund.bdc_res",
    framing="delimited", encoding="gbk", delimiter="|", trailing_delimiter=True, line_end=b"\n",
    records=(SUMMARY, ITEM),
    controls=(Count("item", equals="summary.total_count"),
              Sum("item.amount", equals="summary.total_amount"),
              Count("item", equals="summary.succ_count", where=("resp_code", SUCCESS)),
              Sum("item.amount", equals="summary.succ_amount", where=("resp_code", SUCCESS)),
              Count("item", equals="summary.fail_count", where_not=("resp_code", SUCCESS)),
              Sum("item.amount", equals="summary.fail_amount", where_not=("resp_code", SUCCESS))),
    key=("seq_no",),
)
