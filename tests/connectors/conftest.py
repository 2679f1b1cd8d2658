"""Real servers for the connector tests: OpenSSH's sshd, the embedded asyncssh server, PostgreSQL.

No mocks: sshd runs as a child process on a free loopback port with a throwaway ed25519 host key (installed by
scripts/system-deps.sh when missing); the embedded server runs in a thread; the ledger tests use the machine's
PostgreSQL with one table per test. `CuttingProxy` sits between a client and sshd to break a connection
mid-transfer.
"""
from __future__ import annotations

import itertools
import os
import pwd
import selectors
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest
import sqlalchemy as sa

from connectors.sftp import LocalDirSource, SftpEndpoint, SftpSource, Source
from connectors.sftp_server import EmbeddedSftpServer

REPO = Path(__file__).resolve().parents[2]
SSHD = Path("/usr/sbin/sshd")
PG_URL = os.environ.get("DUIZHANG_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")

# Tests retry fast: the backoff policy itself is the same code as in production.
FAST_RETRY = {"max_attempts": 4, "backoff_seconds": 0.05, "max_backoff_seconds": 0.2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_banner(port: int, process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no SSH banner on 127.0.0.1:{port} after {timeout} s")


def write_key_pair(directory: Path, name: str) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(directory / name))
    (directory / name).chmod(0o600)
    key.write_public_key(str(directory / f"{name}.pub"))
    return key


@dataclass
class SshdServer:
    """A real OpenSSH sshd serving `root` (sftp paths are absolute: `remote_base` is `root` itself)."""
    port: int
    root: Path
    host_key_line: str
    client_private_key: str
    username: str = "root"
    host: str = "127.0.0.1"

    def endpoint(self, port: int | None = None, **options) -> SftpEndpoint:
        return SftpEndpoint(host=self.host, port=port or self.port, username=self.username,
                            private_key=self.client_private_key, host_key=self.host_key_line, **options)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> SshdServer:
    if not SSHD.exists():
        if os.geteuid() != 0:
            pytest.skip("/usr/sbin/sshd missing; run scripts/system-deps.sh as root")
        subprocess.run(["bash", str(REPO / "scripts" / "system-deps.sh")], check=True)
    config_dir = tmp_path_factory.mktemp("sshd")
    root = tmp_path_factory.mktemp("sshd_root")
    host_key = write_key_pair(config_dir, "ssh_host_ed25519_key")
    client_key = write_key_pair(config_dir, "client_ed25519_key")
    shutil.copy(config_dir / "client_ed25519_key.pub", config_dir / "authorized_keys")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory sshd requires as root
    port = free_port()
    user = pwd.getpwuid(os.getuid()).pw_name  # root here; sshd run by another user can only log that user in
    config = config_dir / "sshd_config"
    config.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {config_dir}/ssh_host_ed25519_key
PidFile {config_dir}/sshd.pid
AuthorizedKeysFile {config_dir}/authorized_keys
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers {user}
Subsystem sftp internal-sftp
LogLevel ERROR
""")
    log_file = open(config_dir / "sshd.log", "wb")
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log_file,
                               stderr=subprocess.STDOUT)
    try:
        wait_for_banner(port, process)
        yield SshdServer(port=port, root=root, username=user,
                         host_key_line=host_key.export_public_key("openssh").decode().strip(),
                         client_private_key=client_key.export_private_key("openssh").decode())
    except RuntimeError as e:
        raise RuntimeError(f"{e}; sshd log:\n{(config_dir / 'sshd.log').read_text()}") from None
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()


@pytest.fixture
def fast_retry() -> dict:
    return dict(FAST_RETRY)


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory):
    with EmbeddedSftpServer(tmp_path_factory.mktemp("embedded_root")) as server:
        yield server


_case_numbers = itertools.count(1)


@dataclass
class Exchange:
    """One test's corner of an exchange account: where its files are on disk, how the source names them."""
    kind: str
    root: Path                      # on-disk directory the account's paths start from
    remote_base: str                # prefix of remote paths ('' when the server is chrooted to `root`)
    make_source: object             # (**options) -> Source
    endpoint: SftpEndpoint | None = None
    case: str = field(default_factory=lambda: f"case{next(_case_numbers):03d}")

    def remote_dir(self, relative: str) -> str:
        return f"{self.remote_base}/{self.case}/{relative}"

    def disk_dir(self, relative: str) -> Path:
        path = self.root / self.case / relative
        path.mkdir(parents=True, exist_ok=True)
        return path

    def disk_path(self, remote_dir_relative: str) -> Path:
        return self.root / self.case / remote_dir_relative

    def source(self, **options) -> Source:
        return self.make_source(**options)


@pytest.fixture(params=["sshd", "embedded", "local"])
def exchange(request, tmp_path) -> Exchange:
    kind = request.param
    if kind == "sshd":
        server = request.getfixturevalue("sshd")
        endpoint = server.endpoint()
        return Exchange(kind, server.root, str(server.root),
                        lambda **o: SftpSource(endpoint, **{**FAST_RETRY, **o}), endpoint)
    if kind == "embedded":
        server = request.getfixturevalue("embedded_server")
        endpoint = server.endpoint()
        return Exchange(kind, server.root, "", lambda **o: SftpSource(endpoint, **{**FAST_RETRY, **o}), endpoint)
    root = tmp_path / "local_account"
    root.mkdir()
    return Exchange(kind, root, "", lambda **o: LocalDirSource(root, **o))


@pytest.fixture(params=["sshd", "embedded"])
def sftp_server(request):
    """Either real SFTP server (for what only a network source does: host keys, authentication)."""
    return request.getfixturevalue("sshd" if request.param == "sshd" else "embedded_server")


# --- A TCP proxy that breaks connections ----------------------------------------------------------------------

class CuttingProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port`; the first `cut_connections` connections are broken
    once `cut_after_bytes` have passed in `direction` ('down': server to client, 'up': client to server):
    reset (`stall=False`), or left open with nothing more forwarded (`stall=True`, a silent network).
    `bytes_down` counts what the server sent through it, on every connection.
    Bounded: it serves only while the test runs and only on loopback."""

    def __init__(self, target_port: int, cut_after_bytes: int, *, direction: str = "down",
                 cut_connections: int = 1, stall: bool = False) -> None:
        self.target_port = target_port
        self.cut_after_bytes = cut_after_bytes
        self.direction = direction
        self.cut_connections = cut_connections
        self.stall = stall
        self.connections = 0
        self.cuts = 0
        self.bytes_down = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> CuttingProxy:
        self._accept_thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopping.set()
        self._listener.close()
        self._accept_thread.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            cut = self.connections <= self.cut_connections
            thread = threading.Thread(target=self._pump, args=(client, cut), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _pump(self, client: socket.socket, cut: bool) -> None:
        server = socket.create_connection(("127.0.0.1", self.target_port))
        peers = {client: server, server: client}
        counted = server if self.direction == "down" else client
        passed = 0
        selector = selectors.DefaultSelector()
        for s in peers:
            selector.register(s, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                for key, _ in selector.select(timeout=0.1):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    if key.fileobj is server:
                        self.bytes_down += len(data)
                    if cut and key.fileobj is counted:
                        passed += len(data)
                        if passed > self.cut_after_bytes:
                            self.cuts += 1
                            if self.stall:
                                self._stopping.wait()  # hold both ends open, forward nothing
                                return
                            # RST rather than FIN: what a firewall dropping the session looks like.
                            for s in peers:
                                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                            return
                    peers[key.fileobj].sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            client.close()
            server.close()


@pytest.fixture
def cutting_proxy():
    """The `CuttingProxy` class (a fixture, so that test modules need not import conftest)."""
    return CuttingProxy


# --- PostgreSQL -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_engine():
    engine = sa.create_engine(PG_URL)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable at {engine.url.render_as_string(hide_password=True)}: {e.orig}")
    yield engine
    engine.dispose()


@pytest.fixture
def journal_table_name(pg_engine):
    """A unique table name, dropped after the test."""
    name = f"test_journal_{uuid.uuid4().hex[:12]}"
    yield name
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
