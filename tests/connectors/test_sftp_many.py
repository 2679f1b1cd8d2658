"""Many files at once (`fetch_many`, `deliver_many`): the same files, results and errors as one `fetch` or
`deliver` after another, against real sshd, the embedded server and a local directory; and over a connection that
drops mid-batch."""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import replace

import asyncssh
import pytest

from connectors import sftp
from connectors.errors import ConnectionLost, DeliveryConflict, FileNotReady
from connectors.sftp import FetchedFile, SftpSource
from formats.errors import FlagMismatch, Transient
from formats.flag import Flag, flag_for, parse_flag, write_flag

from .test_sftp_faults import server, through  # noqa: F401  (server: the fixture of the drop tests)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")

OUTBOX, INBOX = "outbox/20261121", "inbox/20261121"


def batch(n: int) -> dict[str, bytes]:
    """`n` small files of different sizes (one empty, one of several SFTP reads)."""
    files = {f"DK_UTIL0000_20261121_{i:03d}.txt": b"D|%06d|100\r\n" % i * (i % 7) for i in range(n)}
    files[f"DK_UTIL0000_20261121_{n:03d}.txt"] = os.urandom(3 * sftp.SFTP_READ_BYTES + 17)
    return files


def serve(directory, files: dict[str, bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
        write_flag(directory / name, 1)


def test_fetch_many_gives_what_fetch_gives_in_order(exchange, tmp_path, monkeypatch):
    monkeypatch.setattr(sftp, "PIPELINED_FILE_BYTES", 100_000)    # the large file goes one by one
    files = batch(150) | {"BIG_20261121_01": os.urandom(150_000)}
    plain = b"".join(b"%08d|record\r\n" % i for i in range(1000))
    files["ERRN_20261121_01.gz"] = gzip.compress(plain)
    serve(exchange.disk_dir(OUTBOX), files)
    names = sorted(files)
    with exchange.source() as source:
        source.list(exchange.remote_dir(OUTBOX))
        many = list(source.fetch_many(exchange.remote_dir(OUTBOX), names, tmp_path / "many"))
        one_by_one = [source.fetch(exchange.remote_dir(OUTBOX), name, tmp_path / "one") for name in names]
    assert [replace(f, local_path=f.local_path.name) for f in many] == \
           [replace(f, local_path=f.local_path.name) for f in one_by_one]
    for got in many:
        expected = plain if got.compressed else files[got.name]
        assert got.local_path.read_bytes() == expected and got.md5 == hashlib.md5(expected).hexdigest()
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == sorted(n.removesuffix(".gz") for n in names)


def test_fetch_many_without_a_listing_fetches_one_by_one(exchange, tmp_path):
    files = batch(5)
    serve(exchange.disk_dir(OUTBOX), files)
    with exchange.source() as source:
        got = list(source.fetch_many(exchange.remote_dir(OUTBOX), sorted(files), tmp_path / "work"))
    assert [f.local_path.read_bytes() for f in got] == [files[n] for n in sorted(files)]


@pytest.mark.parametrize("fault", ["md5", "size", "no_flag", "no_data", "other_name"])
def test_fetch_many_raises_at_the_failing_file_as_fetch_does(exchange, tmp_path, fault):
    files = batch(100)
    disk = exchange.disk_dir(OUTBOX)
    serve(disk, files)
    bad = sorted(files)[70]
    data = files[bad]
    if fault == "md5":
        (disk / f"{bad}.ok").write_bytes(Flag(bad, len(data), 1, "0" * 32).render())
    elif fault == "size":
        (disk / f"{bad}.ok").write_bytes(Flag(bad, len(data) + 5, 1, hashlib.md5(data).hexdigest()).render())
    elif fault == "other_name":
        (disk / f"{bad}.ok").write_bytes(Flag("OTHER", len(data), 1, hashlib.md5(data).hexdigest()).render())
    with exchange.source() as source:
        source.list(exchange.remote_dir(OUTBOX))
        if fault == "no_flag":      # gone after the listing
            (disk / f"{bad}.ok").unlink()
        elif fault == "no_data":
            (disk / bad).unlink()
        with pytest.raises(Exception) as expected:
            source.fetch(exchange.remote_dir(OUTBOX), bad, tmp_path / "one")
        got = []
        with pytest.raises(type(expected.value)) as caught:
            for fetched in source.fetch_many(exchange.remote_dir(OUTBOX), sorted(files), tmp_path / "many"):
                got.append(fetched.name)
    assert isinstance(expected.value, (FlagMismatch, FileNotReady))
    assert str(caught.value) == str(expected.value)
    assert got == sorted(files)[:70]
    assert not [p.name for p in (tmp_path / "many").iterdir() if p.name.endswith(".part")]


def test_fetch_many_reads_a_flag_rewritten_since_the_listing(exchange, tmp_path):
    files = batch(10)
    disk = exchange.disk_dir(OUTBOX)
    serve(disk, files)
    name = sorted(files)[3]
    with exchange.source() as source:
        source.list(exchange.remote_dir(OUTBOX))
        (disk / name).write_bytes(b"corrected\r\n" * 3)
        write_flag(disk / name, 3)
        got = {f.name: f for f in source.fetch_many(exchange.remote_dir(OUTBOX), sorted(files), tmp_path / "w")}
    assert got[name].local_path.read_bytes() == b"corrected\r\n" * 3 and got[name].flag.record_count == 3


def returns(tmp_path, n: int) -> list:
    paths = []
    for name, data in batch(n).items():
        path = tmp_path / "out" / name.replace("DK_", "HP_")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        write_flag(path, 1)
        paths.append(path)
    return paths


def stamps(directory) -> dict[str, tuple]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.iterdir()}


def test_deliver_many_delivers_each_once(exchange, tmp_path):
    paths = returns(tmp_path, 150)
    remote = exchange.disk_path(INBOX)
    with exchange.source() as source:
        # a rerun after a crash: one delivered whole, one renamed without its flag, one still .tmp
        delivered = source.deliver(paths[10], exchange.remote_dir(INBOX))
        (remote / paths[11].name).write_bytes(b"partial")
        (remote / f"{paths[12].name}.tmp").write_bytes(b"part")
        before = stamps(remote)
        got = list(source.deliver_many(paths, exchange.remote_dir(INBOX)))
        assert [d.name for d in got] == [p.name for p in paths]
        assert {d.status for i, d in enumerate(got) if i != 10} == {"delivered"}
        assert got[10] == replace(delivered, status="already_delivered")
        assert stamps(remote)[f"{paths[10].name}.ok"] == before[f"{paths[10].name}.ok"]
        after = stamps(remote)
        again = list(source.deliver_many(paths, exchange.remote_dir(INBOX)))
    assert {d.status for d in again} == {"already_delivered"}
    assert stamps(remote) == after                                # nothing sent twice
    assert sorted(after) == sorted([p.name for p in paths] + [f"{p.name}.ok" for p in paths])
    for path in paths:
        assert (remote / path.name).read_bytes() == path.read_bytes()
        assert parse_flag((remote / f"{path.name}.ok").read_bytes()) == flag_for(path, 1)


def test_deliver_many_refuses_a_changed_file_at_its_turn(exchange, tmp_path):
    paths = returns(tmp_path, 20)
    with exchange.source() as source:
        source.deliver(paths[5], exchange.remote_dir(INBOX))
        paths[5].write_bytes(b"changed\r\n")
        write_flag(paths[5], 1)
        got = []
        with pytest.raises(DeliveryConflict):
            for delivery in source.deliver_many(paths, exchange.remote_dir(INBOX)):
                got.append(delivery.name)
    assert got == [p.name for p in paths[:5]]


def test_deliver_many_with_a_local_flag_unlike_its_file_raises_at_its_turn(exchange, tmp_path):
    paths = returns(tmp_path, 20)
    paths[7].write_bytes(paths[7].read_bytes() + b"one more line\r\n")
    with exchange.source() as source:
        with pytest.raises(FlagMismatch):
            for delivery in source.deliver_many(paths, exchange.remote_dir(INBOX)):
                assert delivery.name in {p.name for p in paths[:7]}
    assert paths[7].name not in os.listdir(exchange.disk_path(INBOX))


# --- over a connection that drops --------------------------------------------------------------------------------

def test_fetch_many_cut_mid_batch_completes_on_a_new_connection(server, cutting_proxy, fast_retry, tmp_path):
    server, base = server
    files = batch(300)
    serve(server.root / "many_down" / OUTBOX, files)
    remote_dir = f"{base}/many_down/{OUTBOX}"
    with cutting_proxy(server.port, cut_after_bytes=200_000, direction="down") as proxy:
        with through(proxy, server, fast_retry) as source:
            source.list(remote_dir)
            got = list(source.fetch_many(remote_dir, sorted(files), tmp_path / "work"))
    assert proxy.cuts == 1 and proxy.connections == 2
    assert [f.name for f in got] == sorted(files)
    assert all(isinstance(f, FetchedFile) and f.local_path.read_bytes() == files[f.name] for f in got)
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == sorted(files)


def test_deliver_many_cut_mid_batch_completes_on_a_new_connection(server, cutting_proxy, fast_retry, tmp_path):
    server, base = server
    paths = returns(tmp_path, 300)
    with cutting_proxy(server.port, cut_after_bytes=200_000, direction="up") as proxy:
        with through(proxy, server, fast_retry) as source:
            got = list(source.deliver_many(paths, f"{base}/many_up/{INBOX}"))
    assert proxy.cuts == 1 and proxy.connections == 2
    assert {d.status for d in got} == {"delivered"}
    remote = server.root / "many_up" / INBOX
    assert sorted(p.name for p in remote.iterdir()) == sorted([p.name for p in paths] +
                                                              [f"{p.name}.ok" for p in paths])
    assert all((remote / p.name).read_bytes() == p.read_bytes() for p in paths)


def test_fetch_many_over_a_connection_that_keeps_dropping_gives_up(server, cutting_proxy, fast_retry, tmp_path):
    server, base = server
    files = batch(300)
    serve(server.root / "many_always" / OUTBOX, files)
    remote_dir = f"{base}/many_always/{OUTBOX}"
    with cutting_proxy(server.port, cut_after_bytes=100_000, cut_connections=99) as proxy:
        with through(proxy, server, fast_retry, max_attempts=3) as source:
            source.list(remote_dir)
            with pytest.raises(ConnectionLost) as caught:
                list(source.fetch_many(remote_dir, sorted(files), tmp_path / "work"))
    assert isinstance(caught.value, Transient)
    assert not [p.name for p in (tmp_path / "work").iterdir() if p.name.endswith(".part")]


def test_a_caller_that_stops_early_leaves_the_source_usable(exchange, tmp_path):
    files = batch(200)
    serve(exchange.disk_dir(OUTBOX), files)
    names = sorted(files)
    with exchange.source() as source:
        source.list(exchange.remote_dir(OUTBOX))
        many = source.fetch_many(exchange.remote_dir(OUTBOX), names, tmp_path / "many")
        first = [next(many) for _ in range(3)]
        many.close()        # files still in flight: their answers are not waited for
        again = source.fetch(exchange.remote_dir(OUTBOX), names[150], tmp_path / "one")
    assert [f.name for f in first] == names[:3]
    assert again.local_path.read_bytes() == files[names[150]]
    assert not [p.name for p in (tmp_path / "many").iterdir() if p.name.endswith(".part")]


def test_read_flags_gives_what_read_flag_gives_and_raises_at_a_missing_one(exchange, tmp_path):
    files = batch(120)
    disk = exchange.disk_dir(OUTBOX)
    serve(disk, files)
    names = sorted(files)
    with exchange.source() as source:
        source.list(exchange.remote_dir(OUTBOX))
        (disk / names[5]).with_name(names[5] + ".ok").write_bytes(Flag(names[5], 3, 9, "f" * 32).render())
        flags = list(source.read_flags(exchange.remote_dir(OUTBOX), names))
        assert flags == [source.read_flag(exchange.remote_dir(OUTBOX), name) for name in names]
        assert flags[5] == Flag(names[5], 3, 9, "f" * 32)       # rewritten since the listing
        (disk / f"{names[90]}.ok").unlink()
        got = []
        with pytest.raises(FileNotReady, match=f"{names[90]}.ok not there yet"):
            for flag in source.read_flags(exchange.remote_dir(OUTBOX), names):
                got.append(flag.name)
    assert got == names[:90]


def test_deliver_many_to_a_server_without_posix_rename(embedded_server, tmp_path, monkeypatch):
    """A plain SFTP rename refuses an existing target: the target is removed first, as `deliver` does."""
    def unsupported(self, oldpath, newpath):
        raise asyncssh.SFTPOpUnsupported("posix-rename not supported here")

    monkeypatch.setattr(asyncssh.SFTPServer, "posix_rename", unsupported)
    paths = returns(tmp_path, 30)
    remote = embedded_server.root / "no_posix_rename" / INBOX
    remote.mkdir(parents=True)
    (remote / paths[3].name).write_bytes(b"left by a crash, no flag")
    with SftpSource(embedded_server.endpoint()) as source:
        got = list(source.deliver_many(paths, f"/no_posix_rename/{INBOX}"))
    assert {d.status for d in got} == {"delivered"}
    assert sorted(p.name for p in remote.iterdir()) == sorted([p.name for p in paths] +
                                                              [f"{p.name}.ok" for p in paths])
    assert all((remote / p.name).read_bytes() == p.read_bytes() for p in paths)
