"""Fetching flagged files: against real sshd, the embedded asyncssh server and a local directory alike."""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import os
import threading
import time

import pytest

from connectors.errors import FileNotReady, FileTooLarge, UnsafeRemotePath
from connectors import sftp
from connectors.sftp import FetchedFile
from connectors.sftp_server import EmbeddedSftpServer
from duizhang import pipeline
from duizhang.workdir import Workdir
from formats.errors import FileRejected, FlagMismatch, Terminal, Transient
from formats.flag import Flag, md5_of, write_flag

DATE = "outbox/20261121"


def put_flagged(exchange, name: str, data: bytes, record_count: int = 3, *, flag: bytes | None = None):
    """A counterparty's file and its flag, written straight to the account's disk."""
    path = exchange.disk_dir(DATE) / name
    path.write_bytes(data)
    if flag is None:
        write_flag(path, record_count)
    else:
        path.with_name(name + ".ok").write_bytes(flag)
    return path


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_fetch_writes_the_verified_file_atomically(exchange, tmp_path):
    data = os.urandom(300_000) + b"\r\nlast line\r\n"
    put_flagged(exchange, "ACOMN_20261121_01", data, record_count=7)
    work = tmp_path / "work"
    with exchange.source() as source:
        fetched = source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_01", work)
    assert fetched == FetchedFile("ACOMN_20261121_01", work / "ACOMN_20261121_01", len(data),
                                  hashlib.md5(data).hexdigest(),
                                  Flag("ACOMN_20261121_01", len(data), 7, hashlib.md5(data).hexdigest()), False)
    assert fetched.local_path.read_bytes() == data
    assert leftovers(work) == ["ACOMN_20261121_01"]  # no .part left


def test_fetch_again_replaces_the_local_copy_with_the_same_bytes(exchange, tmp_path):
    data = b"D|1|100\r\n" * 1000
    put_flagged(exchange, "DK_20261121_01", data)
    work = tmp_path / "work"
    with exchange.source() as source:
        first = source.fetch(exchange.remote_dir(DATE), "DK_20261121_01", work)
        second = source.fetch(exchange.remote_dir(DATE), "DK_20261121_01", work)
    assert first == second and second.local_path.read_bytes() == data
    assert leftovers(work) == ["DK_20261121_01"]


def test_gzip_file_is_verified_compressed_then_decompressed(exchange, tmp_path):
    plain = b"".join(b"%08d|record\r\n" % i for i in range(20_000))
    packed = gzip.compress(plain)
    put_flagged(exchange, "ERRN_20261121_01.gz", packed, record_count=20_000)
    work = tmp_path / "work"
    with exchange.source() as source:
        fetched = source.fetch(exchange.remote_dir(DATE), "ERRN_20261121_01.gz", work)
    assert fetched.compressed
    assert fetched.name == "ERRN_20261121_01" and fetched.local_path == work / "ERRN_20261121_01"
    assert fetched.local_path.read_bytes() == plain
    assert (fetched.size, fetched.md5) == (len(plain), hashlib.md5(plain).hexdigest())
    assert fetched.flag == Flag("ERRN_20261121_01.gz", len(packed), 20_000, hashlib.md5(packed).hexdigest())
    assert leftovers(work) == ["ERRN_20261121_01"]


def test_gzip_bomb_stops_at_the_limit(exchange, tmp_path):
    bomb = gzip.compress(bytes(64 << 20), compresslevel=9)  # 64 MiB of zeros in about 64 KiB
    put_flagged(exchange, "ACOMN_20261121_02.gz", bomb)
    work = tmp_path / "work"
    started = time.monotonic()
    with exchange.source(max_unpacked_bytes=1 << 20) as source:
        with pytest.raises(FileTooLarge, match="decompress") as caught:
            source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_02.gz", work)
    assert time.monotonic() - started < 5  # stopped early, not after inflating 64 MiB
    assert isinstance(caught.value, Terminal)
    assert leftovers(work) == []


def test_broken_gzip_is_rejected(exchange, tmp_path):
    put_flagged(exchange, "ACOMN_20261121_03.gz", gzip.compress(b"x" * 10_000)[:-20])
    with exchange.source() as source, pytest.raises(FileRejected, match="not a valid gzip file"):
        source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_03.gz", tmp_path / "work")
    assert leftovers(tmp_path / "work") == []


