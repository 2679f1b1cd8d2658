"""The core ledger's journal extract (核心流水), `CORE_JOURNAL_{YYYYMMDD}.csv`: specs/ledger.md.

UTF-8, comma-separated, RFC 4180 quoting, one header line with the column names, LF line ends, an empty field
meaning NULL. The same columns as the `core_journal` table: the Arrow schema below is what the database path
must produce too. A bank's extract is what it is: rows in any order, duplicate `channel_ref`s (a break, not a
format error).
"""
from formats.layout import (Code, Column, FileLayout, Int, IsoDate, IsoTimestamp, Record, Text, heading)

CHANNELS = ("UNIONPAY_ACQ", "CNAPS", "TIPS", "HOUSING_FUND", "UTILITY", "PAYROLL")
STATUSES = {"S": "succeeded", "F": "failed (nothing posted)", "R": "succeeded and later reversed"}
REASON_CODES = {"E001": "insufficient funds", "E002": "no such or closed account", "E003": "name mismatch",
                "E004": "frozen or stopped", "E005": "no agreement", "E999": "other"}

DETAIL = Record("detail", fields=(
    Column("acct_date",    IsoDate()),
    Column("journal_no",   Text(blank=False, max_bytes=20)),
    Column("seq_no",       Int()),
    # Kept as text, not a code: an extract may carry channels no counterparty file mentions.
    Column("channel",      Text(blank=False)),
    Column("channel_ref",  Text(blank=False, max_bytes=64)),
    Column("batch_no",     Text(max_bytes=40)),
    Column("txn_time",     IsoTimestamp()),
    Column("account_no",   Text(blank=False, max_bytes=32)),
    Column("account_name", Text(blank=False)),
    Column("dr_cr",        Code({"D": "debit", "C": "credit"})),
    Column("amount_fen",   Int(positive=True)),
    Column("currency",     Code({"CNY": "renminbi"})),
    Column("status",       Code(STATUSES)),
    Column("reason_code",  Code(REASON_CODES, blank=True)),
    Column("reversal_of",  Text(max_bytes=20)),
    Column("memo",         Text()),
))
COLUMNS = DETAIL.names

LAYOUT = FileLayout(
    name="ledger.journal",
    framing="delimited", encoding="utf-8", delimiter=",", quoting="rfc4180", line_end=b"\n",
    empty_is_null=True,
    records=(heading("column_names", COLUMNS), DETAIL),
    key=("journal_no", "seq_no"),
)
