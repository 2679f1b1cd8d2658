"""The chain on the sample nights, without Airflow: outcomes, conservation, clearing, reruns, carry-forward."""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from duizhang import pipeline
from duizhang.workdir import Workdir
from tests.accounts import account
from formats.errors import FlagMismatch

NIGHTS = Path(__file__).resolve().parents[1] / "sample_files" / "nights"
T1, T2 = dt.date(2026, 11, 21), dt.date(2026, 11, 22)

# What each sample record was built to exercise (sample_files/nights/make_nights.py), by match key.
EXPECTED_T1 = {
    ("counterparty", "1000011121081502"): "MATCHED",
    ("counterparty", "1000021121091133"): "MATCHED",
    ("counterparty", "1000051121120001"): "MATCHED",            # refund
    ("counterparty", "1000061121123000"): "MATCHED",            # withdrawal
    ("counterparty", "1000071121130500"): "AMOUNT_MISMATCH",
    ("ledger", "1000071121130500"): "AMOUNT_MISMATCH",
    ("counterparty", "1000081121131000"): "MATCHED",            # declined, no journal row
    ("counterparty", "1000091121132000"): "STATUS_MISMATCH",    # declined by CUPS, posted by the bank
    ("counterparty", "1000101121140000"): "MATCHED",            # reversed purchase ...
    ("counterparty", "1000111121140200"): "MATCHED",            # ... and its 0420
    ("ledger", "1000101121140000"): "MATCHED",
    ("counterparty", "1000121121150000"): "COUNTERPARTY_ONLY",
    ("ledger", "1000991121150300"): "LEDGER_ONLY",
    ("counterparty", "1000131121160000"): "DUPLICATE",
    ("ledger", "1000131121160000"): "DUPLICATE",
    ("counterparty", "1000151120233012"): "COUNTERPARTY_ONLY",  # 20th after 23:00: CUPS's day 21, no journal row
    ("ledger", "1000171121180000"): "LEDGER_ONLY",              # its CUPS record is quarantined
    ("ledger", "1000191121234010"): "PENDING",                  # after the cut-off
}


def run(wd: Workdir, date: dt.date, source: Path | None = None) -> dict:
    source = source or account("unionpay_acq", wd.root.parent)
    return pipeline.run("unionpay_acq", date, str(source), str(NIGHTS / "ledger"), wd)


def results(wd: Workdir, date: dt.date) -> list[dict]:
    return wd.read_table("recon_result", "unionpay_acq", date).to_pylist()