def test_missing_flag_means_not_ready(exchange, tmp_path):
    path = exchange.disk_dir(DATE) / "ACOMN_20261121_01"
    path.write_bytes(b"still uploading")
    with exchange.source() as source, pytest.raises(FileNotReady) as caught:
        source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_01", tmp_path / "work")
    assert isinstance(caught.value, Transient)
    assert "ACOMN_20261121_01.ok" in str(caught.value)
    assert source.label in str(caught.value)
    assert leftovers(tmp_path / "work") == []


def test_wrong_md5_is_a_flag_mismatch_and_leaves_the_old_copy(exchange, tmp_path):
    data = b"detail line\r\n" * 100
    wrong = Flag("ACOMN_20261121_01", len(data), 100, "0" * 32).render()
    put_flagged(exchange, "ACOMN_20261121_01", data, flag=wrong)
    work = tmp_path / "work"
    work.mkdir()
    (work / "ACOMN_20261121_01").write_bytes(b"yesterday's good copy")
    with exchange.source() as source, pytest.raises(FlagMismatch, match="MD5 differs") as caught:
        source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_01", work)
    assert caught.value.expected == "0" * 32 and caught.value.found == hashlib.md5(data).hexdigest()
    assert (work / "ACOMN_20261121_01").read_bytes() == b"yesterday's good copy"
    assert leftovers(work) == ["ACOMN_20261121_01"]


def test_size_differing_from_the_flag_is_a_flag_mismatch(exchange, tmp_path):
    data = b"abc\r\n"
    put_flagged(exchange, "ACOMN_20261121_01", data,
                flag=Flag("ACOMN_20261121_01", 999, 1, hashlib.md5(data).hexdigest()).render())
    with exchange.source() as source, pytest.raises(FlagMismatch, match="size") as caught:
        source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_01", tmp_path / "work")
    assert (caught.value.expected, caught.value.found) == (999, len(data))


def test_flag_naming_another_file_is_refused(exchange, tmp_path):
    data = b"abc\r\n"
    put_flagged(exchange, "ACOMN_20261121_01", data,
                flag=Flag("ACOMN_20261121_99", len(data), 1, hashlib.md5(data).hexdigest()).render())
    with exchange.source() as source, pytest.raises(FlagMismatch, match="flag names another file"):
        source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_01", tmp_path / "work")


def test_file_over_the_download_limit_is_refused_before_download(exchange, tmp_path):
    put_flagged(exchange, "ACOMN_20261121_01", b"x" * 5000)
    with exchange.source(max_file_bytes=4096) as source, pytest.raises(FileTooLarge, match="5000 bytes"):
        source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_01", tmp_path / "work")
    assert leftovers(tmp_path / "work") == []


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "a/b", "a\\b", "x\x00y", "..", "", "ACOMN..01"])
def test_unsafe_names_are_refused(exchange, tmp_path, name):
    with exchange.source() as source, pytest.raises(UnsafeRemotePath):
        source.fetch(exchange.remote_dir(DATE), name, tmp_path / "work")


def test_unsafe_directory_is_refused(exchange, tmp_path):
    with exchange.source() as source:
        with pytest.raises(UnsafeRemotePath):
            source.fetch("/outbox/../../etc", "passwd", tmp_path / "work")
        with pytest.raises(UnsafeRemotePath):
            source.list("/outbox/20261121/..")


def test_list_shows_regular_files_with_size(exchange):
    put_flagged(exchange, "B_FILE", b"12345")
    (exchange.disk_dir(DATE) / "subdir").mkdir()
    with exchange.source() as source:
        entries = source.list(exchange.remote_dir(DATE))
        with pytest.raises(FileNotReady, match="directory does not exist"):
            source.list(exchange.remote_dir("outbox/20261122"))
    assert [(e.name, e.size) for e in entries] == [("B_FILE", 5), ("B_FILE.ok", len("B_FILE|5|3|") + 34)]
    assert all(e.mtime > 1_600_000_000 for e in entries)


