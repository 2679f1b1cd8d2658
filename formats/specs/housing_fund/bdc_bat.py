"""Housing fund batch instruction (批量付款 BDC103 / 批量收款 BDC104), `BDC_BAT_{unit_no}{send_seq_no}.DAT`:
specs/housing_fund.md, "Batch instruction".

Delimited by the three characters `@|$`, with a trailing separator at the end of every line; GBK; **LF** line
ends (this counterparty's convention). One header line, then one item line per item. The header's `tx_code`
selects the item layout: a BDC103 item has 10 fields, a BDC104 item 7 (the first 7 of BDC103's). Amounts are
yuan with two decimals, read into int64 fen (columns keep the spec's names: `amount` holds fen).
"""
from formats.layout import Code, Column, Const, Count, Date8, Digits, FileLayout, Int, Record, Sum, SumOf, Text, Unique, Yuan

TX_CODES = {"BDC103": "批量付款 batch payment (credits members)", "BDC104": "批量收款 batch collection (debits)"}

HEADER = Record("header", kind="header", match="H", fields=(
    Column("record_type",      Const("H")),
    Column("tx_code",          Code(TX_CODES)),
    Column("batch_no",         Digits()),            # unit_no (15 digits) + send_seq_no (up to 20 digits)
    Column("center_acct",      Text(blank=False)),   # paid from for BDC103, into for BDC104
    Column("center_acct_name", Text()),              # GBK
    Column("entrust_date",     Date8()),
    Column("record_count",     Int()),
    Column("total_amount",     Yuan()),
    Column("bus_type",         Digits(length=2)),    # e.g. 01 汇缴, 02 贷款还款, 11 提取, 12 贷款发放
    Column("summary",          Text()),              # GBK, may be empty
))
_COMMON = (
    Column("seq_no",      Int()),                    # 1..n, unique in the batch
    Column("amount",      Yuan(positive=True)),
    Column("acct_no",     Text(blank=False)),        # BDC103: credited; BDC104: debited
    Column("acct_name",   Text(blank=False)),        # GBK; must equal the account's name
    Column("summary",     Text()),                   # GBK, may be empty
    Column("fund_acct",   Text()),                   # the centre's account number for the member
    Column("fund_txn_no", Text(blank=False)),        # the centre's id for the item, echoed back as receipt_no
)
ITEM_103 = Record("item", variant="BDC103", fields=(
    *_COMMON,
    Column("fund_txn_no2", Text()),                  # may be empty
    Column("principal",    Yuan()),
    Column("interest",     Yuan()),
), checks=(SumOf("amount", ("principal", "interest")),))   # else the item is quarantined
ITEM_104 = Record("item_104", variant="BDC104", fields=_COMMON)

LAYOUT = FileLayout(
    name="housing_fund.bdc_bat",
    framing="delimited", encoding="gbk", delimiter="@|$", trailing_delimiter=True, line_end=b"\n",
    records=(HEADER, ITEM_103, ITEM_104),
    variant_by="header.tx_code",
    controls=(Count("item", equals="header.record_count"),
              Sum("item.amount", equals="header.total_amount"),
              Unique("item.seq_no")),
    key=("seq_no",),
)
