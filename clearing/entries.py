"""Accounting entries (会计分录) posted back to the core: specs/ledger.md, "The accounting entries file".

Vouchers are derived from the day's data alone and numbered from what they settle, so a rerun writes the same
vouchers with the same numbers (the same event never produces two vouchers). Every voucher balances.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from formats.errors import Terminal
from formats.flag import write_flag

COLUMNS = ("voucher_no", "line_no", "acct_date", "account_no", "dr_cr", "amount_fen", "currency", "memo", "source_ref")


class UnbalancedVoucher(Terminal):
    """A voucher whose debits and credits differ: a bug, never posted."""


@dataclass(frozen=True)
class Line:
    voucher_no: str
    account_no: str
    dr_cr: str
    amount_fen: int
    memo: str
    source_ref: str


def pair(voucher_no: str, debit: str, credit: str, amount_fen: int, memo: str, source_ref: str) -> list[Line]:
    """A two-line voucher moving `amount_fen` from `credit` to `debit`; a negative amount swaps the legs."""
    if amount_fen == 0:
        return []
    if amount_fen < 0:
        debit, credit, amount_fen = credit, debit, -amount_fen
    return [Line(voucher_no, debit, "D", amount_fen, memo, source_ref),
            Line(voucher_no, credit, "C", amount_fen, memo, source_ref)]


def suspense_vouchers(results: pa.Table, ledger_channel: str, clearing_account: str, date: dt.date) -> list[Line]:
    """One suspense voucher (挂账) per break that moves money, for the difference d between the two sides.

    d = Σ counterparty money (status S, signed) − Σ ledger money (status S, signed) over the break's key; the
    counterparty side larger debits the clearing account and credits SUSPENSE, the ledger side larger the reverse."""
    con = duckdb.connect()
    try:
        con.register("r", results)
        rows = con.execute(f"""
            SELECT match_ref, string_agg(DISTINCT outcome, '/' ORDER BY outcome) AS outcomes,
                   sum(CASE WHEN side = 'counterparty' AND status = 'S' THEN sign * amount_fen ELSE 0 END)
                 - sum(CASE WHEN side = 'ledger' AND status = 'S' THEN sign * amount_fen ELSE 0 END) AS d,
                   string_agg(record_ref, ' ' ORDER BY record_ref) AS refs
            FROM r
            WHERE outcome IN ('AMOUNT_MISMATCH', 'STATUS_MISMATCH', 'COUNTERPARTY_ONLY', 'LEDGER_ONLY', 'DUPLICATE')
              AND match_ref IS NOT NULL
            GROUP BY match_ref HAVING d <> 0 ORDER BY match_ref""").fetchall()
    finally:
        con.close()
    lines: list[Line] = []
    for match_ref, outcomes, d, refs in rows:
        voucher = f"SUS-{ledger_channel}-{date:%Y%m%d}-{match_ref}"
        memo = f"{ledger_channel} {date} suspense 挂账 for {outcomes} key {match_ref}"
        lines += pair(voucher, clearing_account, "SUSPENSE", int(d), memo, refs)
    return lines


def write_entries(lines: list[Line], date: dt.date, path: Path) -> int:
    """Write the entries CSV (UTF-8, header, CRLF) and its flag atomically; returns the number of lines."""
    by_voucher: dict[str, list[Line]] = {}
    for line in lines:
        by_voucher.setdefault(line.voucher_no, []).append(line)
    total = {"D": 0, "C": 0}
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")
    out.writerow(COLUMNS)
    for voucher, vlines in by_voucher.items():
        sums = {"D": 0, "C": 0}
        for n, line in enumerate(vlines, start=1):
            sums[line.dr_cr] += line.amount_fen
            out.writerow((voucher, n, date.isoformat(), line.account_no, line.dr_cr, line.amount_fen, "CNY",
                          line.memo, line.source_ref))
        if sums["D"] != sums["C"]:
            raise UnbalancedVoucher(f"voucher {voucher}: debits {sums['D']} != credits {sums['C']}")
        total["D"] += sums["D"]
        total["C"] += sums["C"]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue().encode("utf-8"))
    os.replace(tmp, path)
    write_flag(path, len(lines))
    return len(lines)
