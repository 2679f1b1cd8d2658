"""Suspense (挂账) and its reversal: balanced vouchers, numbered from the break so that a rerun or a second
resolution never posts an event twice; the entries file read back with the format engine (every voucher balances)."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from clearing.entries import DuplicateVoucher, UnbalancedVoucher, Line, reversal_vouchers, suspense_vouchers, \
    write_entries
from formats import registry
from formats.flag import parse_flag
from tests.clearing.conftest import RESULT_SCHEMA

T = dt.date(2026, 11, 21)
RESOLVED = dt.date(2026, 11, 24)


def row(side: str, key: str, outcome: str, amount: int, status: str = "S", sign: int = 1,
        date: dt.date = T) -> dict:
    return {f.name: None for f in RESULT_SCHEMA} | {
        "channel": "utility", "business_date": date, "side": side, "record_ref": f"{side}:{key}",
        "match_ref": key, "outcome": outcome, "reason": "constructed", "amount_fen": amount, "status": status,
        "sign": sign}


def breaks() -> pa.Table:
    return pa.Table.from_pylist([
        row("counterparty", "K1", "AMOUNT_MISMATCH", 10000), row("ledger", "K1", "AMOUNT_MISMATCH", 9000),
        row("ledger", "K2", "LEDGER_ONLY", 5000),
        row("counterparty", "K3", "STATUS_MISMATCH", 700), row("ledger", "K3", "STATUS_MISMATCH", 700, "F"),
        row("counterparty", "K4", "COUNTERPARTY_ONLY", 300, "F"),              # declined: moves no money
        row("counterparty", "K5", "MATCHED", 100), row("ledger", "K5", "MATCHED", 100),
        row("counterparty", "K6", "QUARANTINED", 42),
    ], schema=RESULT_SCHEMA)


def vouchers(lines: list[Line]) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for line in lines:
        out.setdefault(line.voucher_no, []).append((line.account_no, line.dr_cr, line.amount_fen))
    return out


def test_suspense_for_each_break_that_moves_money_balanced():
    got = vouchers(suspense_vouchers(breaks(), "UTILITY", "UTIL-CLR", T))
    assert got == {
        "SUS-UTILITY-20261121-K1": [("UTIL-CLR", "D", 1000), ("SUSPENSE", "C", 1000)],   # counterparty larger
        "SUS-UTILITY-20261121-K2": [("SUSPENSE", "D", 5000), ("UTIL-CLR", "C", 5000)],   # ledger larger
        "SUS-UTILITY-20261121-K3": [("UTIL-CLR", "D", 700), ("SUSPENSE", "C", 700)],
    }


def test_a_resolved_break_gets_a_reversing_voucher_dated_the_resolution(tmp_path):
    results = breaks()
    resolved = results.filter(pa.compute.is_in(results["match_ref"], pa.array(["K1", "K2"]))).append_column(
        "resolved_on", pa.array([RESOLVED] * 3, pa.date32()))
    lines = reversal_vouchers(resolved, "UTILITY", "UTIL-CLR", RESOLVED)
    assert vouchers(lines) == {
        "REV-SUS-UTILITY-20261121-K1": [("SUSPENSE", "D", 1000), ("UTIL-CLR", "C", 1000)],
        "REV-SUS-UTILITY-20261121-K2": [("UTIL-CLR", "D", 5000), ("SUSPENSE", "C", 5000)],
    }
    # the suspense and its reversal leave nothing on SUSPENSE for the resolved keys
    posted = suspense_vouchers(results, "UTILITY", "UTIL-CLR", T) + lines
    on_suspense = sum((1 if ln.dr_cr == "D" else -1) * ln.amount_fen for ln in posted
                      if ln.account_no == "SUSPENSE" and ln.voucher_no.endswith(("K1", "K2")))
    assert on_suspense == 0
    path = tmp_path / "ENTRIES_UTILITY_20261124_01.csv"
    write_entries(lines, RESOLVED, path)
    back = registry.read(path, "ledger.entries", parse_flag(path.with_name(path.name + ".ok").read_bytes()))
    assert all(c.ok for c in back.controls)
    assert set(back.records["acct_date"].to_pylist()) == {RESOLVED}             # a new voucher, dated the resolution


def test_a_break_resolved_twice_is_reversed_once_on_its_first_resolution():
    k2 = breaks().filter(pa.compute.equal(breaks()["match_ref"], "K2"))
    twice = pa.concat_tables([k2, k2]).append_column(
        "resolved_on", pa.array([RESOLVED, RESOLVED + dt.timedelta(days=3)], pa.date32()))
    assert len(reversal_vouchers(twice, "UTILITY", "UTIL-CLR", RESOLVED)) == 2       # one voucher, two lines
    assert reversal_vouchers(twice, "UTILITY", "UTIL-CLR", RESOLVED + dt.timedelta(days=3)) == []


def test_a_rerun_writes_the_same_entries_and_the_same_event_is_never_posted_twice(tmp_path):
    first = suspense_vouchers(breaks(), "UTILITY", "UTIL-CLR", T)
    again = suspense_vouchers(breaks().take(list(reversed(range(breaks().num_rows)))), "UTILITY", "UTIL-CLR", T)
    assert first == again
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_entries(first, T, a)
    write_entries(again, T, b)
    assert a.read_bytes() == b.read_bytes()
    with pytest.raises(DuplicateVoucher, match="SUS-UTILITY-20261121-K1"):
        write_entries(first + first[:2], T, tmp_path / "twice.csv")
    assert not (tmp_path / "twice.csv").exists()


def test_an_unbalanced_voucher_is_never_written(tmp_path):
    lines = [Line("V1", "UTIL-CLR", "D", 100, "m", "r"), Line("V1", "SUSPENSE", "C", 99, "m", "r")]
    with pytest.raises(UnbalancedVoucher, match="V1"):
        write_entries(lines, T, tmp_path / "e.csv")
    assert not (tmp_path / "e.csv").exists()
