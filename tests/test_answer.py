"""What goes back, through the whole chain on a real SFTP server: every inbound batch answered in its own format or
held with its reason, a pack rejected whole quarantined and answered as rejected while the night goes on, UnionPay's
disputes replied, the 差错 file written, a resolved break's suspense reversed, and every file delivered once."""
from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import pytest

from connectors.sftp_server import EmbeddedSftpServer
from duizhang import pipeline
from duizhang.workdir import Workdir
from formats import registry
from formats.flag import parse_flag, write_flag

ROOT = Path(__file__).resolve().parents[1]
NIGHTS = ROOT / "sample_files" / "nights"
T1, T2 = dt.date(2026, 11, 21), dt.date(2026, 11, 22)


@pytest.fixture
def account(tmp_path):
    """A counterparty account on the embedded SFTP server; `serve(channel)` copies that channel's sample nights."""
    root = tmp_path / "account"
    root.mkdir()
    with EmbeddedSftpServer(root) as server:
        def serve(channel: str):
            shutil.copytree(NIGHTS / channel, root, dirs_exist_ok=True)
            return server
        yield serve


def run(channel: str, date: dt.date, server, wd: Workdir) -> dict:
    return pipeline.run(channel, date, server.endpoint(), str(NIGHTS / "ledger"), wd)


def table(wd: Workdir, name: str, channel: str, date: dt.date) -> list[dict]:
    t = wd.read_table(name, channel, date)
    return t.to_pylist() if t is not None else []


def received(server, date: dt.date) -> dict[str, str]:
    inbox = server.root / "inbox" / f"{date:%Y%m%d}"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(inbox.iterdir())} if inbox.exists() else {}


def test_every_batch_is_answered_or_held_and_each_answer_is_delivered_once(account, tmp_path):
    server, wd = account("housing_fund"), Workdir(tmp_path / "work")
    run("housing_fund", T1, server, wd)
    returns = table(wd, "returns", "housing_fund", T1)
    inbound = sorted(p.name for p in (NIGHTS / "housing_fund" / "outbox" / "20261121").glob("BDC_BAT_*.DAT"))
    assert sorted(r["file"] for r in returns) == inbound
    answered = {r["return_file"] for r in returns if r["status"] == "answered"}
    held = [r for r in returns if r["status"] == "held"]
    assert answered and held, "the sample night has batches of both kinds"
    assert all("no single final outcome" in r["reason"] for r in held)
    assert set(received(server, T1)) == answered | {f"{name}.ok" for name in answered}
    for name in answered:   # what the counterparty received reads back with its flag, every record answered
        path = server.root / "inbox" / "20261121" / name
        back = registry.read(path, "housing_fund.bdc_res", parse_flag(path.with_name(name + ".ok").read_bytes()))
        source = next(r for r in returns if r["return_file"] == name)
        assert back.detail_count == source["records"] and back.quarantined == 0

    first = received(server, T1)
    run("housing_fund", T1, server, wd)
    assert received(server, T1) == first
    with wd.control() as db:
        rows = db.execute("SELECT name, count(*) FROM deliveries GROUP BY name").fetchall()
    assert {name: n for name, n in rows} == {name: 1 for name in answered}


def test_a_pack_rejected_whole_is_quarantined_and_answered_as_rejected_while_the_night_goes_on(account, tmp_path):
    server, wd = account("tips"), Workdir(tmp_path / "work")
    # A second pack of the day whose AllAmt disagrees with its payments (sample_files/tips/3102/allamt_off.xml).
    bad = (ROOT / "sample_files" / "tips" / "3102" / "allamt_off.xml").read_bytes()
    bad = bad.replace(b"<PackNo>00000001</PackNo>", b"<PackNo>00000077</PackNo>")
    name = "TIPS_3102_13201000000_20261121_00000077.xml"
    target = server.root / "outbox" / "20261121" / name
    target.write_bytes(bad)
    write_flag(target, record_count=bad.count(b"<Payment3102>"))

    run("tips", T1, server, wd)   # does not raise: the other pack and the 3111 reconciliation go on

    results = [r for r in table(wd, "recon_result", "tips", T1) if r["source_file"] == name]
    assert results and {r["outcome"] for r in results} == {"QUARANTINED"}
    assert all("control total" in r["reason"] for r in results)
    returns = {r["file"]: r for r in table(wd, "returns", "tips", T1)}
    assert returns[name]["status"] == "rejected whole"
    answer_name = returns[name]["return_file"]
    path = server.root / "inbox" / "20261121" / answer_name
    back = registry.read(path, "tips.2102", parse_flag(path.with_name(answer_name + ".ok").read_bytes()))
    assert back.header["Result"] == "94999" and back.records.num_rows == 0
    with wd.control() as db:
        status = db.execute("SELECT status, detail FROM files WHERE name = ?", (name,)).fetchone()
    assert status["status"] == "rejected" and "control total" in status["detail"]


