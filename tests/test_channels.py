"""Every channel's sample nights through the chain (pipeline.run, as `duizhang run CHANNEL`): the outcome of every
record as sample_files/nights/make_nights.py built it, each cardinality, the carry-forward from the 21st to the
22nd, conservation, byte-identical reruns, and a rerun of T after T+1 giving the same results."""
from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import pytest

from duizhang import pipeline
from duizhang.workdir import Workdir
from tests.accounts import account

NIGHTS = Path(__file__).resolve().parents[1] / "sample_files" / "nights"
T1, T2 = dt.date(2026, 11, 21), dt.date(2026, 11, 22)

M, AM, SM, CO, LO, DU, PE, QU = ("MATCHED", "AMOUNT_MISMATCH", "STATUS_MISMATCH", "COUNTERPARTY_ONLY", "LEDGER_ONLY",
                                 "DUPLICATE", "PENDING", "QUARANTINED")


def j(channel_digit: int, date: dt.date, n: int) -> str:
    """The record_ref of sample journal row n of a channel (make_nights.journal numbering)."""
    return f"{date:%Y%m%d}{channel_digit}{n:011d}:1"


def lines(file: str, outcomes: list[str], first: int = 2) -> dict[str, str]:
    return {f"{file}:{first + i}": o for i, o in enumerate(outcomes)}


def ledger(digit: int, date: dt.date, outcomes: list[str]) -> dict[str, str]:
    return {j(digit, date, n): o for n, o in enumerate(outcomes, start=1)}


CNAPS_21 = "CNAPS2_DZMX_313100000013_20261121_01.txt"
CNAPS_22 = "CNAPS2_DZMX_313100000013_20261122_01.txt"
TIPS_PACK_21 = "TIPS_3102_13201000000_20261121_00000001.xml"
BDC_A, BDC_B = "BDC_BAT_32010000000000120261121000001.DAT", "BDC_BAT_32010000000000120261121000002.DAT"

# (reconciliation, date) -> {record_ref: outcome}, for every record that enters
EXPECTED = {
    ("cnaps2", T1): {
        **lines(CNAPS_21, [M, M, M, M, SM, AM, AM, PE, PE, PE, CO, DU, QU]),
        "20261121000000000020:1": M,                                  # the CNAPS row of the UnionPay night's journal
        **ledger(1, T1, [None, M, M, SM, AM, AM, PE, PE, LO, DU, DU]),
    },
    ("cnaps2", T2): {
        f"{CNAPS_21}:9": M, f"{CNAPS_21}:10": M,                      # carried PR05, closed by the 22nd's PR00
        f"{CNAPS_21}:11": SM,                                         # PR05 never settled: window ended
        **lines(CNAPS_22, [M, M, M]),
        j(1, T1, 7): M,                                               # debited on the 21st, settled on the 22nd
        j(1, T1, 8): SM,
        **ledger(1, T2, [M, M]),
    },
    ("tips", T1): {**{f"{TIPS_PACK_21}:{line}": o for line, o in zip((30, 50, 70, 90, 110), [M, M, CO, DU, AM])},
                   **ledger(2, T1, [M, M, DU, DU, AM, LO])},
    ("tips_3111", T1): {"TIPS_3111_313301000019_20261121_0002_1.xml:28": M,
                        "TIPS_3111_313301000019_20261121_0002_1.xml:40": AM,
                        "TIPS_3111_313301000019_20261121_0002_2.xml:28": CO,
                        "TIPS_3111_313301000019_20261121_0002_2.xml:40": DU,
                        # the F row (2) is not a successful deduction: not on this reconciliation's ledger side
                        j(2, T1, 1): M, j(2, T1, 3): DU, j(2, T1, 4): DU, j(2, T1, 5): AM, j(2, T1, 6): LO},
    ("tips", T2): {**{f"TIPS_3102_13201000000_20261122_00000002.xml:{line}": M for line in (30, 50)},
                   **ledger(2, T2, [M, M])},
    ("tips_3111", T2): {"TIPS_3111_313301000019_20261122_0001_1.xml:28": M, j(2, T2, 1): M},
    ("housing_fund", T1): {**lines(BDC_A, [M, M, M]), **lines(BDC_B, [M, CO, M, QU]),
                           **ledger(3, T1, [M, M, M, M, M, M, AM])},
    ("housing_fund", T2): {"BDC_BAT_32010000000000120261122000001.DAT:2": M, **ledger(3, T2, [M, M])},
    ("utility", T1): {**lines("DK_WATER001_20261121_01.txt", [M, M, AM, CO, M]),
                      **lines("DK_POWER001_20261121_01.txt", [M, DU]),
                      **ledger(4, T1, [M, M, AM, M, M, M, DU, DU, AM])},
    ("utility", T2): {**lines("DK_WATER001_20261122_01.txt", [M, M]), **ledger(4, T2, [M, M, M])},
    ("payroll", T1): {**lines("DF_EMP0000001_20261121_01.xlsx", [M, M, M, CO], first=6),
                      **lines("DF_EMP0000002_20261121_01.csv", [M, M, QU], first=4),
                      **ledger(5, T1, [M, M, M, AM, AM, M, M, M])},
    ("payroll", T2): {**lines("DF_EMP0000001_20261122_01.csv", [M, M], first=4), **ledger(5, T2, [M, M, M])},
}
EXPECTED[("cnaps2", T1)].pop(j(1, T1, 1))  # CNAPS journal row 1 is not used (the UnionPay night's row stands in)
CHANNELS = ["cnaps2", "tips", "housing_fund", "utility", "payroll"]


