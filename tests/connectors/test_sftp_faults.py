"""Connections dropped mid-transfer: a TCP proxy on loopback between the client and the server resets the
first connection after some bytes; the retry on a new connection must finish with byte-identical files and
nothing half-written left visible."""
from __future__ import annotations

import os
from dataclasses import replace

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


def test_download_cut_mid_transfer_completes_on_a_new_connection(server, cutting_proxy, fast_retry, tmp_path, caplog):
    server, base = server
    directory = server.root / "faults_down" / "outbox" / "20261121"
    directory.mkdir(parents=True, exist_ok=True)
    data = os.urandom(6 << 20)
    (directory / "ACOMN_20261121_01").write_bytes(data)
    write_flag(directory / "ACOMN_20261121_01", 1)
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
    directory = server.root / "faults_always" / "outbox" / "20261121"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ACOMN_20261121_01").write_bytes(os.urandom(2 << 20))
    write_flag(directory / "ACOMN_20261121_01", 1)
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
    directory = server.root / "faults_stall" / "outbox" / "20261121"
    directory.mkdir(parents=True, exist_ok=True)
    data = os.urandom(3 << 20)
    (directory / "ACOMN_20261121_01").write_bytes(data)
    write_flag(directory / "ACOMN_20261121_01", 1)
    with cutting_proxy(server.port, cut_after_bytes=1 << 20, stall=True) as proxy:
        endpoint = replace(server.endpoint(), port=proxy.port, io_timeout=1)
        with SftpSource(endpoint, **fast_retry) as source:
            fetched = source.fetch(f"{base}/faults_stall/outbox/20261121", "ACOMN_20261121_01", tmp_path / "work")
    assert proxy.cuts == 1 and proxy.connections == 2
    assert fetched.local_path.read_bytes() == data
