"""Connections dropped mid-transfer: a TCP proxy on loopback between the client and the server resets the
first connection after some bytes; the retry on a new connection must finish with byte-identical files and
nothing half-written left visible."""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import replace
from pathlib import Path

import paramiko
import pytest

from connectors.errors import ConnectionLost
from connectors.sftp import SftpSource
from formats.errors import Transient
from formats.flag import flag_for, parse_flag, write_flag

# paramiko's prefetch sends its read requests from a thread of its own; when the connection is cut, that thread
# dies with "Socket is closed". The download itself sees the loss and is retried: that thread's end is expected.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


@pytest.fixture(params=["sshd", "embedded"])
def server(request):
    """(server, prefix of remote paths): sshd serves absolute paths, the embedded server is chrooted."""
    if request.param == "sshd":
        sshd = request.getfixturevalue("sshd")
        return sshd, str(sshd.root)
    return request.getfixturevalue("embedded_server"), ""


def through(proxy, server, fast_retry: dict, **options) -> SftpSource:
    endpoint = replace(server.endpoint(), port=proxy.port, io_timeout=5)
    return SftpSource(endpoint, **{**fast_retry, **options})


def serve(server, case: str, name: str, data: bytes) -> Path:
    """A flagged counterparty file on the server's disk, in ``CASE/outbox/20261121``."""
    path = server.root / case / "outbox" / "20261121" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    write_flag(path, 1)
    return path


def test_download_cut_mid_transfer_completes_on_a_new_connection(server, cutting_proxy, fast_retry, tmp_path, caplog):
    server, base = server
    data = os.urandom(6 << 20)
    serve(server, "faults_down", "ACOMN_20261121_01", data)
    work = tmp_path / "work"
    caplog.set_level("INFO", logger="duizhang.connectors")
    with cutting_proxy(server.port, cut_after_bytes=3 << 20, direction="down") as proxy:
        with through(proxy, server, fast_retry) as source:
            fetched = source.fetch(f"{base}/faults_down/outbox/20261121", "ACOMN_20261121_01", work)
    assert proxy.cuts == 1 and proxy.connections == 2
    assert fetched.local_path.read_bytes() == data
    assert sorted(p.name for p in work.iterdir()) == ["ACOMN_20261121_01"]  # no .part left
    # The retry resumes from what reached the .part file, if anything did before the reset (timing decides).
    assert "connection lost" in caplog.text and "reconnecting" in caplog.text


def test_upload_cut_mid_transfer_is_redone_on_a_new_connection(server, cutting_proxy, fast_retry, tmp_path):
    server, base = server
    local = tmp_path / "DF_RET_20261121_01.csv"
    local.write_bytes(os.urandom(4 << 20))
    write_flag(local, 1)
    with cutting_proxy(server.port, cut_after_bytes=1 << 20, direction="up") as proxy:
        with through(proxy, server, fast_retry) as source:
            delivery = source.deliver(local, f"{base}/faults_up/inbox/20261121")
    assert proxy.cuts == 1 and proxy.connections == 2
    assert delivery.status == "delivered"
    remote = server.root / "faults_up" / "inbox" / "20261121"
    assert sorted(p.name for p in remote.iterdir()) == [local.name, local.name + ".ok"]
    assert (remote / local.name).read_bytes() == local.read_bytes()
    assert parse_flag((remote / (local.name + ".ok")).read_bytes()) == flag_for(local, 1)


def test_a_connection_that_keeps_dropping_gives_up_after_bounded_attempts(server, cutting_proxy, fast_retry, tmp_path):
    server, base = server
    serve(server, "faults_always", "ACOMN_20261121_01", os.urandom(2 << 20))
    work = tmp_path / "work"
    with cutting_proxy(server.port, cut_after_bytes=256 << 10, cut_connections=99) as proxy:
        with through(proxy, server, fast_retry, max_attempts=3) as source:
            with pytest.raises(ConnectionLost) as caught:
                source.fetch(f"{base}/faults_always/outbox/20261121", "ACOMN_20261121_01", work)
    assert isinstance(caught.value, Transient)
    assert proxy.connections == 3
    assert list(work.iterdir()) == []  # neither the file nor a .part