def test_wait_for_returns_ready_files_and_accepts_gzip_and_patterns(exchange):
    put_flagged(exchange, "ACOMN_20261121_01", b"a")
    put_flagged(exchange, "ERRN_20261121_01.gz", gzip.compress(b"e"))
    (exchange.disk_dir(DATE) / "ACOMN_20261121_02").write_bytes(b"no flag yet")
    with exchange.source() as source:
        ready = source.wait_for(exchange.remote_dir(DATE), ["ACOMN_20261121_*", "ERRN_20261121_01"], timeout=0)
    assert ready == ["ACOMN_20261121_01", "ERRN_20261121_01.gz"]


def test_wait_for_times_out_naming_the_missing_file_and_host(exchange):
    put_flagged(exchange, "ACOMN_20261121_01", b"a")
    (exchange.disk_dir(DATE) / "CNAPS2_DZMX_20261121_01").write_bytes(b"no flag")
    with exchange.source() as source, pytest.raises(FileNotReady) as caught:
        source.wait_for(exchange.remote_dir(DATE), ["ACOMN_20261121_01", "CNAPS2_DZMX_20261121_01"],
                        timeout=0.3, poll=0.1)
    message = str(caught.value)
    assert "CNAPS2_DZMX_20261121_01" in message and "ACOMN_20261121_01" not in message
    assert source.label in message
    assert caught.value.missing == ("CNAPS2_DZMX_20261121_01",)


def test_wait_for_sees_a_flag_that_arrives_while_waiting(exchange):
    directory = exchange.disk_dir("outbox/20261123")
    (directory / "TIPS_3102_20261123_01.xml").write_bytes(b"<x/>")
    late = threading.Timer(0.3, write_flag, args=(directory / "TIPS_3102_20261123_01.xml", 1))
    late.start()
    try:
        with exchange.source() as source:
            ready = source.wait_for(exchange.remote_dir("outbox/20261123"), ["TIPS_3102_*"], timeout=10, poll=0.1)
    finally:
        late.join()
    assert ready == ["TIPS_3102_20261123_01.xml"]


def test_wait_for_a_directory_not_made_yet_times_out(exchange):
    with exchange.source() as source, pytest.raises(FileNotReady, match="ACOMN_20261199_01"):
        source.wait_for(exchange.remote_dir("outbox/20261199"), ["ACOMN_20261199_01"], timeout=0)


def test_logs_carry_no_secret(exchange, tmp_path, caplog):
    put_flagged(exchange, "ACOMN_20261121_01", b"abc")
    caplog.set_level("DEBUG")
    with exchange.source() as source:
        source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_01", tmp_path / "work")
        assert "PRIVATE KEY" not in repr(source)
    assert "fetched" in caplog.text
    assert "PRIVATE KEY" not in caplog.text
    if exchange.endpoint is not None:
        key_body = exchange.endpoint.private_key.splitlines()[1]
        assert key_body not in caplog.text and key_body not in repr(source)


def test_md5_of_a_fetched_file_matches_formats_flag(exchange, tmp_path):
    data = os.urandom(70_000)
    put_flagged(exchange, "PAY_20261121_01.csv", data)
    with exchange.source() as source:
        fetched = source.fetch(exchange.remote_dir(DATE), "PAY_20261121_01.csv", tmp_path / "work")
    assert md5_of(fetched.local_path) == fetched.md5 == fetched.flag.md5


def test_a_flag_still_being_written_is_not_ready_but_a_garbled_one_is_a_fault(exchange, tmp_path):
    data = b"abc\r\n"
    complete = Flag("ACOMN_20261121_01", len(data), 1, hashlib.md5(data).hexdigest()).render()
    put_flagged(exchange, "ACOMN_20261121_01", data, flag=complete[:20])  # no line end yet
    with exchange.source() as source:
        with pytest.raises(FileNotReady, match="incomplete"):
            source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_01", tmp_path / "work")
        put_flagged(exchange, "ACOMN_20261121_01", data, flag=b"ACOMN_20261121_01|five|1|xyz\r\n")
        with pytest.raises(FlagMismatch, match="malformed flag file"):
            source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_01", tmp_path / "work")


# --- gzip files are checked while they download -------------------------------------------------------------

