"""Following breaks to their end, and the quarantine an operator works with (list, release into the next run)."""
from __future__ import annotations

import shutil
import sqlite3

import duckdb
import pytest

from duizhang import breaks, quarantine
from formats.errors import Terminal
from tests.quality.night import CHANNEL, NIGHTS, T1, run_night

ACOMN = NIGHTS / CHANNEL / "outbox" / "20261121" / "IND26112101ACOMN"


def query(wd, sql):
    con = duckdb.connect(str(wd.refresh_views()), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_status_history_is_append_only_and_resolved_breaks_leave_the_open_list(wd):
    ref = "IND26112101ACOMN:7"  # the amount mismatch
    assert query(wd, f"SELECT status FROM breaks WHERE record_ref = '{ref}'") == [("new",)]
    open_before = query(wd, "SELECT count(*) FROM open_items WHERE kind = 'break'")[0][0]
    breaks.set_status(wd, CHANNEL, T1, ref, "investigating", "li.clerk", "asked CUPS for the slip")
    breaks.set_status(wd, CHANNEL, T1, ref, "resolved", "wang.lead", "CUPS fee adjustment, 150 fen")
    assert [(r["status"], r["changed_by"]) for r in breaks.history_rows(wd, ref)] == [
        ("investigating", "li.clerk"), ("resolved", "wang.lead")]
    assert query(wd, f"SELECT status, status_by FROM breaks WHERE record_ref = '{ref}'") == [("resolved", "wang.lead")]
    assert query(wd, "SELECT count(*) FROM open_items WHERE kind = 'break'")[0][0] == open_before - 1
    assert [r["record_ref"] for r in breaks.current(wd, status="resolved")] == [ref]
    # The warehouse keeps every change with the columns the suspense reversal reads.
    assert query(wd, "SELECT channel, business_date, record_ref, status, changed_by, note FROM break_status "
                     "ORDER BY seq") == [(CHANNEL, T1, ref, "investigating", "li.clerk", "asked CUPS for the slip"),
                                         (CHANNEL, T1, ref, "resolved", "wang.lead", "CUPS fee adjustment, 150 fen")]
    with wd.control() as db, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE break_status SET status = 'new'")


@pytest.mark.parametrize("ref, status, by, note, why", [
    ("IND26112101ACOMN:1", "investigating", "li", "x", "not a break"),     # matched
    ("IND26112101ACOMN:99", "investigating", "li", "x", "no record"),
    ("IND26112101ACOMN:7", "closed", "li", "x", "status must be one of"),
    ("IND26112101ACOMN:7", "resolved", "li", " ", "--note"),
    ("IND26112101ACOMN:7", "resolved", "", "x", "--by"),
])
def test_a_status_change_that_cannot_be_recorded_is_refused(wd, ref, status, by, note, why):
    with pytest.raises(breaks.BreakError, match=why):
        breaks.set_status(wd, CHANNEL, T1, ref, status, by, note)
    assert breaks.history_rows(wd) == []


def test_quarantine_lists_the_record_with_reason_origin_and_masked_raw_bytes(wd):
    [record] = quarantine.quarantined_records(wd, CHANNEL, T1)
    assert (record["file"], record["version"], record["line"], record["field"]) == ("IND26112101ACOMN", 1, 17,
                                                                                    "amount_fen")
    raw_line = ACOMN.read_bytes().split(b"\r\n")[16]
    assert record["raw"].rstrip(b"\r\n") == raw_line
    shown = quarantine.show_raw(record["raw"])
    pan = raw_line[42:61].decode().strip()
    assert pan not in shown and pan[:6] + "*" * (len(pan) - 10) + pan[-4:] in shown and "00000O002500" in shown


def test_a_corrected_file_released_is_parsed_by_the_next_run(wd, tmp_path):
    fixed = tmp_path / ACOMN.name
    fixed.write_bytes(ACOMN.read_bytes().replace(b"00000O002500", b"000000002500"))
    got = quarantine.release(wd, fixed, CHANNEL, T1, by="zhao.ops")
    assert (got["version"], got["quarantined"], got["records"]) == (2, 0, 18)
    summary = run_night(wd, T1)  # the source still holds the broken file: known content, not stored again
    assert [(f["version"], f["quarantined"]) for f in summary["files"]] == [(2, 0)]
    assert query(wd, "SELECT count(*) FROM recon_result WHERE outcome = 'QUARANTINED'") == [(0,)]
    assert quarantine.quarantined_records(wd, CHANNEL, T1) == []
    with pytest.raises(Terminal, match="already version 2"):
        quarantine.release(wd, fixed, CHANNEL, T1)


def test_a_release_that_would_be_rejected_again_is_refused(wd, tmp_path):
    broken = tmp_path / ACOMN.name
    broken.write_bytes(ACOMN.read_bytes())
    flag = ACOMN.with_name(ACOMN.name + ".ok").read_bytes()
    (tmp_path / (ACOMN.name + ".ok")).write_bytes(flag.replace(b"|18|", b"|19|"))  # the flag disagrees
    with pytest.raises(Terminal, match="would be rejected again"):
        quarantine.release(wd, broken, CHANNEL, T1)
    wrong = tmp_path / "IND26112201ACOMN"
    wrong.write_bytes(ACOMN.read_bytes())
    with pytest.raises(Terminal, match="not a unionpay_acq file name for 2026-11-21"):
        quarantine.release(wd, wrong, CHANNEL, T1)


def test_a_rejected_file_shows_where_the_operator_looks_and_a_release_lets_the_night_through(tmp_path):
    from duizhang import pipeline, report
    from duizhang.workdir import Workdir
    from formats.errors import FlagMismatch
    source = tmp_path / "source"
    shutil.copytree(NIGHTS / CHANNEL, source)
    flag = source / "outbox" / "20261121" / (ACOMN.name + ".ok")
    bad = flag.read_bytes().replace(b"|18|", b"|19|")  # CUPS's flag disagrees with its file
    flag.write_bytes(bad)
    wd = Workdir(tmp_path / "work")
    with pytest.raises(FlagMismatch):
        run_night(wd, T1, source)
    [rejected] = quarantine.rejected_files(wd, CHANNEL, T1)
    assert rejected["name"] == ACOMN.name and "expected 19, found 18" in rejected["detail"]
    numbers = report.gather(wd, T1)
    assert numbers["summary"][0]["rejected_files"] == 1 and numbers["rejected"][0]["name"] == ACOMN.name
    # CUPS sends a corrected file (its unreadable amount fixed too); the operator releases it with no flag (the
    # bank writes one): the next parse reads version 2 and the night goes through.
    fixed = tmp_path / "fixed" / ACOMN.name
    fixed.parent.mkdir()
    fixed.write_bytes(ACOMN.read_bytes().replace(b"00000O002500", b"000000002500"))
    assert quarantine.release(wd, fixed, CHANNEL, T1, by="zhao.ops")["version"] == 2
    manifest = pipeline.parse(CHANNEL, T1, wd)
    assert [(f["version"], f["records"], f["quarantined"]) for f in manifest["files"]] == [(2, 18, 0)]
    assert quarantine.rejected_files(wd, CHANNEL, T1)[0]["version"] == 1  # v1 stays rejected, in the history
