"""An embedded SFTP server on 127.0.0.1 for the demo and the tests, built on asyncssh.

It serves one directory as the account's root (``/outbox/...`` is ``ROOT/outbox/...``), accepts one user with
one generated ed25519 client key (no password, no shell), and presents a generated ed25519 host key, so that
clients connect with host-key checking on, exactly as in production.

    with EmbeddedSftpServer(tmp_path) as server:
        with open_source(server.endpoint()) as source:
            source.fetch("/outbox/20261121", "ACOMN_20261121_01", work_dir)

From a shell (``make demo``): ``python -m connectors.sftp_server ROOT --port 2222`` prints the connection as
Airflow's ``AIRFLOW_CONN_*`` JSON (with the throwaway client key) on one line and serves until killed.
The keys live only in memory and die with the server: they are not secrets worth keeping.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import threading
from pathlib import Path

import asyncssh

from connectors.sftp import SftpEndpoint

log = logging.getLogger("duizhang.connectors")

LOOPBACK = "127.0.0.1"


class _KeyOnlyServer(asyncssh.SSHServer):
    """Accepts exactly one user with exactly one public key; nothing else (no password, no keyboard-interactive)."""

    def __init__(self, username: str, client_key: asyncssh.SSHKey) -> None:
        self._username = username
        self._client_public = client_key.public_data

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is always required

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._username and key.public_data == self._client_public


def _answers_gathered(chan: asyncssh.SSHServerChannel) -> asyncssh.SSHServerChannel:
    """The SFTP session's channel, its answers written together once per turn of the event loop.

    asyncssh sends each SFTP answer in an SSH packet of its own. OpenSSH's sshd packs what its sftp-server wrote
    meanwhile into full packets, so a client with many requests in flight gets many answers per packet; this does
    the same (the answers to requests that arrived together are written in one go), which spares the encryption,
    the packet and the client's decryption of each answer."""
    loop = asyncio.get_running_loop()
    write = chan.write
    pending: list[bytes] = []

    def flush() -> None:
        data = b"".join(pending)
        pending.clear()
        if not chan.is_closing():
            write(data)

    def gathered(data: bytes, datatype=None) -> None:
        if datatype is not None:    # extended data (stderr): never sent by SFTP; in order all the same
            if pending:
                flush()
            write(data, datatype)
            return
        if not pending:
            loop.call_soon(flush)
        pending.append(data)

    chan.write = gathered
    return chan


class EmbeddedSftpServer:
    """An asyncssh SFTP server chrooted to `root`, on 127.0.0.1, running in a background thread.

    Use as a context manager (or `start()`/`stop()`). `port=0` picks a free port; read `.port` once started.
    """

    def __init__(self, root: Path | str, port: int = 0, *, username: str = "duizhang") -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.requested_port = port
        self.username = username
        self.port: int | None = None
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._client_key = asyncssh.generate_private_key("ssh-ed25519", comment="duizhang-embedded-client")
        # Exported once: each OpenSSH export draws a new random check value, so the text would differ per call.
        self._client_private_key_text = self._client_key.export_private_key("openssh").decode("ascii")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def host_key_line(self) -> str:
        """The server's public host key as an OpenSSH line (``ssh-ed25519 AAAA...``), to pin in clients."""
        return self._host_key.export_public_key("openssh").decode("ascii").strip()

    @property
    def client_private_key(self) -> str:
        """The authorised client's private key, OpenSSH text."""
        return self._client_private_key_text

    @property
    def client_public_key_line(self) -> str:
        return self._client_key.export_public_key("openssh").decode("ascii").strip()

    def endpoint(self, **options) -> SftpEndpoint:
        """A ready `SftpEndpoint` for this server (key authentication, host key pinned). `options` are passed on
        (``io_timeout``, ``connect_timeout``)."""
        self._require_started()
        return SftpEndpoint(host=self.host, port=self.port, username=self.username,
                            private_key=self.client_private_key, host_key=self.host_key_line, **options)

    def airflow_connection(self) -> dict:
        """The connection as Airflow's ``AIRFLOW_CONN_<ID>`` JSON form (conn_type sftp)."""
        self._require_started()
        return {"conn_type": "sftp", "host": self.host, "port": self.port, "login": self.username,
                "extra": {"host_key": self.host_key_line, "private_key": self.client_private_key}}

    def _require_started(self) -> None:
        if self.port is None:
            raise RuntimeError("EmbeddedSftpServer is not started")

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> EmbeddedSftpServer:
        if self._loop is not None:
            return self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="embedded-sftp-server", daemon=True)
        self._thread.start()
        try:
            self._acceptor = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=30)
        except BaseException:
            self._stop_loop()
            raise
        self.port = self._acceptor.get_port()
        log.info("embedded SFTP server on %s:%d serving %s", self.host, self.port, self.root)
        return self

    async def _listen(self) -> asyncssh.SSHAcceptor:
        root = str(self.root).encode()
        return await asyncssh.listen(
            LOOPBACK, self.requested_port,
            server_factory=lambda: _KeyOnlyServer(self.username, self._client_key),
            server_host_keys=[self._host_key],
            sftp_factory=lambda chan: asyncssh.SFTPServer(_answers_gathered(chan), chroot=root),
            allow_scp=False)

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._acceptor is not None:
            acceptor, self._acceptor = self._acceptor, None

            async def close() -> None:
                acceptor.close()
                await acceptor.wait_closed()
                # Sessions still being torn down are cancelled, so the loop stops with no task pending.
                pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=30)
        self._stop_loop()
        self.port = None

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()

    def __enter__(self) -> EmbeddedSftpServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.sftp_server",
        description="Serve ROOT over SFTP on 127.0.0.1 with generated keys; print the Airflow connection JSON "
                    "on one line and serve until killed.")
    parser.add_argument("root", type=Path, help="directory served as the account's root (/outbox, /inbox)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--user", default="duizhang", help="the one user name accepted (default: duizhang)")
    args = parser.parse_args(argv)

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    with EmbeddedSftpServer(args.root, args.port, username=args.user) as server:
        # The one place that prints: this output is the program's interface (the demo reads it).
        print(json.dumps(server.airflow_connection()), flush=True)
        stopping.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