def test_gzip_of_several_members_is_decompressed_whole_as_gzip_reads_it(exchange, tmp_path):
    first, second = b"H|first member\r\n" * 5000, b"D|second member\r\n" * 7000
    packed = gzip.compress(first) + bytes(10) + gzip.compress(second)  # zero padding between members is allowed
    put_flagged(exchange, "ACOMN_20261121_04.gz", packed)
    with exchange.source() as source:
        fetched = source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_04.gz", tmp_path / "work")
    assert fetched.local_path.read_bytes() == gzip.decompress(packed) == first + second
    assert fetched.md5 == hashlib.md5(first + second).hexdigest()


def test_inflating_in_bounded_steps_loses_no_output(monkeypatch):
    """A step ends when its output is full: the input left over, and output zlib holds back mid-match, come out
    in later steps, whatever the pieces the download hands over."""
    monkeypatch.setattr(sftp, "INFLATE_STEP_BYTES", 1000)
    plain = bytes(100_000) + b"tail\r\n"
    gunzip = sftp._Gunzip()
    packed = gzip.compress(plain)
    inflated = b"".join(piece for i in range(len(packed)) for piece in gunzip.inflate(packed[i:i + 1]))
    assert inflated == plain and gunzip.complete


def corrupted_gzip(size: int) -> bytes:
    """A gzip file of about `size` bytes (random data barely compresses) with one byte changed in the middle."""
    packed = bytearray(gzip.compress(os.urandom(size), compresslevel=1))
    packed[len(packed) // 2] ^= 0xFF
    return bytes(packed)


def test_corrupt_gzip_found_while_streaming_is_rejected_leaving_the_old_copy(exchange, tmp_path):
    put_flagged(exchange, "ACOMN_20261121_06.gz", corrupted_gzip(3 << 20))  # the flag matches the bad bytes
    work = tmp_path / "work"
    work.mkdir()
    (work / "ACOMN_20261121_06").write_bytes(b"yesterday's good copy")
    with exchange.source() as source, pytest.raises(FileRejected, match="not a valid gzip file") as caught:
        source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_06.gz", work)
    assert isinstance(caught.value, Terminal)
    assert (work / "ACOMN_20261121_06").read_bytes() == b"yesterday's good copy"
    assert leftovers(work) == ["ACOMN_20261121_06"]  # neither .part file
    assert not [t for t in threading.enumerate() if t.name.startswith(("check .", "write unpacked"))]


def test_a_gzip_file_unlike_its_flag_is_a_flag_mismatch_before_being_bad_gzip(exchange, tmp_path):
    good = gzip.compress(os.urandom(1 << 20), compresslevel=1)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF  # changed after the flag was written: the MD5 says so, not the inflater
    put_flagged(exchange, "ACOMN_20261121_07.gz", bytes(bad),
                flag=Flag("ACOMN_20261121_07.gz", len(good), 1, hashlib.md5(good).hexdigest()).render())
    with exchange.source() as source, pytest.raises(FlagMismatch, match="MD5 differs"):
        source.fetch(exchange.remote_dir(DATE), "ACOMN_20261121_07.gz", tmp_path / "work")
    assert leftovers(tmp_path / "work") == []


def test_corrupt_gzip_registers_nothing(tmp_path):
    """Through the pipeline's fetch step: a refused file never reaches the registry or the landing folder."""
    root = tmp_path / "account"
    (root / "outbox" / "20261121").mkdir(parents=True)
    gz = root / "outbox" / "20261121" / "IND26112101ACOMN.gz"
    gz.write_bytes(corrupted_gzip(2 << 20))
    write_flag(gz, 1)
    wd = Workdir(tmp_path / "work")
    with EmbeddedSftpServer(root) as server, pytest.raises(FileRejected, match="not a valid gzip file"):
        pipeline.fetch("unionpay_acq", dt.date(2026, 11, 21), server.endpoint(), wd)
    with wd.control() as db:
        assert db.execute("SELECT count(*) FROM files").fetchone()[0] == 0
    landing = wd.landing("unionpay_acq", dt.date(2026, 11, 21))
    assert [p.relative_to(landing) for p in landing.rglob("*") if p.is_file()] == []
