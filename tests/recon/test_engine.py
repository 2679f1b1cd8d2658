"""One small two-sided case per outcome of the mission, conservation asserted on every one."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest


from formats.result import empty_quarantine
from formats.specs.unionpay.acomn import LAYOUT as ACOMN
from recon.channels import UNIONPAY_ACQ
from recon.engine import ConservationError, Inputs, check_conservation, reconcile, summarise

from .conftest import T, acomn, cp_table, journal, ledger_table


def quarantine(rows: list[dict] | None = None) -> pa.Table:
    q = empty_quarantine(ACOMN)
    q = q.append_column("_file", pa.array([], pa.string())) if not rows else q
    if rows:
        q = pa.Table.from_pylist(rows, schema=q.schema).append_column("_file", pa.array(["IND26112101ACOMN"] * len(rows)))
    return q


def run(cp_rows, lg_rows, *, date=T, carried=None, q_rows=None):
    cp, lg = cp_table(cp_rows), ledger_table(lg_rows)
    q = quarantine(q_rows)
    res = reconcile(UNIONPAY_ACQ, date, Inputs(cp, q, lg, carried), "k")
    n_carried = 0 if carried is None else sum(1 for r in carried.to_pylist() if r["outcome"] == "PENDING")
    carried_fen = 0 if carried is None else sum(r["amount_fen"] for r in carried.to_pylist() if r["outcome"] == "PENDING")
    expected = {"counterparty": (cp.num_rows + q.num_rows, sum(cp["amount_fen"].to_pylist()) + sum(a or 0 for a in q["amount_fen"].to_pylist())),
                "ledger": (lg.num_rows + n_carried, sum(lg["amount_fen"].to_pylist()) + carried_fen)}
    check_conservation(summarise(res), {k: v for k, v in expected.items() if v[0]})
    return {(r["side"], r["match_ref"] or r["record_ref"]): r for r in res.to_pylist()}


def test_matched():
    out = run([acomn("000001")], [journal("0000011121100000")])
    assert out[("counterparty", "0000011121100000")]["outcome"] == "MATCHED"
    assert out[("ledger", "0000011121100000")]["outcome"] == "MATCHED"
    assert out[("counterparty", "0000011121100000")]["journal_no"] == "J0000011121100000"


def test_amount_mismatch_reason_names_the_difference():
    out = run([acomn("000002", amount=10150)], [journal("0000021121100000", amount=10000)])
    r = out[("counterparty", "0000021121100000")]
    assert r["outcome"] == "AMOUNT_MISMATCH"
    assert "differs by 150 fen" in r["reason"]


def test_status_mismatch_declined_by_cups_but_posted():
    out = run([acomn("000003", resp="51")], [journal("0000031121100000", status="S")])
    assert out[("counterparty", "0000031121100000")]["outcome"] == "STATUS_MISMATCH"


def test_declined_without_ledger_row_is_matched():
    out = run([acomn("000004", resp="51")], [])
    assert out[("counterparty", "0000041121100000")]["outcome"] == "MATCHED"


def test_counterparty_only_names_nearest_candidate():
    out = run([acomn("000005", time="1121100000")], [journal("0000991121100300", time="2026-11-21 10:03:00")])
    r = out[("counterparty", "0000051121100000")]
    assert r["outcome"] == "COUNTERPARTY_ONLY"
    assert "3 minutes later" in r["reason"] and "0000991121100300" in r["reason"]
    assert out[("ledger", "0000991121100300")]["outcome"] == "LEDGER_ONLY"


def test_duplicate_marks_every_record_sharing_the_key():
    out_rows = reconcile(UNIONPAY_ACQ, T, Inputs(cp_table([acomn("000006"), acomn("000006")]), quarantine(),
                                                 ledger_table([journal("0000061121100000")]), None), "k").to_pylist()
    assert [r["outcome"] for r in out_rows] == ["DUPLICATE"] * 3


def test_reversal_pair_matches_reversed_original():
    cp = [acomn("000007", time="1121110000"),
          acomn("000008", time="1121110500", msg="0420", orig_stan="000007", orig_time="1121110000")]
    lg = [journal("0000071121110000", status="R", journal_no="J7"),
          journal("0000081121110500", dr_cr="C", reversal_of="J7", journal_no="J8")]
    out = run(cp, lg)
    assert {r["outcome"] for r in out.values()} == {"MATCHED"}


def test_reversed_at_cups_but_not_in_ledger_is_status_mismatch():
    cp = [acomn("000007", time="1121110000"),
          acomn("000008", time="1121110500", msg="0420", orig_stan="000007", orig_time="1121110000")]
    lg = [journal("0000071121110000", status="S", journal_no="J7")]
    out = run(cp, lg)
    assert out[("counterparty", "0000071121110000")]["outcome"] == "STATUS_MISMATCH"
    assert out[("counterparty", "0000081121110500")]["outcome"] == "COUNTERPARTY_ONLY"


def test_after_cutoff_is_pending_then_matches_next_day():
    lg_t = [journal("0000091121233000", time="2026-11-21 23:30:00")]
    day1 = reconcile(UNIONPAY_ACQ, T, Inputs(cp_table([]), quarantine(), ledger_table(lg_t), None), "k")
    assert day1.to_pylist()[0]["outcome"] == "PENDING"
    t2 = T + dt.timedelta(days=1)
    out = run([acomn("000009", time="1121233000")], [], date=t2, carried=day1)
    assert out[("counterparty", "0000091121233000")]["outcome"] == "MATCHED"
    assert out[("ledger", "0000091121233000")]["outcome"] == "MATCHED"
    assert "carried from 2026-11-21" in out[("ledger", "0000091121233000")]["reason"]


def test_after_cutoff_missing_next_day_becomes_ledger_only():
    lg_t = [journal("0000101121233000", time="2026-11-21 23:30:00")]
    day1 = reconcile(UNIONPAY_ACQ, T, Inputs(cp_table([]), quarantine(), ledger_table(lg_t), None), "k")
    out = run([], [], date=T + dt.timedelta(days=1), carried=day1)
    r = out[("ledger", "0000101121233000")]
    assert r["outcome"] == "LEDGER_ONLY" and "window ended" in r["reason"]


def test_quarantined_record_is_counted_with_its_reason():
    q = [{"_line": 2, "_record": "detail", "_field": "amount_fen", "_expected": "digits", "_actual": "12X",
          "_raw": b"...", "amount_fen": None}]
    out = run([acomn("000011")], [journal("0000111121100000")], q_rows=q)
    r = out[("counterparty", "IND26112101ACOMN:2")]
    assert r["outcome"] == "QUARANTINED" and "amount_fen" in r["reason"]


def test_conservation_violation_raises():
    res = reconcile(UNIONPAY_ACQ, T, Inputs(cp_table([acomn("000012")]), quarantine(), ledger_table([]), None), "k")
    with pytest.raises(ConservationError, match="counterparty side"):
        check_conservation(summarise(res), {"counterparty": (2, 20000)})


def test_pan_is_masked_and_hashed():
    out = run([acomn("000013")], [journal("0000131121100000")])
    r = out[("counterparty", "0000131121100000")]
    assert r["account_masked"] == "622202*********0123"
    assert r["account_hash"] == out[("ledger", "0000131121100000")]["account_hash"]
    assert "6222021234567890123" not in str(r)


def test_parquet_path_gives_the_same_rows_in_the_same_order(tmp_path):
    """reconcile_to_parquet (the volume path: Parquet in, Parquet out) and reconcile (Arrow) agree row for row, in
    one order (the counterparty's lines, its quarantined lines, the journal by record_ref), and a rerun writes the
    same bytes."""
    import pyarrow.parquet as pq
    from recon.engine import reconcile_to_parquet
    q_rows = [{"_line": 2, "_record": "detail", "_field": "pan", "_expected": "digits", "_actual": "62220212345X",
               "_raw": b"...", "amount_fen": 500}]
    cp = cp_table([acomn("000021"), acomn("000022", amount=10100), acomn("000023", resp="51"), acomn("000024")])
    cp = cp.set_column(cp.schema.get_field_index("_line"), "_line", pa.array([1, 3, 4, 5], pa.int64()))
    lg = ledger_table([journal("0000211121100000"), journal("0000221121100000"),
                       journal("0000991121100100", time="2026-11-21 10:01:00"),
                       journal("0000251121233000", time="2026-11-21 23:30:00")])
    paths = {}
    for name, table in (("cp", cp), ("q", quarantine(q_rows)), ("lg", lg)):
        paths[name] = tmp_path / f"{name}.parquet"
        pq.write_table(table, paths[name])
    arrow = reconcile(UNIONPAY_ACQ, T, Inputs(cp, quarantine(q_rows), lg, None), "k")
    outs = [tmp_path / "r1.parquet", tmp_path / "r2.parquet"]
    for out in outs:
        n = reconcile_to_parquet(UNIONPAY_ACQ, T, Inputs(paths["cp"], paths["q"], paths["lg"], None), "k", out)
        assert n == arrow.num_rows == 9
    assert pq.read_table(outs[0]).to_pylist() == arrow.to_pylist()
    assert outs[0].read_bytes() == outs[1].read_bytes()
    rows = arrow.to_pylist()
    # the counterparty's records in file order, its quarantined lines after them, the journal by record_ref
    assert [(r["side"], r["source_line"]) for r in rows[:5]] == [("counterparty", line) for line in (1, 3, 4, 5, 2)]
    assert [r["record_ref"] for r in rows[5:]] == [f"J{ref}:1" for ref in ("0000211121100000", "0000221121100000",
                                                                          "0000251121233000", "0000991121100100")]
    assert [r["outcome"] for r in rows] == ["MATCHED", "AMOUNT_MISMATCH", "MATCHED", "COUNTERPARTY_ONLY",
                                            "QUARANTINED", "MATCHED", "AMOUNT_MISMATCH", "PENDING", "LEDGER_ONLY"]
    assert "(masked)" in rows[4]["reason"] and "62220212345X" not in rows[4]["reason"]
    # the one-sided pair found each other as nearest candidates (same card and amount, 1 minute apart)
    assert "1 minutes later" in rows[3]["reason"] and "0000991121100100" in rows[3]["reason"]
    assert "1 minutes earlier" in rows[8]["reason"] and "IND26112101ACOMN:5" in rows[8]["reason"]


def test_parsed_files_give_the_rows_of_one_table(tmp_path):
    """The pipeline gives the engine the parsed Parquet files (ParsedFile: `_file` and header columns added by the
    engine) rather than one table: the rows are the same, also when a reversal (0420) in the second file reverses a
    purchase of the first."""
    import pyarrow.parquet as pq
    from recon.engine import ParsedFile
    purchases = [acomn(f"0000{i:02d}", line=i) for i in range(1, 6)]
    reversal = acomn("000090", time="1121100500", msg="0420", orig_stan="000002", orig_time="1121100000", line=6)
    cp = cp_table([*purchases, reversal])
    lg = ledger_table([journal(f"0000{i:02d}1121100000") for i in (1, 2, 3, 5)]
                      + [journal("0000991121100100", time="2026-11-21 10:01:00"),
                         journal("0000901121100500", status="S")])
    one_table = reconcile(UNIONPAY_ACQ, T, Inputs(cp, quarantine(), lg, None), "k")
    assert dict(zip(one_table["record_ref"].to_pylist(), one_table["status"].to_pylist()))[
        "IND26112101ACOMN:2"] == "R"
    files = []
    for part in (cp.slice(0, 3), cp.slice(3)):
        path = tmp_path / f"part{len(files)}.parquet"
        pq.write_table(part.drop_columns(["_file"]), path)
        files.append(ParsedFile(path, "IND26112101ACOMN", {}))
    assert reconcile(UNIONPAY_ACQ, T, Inputs(files, quarantine(), lg, None), "k").to_pylist() == one_table.to_pylist()
