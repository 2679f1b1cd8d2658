"""Connecting: host-key pinning (never auto-accept), authentication, endpoints from URLs and Airflow
connections, and the embedded server's command line."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import asyncssh
import pytest

from connectors.errors import (AuthenticationFailed, ConnectorConfigError, HostKeyMismatch, ServerUnavailable)
from connectors.sftp import LocalDirSource, SftpEndpoint, SftpSource, open_source
from formats.errors import Terminal, Transient
from formats.flag import write_flag

REPO = Path(__file__).resolve().parents[2]
OTHER_KEY = asyncssh.generate_private_key("ssh-ed25519")
OTHER_KEY_LINE = OTHER_KEY.export_public_key("openssh").decode().strip()


def test_a_different_host_key_is_refused(sftp_server, fast_retry):
    endpoint = replace(sftp_server.endpoint(), host_key=OTHER_KEY_LINE)
    with SftpSource(endpoint, **fast_retry) as source, pytest.raises(HostKeyMismatch) as caught:
        source.list("/")
    error = caught.value
    assert isinstance(error, Terminal)
    assert f"127.0.0.1:{sftp_server.port}" in str(error)
    assert "not the pinned one" in str(error) and "SHA256:" in str(error)


def test_an_unknown_host_is_refused_never_added(sftp_server, fast_retry, tmp_path):
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    endpoint = replace(sftp_server.endpoint(), host_key=None, known_hosts=str(empty_known_hosts))
    with SftpSource(endpoint, **fast_retry) as source, pytest.raises(HostKeyMismatch, match="no host key pinned"):
        source.list("/")
    assert empty_known_hosts.read_text() == ""


def test_a_known_hosts_file_pins_the_key(sftp_server, fast_retry, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sftp_server.port} {sftp_server.host_key_line}\n")
    endpoint = replace(sftp_server.endpoint(), host_key=None, known_hosts=str(known_hosts))
    with SftpSource(endpoint, **fast_retry) as source:
        source.list("/")


def test_a_bare_base64_host_key_as_airflow_allows(sftp_server, fast_retry):
    bare = sftp_server.host_key_line.split()[1]
    with SftpSource(replace(sftp_server.endpoint(), host_key=bare), **fast_retry) as source:
        source.list("/")


def test_aes_gcm_is_negotiated_with_both_servers(sftp_server, fast_retry):
    """AES-GCM is offered first (no separate MAC pass per packet); both OpenSSH and asyncssh accept it."""
    with SftpSource(sftp_server.endpoint(), **fast_retry) as source:
        source.list("/")
        transport = source._client.get_transport()
        assert (transport.local_cipher, transport.remote_cipher) == ("aes128-gcm@openssh.com",) * 2


def test_an_unauthorised_client_key_fails_at_once(sftp_server, fast_retry):
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()
    endpoint = replace(sftp_server.endpoint(), private_key=stranger)
    with SftpSource(endpoint, **fast_retry) as source, pytest.raises(AuthenticationFailed):
        source.list("/")


def test_no_server_is_transient_after_bounded_retries(caplog, unused_port):
    port = unused_port
    endpoint = SftpEndpoint("127.0.0.1", port, "cups", password="not-used", host_key=OTHER_KEY_LINE,
                            connect_timeout=2)
    caplog.set_level("WARNING", logger="duizhang.connectors")
    with SftpSource(endpoint, max_attempts=3, backoff_seconds=0.01) as source:
        with pytest.raises(ServerUnavailable) as caught:
            source.list("/outbox")
    assert isinstance(caught.value, Transient)
    assert caplog.text.count("reconnecting") == 2
    assert "not-used" not in caplog.text and "not-used" not in str(caught.value)


def test_endpoint_repr_hides_secrets(sshd):
    endpoint = replace(sshd.endpoint(), password="hunter2", key_passphrase="pass-phrase")
    text = repr(endpoint)
    for secret in ("hunter2", "pass-phrase", "PRIVATE KEY", sshd.client_private_key.splitlines()[1]):
        assert secret not in text
    assert "auth=private_key+password" in text


def test_endpoint_from_url_reads_secrets_from_the_environment():
    env = {"CUPS_SFTP_PRIVATE_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\n...",
           "CUPS_SFTP_HOST_KEY": OTHER_KEY_LINE}
    endpoint = SftpEndpoint.from_url("sftp://cups@sftp.example.cn:2222", env=env, env_prefix="CUPS_SFTP_")
    assert (endpoint.host, endpoint.port, endpoint.username) == ("sftp.example.cn", 2222, "cups")
    assert endpoint.private_key == env["CUPS_SFTP_PRIVATE_KEY"] and endpoint.host_key == OTHER_KEY_LINE
    assert endpoint.known_hosts_name == "[sftp.example.cn]:2222"
    assert SftpEndpoint.from_url("sftp://cups@h", env={"DUIZHANG_SFTP_PASSWORD": "x"}).port == 22


@pytest.mark.parametrize("url, problem", [
    ("ftp://cups@h", "not an sftp:// URL"),
    ("sftp://cups@h:22/outbox", "names the server only"),
    ("sftp://cups@h:99999", "port"),
    ("sftp://h", "no user name"),
    ("sftp://cups@h", "no credentials"),
])
def test_bad_urls_are_configuration_errors(url, problem):
    with pytest.raises(ConnectorConfigError, match=problem):
        SftpEndpoint.from_url(url, env={})


def test_endpoint_from_an_airflow_connection(sshd, tmp_path):
    conn = SimpleNamespace(host="127.0.0.1", port=sshd.port, login=sshd.username, password=None,
                           extra_dejson={"host_key": sshd.host_key_line, "private_key": sshd.client_private_key})
    endpoint = SftpEndpoint.from_airflow_connection(conn)
    assert endpoint == sshd.endpoint()
    with open_source(endpoint) as source:
        assert isinstance(source, SftpSource)
        source.list("/")


@pytest.mark.parametrize("extra", [{"no_host_key_check": "true"}, {"allow_host_key_change": True}])
def test_an_airflow_connection_without_host_key_checking_is_refused(extra):
    conn = SimpleNamespace(host="h", port=22, login="u", password="p", extra_dejson=extra)
    with pytest.raises(ConnectorConfigError, match="disables host-key checking"):
        SftpEndpoint.from_airflow_connection(conn)


def test_an_unreadable_private_key_is_a_configuration_error():
    endpoint = SftpEndpoint("h", 22, "u", private_key="-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n",
                            host_key=OTHER_KEY_LINE)
    with pytest.raises(ConnectorConfigError, match="private key cannot be read") as caught:
        SftpSource(endpoint)
    assert "garbage" not in str(caught.value)


def test_open_source_picks_the_implementation(tmp_path):
    assert isinstance(open_source(tmp_path), LocalDirSource)
    assert isinstance(open_source(f"file://{tmp_path}"), LocalDirSource)
    with pytest.raises(ConnectorConfigError, match="does not exist"):
        open_source(tmp_path / "missing")


def test_embedded_server_command_line_prints_an_airflow_connection(tmp_path):
    root = tmp_path / "root"
    (root / "outbox" / "20261121").mkdir(parents=True)
    data = root / "outbox" / "20261121" / "BDC_BAT_20261121_01.txt"
    data.write_bytes(b"1@|$2\r\n")
    write_flag(data, 1)
    process = subprocess.Popen([sys.executable, "-m", "connectors.sftp_server", str(root)], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    try:
        connection = json.loads(process.stdout.readline())
        assert connection["conn_type"] == "sftp" and connection["host"] == "127.0.0.1"
        assert connection["extra"]["host_key"].startswith("ssh-ed25519 AAAA")
        conn = SimpleNamespace(host=connection["host"], port=connection["port"], login=connection["login"],
                               password=None, extra_dejson=connection["extra"])
        with open_source(SftpEndpoint.from_airflow_connection(conn)) as source:
            fetched = source.fetch("/outbox/20261121", data.name, tmp_path / "work")
        assert fetched.local_path.read_bytes() == data.read_bytes()
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        process.stdout.close()


def test_embedded_server_endpoint_is_ready(embedded_server):
    endpoint = embedded_server.endpoint()
    assert endpoint.host_key == embedded_server.host_key_line
    assert endpoint.private_key == embedded_server.client_private_key
    assert Path(embedded_server.root).is_dir()


def test_system_deps_script_is_idempotent(sshd):
    # sshd is installed by now (the fixture ran the script if needed): a second run changes nothing.
    result = subprocess.run(["bash", str(REPO / "scripts" / "system-deps.sh")], capture_output=True, text=True,
                            check=True)
    assert "nothing to do" in result.stdout
