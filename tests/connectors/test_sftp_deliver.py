"""Delivering files back (回盘, replies): tmp + rename + flag, idempotent from the server's state."""
from __future__ import annotations

import pytest

from connectors.errors import ConnectorConfigError, DeliveryConflict
from formats.errors import FlagMismatch, Terminal
from formats.flag import flag_for, parse_flag, write_flag

INBOX = "inbox/20261121"


def reply(tmp_path, name="DK_RET_20261121_01.txt", data=b"R|0001|0000\r\n" * 50, record_count=50):
    path = tmp_path / "out" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    write_flag(path, record_count)
    return path


def test_deliver_creates_the_directory_and_leaves_file_and_flag(exchange, tmp_path):
    local = reply(tmp_path)
    with exchange.source() as source:
        delivery = source.deliver(local, exchange.remote_dir(INBOX))
    remote = exchange.disk_path(INBOX)
    assert sorted(p.name for p in remote.iterdir()) == [local.name, local.name + ".ok"]  # no .tmp left
    assert (remote / local.name).read_bytes() == local.read_bytes()
    assert parse_flag((remote / (local.name + ".ok")).read_bytes()) == flag_for(local, 50)
    assert (remote / (local.name + ".ok")).read_bytes().endswith(b"\r\n")
    assert delivery.status == "delivered"
    assert delivery.remote_path == f"{exchange.remote_dir(INBOX)}/{local.name}"
    assert (delivery.size, delivery.md5) == (local.stat().st_size, flag_for(local, 50).md5)


def test_second_delivery_is_a_noop(exchange, tmp_path, caplog):
    local = reply(tmp_path)
    with exchange.source() as source:
        source.deliver(local, exchange.remote_dir(INBOX))
        flag_file = exchange.disk_path(INBOX) / (local.name + ".ok")
        before = (flag_file.stat().st_ino, flag_file.stat().st_mtime_ns)
        caplog.set_level("INFO", logger="duizhang.connectors")
        again = source.deliver(local, exchange.remote_dir(INBOX))
    assert again.status == "already_delivered"
    assert (flag_file.stat().st_ino, flag_file.stat().st_mtime_ns) == before  # nothing rewritten
    assert "already delivered" in caplog.text


def test_changed_content_under_the_same_name_is_a_conflict(exchange, tmp_path):
    local = reply(tmp_path)
    with exchange.source() as source:
        source.deliver(local, exchange.remote_dir(INBOX))
        changed = reply(tmp_path / "v2", data=b"R|0001|1001\r\n" * 50)
        with pytest.raises(DeliveryConflict) as caught:
            source.deliver(changed, exchange.remote_dir(INBOX))
    assert isinstance(caught.value, Terminal)
    assert flag_for(local, 50).md5 in str(caught.value) and flag_for(changed, 50).md5 in str(caught.value)
    assert (exchange.disk_path(INBOX) / local.name).read_bytes() == local.read_bytes()  # untouched


def test_force_replaces_and_warns(exchange, tmp_path, caplog):
    local = reply(tmp_path)
    changed = reply(tmp_path / "v2", data=b"R|0001|1001\r\n" * 60, record_count=60)
    with exchange.source() as source:
        source.deliver(local, exchange.remote_dir(INBOX))
        caplog.set_level("WARNING", logger="duizhang.connectors")
        delivery = source.deliver(changed, exchange.remote_dir(INBOX), force=True)
    remote = exchange.disk_path(INBOX)
    assert delivery.status == "forced"
    assert (remote / local.name).read_bytes() == changed.read_bytes()
    assert parse_flag((remote / (local.name + ".ok")).read_bytes()) == flag_for(changed, 60)
    assert "operator forced" in caplog.text


@pytest.mark.parametrize("crash_left", ["tmp_only", "data_without_flag", "flag_tmp"])
def test_rerun_after_a_crash_between_steps_completes(exchange, tmp_path, crash_left):
    local = reply(tmp_path)
    remote = exchange.disk_dir(INBOX)
    if crash_left == "tmp_only":                       # crashed during the upload
        (remote / (local.name + ".tmp")).write_bytes(local.read_bytes()[:100])
    elif crash_left == "data_without_flag":            # crashed after the rename, before the flag
        (remote / local.name).write_bytes(local.read_bytes()[:-5])
    else:                                              # crashed while writing the flag
        (remote / local.name).write_bytes(local.read_bytes())
        (remote / (local.name + ".ok.tmp")).write_bytes(b"DK_RET")
    with exchange.source() as source:
        delivery = source.deliver(local, exchange.remote_dir(INBOX))
    assert delivery.status == "delivered"
    assert sorted(p.name for p in remote.iterdir()) == [local.name, local.name + ".ok"]
    assert (remote / local.name).read_bytes() == local.read_bytes()


def test_record_count_can_be_given_instead_of_a_local_flag(exchange, tmp_path):
    local = tmp_path / "ENTRIES_UTILITY_20261121_01.csv"
    local.write_bytes(b"voucher_no,line_no\r\nV1,1\r\n")
    with exchange.source() as source:
        with pytest.raises(ConnectorConfigError, match="no flag file"):
            source.deliver(local, exchange.remote_dir(INBOX))
        source.deliver(local, exchange.remote_dir(INBOX), record_count=1)
    assert parse_flag((exchange.disk_path(INBOX) / (local.name + ".ok")).read_bytes()).record_count == 1


def test_a_local_flag_that_disagrees_with_its_file_is_refused(exchange, tmp_path):
    local = reply(tmp_path)
    local.write_bytes(local.read_bytes() + b"one more line\r\n")  # changed after its flag was written
    with exchange.source() as source, pytest.raises(FlagMismatch):
        source.deliver(local, exchange.remote_dir(INBOX))
    assert not exchange.disk_path(INBOX).exists()
