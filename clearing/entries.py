"""Accounting entries (会计分录) posted back to the core: specs/ledger.md, "The accounting entries file".

Vouchers are derived from the day's data alone and numbered from what they settle, so a rerun writes the same
vouchers with the same numbers (the same event never produces two vouchers). Every voucher balances.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from formats import registry
from formats.errors import Terminal
from formats.flag import write_flag
from recon.outcomes import BREAKS_SQL



class UnbalancedVoucher(Terminal):
    """A voucher whose debits and credits differ: a bug, never posted."""


class DuplicateVoucher(Terminal):
    """The same voucher line given twice for one file: the same event would be posted twice."""


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


def _differences(results: pa.Table, resolved: bool = False) -> list[tuple]:
    """Per break (business date, match key): (business_date, match_ref, outcomes, d, refs[, first resolved_on])
    where d = Σ counterparty money (status S, signed) − Σ ledger money (status S, signed); only breaks that move
    money (d ≠ 0). A row listed twice (same business date and record_ref) counts once."""
    first = "min(resolved_on) OVER (PARTITION BY business_date, match_ref)" if resolved else "NULL"
    con = duckdb.connect()
    try:
        con.register("r", results)
        return con.execute(f"""
            WITH rows AS (
                SELECT *, {first} AS first_resolved FROM r
                WHERE outcome IN {BREAKS_SQL} AND match_ref IS NOT NULL
                QUALIFY row_number() OVER (PARTITION BY business_date, record_ref ORDER BY outcome) = 1)
            SELECT business_date, match_ref, string_agg(DISTINCT outcome, '/' ORDER BY outcome) AS outcomes,
                   CAST(sum(CASE WHEN side = 'counterparty' AND status = 'S' THEN sign * amount_fen ELSE 0 END)
                      - sum(CASE WHEN side = 'ledger' AND status = 'S' THEN sign * amount_fen ELSE 0 END) AS BIGINT)
                     AS d,
                   string_agg(record_ref, ' ' ORDER BY record_ref) AS refs, min(first_resolved)
            FROM rows GROUP BY business_date, match_ref HAVING d <> 0 ORDER BY business_date, match_ref""").fetchall()
    finally:
        con.close()


def _suspense_voucher_no(ledger_channel: str, date: dt.date, match_ref: str) -> str:
    return f"SUS-{ledger_channel}-{date:%Y%m%d}-{match_ref}"


def suspense_vouchers(results: pa.Table, ledger_channel: str, clearing_account: str, date: dt.date) -> list[Line]:
    """One suspense voucher (挂账) per break that moves money, for the difference d between the two sides.

    d = Σ counterparty money (status S, signed) − Σ ledger money (status S, signed) over the break's key; the
    counterparty side larger debits the clearing account and credits SUSPENSE, the ledger side larger the reverse."""
    lines: list[Line] = []
    for _, match_ref, outcomes, d, refs, _ in _differences(results):
        memo = f"{ledger_channel} {date} suspense 挂账 for {outcomes} key {match_ref}"
        lines += pair(_suspense_voucher_no(ledger_channel, date, match_ref), clearing_account, "SUSPENSE", int(d),
                      memo, refs)
    return lines


def reversal_vouchers(resolved: pa.Table, ledger_channel: str, clearing_account: str, date: dt.date) -> list[Line]:
    """The reversing voucher of each resolved break's suspense voucher, for the entries file of `date`.

    `resolved`: the recon_result rows of resolved breaks (every row of the break's key on its business date, as
    `suspense_vouchers` saw them) with `resolved_on`. The suspense amount is recomputed exactly as it was posted
    and reversed by a new voucher dated `date`, never an edit of the old one. Its number derives from the break
    (`REV-` + the suspense voucher's number), and a break resolved more than once is reversed once, on the first
    resolution date: only breaks first resolved on `date` are reversed here."""
    lines: list[Line] = []
    for business_date, match_ref, outcomes, d, refs, resolved_on in _differences(resolved, resolved=True):
        if resolved_on != date:
            continue
        original = _suspense_voucher_no(ledger_channel, business_date, match_ref)
        memo = (f"{ledger_channel} {date} reversal 冲销 of suspense {original}: {outcomes} key {match_ref} of "
                f"{business_date} resolved")
        lines += pair(f"REV-{original}", "SUSPENSE", clearing_account, int(d), memo, refs)
    return lines


def write_entries(lines: list[Line], date: dt.date, path: Path) -> int:
    """Write the entries file (ledger.entries: UTF-8, header, CRLF) and its flag atomically; returns the number of
    lines. Every voucher must balance, and no line may be given twice (the same event posted twice)."""
    if len(set(lines)) != len(lines):
        twice = sorted({line.voucher_no for line in lines if lines.count(line) > 1})
        raise DuplicateVoucher(f"{path.name}: voucher(s) {', '.join(twice)} given twice; the same event is posted once")
    by_voucher: dict[str, list[Line]] = {}
    for line in lines:
        by_voucher.setdefault(line.voucher_no, []).append(line)
    rows = []
    for voucher, vlines in by_voucher.items():
        sums = {"D": 0, "C": 0}
        for n, line in enumerate(vlines, start=1):
            sums[line.dr_cr] += line.amount_fen
            rows.append({"voucher_no": voucher, "line_no": n, "acct_date": date, "account_no": line.account_no,
                         "dr_cr": line.dr_cr, "amount_fen": line.amount_fen, "currency": "CNY", "memo": line.memo,
                         "source_ref": line.source_ref})
        if sums["D"] != sums["C"]:
            raise UnbalancedVoucher(f"voucher {voucher}: debits {sums['D']} != credits {sums['C']}")
    registry.write(path, "ledger.entries", pa.Table.from_pylist(rows, schema=registry.get("ledger.entries")
                                                                 .arrow_schema()))
    write_flag(path, len(lines))
    return len(lines)