def test_a_silent_stall_times_out_and_is_retried(server, cutting_proxy, fast_retry, tmp_path):
    server, base = server
    data = os.urandom(3 << 20)
    serve(server, "faults_stall", "ACOMN_20261121_01", data)
    with cutting_proxy(server.port, cut_after_bytes=1 << 20, stall=True) as proxy:
        endpoint = replace(server.endpoint(), port=proxy.port, io_timeout=1)
        with SftpSource(endpoint, **fast_retry) as source:
            fetched = source.fetch(f"{base}/faults_stall/outbox/20261121", "ACOMN_20261121_01", tmp_path / "work")
    assert proxy.cuts == 1 and proxy.connections == 2
    assert fetched.local_path.read_bytes() == data


def test_gzip_download_cut_mid_stream_resumes_and_decompresses_the_right_file(server, cutting_proxy, fast_retry,
                                                                                tmp_path):
    """The gzip file is inflated while it downloads: after the reset, the download resumes and the inflating
    goes on from where it was, giving the same bytes as an uninterrupted fetch."""
    server, base = server
    plain = os.urandom(3 << 20) + b"D|record\r\n" * 300_000  # 6 MiB: incompressible, then compressible
    serve(server, "faults_gzip", "ACOMN_20261121_01.gz", gzip.compress(plain, compresslevel=1))
    work = tmp_path / "work"
    with cutting_proxy(server.port, cut_after_bytes=2 << 20, direction="down") as proxy:
        with through(proxy, server, fast_retry) as source:
            fetched = source.fetch(f"{base}/faults_gzip/outbox/20261121", "ACOMN_20261121_01.gz", work)
    assert proxy.cuts == 1 and proxy.connections == 2
    assert fetched.local_path.read_bytes() == plain
    assert (fetched.size, fetched.md5) == (len(plain), hashlib.md5(plain).hexdigest())
    assert sorted(p.name for p in work.iterdir()) == ["ACOMN_20261121_01"]  # no .part left


def test_a_file_replaced_while_the_connection_was_down_is_downloaded_anew(server, cutting_proxy, fast_retry,
                                                                           tmp_path, caplog, monkeypatch):
    """The counterparty replaces the file and its flag while we reconnect: the download starts again from the
    first byte against the new flag, never joining the old file's first part to the new file's rest."""
    server, base = server
    old, new = os.urandom(4 << 20), os.urandom(5 << 20)
    remote = serve(server, "faults_replaced", "ACOMN_20261121_01.gz", gzip.compress(old, compresslevel=1))
    flag_reads = []
    real_read_flag = SftpSource._read_flag

    def read_flag_after_the_counterparty(self, remote_path, name):
        flag_reads.append(name)
        if len(flag_reads) == 2:  # the retry's first request: the new version is already in place
            remote.write_bytes(gzip.compress(new, compresslevel=1))
            write_flag(remote, 1)
        return real_read_flag(self, remote_path, name)

    monkeypatch.setattr(SftpSource, "_read_flag", read_flag_after_the_counterparty)
    caplog.set_level("INFO", logger="duizhang.connectors")
    with cutting_proxy(server.port, cut_after_bytes=2 << 20, direction="down") as proxy:
        with through(proxy, server, fast_retry) as source:
            fetched = source.fetch(f"{base}/faults_replaced/outbox/20261121", remote.name, tmp_path / "work")
    assert proxy.cuts == 1 and len(flag_reads) == 2
    assert fetched.local_path.read_bytes() == new
    assert fetched.flag == parse_flag(remote.with_name(remote.name + ".ok").read_bytes())
    assert "the flag changed since the last attempt" in caplog.text


def test_a_reader_faster_than_the_prefetch_still_transfers_each_byte_once(server, cutting_proxy, fast_retry,
                                                                          tmp_path, monkeypatch):
    """paramiko's prefetch thread, when the reads in flight reach the limit, sleeps before sending more; a reader
    that takes every answer meanwhile made paramiko take the prefetch for finished, read the rest one request
    at a time, and let the prefetch fetch the file a second time into memory (connectors.sftp._PrefetchingFile).
    A long sleep makes that race certain; the file must still come over once."""
    monkeypatch.setattr(paramiko.sftp_file, "io_sleep", 0.2)
    server, base = server
    data = os.urandom(16 << 20)
    serve(server, "prefetch_race", "ACOMN_20261121_01", data)
    with cutting_proxy(server.port, cut_after_bytes=0, cut_connections=0) as proxy:
        with through(proxy, server, fast_retry) as source:
            fetched = source.fetch(f"{base}/prefetch_race/outbox/20261121", "ACOMN_20261121_01", tmp_path / "w")
    assert fetched.local_path.read_bytes() == data
    assert len(data) < proxy.bytes_down < 1.1 * len(data)