def test_unionpay_disputes_are_replied_and_the_undecided_queued(account, tmp_path):
    server, wd = account("unionpay_acq"), Workdir(tmp_path / "work")
    errn = ROOT / "sample_files" / "unionpay" / "errn" / "ok_chinese_merchant_name.txt"
    target = server.root / "outbox" / "20261121" / "IND26112101ERRN"
    shutil.copy(errn, target)
    write_flag(target, record_count=parse_flag(Path(f"{errn}.ok").read_bytes()).record_count)

    run("unionpay_acq", T1, server, wd)

    decisions = table(wd, "dispute_decisions", "unionpay_acq", T1)
    assert len(decisions) == registry.read(errn, "unionpay.errn").detail_count
    queue = table(wd, "dispute_queue", "unionpay_acq", T1)
    assert [d for d in decisions if d["decision"] == "P"] == queue
    reply = server.root / "inbox" / "20261121" / "IND26112101ERRR"
    back = registry.read(reply, "unionpay.errr", parse_flag(reply.with_name(reply.name + ".ok").read_bytes()))
    assert back.records.num_rows == sum(1 for d in decisions if d["decision"] is not None)
    assert all("*" in d["pan_masked"] for d in decisions)


def test_the_error_file_lists_every_break(account, tmp_path):
    server, wd = account("unionpay_acq"), Workdir(tmp_path / "work")
    run("unionpay_acq", T1, server, wd)
    breaks = [r for r in table(wd, "recon_result", "unionpay_acq", T1)
              if r["outcome"] in ("AMOUNT_MISMATCH", "STATUS_MISMATCH", "COUNTERPARTY_ONLY", "LEDGER_ONLY",
                                  "DUPLICATE")]
    csv = (wd.outbox("unionpay_acq", T1) / "CHACUO_unionpay_acq_20261121.csv").read_bytes()
    assert csv.startswith(b"\xef\xbb\xbf") and csv.count(b"\r\n") == len(breaks) + 1
    assert (wd.outbox("unionpay_acq", T1) / "CHACUO_unionpay_acq_20261121.xlsx").exists()
    assert not received(server, T1), "the error-handling file is for operations, not sent to the counterparty"


def test_a_break_resolved_by_an_analyst_gets_its_suspense_reversed_once(account, tmp_path):
    server, wd = account("unionpay_acq"), Workdir(tmp_path / "work")
    run("unionpay_acq", T1, server, wd)
    entries_t1 = registry.read(wd.outbox("unionpay_acq", T1) / "ENTRIES_UNIONPAY_ACQ_20261121_01.csv",
                               "ledger.entries").records.to_pylist()
    suspense = sorted({e["voucher_no"] for e in entries_t1 if e["voucher_no"].startswith("SUS-")})
    assert suspense
    brk = next(r for r in table(wd, "recon_result", "unionpay_acq", T1)
               if r["outcome"] == "COUNTERPARTY_ONLY" and f"SUS-UNIONPAY_ACQ-20261121-{r['match_ref']}" in suspense)
    # The clerk resolved it during the 22nd (the history table is append-only; rows are written as breaks.py does).
    with wd.control() as db:
        db.execute("INSERT INTO break_status (channel, business_date, record_ref, status, changed_by, changed_at, "
                   "note) VALUES ('unionpay_acq', '2026-11-21', ?, 'resolved', 'clerk', '2026-11-22T10:00:00', "
                   "'refunded by CUPS')", (brk["record_ref"],))
    run("unionpay_acq", T2, server, wd)
    run("unionpay_acq", T2, server, wd)   # a rerun reverses nothing twice
    entries_t2 = registry.read(wd.outbox("unionpay_acq", T2) / "ENTRIES_UNIONPAY_ACQ_20261122_01.csv",
                               "ledger.entries").records.to_pylist()
    original = f"SUS-UNIONPAY_ACQ-20261121-{brk['match_ref']}"
    reversal = [e for e in entries_t2 if e["voucher_no"] == f"REV-{original}"]
    posted = [e for e in entries_t1 if e["voucher_no"] == original]
    assert sorted((e["account_no"], e["dr_cr"], e["amount_fen"]) for e in reversal) == sorted(
        (e["account_no"], "C" if e["dr_cr"] == "D" else "D", e["amount_fen"]) for e in posted)
    rerun_t1 = registry.read(wd.outbox("unionpay_acq", T1) / "ENTRIES_UNIONPAY_ACQ_20261121_01.csv",
                             "ledger.entries").records.to_pylist()
    assert rerun_t1 == entries_t1 and not any(e["voucher_no"].startswith("REV-") for e in entries_t1)


def test_the_breaks_of_a_night_are_read_alone_with_the_results_columns(tmp_path):
    import pyarrow as pa
    wd = Workdir(tmp_path / "wd")
    assert pipeline._read_breaks(wd, "utility", T1) is None
    wd.publish("recon_result", "utility", T1, pa.table({
        "outcome": ["MATCHED", "AMOUNT_MISMATCH", "PENDING", "LEDGER_ONLY"], "record_ref": ["a", "b", "c", "d"]}))
    breaks = pipeline._read_breaks(wd, "utility", T1)
    assert breaks.to_pydict() == {"outcome": ["AMOUNT_MISMATCH", "LEDGER_ONLY"], "record_ref": ["b", "d"]}
    assert breaks.schema.equals(wd.read_table("recon_result", "utility", T1).schema, check_metadata=True)
