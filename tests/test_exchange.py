"""The pipeline's two ends on a real SFTP server: a file already received is not downloaded again, and an
outgoing file is delivered exactly once (a rerun sends nothing; a changed file needs an operator's force)."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from connectors.errors import DeliveryConflict
from connectors.sftp import Source
from connectors.sftp_server import EmbeddedSftpServer
from duizhang import pipeline
from duizhang.workdir import Workdir
from formats.errors import FlagMismatch
from formats.flag import write_flag

NIGHTS = Path(__file__).resolve().parents[1] / "sample_files" / "nights"
T1 = dt.date(2026, 11, 21)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "sftp_root"
    shutil.copytree(NIGHTS / "unionpay_acq", root)
    with EmbeddedSftpServer(root) as srv:
        yield srv


@pytest.fixture
def wd(tmp_path) -> Workdir:
    return Workdir(tmp_path / "work")


@pytest.fixture
def calls(monkeypatch) -> dict[str, int]:
    """Counts the files the connector downloads and uploads (the real methods still run; the pipeline moves files
    many at a time: each fetched file and each delivery that sent something counts)."""
    counts = {"fetch": 0, "deliver": 0}
    for name in counts:
        for cls in (Source, *Source.__subclasses__()):
            if f"{name}_many" not in vars(cls):
                continue

            def spy(self, *args, _real=vars(cls)[f"{name}_many"], _name=name, **kwargs):
                for moved in _real(self, *args, **kwargs):
                    counts[_name] += _name == "fetch" or moved.status in ("delivered", "forced")
                    yield moved
            monkeypatch.setattr(cls, f"{name}_many", spy)
    return counts


def test_a_file_received_before_is_recognised_by_its_flag_and_not_downloaded_again(server, wd, calls):
    first = pipeline.fetch("unionpay_acq", T1, server.endpoint(), wd)
    assert calls["fetch"] == 1 and [f["duplicate"] for f in first] == [False]
    second = pipeline.fetch("unionpay_acq", T1, server.endpoint(), wd)
    assert calls["fetch"] == 1, "the second fetch downloaded the file again"
    assert [(f["name"], f["version"], f["duplicate"]) for f in second] == [(first[0]["name"], 1, True)]
    with wd.control() as db:
        assert db.execute("SELECT count(*) FROM files").fetchone()[0] == 1


def test_a_changed_file_under_the_same_name_is_downloaded_as_the_next_version(server, wd, calls):
    pipeline.fetch("unionpay_acq", T1, server.endpoint(), wd)
    remote = server.root / "outbox" / "20261121" / "IND26112101ACOMN"
    changed = bytearray(remote.read_bytes())
    changed[40] = ord("9") if changed[40] != ord("9") else ord("8")   # a corrected resend, same name
    remote.write_bytes(changed)
    write_flag(remote, record_count=changed.count(b"\r\n"))
    again = pipeline.fetch("unionpay_acq", T1, server.endpoint(), wd)
    assert calls["fetch"] == 2
    assert [(f["version"], f["duplicate"]) for f in again] == [(2, False)]


def outgoing(wd: Workdir, name: str, content: bytes) -> Path:
    path = wd.to_counterparty("unionpay_acq", T1) / name
    path.write_bytes(content)
    write_flag(path, record_count=content.count(b"\r\n"))
    return path


def test_delivery_happens_once_and_a_rerun_sends_nothing(server, wd, calls):
    outgoing(wd, "INR26112101ERRR", b"reply one\r\nreply two\r\n")
    sent = pipeline.deliver("unionpay_acq", T1, server.endpoint(), wd)
    assert [d["status"] for d in sent] == ["delivered"]
    inbox = server.root / "inbox" / "20261121"
    assert (inbox / "INR26112101ERRR").read_bytes() == b"reply one\r\nreply two\r\n"
    assert (inbox / "INR26112101ERRR.ok").read_bytes().split(b"|")[2] == b"2"
    assert not list(inbox.glob("*.tmp"))

    again = pipeline.deliver("unionpay_acq", T1, server.endpoint(), wd)
    assert [d["status"] for d in again] == ["already_delivered"]
    assert calls["deliver"] == 1, "a rerun uploaded the file again"
    with wd.control() as db:
        rows = db.execute("SELECT name, status, destination FROM deliveries").fetchall()
    assert [tuple(r) for r in rows] == [("INR26112101ERRR", "delivered", "/inbox/20261121/INR26112101ERRR")]


def test_the_server_state_prevents_a_second_delivery_when_the_registry_was_lost(server, tmp_path, calls):
    first, second = Workdir(tmp_path / "a"), Workdir(tmp_path / "b")
    for wd in (first, second):
        outgoing(wd, "INR26112101ERRR", b"same reply\r\n")
    pipeline.deliver("unionpay_acq", T1, server.endpoint(), first)
    mtime = (server.root / "inbox" / "20261121" / "INR26112101ERRR").stat().st_mtime_ns
    assert [d["status"] for d in pipeline.deliver("unionpay_acq", T1, server.endpoint(), second)] == [
        "already_delivered"]
    assert (server.root / "inbox" / "20261121" / "INR26112101ERRR").stat().st_mtime_ns == mtime


def test_a_changed_file_for_a_delivered_name_needs_the_operators_force(server, wd):
    path = outgoing(wd, "INR26112101ERRR", b"first answer\r\n")
    pipeline.deliver("unionpay_acq", T1, server.endpoint(), wd)
    path.write_bytes(b"corrected answer\r\n")
    write_flag(path, record_count=1)
    with pytest.raises(DeliveryConflict, match="already delivered"):
        pipeline.deliver("unionpay_acq", T1, server.endpoint(), wd)
    assert (server.root / "inbox" / "20261121" / "INR26112101ERRR").read_bytes() == b"first answer\r\n"

    forced = pipeline.deliver("unionpay_acq", T1, server.endpoint(), wd, force=True)
    assert [d["status"] for d in forced] == ["forced"]
    assert (server.root / "inbox" / "20261121" / "INR26112101ERRR").read_bytes() == b"corrected answer\r\n"
    with wd.control() as db:
        statuses = sorted(r["status"] for r in db.execute("SELECT status FROM deliveries"))
    assert statuses == ["delivered", "forced"]


def test_the_same_data_resent_with_a_corrected_flag_is_parsed_again(server, wd):
    remote = server.root / "outbox" / "20261121" / "IND26112101ACOMN"
    records = remote.read_bytes().count(b"\r\n")
    write_flag(remote, record_count=records + 1)   # the counterparty's flag miscounts
    pipeline.fetch("unionpay_acq", T1, server.endpoint(), wd)
    with pytest.raises(FlagMismatch, match="record count"):
        pipeline.parse("unionpay_acq", T1, wd)
    write_flag(remote, record_count=records)        # ... and resends the flag corrected, the data unchanged
    again = pipeline.fetch("unionpay_acq", T1, server.endpoint(), wd)
    assert [(f["version"], f["flag_records"]) for f in again] == [(1, records)]
    manifest = pipeline.parse("unionpay_acq", T1, wd)
    assert [f["records"] for f in manifest["files"]] == [records]