def run(wd: Workdir, channel: str, date: dt.date, source: Path | None = None) -> dict:
    source = source or account(channel, wd.root.parent)
    return pipeline.run(channel, date, str(source), str(NIGHTS / "ledger"), wd)


def outcomes(wd: Workdir, recon: str, date: dt.date) -> dict[str, str]:
    rows = wd.read_table("recon_result", recon, date).to_pylist()
    assert len({r["record_ref"] for r in rows}) == len(rows), "one result per record"
    return {r["record_ref"]: r["outcome"] for r in rows}


def fingerprint(wd: Workdir) -> dict[str, str]:
    files = [*(wd.root / "warehouse").rglob("*.parquet"), *(wd.root / "outbox").rglob("*.*")]
    return {str(p.relative_to(wd.root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> Workdir:
    wd = Workdir(tmp_path_factory.mktemp("channels") / "work")
    for channel in CHANNELS:
        for date in (T1, T2):
            run(wd, channel, date)
    return wd


@pytest.mark.parametrize("recon,date", sorted(EXPECTED, key=str))
def test_every_record_gets_its_outcome(nights, recon, date):
    assert outcomes(nights, recon, date) == EXPECTED[(recon, date)]


@pytest.mark.parametrize("channel", CHANNELS)
def test_conservation_per_side_in_count_and_fen(nights, channel):
    for date in (T1, T2):
        match = pipeline._read_json(nights.parsed(channel, date) / "match.json")
        for recon, done in match["reconciliations"].items():
            results = nights.read_table("recon_result", recon, date).to_pylist()
            for side, got in done["conservation"].items():
                rows = [r for r in results if r["side"] == side]
                assert got["records"] == len(rows)
                assert got["amount_fen"] == sum(r["amount_fen"] or 0 for r in rows)
            # the counterparty side entered with every detail record of the reconciled files
            files = [f for f in pipeline._read_json(nights.parsed(channel, date) / "manifest.json")["files"]
                     if f["name"] in done["files"]]
            carried = sum(1 for r in results if r["side"] == "counterparty" and r["origin_date"] < date)
            assert done["conservation"]["counterparty"]["records"] == sum(f["records"] for f in files) + carried


def test_one_to_many_batches_name_what_differs(nights):
    def by_ref(recon, date):
        return {r["record_ref"]: r for r in nights.read_table("recon_result", recon, date).to_pylist()}
    payroll = by_ref("payroll", T1)
    debit, refund = payroll[j(5, T1, 4)], payroll[j(5, T1, 5)]
    assert "differs by 700000 fen" in debit["reason"] and debit["reason"] == refund["reason"]
    assert payroll[j(5, T1, 8)]["matched_with"] == "batch EMP00000022026112101"
    utility = by_ref("utility", T1)
    assert "settlement credit balances its 3 successful detail row(s) (9259 fen)" in utility[j(4, T1, 5)]["reason"]
    assert "differs by 100 fen" in utility[j(4, T1, 9)]["reason"]
    centre = by_ref("housing_fund", T1)[j(3, T1, 7)]
    assert "centre account row" in centre["reason"] and "differs by 1000 fen" in centre["reason"]


def test_breaks_explain_themselves(nights):
    cnaps = {r["record_ref"]: r for r in nights.read_table("recon_result", "cnaps2", T1).to_pylist()}
    only = cnaps[f"{CNAPS_21}:12"]["reason"]
    assert "4 minutes later" in only and "20261121000000012406" in only
    assert "direction differs" in cnaps[f"{CNAPS_21}:8"]["reason"]
    assert cnaps[f"{CNAPS_21}:13"]["reason"].startswith("ambiguous")
    assert "field status" in cnaps[f"{CNAPS_21}:14"]["reason"]
    masked = cnaps[f"{CNAPS_21}:2"]["account_masked"]
    assert masked == "621700*********9999" and cnaps[f"{CNAPS_21}:2"]["account_hash"]


def test_carry_forward_closes_with_a_link(nights):
    day2 = {r["record_ref"]: r for r in nights.read_table("recon_result", "cnaps2", T2).to_pylist()}
    closed = day2[f"{CNAPS_21}:9"]
    assert closed["matched_with"] == f"{CNAPS_22}:2" and closed["origin_date"] == T1 and closed["open_days"] == 1
    assert day2[j(1, T1, 7)]["matched_with"] == f"{CNAPS_22}:2"
    assert "window ended" in day2[f"{CNAPS_21}:11"]["reason"]


def test_intraday_3111_is_registered_not_reconciled(nights):
    match = pipeline._read_json(nights.parsed("tips", T1) / "match.json")
    assert match["reconciliations"]["tips_3111"]["files"] == ["TIPS_3111_313301000019_20261121_0002_1.xml",
                                                              "TIPS_3111_313301000019_20261121_0002_2.xml"]
    names = [f["name"] for f in pipeline._read_json(nights.parsed("tips", T1) / "manifest.json")["files"]]
    assert "TIPS_3111_313301000019_20261121_0001_1.xml" in names


def test_incomplete_day_end_3111_waits(tmp_path):
    source = tmp_path / "tips"
    shutil.copytree(NIGHTS / "tips", source)
    for p in (source / "outbox" / "20261121").glob("TIPS_3111_*_0002_2.xml*"):
        p.unlink()
    wd = Workdir(tmp_path / "work")
    out = run(wd, "tips", T1, source)
    assert out["match"]["reconciliations"]["tips_3111"] == {"waiting": "ChkAcctOrd 0002: 1 of 2 files arrived"}
    assert wd.read_table("recon_result", "tips_3111", T1) is None
    assert outcomes(wd, "tips", T1) == EXPECTED[("tips", T1)]


@pytest.mark.parametrize("channel", ["cnaps2", "payroll"])
def test_reruns_are_byte_identical_and_t_after_t1_unchanged(nights, tmp_path, channel):
    wd = Workdir(tmp_path / "work")
    run(wd, channel, T1)
    first_t1 = fingerprint(wd)
    run(wd, channel, T2)
    after_t2 = fingerprint(wd)
    run(wd, channel, T1)   # T again, after T+1 ran: the same results for T
    run(wd, channel, T2)
    assert fingerprint(wd) == after_t2
    assert {k: v for k, v in fingerprint(wd).items() if k in first_t1} == first_t1


def test_parse_groups_cover_every_file_once_and_give_the_manifest_of_parse(tmp_path, monkeypatch):
    wd = Workdir(tmp_path / "work")
    pipeline.fetch("utility", T1, str(account("utility", tmp_path)), wd)
    names = [f["name"] for f in pipeline.current_files(wd, "utility", T1)]
    assert len(names) >= 2 and pipeline.parse_groups("utility", T1, wd) == [names]
    monkeypatch.setattr(pipeline, "PARSE_GROUP_FILES", 1)
    groups = pipeline.parse_groups("utility", T1, wd)
    assert groups == [[n] for n in names]
    monkeypatch.setattr(pipeline, "PARSE_GROUP_FILES", 250)
    monkeypatch.setattr(pipeline, "PARSE_GROUP_BYTES", 1)   # every file larger than a group: a group of its own
    assert pipeline.parse_groups("utility", T1, wd) == groups

    parsed = [f for g in groups for f in pipeline.parse_files("utility", T1, wd, g)]
    assert [f["name"] for f in parsed] == names
    by_groups = pipeline.write_manifest("utility", T1, wd)
    assert pipeline.parse("utility", T1, wd) == by_groups
    with pytest.raises(pipeline.NothingToReconcile, match="not a current file"):
        pipeline.parse_files("utility", T1, wd, ["DK_NOSUCH00_20261121_01.txt"])