def outputs(wd: Workdir, date: dt.date) -> dict[str, str]:
    files = [p for p in wd.outbox("unionpay_acq", date).rglob("*") if p.is_file()]
    files += (wd.root / "warehouse").rglob("*.parquet")
    return {str(p.relative_to(wd.root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


@pytest.fixture
def wd(tmp_path) -> Workdir:
    return Workdir(tmp_path / "work")


def test_every_record_gets_its_outcome(wd):
    summary = run(wd, T1)
    rows = results(wd, T1)
    got = {(r["side"], r["match_ref"]): r["outcome"] for r in rows if r["match_ref"]}
    for key, outcome in EXPECTED_T1.items():
        assert got[key] == outcome, key
    quarantined = [r for r in rows if r["outcome"] == "QUARANTINED"]
    assert [(r["source_line"], "amount_fen" in r["reason"]) for r in quarantined] == [(17, True)]
    # The CNAPS row of the same journal is not this channel's.
    assert not any(r["match_ref"] and r["match_ref"].startswith("beps") for r in rows)
    c = summary["match"]["conservation"]
    assert c["counterparty"]["records"] == 18 and c["ledger"]["records"] == 16


def test_reasons_explain_breaks(wd):
    run(wd, T1)
    by_key = {(r["side"], r["match_ref"]): r for r in results(wd, T1)}
    assert "differs by 150 fen" in by_key[("counterparty", "1000071121130500")]["reason"]
    cp_only = by_key[("counterparty", "1000121121150000")]["reason"]
    assert "3 minutes later" in cp_only and "1000991121150300" in cp_only


def test_clearing_net_and_balanced_entries(wd):
    summary = run(wd, T1)
    # Approved, unreversed, readable records: 409,280 fen of purchases and withdrawals less a 45,000 refund;
    # 12 of them carry fees of C35 D12 D6 (17 fen each).
    assert summary["clearing"]["transactions_fen"] == 364280
    assert summary["clearing"]["fees_fen"] == 12 * 17
    entries = Path(summary["clearing"]["entries_file"])
    rows = list(csv.DictReader(io.StringIO(entries.read_bytes().decode("utf-8"))))
    assert entries.read_bytes().count(b"\r\n") == len(rows) + 1
    vouchers: dict[str, int] = {}
    for r in rows:
        vouchers[r["voucher_no"]] = vouchers.get(r["voucher_no"], 0) + (1 if r["dr_cr"] == "D" else -1) * int(r["amount_fen"])
    assert vouchers and all(v == 0 for v in vouchers.values())
    txn = [r for r in rows if r["voucher_no"].endswith("-TXN")]
    assert {(r["account_no"], r["dr_cr"], int(r["amount_fen"])) for r in txn} == {("CUPS-CLR", "D", 364280),
                                                                                 ("MERCH-STL", "C", 364280)}
    # The amount mismatch (CUPS 150 fen more) is put in suspense against the CUPS clearing account.
    sus = [r for r in rows if r["voucher_no"] == "SUS-UNIONPAY_ACQ-20261121-1000071121130500"]
    assert {(r["account_no"], r["dr_cr"], int(r["amount_fen"])) for r in sus} == {("CUPS-CLR", "D", 150),
                                                                                 ("SUSPENSE", "C", 150)}
    assert (entries.parent / (entries.name + ".ok")).exists()


def test_rerun_is_byte_identical_and_not_stored_twice(wd):
    run(wd, T1)
    first = outputs(wd, T1)
    run(wd, T1)
    assert outputs(wd, T1) == first
    with wd.control() as db:
        assert db.execute("SELECT count(*) FROM files").fetchone()[0] == 1


def test_pending_item_matches_next_day_and_reruns_agree(wd):
    run(wd, T1)
    run(wd, T2)
    day2 = {(r["side"], r["match_ref"]): r for r in results(wd, T2)}
    carried = day2[("ledger", "1000191121234010")]
    assert carried["outcome"] == "MATCHED" and carried["origin_date"] == T1
    assert day2[("counterparty", "1000191121234010")]["outcome"] == "MATCHED"
    before = outputs(wd, T1)
    run(wd, T1)   # rerun T after T+1: state is derived, so T's results do not change
    assert outputs(wd, T1) == before


def test_changed_file_under_same_name_is_a_new_version(wd, tmp_path):
    account = tmp_path / "account"
    shutil.copytree(NIGHTS / "unionpay_acq", account)
    run(wd, T1, account)
    data = account / "outbox" / "20261121" / "IND26112101ACOMN"
    raw = bytearray(data.read_bytes())
    raw[62:74] = b"000000012900"   # the first record's amount: 128.00 -> 129.00 yuan
    data.write_bytes(bytes(raw))
    from formats.flag import write_flag
    write_flag(data, 18)
    run(wd, T1, account)
    with wd.control() as db:
        versions = [tuple(r) for r in db.execute("SELECT name, version FROM files ORDER BY version")]
    assert versions == [("IND26112101ACOMN", 1), ("IND26112101ACOMN", 2)]
    first = {(r["side"], r["match_ref"]): r for r in results(wd, T1)}
    assert first[("counterparty", "1000011121081502")]["outcome"] == "AMOUNT_MISMATCH"


def test_file_that_disagrees_with_its_flag_is_refused(wd, tmp_path):
    account = tmp_path / "account"
    shutil.copytree(NIGHTS / "unionpay_acq", account)
    data = account / "outbox" / "20261121" / "IND26112101ACOMN"
    data.write_bytes(data.read_bytes()[:-502])   # the last record lost in transit
    with pytest.raises(FlagMismatch, match="size"):
        run(wd, T1, account)
    assert not (wd.root / "warehouse").exists() or not list((wd.root / "warehouse").rglob("*.parquet"))


def test_ledger_from_postgresql_gives_the_same_results_as_the_csv_extract(wd, tmp_path, monkeypatch):
    """The core journal read through SQLAlchemy from this machine's PostgreSQL reconciles exactly as the CSV."""
    monkeypatch.setenv("DUIZHANG_PAN_HASH_KEY", "one key for both workdirs")
    import sqlalchemy as sa

    from connectors.ledger import load_journal_table
    from formats import registry
    from formats.flag import parse_flag

    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    csv_path = NIGHTS / "ledger" / "CORE_JOURNAL_20261121.csv"
    flag = parse_flag(csv_path.with_name(csv_path.name + ".ok").read_bytes())
    journal = registry.read(csv_path, "ledger.journal", flag).records.drop(["_line"])
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS core_journal"))
    try:
        load_journal_table(engine, journal)
        pipeline.run("unionpay_acq", T1, str(account("unionpay_acq", tmp_path)), url, wd)
        from_db = wd.read_table("recon_result", "unionpay_acq", T1)
        other = Workdir(tmp_path / "csv")
        run(other, T1)
        from_csv = other.read_table("recon_result", "unionpay_acq", T1)
        for name in from_csv.column_names:
            assert from_db[name].equals(from_csv[name]), name
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS core_journal"))


def test_an_unchanged_ledger_extract_is_read_once_for_the_channels_of_a_date(wd, tmp_path, monkeypatch):
    ledger = tmp_path / "ledger"
    shutil.copytree(NIGHTS / "ledger", ledger)
    reads, read_to_parquet = [], pipeline.registry.read_to_parquet

    def counted(path, *args, **kwargs):
        reads.append(path)
        return read_to_parquet(path, *args, **kwargs)
    monkeypatch.setattr(pipeline.registry, "read_to_parquet", counted)
    out = pipeline.load_ledger(T1, str(ledger), wd)
    first = out.read_bytes()
    assert pipeline.load_ledger(T1, str(ledger), wd) == out and len(reads) == 1   # the second channel: not read again
    assert out.read_bytes() == first

    # the core sends the extract again (a correction): read again, whatever else stayed the same
    extract = ledger / f"CORE_JOURNAL_{T1:%Y%m%d}.csv"
    extract.write_bytes(extract.read_bytes())
    pipeline.load_ledger(T1, str(ledger), wd)
    assert len(reads) == 2 and out.read_bytes() == first
