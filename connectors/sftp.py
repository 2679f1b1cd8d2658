"""File exchange with a counterparty: an SFTP account, or a local directory laid out like one.

The layout (specs/README.md): files for the bank under ``/outbox/YYYYMMDD/``, files from the bank under
``/inbox/YYYYMMDD/``; a data file ``NAME`` is complete only when its flag ``NAME.ok`` exists beside it; a
counterparty may send ``NAME.gz`` with the flag ``NAME.gz.ok`` instead.

    with open_source(SftpEndpoint.from_airflow_connection(conn)) as source:
        source.wait_for("/outbox/20261121", ["ACOMN_20261121_*"], timeout=0)
        fetched = source.fetch("/outbox/20261121", "ACOMN_20261121_01", work_dir)
        source.deliver(reply_path, "/inbox/20261121")

A night of thousands of small files goes through `fetch_many` and `deliver_many`: the same protocol, with the
requests of many files in flight at once (over SFTP each request is a round trip, and a file took 7 to 11).

Guarantees:
* A download is written to ``local_dir/.NAME.part`` and appears as ``local_dir/NAME`` (by ``os.replace``) only
  once its size and MD5 equal the flag's; its data is on disk (fsync) when `fetch` returns, and its name is made
  durable (`fsync_dir`) by the caller, in the folder where the file ends up. Both are computed while the file arrives, and a gzip file is
  decompressed as it arrives too (with a size limit): it is kept only once the compressed file matches its flag
  and the gzip stream ends whole.
* A delivery uploads ``NAME.tmp``, renames it to ``NAME``, then writes ``NAME.ok`` the same way; it is idempotent
  from the server's state and never silently replaces a different file already delivered under the same name.
* The server's host key is always checked against a pinned key (paramiko's `RejectPolicy`, never auto-accept).
* Network faults are retried with exponential backoff on a new connection, a bounded number of times;
  everything else fails at once. Errors are typed `Terminal` or `Transient` (connectors/errors.py).

Plain Python: no Airflow import. Logs go to the ``duizhang.connectors`` logger and never contain a secret.
"""
from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import io
import itertools
import logging
import os
import posixpath
import shutil
import socket
import stat
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, TypeVar
from urllib.parse import unquote, urlsplit

import paramiko
from isal import isal_zlib
from paramiko.sftp import (CMD_ATTRS, CMD_CLOSE, CMD_DATA, CMD_EXTENDED, CMD_HANDLE, CMD_OPEN, CMD_READ, CMD_REMOVE,
                           CMD_RENAME, CMD_STAT, CMD_STATUS, CMD_WRITE, SFTP_FLAG_CREATE, SFTP_FLAG_READ,
                           SFTP_FLAG_TRUNC, SFTP_FLAG_WRITE)

from connectors.errors import (AuthenticationFailed, ConnectionLost, ConnectorConfigError, ConnectorError,
                               DeliveryConflict, FileNotReady, FileTooLarge, HostKeyMismatch, RemoteFileError,
                               ServerUnavailable, UnsafeRemotePath)
from formats.errors import FileRejected, FlagMismatch, FormatError
from formats.flag import Flag, flag_for, parse_flag, verify_file

log = logging.getLogger("duizhang.connectors")

T = TypeVar("T")

FLAG_SUFFIX = ".ok"
GZIP_SUFFIX = ".gz"
TMP_SUFFIX = ".tmp"
MAX_FLAG_BYTES = 4096                 # a flag is one short line; anything longer is not a flag
DEFAULT_MAX_FILE_BYTES = 16 << 30     # 20 million UnionPay records are about 6 GiB
DEFAULT_MAX_UNPACKED_BYTES = 16 << 30
COPY_CHUNK_BYTES = 1 << 20
PREFETCH_REQUESTS = 64                # SFTP reads in flight: the pipe stays full, memory bounded (4 MiB)
SFTP_READ_BYTES = 64 << 10            # one SFTP read request: half the packets of paramiko's 32 KiB, and no more
                                      # than any OpenSSH sftp-server answers whole (older ones cap reads at 64 KiB)
SFTP_MAX_PACKET_BYTES = 128 << 10     # SSH packets we accept: a 64 KiB read answer fits in one (at paramiko's
                                      # 32 KiB, each answer took two packets); client and server CPU per byte halve
SFTP_WINDOW_BYTES = 128 << 20       # the SSH channel window: paramiko's default 2 MiB stalls the prefetch (measured: 13 -> 30 MB/s)
PIPELINED_FILE_BYTES = 1 << 20      # fetch_many/deliver_many keep files up to this size in memory, many at once
FILES_WRITTEN_AT_ONCE = 8             # fetched files being written and fsynced together
ANSWERS_READ_BYTES = 1 << 20          # answers taken from the SSH channel in one read, as many as have come
FILES_READ_AHEAD = 256               # files fetched or delivered ahead of the caller's handling of them
FILES_IN_FLIGHT = 64                  # files whose requests are in flight together: hides the round trips
CHECK_READ_BYTES = 4 << 20            # the download check reads the growing .part in pieces of at most this
INFLATE_STEP_BYTES = 8 << 20          # decompressed bytes per inflate step: memory bounded whatever the ratio
INFLATED_STEPS_AHEAD = 4              # inflated pieces waiting to be hashed and written
GZIP_WBITS = 16 + zlib.MAX_WBITS      # inflate reads the gzip header and checks the trailer's CRC-32 and length


# --- Values -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RemoteEntry:
    """A regular file in a remote (or local exchange) directory."""
    name: str
    size: int
    """Bytes."""
    mtime: int
    """Last modification, seconds since the epoch (UTC), as the server reports it."""


@dataclass(frozen=True)
class FetchedFile:
    """A verified local copy of a counterparty file.

    For a gzip file, `name`, `local_path`, `size` and `md5` describe the decompressed file, while `flag`
    (as received) describes the compressed one (its name, size and MD5) and the decompressed record count.
    The record count is checked later by the format reader (`formats.flag.verify_count`).
    """
    name: str
    local_path: Path
    size: int
    md5: str
    flag: Flag
    compressed: bool


@dataclass(frozen=True)
class Delivery:
    """The outcome of `Source.deliver`."""
    name: str
    remote_path: str
    size: int
    md5: str
    status: Literal["delivered", "already_delivered", "forced"]
    """``already_delivered``: the server already had this exact file and flag, nothing was sent;
    ``forced``: a different file under the same name was replaced because an operator passed ``force=True``."""


# --- Endpoint ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class SftpEndpoint:
    """Where and how to log in to a counterparty's SFTP server. `repr` never shows a secret.

    Raises `ConnectorConfigError` when host, user or every credential is missing.
    """
    host: str
    port: int = 22
    username: str = ""
    private_key: str | None = None
    """Private key text (OpenSSH or PEM). Secret."""
    key_file: str | None = None
    """Path of a private key file (used when `private_key` is not given)."""
    password: str | None = None
    """Secret; key authentication is preferred."""
    key_passphrase: str | None = None
    """Passphrase of an encrypted private key. Secret."""
    host_key: str | None = None
    """The server's public host key to pin, one OpenSSH line per key: ``ssh-ed25519 AAAA... [comment]``."""
    known_hosts: str | None = None
    """Path of a known_hosts file holding the server's key (an alternative to `host_key`). With neither, the
    system's ``~/.ssh/known_hosts`` is used, and a server not in it is refused."""
    connect_timeout: float = 15.0
    """Seconds to connect, read the banner and authenticate."""
    io_timeout: float = 60.0
    """Seconds without an answer from the server before the connection is considered lost."""

    def __post_init__(self) -> None:
        if not self.host:
            raise ConnectorConfigError("SFTP endpoint has no host")
        if not 0 < int(self.port) < 65536:
            raise ConnectorConfigError("SFTP port out of range", host=self.host, expected="1..65535",
                                       found=self.port)
        if not self.username:
            raise ConnectorConfigError("SFTP endpoint has no user name", host=self.address)
        if not (self.private_key or self.key_file or self.password):
            raise ConnectorConfigError("SFTP endpoint has no credentials", host=self.address,
                                       expected="private_key, key_file or password", found="none")

    @property
    def address(self) -> str:
        """``host:port``, as used in messages."""
        return f"{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH and paramiko file the host key under: ``host`` on port 22, else ``[host]:port``."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def __repr__(self) -> str:
        auth = "+".join(name for name in ("private_key", "key_file", "password") if getattr(self, name)) or "none"
        pinned = "pinned" if self.host_key else ("known_hosts" if self.known_hosts else "system known_hosts")
        return (f"SftpEndpoint(host={self.host!r}, port={self.port}, username={self.username!r}, auth={auth}, "
                f"key_file={self.key_file!r}, host_key={pinned}, known_hosts={self.known_hosts!r})")

    @classmethod
    def from_url(cls, url: str, *, env: Mapping[str, str] | None = None,
                 env_prefix: str = "DUIZHANG_SFTP_") -> SftpEndpoint:
        """``sftp://user@host:port``, with the secrets and the pinned key from environment variables.

        Reads ``{env_prefix}PRIVATE_KEY`` (key text), ``KEY_FILE``, ``PASSWORD``, ``KEY_PASSPHRASE``, ``HOST_KEY``
        and ``KNOWN_HOSTS``. A password in the URL is accepted but discouraged. Raises `ConnectorConfigError`.
        """
        env = os.environ if env is None else env
        parts = urlsplit(url)
        if parts.scheme != "sftp":
            raise ConnectorConfigError("not an sftp:// URL", expected="sftp://user@host:port", found=parts.scheme)
        try:
            port = parts.port or 22
        except ValueError:
            raise ConnectorConfigError("bad port in SFTP URL", host=parts.hostname) from None
        if parts.path not in ("", "/"):
            raise ConnectorConfigError("an SFTP URL names the server only; pass directories to list/fetch/deliver",
                                       host=f"{parts.hostname}:{port}", expected="no path", found=parts.path)

        def setting(name: str) -> str | None:
            return env.get(env_prefix + name) or None

        return cls(host=parts.hostname or "", port=port, username=unquote(parts.username or ""),
                   password=unquote(parts.password) if parts.password else setting("PASSWORD"),
                   private_key=setting("PRIVATE_KEY"), key_file=setting("KEY_FILE"),
                   key_passphrase=setting("KEY_PASSPHRASE"), host_key=setting("HOST_KEY"),
                   known_hosts=setting("KNOWN_HOSTS"))

    @classmethod
    def from_airflow_connection(cls, conn) -> SftpEndpoint:
        """From an Airflow ``Connection`` (anything with ``.host .port .login .password .extra_dejson``).

        Extras read: ``host_key``, ``known_hosts``, ``private_key``, ``key_file``, ``private_key_passphrase``,
        ``conn_timeout``. Raises `ConnectorConfigError` if the connection disables host-key checking
        (``no_host_key_check`` or ``allow_host_key_change``): duizhang never connects to an unverified server.
        """
        extra = dict(conn.extra_dejson or {})
        for unsafe in ("no_host_key_check", "allow_host_key_change"):
            if str(extra.get(unsafe, "false")).strip().lower() in ("true", "1", "yes"):
                raise ConnectorConfigError(f"connection extra {unsafe!r} disables host-key checking; remove it "
                                           "and pin the server's key in extra 'host_key'",
                                           host=f"{conn.host}:{conn.port or 22}")
        options = {}
        if extra.get("conn_timeout"):
            options["connect_timeout"] = float(extra["conn_timeout"])
        return cls(host=conn.host or "", port=int(conn.port or 22), username=conn.login or "",
                   password=conn.password or None, private_key=extra.get("private_key") or None,
                   key_file=extra.get("key_file") or None,
                   key_passphrase=extra.get("private_key_passphrase") or extra.get("passphrase") or None,
                   host_key=extra.get("host_key") or None, known_hosts=extra.get("known_hosts") or None, **options)


def parse_host_keys(text: str, *, host: str | None = None) -> list[paramiko.PKey]:
    """Public keys from OpenSSH lines: ``type base64 [comment]``, a known_hosts line ``host type base64``, or
    a bare ``base64`` blob (its type is read from the blob, as Airflow's ``host_key`` extra allows).

    Raises `ConnectorConfigError` for a line that is not a public key.
    """
    keys = []
    for line in text.splitlines():
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        blob_text = next((t for t in tokens if t.startswith("AAAA")), None)
        try:
            blob = base64.b64decode(blob_text or "", validate=True)
            key_type = paramiko.Message(blob).get_text()
            keys.append(paramiko.PKey.from_type_string(key_type, blob))
        except (binascii.Error, paramiko.SSHException, ValueError, TypeError, IndexError):
            raise ConnectorConfigError("pinned host key is not an OpenSSH public key", host=host,
                                       expected="'ssh-ed25519 AAAA...'", found=line[:40] + "...") from None
    if not keys:
        raise ConnectorConfigError("pinned host key is empty", host=host)
    return keys


def load_private_key(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """A paramiko key from private key text (OpenSSH or PEM; Ed25519, ECDSA or RSA).

    Raises `ConnectorConfigError` (without any of the key in the message) if the text is not a key or the
    passphrase is wrong.
    """
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase)
        except (paramiko.SSHException, ValueError, TypeError):
            continue
    raise ConnectorConfigError("private key cannot be read (not an Ed25519/ECDSA/RSA key, or wrong passphrase)")


# --- Names and paths --------------------------------------------------------------------------------------------

def check_name(name: str, *, host: str | None = None) -> str:
    """A bare file name that cannot escape its folder. Raises `UnsafeRemotePath`."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or ".." in name or "\x00" in name):
        raise UnsafeRemotePath("refusing unsafe file name", host=host, expected="a bare file name",
                               found=repr(name))
    return name


def check_dir(remote_dir: str, *, host: str | None = None) -> str:
    """A remote directory without ``..`` components, backslashes or NUL, normalised. Raises `UnsafeRemotePath`."""
    if (not isinstance(remote_dir, str) or not remote_dir or "\x00" in remote_dir or "\\" in remote_dir
            or ".." in remote_dir.split("/")):
        raise UnsafeRemotePath("refusing unsafe directory", host=host, expected="a path without '..'",
                               found=repr(remote_dir))
    return posixpath.normpath(remote_dir)


# --- The source abstraction -------------------------------------------------------------------------------------

class Source(ABC):
    """A counterparty's exchange account: list, wait for, fetch and deliver flagged files.

    Subclasses provide a few file primitives on remote paths; the protocol (flags, verification, atomic
    renames, idempotent delivery) lives here once. Use as a context manager, or call `close()`.
    """

    label: str
    """How messages name the account: ``host:port`` or the local directory."""

    def __init__(self, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES) -> None:
        self.max_file_bytes = max_file_bytes
        self.max_unpacked_bytes = max_unpacked_bytes
        self._listed_sizes: dict[str, int] = {}   # remote path -> size in the last listing of its folder
        self._made_dirs: set[str] = set()         # remote folders this source made or found (deliveries)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection, if any."""

    # -- public operations ------------------------------------------------------------------------------------

    def list(self, remote_dir: str) -> list[RemoteEntry]:
        """The regular files in `remote_dir`, sorted by name.

        Raises `FileNotReady` if the directory does not exist (yet), `UnsafeRemotePath`, and after the retries
        `ConnectionLost`/`ServerUnavailable`.
        """
        remote_dir = check_dir(remote_dir, host=self.label)

        def attempt() -> list[RemoteEntry]:
            try:
                return sorted(self._list(remote_dir), key=lambda e: e.name)
            except FileNotFoundError:
                raise FileNotReady("directory does not exist yet", host=self.label, path=remote_dir) from None

        entries = self._run(f"list {remote_dir}", attempt)
        self._listed_sizes |= {posixpath.join(remote_dir, e.name): e.size for e in entries}
        return entries

    def wait_for(self, remote_dir: str, expected: Iterable[str], *, timeout: float,
                 poll: float = 30.0) -> list[str]:
        """Poll until every expected data file has its flag; return the ready data file names.

        Each item of `expected` is a file name or an ``fnmatch`` pattern (``ACOMN_20261121_*``). A name is also
        satisfied by its gzip form (``NAME.gz`` with ``NAME.gz.ok``); a pattern by every matching file that has
        its flag. ``timeout=0`` checks once (an Airflow sensor poke). A missing directory counts as empty.

        Raises `FileNotReady` naming the missing files and the host when `timeout` seconds have passed.
        """
        remote_dir = check_dir(remote_dir, host=self.label)
        expected = [check_pattern(item, host=self.label) for item in expected]
        deadline = time.monotonic() + timeout
        while True:
            try:
                present = {entry.name for entry in self.list(remote_dir)}
            except FileNotReady:
                present = set()
            ready, missing = _match_flagged(present, expected)
            if not missing:
                log.info("%s %s: ready: %s", self.label, remote_dir, ", ".join(ready))
                return ready
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FileNotReady(f"no flag file after waiting {timeout:g} s for: {', '.join(missing)}",
                                   host=self.label, path=remote_dir, missing=tuple(missing))
            log.info("%s %s: waiting for %s (%.0f s left)", self.label, remote_dir, ", ".join(missing), remaining)
            time.sleep(min(poll, remaining))

    def fetch(self, remote_dir: str, name: str, local_dir: Path | str) -> FetchedFile:
        """Download `name` from `remote_dir` into `local_dir`, verified against its flag, atomically.

        The file is written to ``local_dir/.NAME.part`` and renamed to ``local_dir/NAME`` only after its size and
        MD5 equal the flag's (the data fsynced; making the name durable is the caller's, see the module's doc). ``NAME.gz`` is decompressed while it downloads, into ``local_dir/.NAME.part``
        (without ``.gz``), renamed to ``local_dir/NAME`` once the compressed file matches its flag and the gzip
        stream ends whole. A dropped connection resumes where it stopped; a flag changed meanwhile starts the
        download afresh. On any failure no ``.part`` file is left behind and ``local_dir/NAME`` is untouched.

        Raises `UnsafeRemotePath` (name with ``/``, ``\\``, ``..``, NUL); `FileNotReady` (no flag yet, a flag
        still being written, or a flag without its data file); `FlagMismatch` (malformed flag, size or MD5
        differ); `FileTooLarge` (over `max_file_bytes`, or over `max_unpacked_bytes` once decompressed: the
        download stops there); `FileRejected` (a broken gzip file whose flag matches it; a file that does not match
        its flag is a `FlagMismatch`); `RemoteFileError`; and after the retries `ConnectionLost` or
        `ServerUnavailable`. Errors writing the local disk propagate as the `OSError` they are.
        """
        remote_dir = check_dir(remote_dir, host=self.label)
        check_name(name, host=self.label)
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        remote_path = posixpath.join(remote_dir, name)
        part = local_dir / f".{name}.part"
        gzipped = name.endswith(GZIP_SUFFIX) and len(name) > len(GZIP_SUFFIX)
        local_path = local_dir / (name[: -len(GZIP_SUFFIX)] if gzipped else name)
        unpacked_part = local_path.with_name(f".{local_path.name}.part") if gzipped else None
        check: _DownloadCheck | None = None

        def attempt() -> Flag:
            """Read the flag, then download into `part`: from the start, or after a dropped connection from where
            the previous attempt stopped (the check goes on where it was); a changed flag starts afresh."""
            nonlocal check
            flag = self._read_flag(remote_path, name)
            # The listing's size saves a request per file (a night has thousands); the server is asked only
            # when it differs from the flag, for the listing may be older than the flag.
            remote_size = self._listed_sizes.get(remote_path)
            if remote_size != flag.size:
                try:
                    remote_size = self._size(remote_path)
                except FileNotFoundError:
                    raise self._no_data(remote_path, name) from None
            if remote_size != flag.size:
                raise FlagMismatch(f"{self.label} {remote_path}", "size on the server differs from the flag",
                                   expected=flag.size, found=remote_size)
            if check is not None and check.flag != flag:
                log.warning("%s %s: the flag changed since the last attempt; downloading the new file from the "
                            "start", self.label, remote_path)
                check.abandon()
                check = None
            if check is None:
                part.write_bytes(b"")
                check = _DownloadCheck(part, flag, unpacked_part, max_unpacked_bytes=self.max_unpacked_bytes,
                                       host=self.label, remote_path=remote_path)
            offset = part.stat().st_size
            if offset:
                log.info("%s %s: resuming download at byte %d", self.label, remote_path, offset)
            with open(part, "ab") as out:
                try:
                    self._download(remote_path, _CheckedPart(out, check), offset, flag.size)
                except FileNotFoundError:
                    raise self._no_data(remote_path, name) from None
            return flag

        # A .part left by a crashed run may belong to another version of the file: start afresh. Within this
        # call, a retry after a dropped connection resumes from what the earlier attempt wrote.
        part.unlink(missing_ok=True)
        try:
            flag = self._run(f"fetch {remote_path}", attempt)
            size, md5 = check.finish()
            if not gzipped:
                _fsync(part)
            os.replace(unpacked_part or part, local_path)
        finally:
            if check is not None:
                check.abandon()
            part.unlink(missing_ok=True)
            if unpacked_part is not None:
                unpacked_part.unlink(missing_ok=True)
        log.info("%s %s: fetched to %s (%d bytes, md5 %s%s)", self.label, remote_path, local_path, size, md5,
                 ", decompressed" if gzipped else "")
        return FetchedFile(local_path.name, local_path, size, md5, flag, gzipped)

    def read_flag(self, remote_dir: str, name: str) -> Flag:
        """The flag of `name` in `remote_dir`, checked (complete, names the file, within the size limit).

        Lets a caller recognise a file it already holds (same name and MD5) without downloading it again.
        Raises like `fetch` does for the flag."""
        remote_dir = check_dir(remote_dir, host=self.label)
        check_name(name, host=self.label)
        remote_path = posixpath.join(remote_dir, name)
        return self._run(f"read flag {remote_path}", lambda: self._read_flag(remote_path, name))

    def deliver(self, local_path: Path | str, remote_dir: str, *, force: bool = False,
                record_count: int | None = None) -> Delivery:
        """Upload `local_path` into `remote_dir` as ``NAME.tmp``, rename it to ``NAME``, then write ``NAME.ok``.

        The flag is the local ``NAME.ok`` beside the file (written by `formats.flag.write_flag`, and checked
        against the file), or, if `record_count` is given, made from the file and that count. `remote_dir` is
        created if missing. Idempotent from the server's state: if the remote flag already has this MD5 and size,
        nothing is sent (status ``already_delivered``). A crash at any step leaves a state a rerun completes
        (a leftover ``NAME.tmp`` or an unflagged ``NAME`` is uploaded again).

        Raises `DeliveryConflict` if a different file (other MD5 or size) was delivered under the name, unless
        `force` (an operator's decision: the old flag is removed first, then the file replaced, with a warning
        in the log); `FlagMismatch` if the local flag disagrees with the file; `ConnectorConfigError` with no
        flag and no `record_count`; `UnsafeRemotePath`, `RemoteFileError`, and after the retries
        `ConnectionLost`/`ServerUnavailable`.
        """
        local_path = Path(local_path)
        name = check_name(local_path.name, host=self.label)
        remote_dir = check_dir(remote_dir, host=self.label)
        flag = _local_flag(local_path, record_count)
        remote_path = posixpath.join(remote_dir, name)
        return self._run(f"deliver {remote_path}",
                         lambda: self._deliver_once(local_path, remote_dir, remote_path, flag, force))

    def fetch_many(self, remote_dir: str, names: Iterable[str], local_dir: Path | str) -> Iterator[FetchedFile]:
        """`fetch` of each of `names`, yielded in their order, with its guarantees and its errors: the first file
        that fails raises when its turn comes. A network source keeps the requests of many small files in flight
        at once instead of waiting for each answer in turn."""
        for name in names:
            yield self.fetch(remote_dir, name, local_dir)

    def read_flags(self, remote_dir: str, names: Iterable[str]) -> Iterator[Flag]:
        """`read_flag` of each of `names`, yielded in their order, with its errors: the first that fails raises
        when its turn comes. A network source reads many flags at once."""
        for name in names:
            yield self.read_flag(remote_dir, name)

    def deliver_many(self, local_paths: Iterable[Path | str], remote_dir: str, *,
                     force: bool = False) -> Iterator[Delivery]:
        """`deliver` of each of `local_paths` (each with its flag beside it), yielded in their order, with its
        guarantees and its errors: the first file that fails raises when its turn comes. A network source keeps
        the uploads of many small files in flight at once."""
        for local_path in local_paths:
            yield self.deliver(local_path, remote_dir, force=force)

    # -- the protocol, on top of the primitives ----------------------------------------------------------------

    def _read_flag(self, remote_path: str, name: str) -> Flag:
        try:
            flag_bytes = self._read_small(remote_path + FLAG_SUFFIX, MAX_FLAG_BYTES)
        except FileNotFoundError:
            raise self._no_flag(remote_path, name) from None
        return self._checked_flag(flag_bytes, remote_path, name)

    def _no_flag(self, remote_path: str, name: str) -> FileNotReady:
        return FileNotReady(f"flag file {name + FLAG_SUFFIX} not there yet", host=self.label, path=remote_path,
                            missing=(name,))

    def _no_data(self, remote_path: str, name: str) -> FileNotReady:
        return FileNotReady(f"flag file {name + FLAG_SUFFIX} present but the data file is not", host=self.label,
                            path=remote_path, missing=(name,))

    def _checked_flag(self, flag_bytes: bytes, remote_path: str, name: str) -> Flag:
        """The flag `flag_bytes` read beside `remote_path`: complete, naming `name`, within the size limit."""
        flag_name = name + FLAG_SUFFIX
        if not flag_bytes.endswith(b"\n"):
            # A counterparty that writes its flag in place (not by rename) can be caught mid-write: an empty or
            # unterminated flag is "not yet", a complete line that does not parse is a fault (FlagMismatch).
            raise FileNotReady(f"flag file {flag_name} is incomplete (no line end yet: still being written?)",
                               host=self.label, path=remote_path, missing=(name,))
        flag = parse_flag(flag_bytes, f"{self.label} {remote_path}{FLAG_SUFFIX}")
        if flag.name != name:
            raise FlagMismatch(f"{self.label} {remote_path}", "flag names another file", expected=name,
                               found=flag.name)
        if flag.size > self.max_file_bytes:
            raise FileTooLarge("file larger than the download limit", host=self.label, path=remote_path,
                               expected=f"at most {self.max_file_bytes} bytes", found=f"{flag.size} bytes (flag)")
        return flag

    def _copy_capped(self, read: Callable[[int], bytes], out: BinaryIO, offset: int, remote_path: str) -> None:
        """Copy chunks from `read` to `out` until EOF, refusing to write past `max_file_bytes`."""
        written = offset
        while chunk := read(COPY_CHUNK_BYTES):
            written += len(chunk)
            if written > self.max_file_bytes:
                raise FileTooLarge("file grew past the download limit", host=self.label, path=remote_path,
                                   expected=f"at most {self.max_file_bytes} bytes",
                                   found=f"more than {written - len(chunk)} bytes")
            out.write(chunk)

    def _deliver_once(self, local_path: Path, remote_dir: str, remote_path: str, flag: Flag,
                      force: bool) -> Delivery:
        if remote_dir not in self._made_dirs:   # once per folder, not per file (two requests each)
            self._makedirs(remote_dir)
            self._made_dirs.add(remote_dir)
        flag_path = remote_path + FLAG_SUFFIX
        status: Literal["delivered", "forced"] = "delivered"
        try:
            existing_bytes = self._read_small(flag_path, MAX_FLAG_BYTES)
        except FileNotFoundError:
            existing_bytes = None
        if existing_bytes is not None:
            try:
                existing: Flag | None = parse_flag(existing_bytes, flag_path)
            except FlagMismatch:
                existing = None
            same_file = existing is not None and (existing.name, existing.size, existing.md5) == (
                flag.name, flag.size, flag.md5)
            if same_file:
                log.info("%s %s: already delivered (same size %d and md5 %s); nothing sent", self.label,
                         remote_path, flag.size, flag.md5)
                return Delivery(flag.name, remote_path, flag.size, flag.md5, "already_delivered")
            found = (f"size {existing.size}, md5 {existing.md5}" if existing is not None
                     else f"unreadable flag {existing_bytes[:60]!r}")
            if not force:
                raise DeliveryConflict("a different file was already delivered under this name; a corrected "
                                       "file needs a new sequence number, or an operator must force",
                                       host=self.label, path=remote_path,
                                       expected=f"size {flag.size}, md5 {flag.md5}", found=found)
            log.warning("%s %s: an operator forced redelivery: replacing the delivered file (%s) by size %d, "
                        "md5 %s", self.label, remote_path, found, flag.size, flag.md5)
            # Remove the old flag first, so nobody pairs it with the new data while the upload runs.
            self._remove(flag_path)
            status = "forced"
        tmp_path = remote_path + TMP_SUFFIX
        self._upload(local_path, tmp_path)
        self._replace(tmp_path, remote_path)
        flag_tmp_path = flag_path + TMP_SUFFIX
        self._upload_bytes(flag.render(), flag_tmp_path)
        self._replace(flag_tmp_path, flag_path)
        log.info("%s %s: delivered (%d bytes, md5 %s)%s", self.label, remote_path, flag.size, flag.md5,
                 " by force" if status == "forced" else "")
        return Delivery(flag.name, remote_path, flag.size, flag.md5, status)

    # -- primitives --------------------------------------------------------------------------------------------

    def _run(self, action: str, operation: Callable[[], T]) -> T:
        """Run one operation; a network source retries it on a new connection."""
        return operation()

    @abstractmethod
    def _list(self, remote_dir: str) -> list[RemoteEntry]:
        """Regular files of a directory; `FileNotFoundError` if it does not exist."""

    @abstractmethod
    def _read_small(self, remote_path: str, limit: int) -> bytes:
        """At most `limit` bytes of a small file; `FileNotFoundError` if absent."""

    @abstractmethod
    def _size(self, remote_path: str) -> int:
        """Size of a file; `FileNotFoundError` if absent."""

    @abstractmethod
    def _download(self, remote_path: str, out: BinaryIO, offset: int, expected_size: int) -> None:
        """Copy the file from byte `offset` to EOF into `out` (positioned at `offset`); `FileNotFoundError` if
        absent."""

    @abstractmethod
    def _makedirs(self, remote_dir: str) -> None:
        """Create a directory and its parents if missing."""

    @abstractmethod
    def _upload(self, local_path: Path, remote_path: str) -> None:
        """Write a local file to a remote path (overwriting), checking the size written."""

    @abstractmethod
    def _upload_bytes(self, data: bytes, remote_path: str) -> None:
        """Write bytes to a remote path (overwriting)."""

    @abstractmethod
    def _replace(self, source_path: str, target_path: str) -> None:
        """Rename, replacing the target if it exists."""

    @abstractmethod
    def _remove(self, remote_path: str) -> None:
        """Delete a file; no error if absent."""


def check_pattern(item: str, *, host: str | None = None) -> str:
    """A file name or fnmatch pattern for `wait_for`: no directory parts. Raises `UnsafeRemotePath`."""
    if not isinstance(item, str) or not item or "/" in item or "\\" in item or "\x00" in item or ".." in item:
        raise UnsafeRemotePath("refusing unsafe file name or pattern", host=host, expected="a bare name or pattern",
                               found=repr(item))
    return item


def _is_pattern(item: str) -> bool:
    return any(c in item for c in "*?[")


def _match_flagged(present: set[str], expected: list[str]) -> tuple[list[str], list[str]]:
    """(data files ready, expected items still missing) given the names present in a directory."""
    flagged = sorted(n for n in present if not n.endswith(FLAG_SUFFIX) and n + FLAG_SUFFIX in present)
    ready: list[str] = []
    missing: list[str] = []
    for item in expected:
        if _is_pattern(item):
            matches = [n for n in flagged if fnmatch.fnmatchcase(n, item)]
        else:
            matches = [n for n in (item, item + GZIP_SUFFIX) if n in flagged]
        if matches:
            ready.extend(n for n in matches if n not in ready)
        else:
            missing.append(item)
    return ready, missing


def _local_flag(local_path: Path, record_count: int | None) -> Flag:
    if record_count is not None:
        return flag_for(local_path, record_count)
    flag_path = local_path.with_name(local_path.name + FLAG_SUFFIX)
    try:
        flag = parse_flag(flag_path.read_bytes(), str(flag_path))
    except FileNotFoundError:
        raise ConnectorConfigError("nothing to deliver the flag from: no flag file beside the file and no "
                                   "record_count given", path=str(local_path)) from None
    verify_file(local_path, flag)
    return flag


def _check_against_flag(where: str, flag: Flag, size: int, md5: str) -> None:
    """Raises `FlagMismatch` if a download's size or MD5 differ from its flag's."""
    if size != flag.size:
        raise FlagMismatch(where, "size differs from the flag (incomplete or changed file?)", expected=flag.size,
                           found=size)
    if md5 != flag.md5:
        raise FlagMismatch(where, "MD5 differs from the flag", expected=flag.md5, found=md5)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX: the directory entry is flushed with the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- Checking a download while it arrives -----------------------------------------------------------------------

class _Gunzip:
    """Inflates a gzip stream given piece by piece, member after member as `gzip.open` reads them (zero bytes
    allowed between members), at most `INFLATE_STEP_BYTES` per step. Raises `isal_zlib.error` on bad data.

    ISA-L's inflate (python-isal, zlib's interface) runs at twice zlib's speed here (1.25 against 0.58 GB/s of
    output on the 10M ACOMN): at 10M records that is 4 s instead of 9 s of one core's time."""

    def __init__(self) -> None:
        self._member = isal_zlib.decompressobj(GZIP_WBITS)
        self._given = False

    def inflate(self, data: bytes) -> Iterator[bytes]:
        self._given = self._given or bool(data)
        while True:
            if self._member is None:
                data = data.lstrip(b"\x00")
                if not data:
                    return
                self._member = isal_zlib.decompressobj(GZIP_WBITS)
            piece = self._member.decompress(data, INFLATE_STEP_BYTES)
            if piece:
                yield piece
            if self._member.eof:
                data, self._member = self._member.unused_data, None
            elif self._member.unconsumed_tail or len(piece) == INFLATE_STEP_BYTES:
                data = self._member.unconsumed_tail  # a full step may leave output inside, even with no input left
            else:
                return

    @property
    def complete(self) -> bool:
        """Every member given ended with its trailer (an empty file is an empty gzip file, as for `gzip.open`)."""
        return self._member is None or not self._given


class _DownloadCheck:
    """Verifies a download while it is being written, so that a fetch costs the transfer, not the transfer and
    then a pass over the file to hash it and another to decompress it.

    A thread reads the ``.part`` file behind the download (never past what the download has flushed), hashes
    it, and for a gzip file inflates it with the size limit; a second thread hashes the inflated bytes and writes
    them to `unpacked_part`. Inflating, hashing and file writes release the GIL, so the transfer, the inflating
    and the hashing run at once. A retry after a dropped connection appends to the ``.part`` file and the check
    goes on from where it was. Nothing is accepted before `finish` has compared the whole file with its flag.
    """

    def __init__(self, part: Path, flag: Flag, unpacked_part: Path | None, *, max_unpacked_bytes: int,
                 host: str, remote_path: str) -> None:
        self.flag = flag
        """The flag this download is checked against."""
        self._part, self._unpacked_part = part, unpacked_part
        self._host, self._remote_path, self._where = host, remote_path, f"{host} {remote_path}"
        self._max_unpacked_bytes = max_unpacked_bytes
        self._packed_md5, self._packed_size = hashlib.md5(), 0
        self._unpacked_md5, self._unpacked_size = hashlib.md5(), 0
        self._flushed = 0                              # bytes of the .part the download has written and flushed
        self._download_done = self._abandoned = False
        self._changed = threading.Condition()
        self._fatal: BaseException | None = None       # refuses the file at once, whatever its MD5 (a gzip bomb)
        self._bad_gzip: FileRejected | None = None     # reported after the MD5 check: a changed file explains it
        self._thread = threading.Thread(target=self._follow_guarded, name=f"check {part.name}", daemon=True)
        self._thread.start()

    def advance(self, flushed: int) -> None:
        """The download has flushed `flushed` bytes of the ``.part`` file. Raises what already refuses the file
        (over the decompressed limit, a local write error), so that the download stops there."""
        with self._changed:
            self._flushed = flushed
            self._changed.notify()
        if self._fatal is not None:
            raise self._fatal

    def finish(self) -> tuple[int, str]:
        """The download is complete: wait for the check and return the size and MD5 of the file to keep (the
        decompressed one for a gzip file, fsynced in `unpacked_part`).

        Raises `FileTooLarge` or the local error that stopped the check; then `FlagMismatch` if the size or the
        MD5 differ from the flag; then `FileRejected` if the gzip data is broken or ends early."""
        with self._changed:
            self._download_done = True
            self._changed.notify()
        self._thread.join()
        if self._fatal is not None:
            raise self._fatal
        md5 = self._packed_md5.hexdigest()
        _check_against_flag(self._where, self.flag, self._packed_size, md5)
        if self._bad_gzip is not None:
            raise self._bad_gzip
        if self._unpacked_part is None:
            return self._packed_size, md5
        return self._unpacked_size, self._unpacked_md5.hexdigest()

    def abandon(self) -> None:
        """Stop checking (the download failed or starts again); returns once the threads have stopped."""
        with self._changed:
            self._abandoned = True
            self._changed.notify()
        self._thread.join()

    def _follow_guarded(self) -> None:
        try:
            self._follow()
        except BaseException as e:  # handed to the download (advance) and to finish, in the caller's thread
            self._fatal = e

    def _follow(self) -> None:
        gunzip = _Gunzip() if self._unpacked_part is not None else None
        with ExitStack() as stack:
            packed = stack.enter_context(open(self._part, "rb", buffering=0))
            if gunzip is not None:
                unpacked = stack.enter_context(open(self._unpacked_part, "wb"))
                writer = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="write unpacked"))
                written: deque[Future] = deque()
            while (data := self._next_piece(packed)) is not None:
                self._packed_md5.update(data)
                self._packed_size += len(data)
                if gunzip is None or self._bad_gzip is not None:
                    continue
                try:
                    for piece in gunzip.inflate(data):
                        self._count_unpacked(len(piece))
                        written.append(writer.submit(self._store_unpacked, unpacked, piece))
                        if len(written) > INFLATED_STEPS_AHEAD:
                            written.popleft().result()
                except isal_zlib.error as e:
                    self._bad_gzip = FileRejected(self._where, "not a valid gzip file", expected="gzip data",
                                                  found=str(e))
            if self._abandoned or gunzip is None:
                return
            while written:
                written.popleft().result()
            if self._bad_gzip is None and not gunzip.complete:
                self._bad_gzip = FileRejected(self._where, "not a valid gzip file", expected="gzip data",
                                              found="the data ends before the end of the gzip stream")
            unpacked.flush()
            os.fsync(unpacked.fileno())

    def _next_piece(self, packed: BinaryIO) -> bytes | None:
        """The next bytes the download has flushed, waiting for them; None once all are read or when abandoned."""
        with self._changed:
            while not (self._abandoned or self._download_done or self._flushed > self._packed_size):
                self._changed.wait()
            if self._abandoned or self._flushed == self._packed_size:
                return None
            available = self._flushed - self._packed_size
        data = packed.read(min(available, CHECK_READ_BYTES))
        if not data:
            raise OSError(f"{self._part} is shorter than what was written to it (changed by another process?)")
        return data

    def _count_unpacked(self, size: int) -> None:
        self._unpacked_size += size
        if self._unpacked_size > self._max_unpacked_bytes:
            raise FileTooLarge("gzip file decompresses past the limit (gzip bomb?)", host=self._host,
                               path=self._remote_path,
                               expected=f"at most {self._max_unpacked_bytes} bytes decompressed",
                               found=f"more than {self._unpacked_size - size} bytes")

    def _store_unpacked(self, unpacked: BinaryIO, piece: bytes) -> None:
        self._unpacked_md5.update(piece)
        unpacked.write(piece)


class _CheckedPart:
    """The ``.part`` file as a download writes it: each chunk flushed, then handed to the check."""

    def __init__(self, out: BinaryIO, check: _DownloadCheck) -> None:
        self._out, self._check = out, check

    def write(self, chunk: bytes) -> None:
        self._out.write(chunk)
        self._out.flush()
        self._check.advance(self._out.tell())


# --- Local directory --------------------------------------------------------------------------------------------

class LocalDirSource(Source):
    """A local directory laid out like an SFTP account (``root/outbox/YYYYMMDD``): for the demo, tests, and a
    counterparty whose files arrive on a shared disk. ``/outbox/x`` means ``root/outbox/x``."""

    def __init__(self, root: Path | str, **limits: int) -> None:
        super().__init__(**limits)
        self.root = Path(root).resolve()
        self.label = str(self.root)

    def _local(self, remote_path: str) -> Path:
        return self.root / posixpath.normpath(remote_path).lstrip("/")

    def _list(self, remote_dir: str) -> list[RemoteEntry]:
        with os.scandir(self._local(remote_dir)) as entries:
            return [RemoteEntry(e.name, st.st_size, int(st.st_mtime))
                    for e in entries if e.is_file(follow_symlinks=False) for st in (e.stat(),)]

    def _read_small(self, remote_path: str, limit: int) -> bytes:
        with open(self._local(remote_path), "rb") as f:
            return f.read(limit)

    def _size(self, remote_path: str) -> int:
        return self._local(remote_path).stat().st_size

    def _download(self, remote_path: str, out: BinaryIO, offset: int, expected_size: int) -> None:
        with open(self._local(remote_path), "rb") as f:
            f.seek(offset)
            self._copy_capped(f.read, out, offset, remote_path)

    def _makedirs(self, remote_dir: str) -> None:
        self._local(remote_dir).mkdir(parents=True, exist_ok=True)

    def _upload(self, local_path: Path, remote_path: str) -> None:
        target = self._local(remote_path)
        shutil.copyfile(local_path, target)
        _fsync(target)

    def _upload_bytes(self, data: bytes, remote_path: str) -> None:
        target = self._local(remote_path)
        with open(target, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def _replace(self, source_path: str, target_path: str) -> None:
        os.replace(self._local(source_path), self._local(target_path))
        fsync_dir(self._local(target_path).parent)

    def _remove(self, remote_path: str) -> None:
        self._local(remote_path).unlink(missing_ok=True)


# --- SFTP -------------------------------------------------------------------------------------------------------

class _RejectUnknownHost(paramiko.RejectPolicy):
    """paramiko's RejectPolicy, raising our typed error: a server with no pinned key is refused, never added."""

    def missing_host_key(self, client, hostname, key) -> None:
        raise HostKeyMismatch("no host key pinned for this server; refusing to connect (set host_key or "
                              "known_hosts)", host=hostname, expected="a pinned key",
                              found=f"{key.get_name()} {key.fingerprint}")


class _Transport(paramiko.Transport):
    """paramiko's transport, offering AES-GCM first: authenticated encryption needs no separate HMAC pass over
    each packet (measured here: about a third less CPU per byte than aes-ctr with hmac-sha2-256, on both ends).
    paramiko's other ciphers follow in its own order, for servers without GCM."""

    _preferred_ciphers = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
                          *(c for c in paramiko.Transport._preferred_ciphers if not c.endswith("-gcm@openssh.com")))


class _PrefetchingFile(paramiko.SFTPFile):
    """paramiko's remote file with its prefetch race fixed (paramiko pull request 2519, not merged).

    With a limit on the reads in flight, a reader that has taken every answer before the prefetch thread sent
    the next request made paramiko think the prefetch was over: it then read synchronously, one request at a
    time, while the prefetch thread went on fetching the rest of the file into memory that was never read
    (measured: a 770 MB file transferred twice, 505 MB held at the end). Here the prefetch is over only once
    every request has been sent and answered."""

    def _start_prefetch(self, chunks, max_concurrent_requests=None) -> None:
        self._all_requested = False
        super()._start_prefetch(chunks, max_concurrent_requests)

    def _prefetch_thread(self, chunks, max_concurrent_requests) -> None:
        try:
            super()._prefetch_thread(chunks, max_concurrent_requests)
        finally:
            with self._prefetch_lock:
                self._all_requested = True
                self._prefetch_done = not self._prefetch_extents

    def _async_response(self, t, msg, num) -> None:
        super()._async_response(t, msg, num)
        with self._prefetch_lock:
            self._prefetch_done = self._all_requested and not self._prefetch_extents


# Failures that mean the connection itself broke (not a refusal by the server): retried on a new connection.
_NETWORK_ERRORS = (paramiko.SSHException, EOFError, socket.timeout, ConnectionError)


# --- Many small files at once over one SFTP session -------------------------------------------------------------

class _Pipe:
    """The requests of many files in flight on one SFTP session, each answer handed to the step sent with it.

    The requests made between two waits go out in one write, a few SSH packets for many requests, where one
    request at a time costs a packet and a round trip each (a night of 2,000 small files made 16,000 round trips);
    the answers are taken from the channel as they come, many in one read, and routed by request number. The
    numbers are drawn from paramiko's counter, so they never clash with its own requests, which are never in
    flight at the same time (`SftpSource._pipelined`). A step's refusal by the server stops its job only
    (`_Job.stop`); a broken connection raises out of `answer`."""

    def __init__(self, sftp: paramiko.SFTPClient, label: str) -> None:
        self.sftp, self._label = sftp, label
        self._steps: dict[int, tuple[_Job, str, Callable[[int, paramiko.Message], None]]] = {}
        self._out: list[bytes] = []
        self._in = bytearray()

    @property
    def busy(self) -> bool:
        """Answers still to come."""
        return bool(self._steps)

    def send(self, job: _Job, path: str, kind: int, then: Callable[[int, paramiko.Message], None],
             *fields: bytes | str | int) -> None:
        """Queue a request about `path`; `then(answer type, answer)` runs when it is answered. An int field is
        sent as 32 bits, except an offset, which the caller gives as `_Offset`."""
        sftp = self.sftp
        with sftp._lock:
            num = sftp.request_number
            sftp.request_number += 1
        body = [b"", kind.to_bytes(1, "big"), num.to_bytes(4, "big")]
        for field in fields:
            if isinstance(field, int):
                body.append(field.to_bytes(8 if isinstance(field, _Offset) else 4, "big"))
            else:
                data = field.encode() if isinstance(field, str) else field
                body += (len(data).to_bytes(4, "big"), data)
        body[0] = (sum(map(len, body))).to_bytes(4, "big")
        self._out.append(b"".join(body))
        self._steps[num] = (job, path, then)
        job.pending += 1

    def answer(self) -> None:
        """Send what is queued, then wait for answers and run the steps of all that have come (the requests
        they make go out together at the next call)."""
        channel = self.sftp.sock
        if self._out:
            channel.sendall(b"".join(self._out))
            self._out.clear()
        data = channel.recv(ANSWERS_READ_BYTES)
        if not data:
            raise EOFError("the server closed the SFTP channel")
        received = self._in
        received += data
        start = 0
        while len(received) - start >= 9:       # length, type, request number
            end = start + 4 + int.from_bytes(received[start:start + 4], "big")
            if end > len(received):
                break
            kind, num = received[start + 4], int.from_bytes(received[start + 5:start + 9], "big")
            answer = paramiko.Message(bytes(received[start + 9:end]))
            start = end
            self._answered(kind, answer, num)
        del received[:start]

    def _answered(self, kind: int, msg: paramiko.Message, num: int) -> None:
        step = self._steps.pop(num, None)
        if step is None:
            return      # an answer to a request paramiko abandoned (an earlier failed transfer): nobody waits
        job, path, then = step
        job.pending -= 1
        if job.stopped:
            return      # answers to a stopped job's requests still in flight: nothing more to do
        try:
            then(kind, msg)
        except (ConnectorError, FormatError, FileNotFoundError) as e:
            job.stop(self, e)
        except OSError as e:
            job.stop(self, RemoteFileError(f"the server refused: {e}", host=self._label, path=path))

    # -- requests and their answers

    def open(self, job: _Job, path: str, flags: int, then: Callable[[bytes], None],
             missing: Callable[[], Exception] | None = None) -> None:
        """Open `path`; `then(handle)`. The handle is closed when the job stops. If `path` does not exist, the job
        stops with `missing()` (by default the `FileNotFoundError`)."""
        def opened(kind: int, msg: paramiko.Message) -> None:
            try:
                handle = self._body(kind, msg, CMD_HANDLE).get_binary()
            except FileNotFoundError:
                if missing is None:
                    raise
                raise missing() from None
            job.handles.add(handle)
            then(handle)
        self.send(job, path, CMD_OPEN, opened, path, flags, 0)   # 0: no attributes

    def close(self, job: _Job, path: str, handle: bytes, then: Callable[[], None] = lambda: None) -> None:
        job.handles.discard(handle)
        self.send(job, path, CMD_CLOSE, lambda kind, msg: (self._body(kind, msg, CMD_STATUS), then()), handle)

    def read(self, job: _Job, path: str, handle: bytes, offset: int, length: int,
             then: Callable[[bytes], None]) -> None:
        """Read; `then(data)`, empty at the end of the file."""
        def answered(kind: int, msg: paramiko.Message) -> None:
            try:
                then(self._body(kind, msg, CMD_DATA).get_string())
            except EOFError:
                then(b"")
        self.send(job, path, CMD_READ, answered, handle, _Offset(offset), length)

    def write(self, job: _Job, path: str, handle: bytes, offset: int, data: bytes,
              then: Callable[[], None]) -> None:
        self.send(job, path, CMD_WRITE, lambda kind, msg: (self._body(kind, msg, CMD_STATUS), then()),
                  handle, _Offset(offset), data)

    def stat(self, job: _Job, path: str, then: Callable[[paramiko.SFTPAttributes], None]) -> None:
        self.send(job, path, CMD_STAT,
                  lambda kind, msg: then(paramiko.SFTPAttributes._from_msg(self._body(kind, msg, CMD_ATTRS))), path)

    def replace(self, job: _Job, source: str, target: str, then: Callable[[], None]) -> None:
        """Rename `source` to `target`, replacing it: OpenSSH's posix-rename (atomic); on a server without it,
        `target` removed, then a plain rename (which refuses an existing target), as `SftpSource._replace`."""
        def renamed(kind: int, msg: paramiko.Message) -> None:
            try:
                self._body(kind, msg, CMD_STATUS)
            except FileNotFoundError:
                raise
            except OSError:
                self.send(job, target, CMD_REMOVE, removed, target)
                return
            then()

        def removed(kind: int, msg: paramiko.Message) -> None:
            try:
                self._body(kind, msg, CMD_STATUS)
            except FileNotFoundError:
                pass
            self.send(job, target, CMD_RENAME, lambda kind, msg: (self._body(kind, msg, CMD_STATUS), then()),
                      source, target)

        self.send(job, target, CMD_EXTENDED, renamed, "posix-rename@openssh.com", source, target)

    def _body(self, kind: int, msg: paramiko.Message, expected: int) -> paramiko.Message:
        """The answer, if of the `expected` kind; a status other than OK raised as paramiko raises it
        (`FileNotFoundError`, `EOFError` at the end of a file, `OSError`)."""
        if kind == CMD_STATUS:
            self.sftp._convert_status(msg)
            if expected == CMD_STATUS:
                return msg
        if kind != expected:
            raise paramiko.SSHException(f"SFTP answer of type {kind} where {expected} was expected")
        return msg


def _read_ahead(items: Iterator[T], depth: int = FILES_READ_AHEAD) -> Iterator[T]:
    """`items`, produced by a thread up to `depth` ahead of the caller: the transfers go on while the caller
    handles what it got (registers a file, a delivery). Yielded in order; an error of `items` is raised after the
    items before it. When the caller stops early, the thread stops at its next item and closes `items` (their
    cleanup runs there) before this returns."""
    ready: deque[T] = deque()
    changed = threading.Condition()
    state: dict[str, object] = {"done": False, "stopped": False, "error": None}

    def produce() -> None:
        try:
            for item in items:
                with changed:
                    ready.append(item)
                    changed.notify_all()
                    while len(ready) >= depth and not state["stopped"]:
                        changed.wait()
                    if state["stopped"]:
                        return
        except BaseException as e:  # handed to the caller, in its thread
            state["error"] = e
        finally:
            items.close()
            with changed:
                state["done"] = True
                changed.notify_all()

    producer = threading.Thread(target=produce, name="transfers ahead", daemon=True)
    producer.start()
    try:
        while True:
            with changed:
                while not ready and not state["done"]:
                    changed.wait()
                if not ready:
                    if state["error"] is not None:
                        raise state["error"]
                    return
                item = ready.popleft()
                changed.notify_all()
            yield item
    finally:
        with changed:
            state["stopped"] = True
            changed.notify_all()
        producer.join()


class _Offset(int):
    """A file offset: 64 bits on the wire."""


class _Job:
    """One file's requests, step after step, among many in flight (`_Pipe`).

    A job is `finished` once none of its requests awaits an answer. It ends with a result, an `error` (raised when
    its turn comes), or `again`: something unusual (a short read, a flag that changed since the listing), for
    which the file goes through the one-file operation, which handles every case; `one_by_one` files (large,
    gzip, already flagged on the server) go there from the start."""

    def __init__(self, remote_path: str, one_by_one: bool) -> None:
        self.remote_path, self.one_by_one = remote_path, one_by_one
        self.reset()

    def reset(self) -> None:
        """Back to the start (its requests were lost with the connection)."""
        self.started = self.again = False
        self.error: BaseException | None = None
        self.pending = 0
        self.handles: set[bytes] = set()

    @property
    def stopped(self) -> bool:
        return self.again or self.error is not None

    @property
    def finished(self) -> bool:
        return self.one_by_one or (self.started and not self.pending)

    def start(self, pipe: _Pipe) -> None:
        self.started = True
        try:
            self._begin(pipe)
        except (ConnectorError, FormatError, OSError) as e:
            self.stop(pipe, e)

    def stop(self, pipe: _Pipe, error: BaseException | None = None) -> None:
        """End with `error`, or with `again` if None; close what is open."""
        if error is None:
            self.again = True
        elif self.error is None:
            self.error = error
        for handle in list(self.handles):
            pipe.close(self, self.remote_path, handle)

    def _begin(self, pipe: _Pipe) -> None:
        raise NotImplementedError


class _FlagRead(_Job):
    """`Source.read_flag` of a flag listed (by `list` of its folder): read whole, as the listing sized it."""

    def __init__(self, source: SftpSource, remote_dir: str, name: str, one_by_one: bool = False) -> None:
        self.source, self.name = source, name
        remote_path = posixpath.join(remote_dir, name)
        self.flag_size = source._listed_sizes.get(remote_path + FLAG_SUFFIX)
        super().__init__(remote_path, one_by_one=one_by_one or self.flag_size is None)

    def reset(self) -> None:
        super().reset()
        self.flag: Flag | None = None

    def _begin(self, pipe: _Pipe) -> None:
        check_name(self.name, host=self.source.label)
        flag_path = self.remote_path + FLAG_SUFFIX

        def opened(handle: bytes) -> None:
            pipe.read(self, flag_path, handle, 0, MAX_FLAG_BYTES, lambda data: read(handle, data))

        def read(handle: bytes, data: bytes) -> None:
            pipe.close(self, flag_path, handle)
            if len(data) != self.flag_size:
                self.stop(pipe)     # a short read, or a flag rewritten since the listing
                return
            self.flag = self.source._checked_flag(data, self.remote_path, self.name)
            self._flag_read(pipe)

        pipe.open(self, flag_path, SFTP_FLAG_READ, opened,
                  missing=lambda: self.source._no_flag(self.remote_path, self.name))

    def _flag_read(self, pipe: _Pipe) -> None:
        """The flag is read and checked."""


class _SmallFetch(_FlagRead):
    """`Source.fetch` of a small plain file, in memory: its flag read (`_FlagRead`), then the file (its reads at
    once, and one past its end to see that it ends there), checked against the flag."""

    def __init__(self, source: SftpSource, remote_dir: str, name: str,
                 keep: Callable[[_SmallFetch], Future[FetchedFile]]) -> None:
        self._keep = keep
        self.size = source._listed_sizes.get(posixpath.join(remote_dir, name))
        large = self.size is None or self.size > PIPELINED_FILE_BYTES
        super().__init__(source, remote_dir, name, one_by_one=large or name.endswith(GZIP_SUFFIX))

    def reset(self) -> None:
        super().reset()
        self.data: bytes | None = None
        self.md5 = ""
        self.kept: Future[FetchedFile] | None = None     # the writing of the file, begun once it is verified
        self._pieces: dict[int, bytes] = {}
        self._reads = 0

    def _flag_read(self, pipe: _Pipe) -> None:
        if self.flag.size != self.size:
            self.stop(pipe)     # the listing may be older than the flag: the one-file fetch asks the server
            return
        pipe.open(self, self.remote_path, SFTP_FLAG_READ, lambda handle: self._read_data(pipe, handle),
                  missing=lambda: self.source._no_data(self.remote_path, self.name))

    def _read_data(self, pipe: _Pipe, handle: bytes) -> None:
        size = self.flag.size
        pieces = [(offset, min(SFTP_READ_BYTES, size - offset)) for offset in range(0, size, SFTP_READ_BYTES)]
        self._reads = len(pieces) + 1
        for offset, length in pieces:
            pipe.read(self, self.remote_path, handle, offset, length,
                      lambda data, offset=offset, length=length: self._piece(pipe, handle, offset, length, data))
        # one past the end: a file longer than its flag goes to the one-file fetch, which reports it
        pipe.read(self, self.remote_path, handle, size, 1, lambda data: self._piece(pipe, handle, size, 0, data))

    def _piece(self, pipe: _Pipe, handle: bytes, offset: int, length: int, data: bytes) -> None:
        if len(data) != length:
            self.stop(pipe)         # a short read (allowed, never seen from a file), or the file changed size
            return
        self._pieces[offset] = data
        self._reads -= 1
        if self._reads:
            return
        pipe.close(self, self.remote_path, handle)
        self.data = b"".join(self._pieces[offset] for offset in sorted(self._pieces))
        self._pieces = {}
        self.md5 = hashlib.md5(self.data).hexdigest()
        _check_against_flag(f"{self.source.label} {self.remote_path}", self.flag, len(self.data), self.md5)
        self.kept = self._keep(self)

    def keep(self, local_dir: Path) -> FetchedFile:
        """The verified file into ``local_dir/NAME`` by way of ``.NAME.part``, its data on disk (fsync)."""
        part, local_path = local_dir / f".{self.name}.part", local_dir / self.name
        data, self.data = self.data, None
        try:
            with open(part, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(part, local_path)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        log.info("%s %s: fetched to %s (%d bytes, md5 %s)", self.source.label, self.remote_path, local_path,
                 len(data), self.md5)
        return FetchedFile(local_path.name, local_path, len(data), self.md5, self.flag, False)


class _SmallDelivery(_Job):
    """`Source.deliver` of a small file whose name has no flag on the server (per the folder's listing): the
    file uploaded as ``NAME.tmp``, its size checked, renamed to ``NAME``; then its flag the same way."""

    def __init__(self, source: SftpSource, local_path: Path, remote_dir: str, present: set[str],
                 force: bool) -> None:
        self.source, self.local_path = source, local_path
        name = local_path.name
        try:
            small = local_path.stat().st_size <= PIPELINED_FILE_BYTES
        except OSError:
            small = False   # the one-file delivery reports it
        super().__init__(posixpath.join(remote_dir, name),
                         one_by_one=force or not small or name + FLAG_SUFFIX in present)

    def reset(self) -> None:
        super().reset()
        self.flag: Flag | None = None

    def _begin(self, pipe: _Pipe) -> None:
        check_name(self.local_path.name, host=self.source.label)
        self.flag = _local_flag(self.local_path, None)
        data = self.local_path.read_bytes()
        flag_path = self.remote_path + FLAG_SUFFIX
        self._put(pipe, data, self.remote_path,
                  lambda: self._put(pipe, self.flag.render(), flag_path, lambda: None))

    def _put(self, pipe: _Pipe, data: bytes, target: str, then: Callable[[], None]) -> None:
        """`data` written to ``target.tmp``, its size checked, renamed to `target`; then `then()`."""
        tmp = target + TMP_SUFFIX

        def opened(handle: bytes) -> None:
            pieces = range(0, len(data), SFTP_READ_BYTES)
            left = len(pieces)
            if not left:
                pipe.close(self, tmp, handle, closed)

            def written() -> None:
                nonlocal left
                left -= 1
                if not left:
                    pipe.close(self, tmp, handle, closed)

            for offset in pieces:
                pipe.write(self, tmp, handle, offset, data[offset:offset + SFTP_READ_BYTES], written)

        def closed() -> None:
            pipe.stat(self, tmp, checked)

        def checked(attrs: paramiko.SFTPAttributes) -> None:
            if attrs.st_size != len(data):   # paramiko's put(confirm=True) check, in its words
                raise OSError(f"size mismatch in put!  {attrs.st_size} != {len(data)}")
            pipe.replace(self, tmp, target, then)

        pipe.open(self, tmp, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC, opened)

    def keep(self) -> Delivery:
        flag = self.flag
        log.info("%s %s: delivered (%d bytes, md5 %s)", self.source.label, self.remote_path, flag.size, flag.md5)
        return Delivery(flag.name, self.remote_path, flag.size, flag.md5, "delivered")


class SftpSource(Source):
    """A counterparty's SFTP account, through paramiko.

    The connection is opened on first use and reopened after a network fault. Each public operation is retried
    up to `max_attempts` times on `ConnectionLost`/`ServerUnavailable`, waiting `backoff_seconds`, then twice as
    long each time (at most `max_backoff_seconds`). Every other error fails at once. Credentials are loaded when
    the source is made, so a bad key fails fast (`ConnectorConfigError`).
    """

    def __init__(self, endpoint: SftpEndpoint, *, max_attempts: int = 4, backoff_seconds: float = 2.0,
                 max_backoff_seconds: float = 60.0, **limits: int) -> None:
        super().__init__(**limits)
        self.endpoint = endpoint
        self.label = endpoint.address
        self.max_attempts = max(1, max_attempts)
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._pkey = self._load_key()
        self._host_keys = parse_host_keys(endpoint.host_key, host=self.label) if endpoint.host_key else []
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def __repr__(self) -> str:
        return f"SftpSource({self.endpoint!r})"

    def _load_key(self) -> paramiko.PKey | None:
        ep = self.endpoint
        if ep.private_key:
            return load_private_key(ep.private_key, ep.key_passphrase)
        if ep.key_file:
            try:
                return paramiko.PKey.from_path(ep.key_file, ep.key_passphrase)
            except FileNotFoundError:
                raise ConnectorConfigError("key file not found", host=self.label, path=ep.key_file) from None
            except (paramiko.SSHException, ValueError, TypeError):
                raise ConnectorConfigError("key file cannot be read (not a key, or wrong passphrase)",
                                           host=self.label, path=ep.key_file) from None
        return None

    # -- connection ----------------------------------------------------------------------------------------

    def _connect(self) -> paramiko.SFTPClient:
        ep = self.endpoint
        client = paramiko.SSHClient()
        host_keys = client.get_host_keys()
        for key in self._host_keys:
            host_keys.add(ep.known_hosts_name, key.get_name(), key)
        if ep.known_hosts:
            try:
                host_keys.load(ep.known_hosts)
            except FileNotFoundError:
                raise ConnectorConfigError("known_hosts file not found", host=self.label,
                                           path=ep.known_hosts) from None
        if not self._host_keys and not ep.known_hosts:
            client.load_system_host_keys()
        client.set_missing_host_key_policy(_RejectUnknownHost())
        try:
            client.connect(ep.host, ep.port, ep.username, password=ep.password, pkey=self._pkey,
                           timeout=ep.connect_timeout, banner_timeout=ep.connect_timeout,
                           auth_timeout=ep.connect_timeout, channel_timeout=ep.connect_timeout,
                           look_for_keys=False, allow_agent=False, transport_factory=_Transport)
            transport = client.get_transport()
            transport.set_keepalive(30)
            sftp = paramiko.SFTPClient.from_transport(transport, window_size=SFTP_WINDOW_BYTES,
                                                      max_packet_size=SFTP_MAX_PACKET_BYTES)
            sftp.get_channel().settimeout(ep.io_timeout)
        except HostKeyMismatch:
            client.close()
            raise
        except paramiko.BadHostKeyException as e:
            client.close()
            raise HostKeyMismatch("the server's host key is not the pinned one: a different server, or it was "
                                  "re-keyed; confirm with the counterparty before changing the pinned key",
                                  host=self.label,
                                  expected=f"{e.expected_key.get_name()} {e.expected_key.fingerprint}",
                                  found=f"{e.key.get_name()} {e.key.fingerprint}") from None
        except paramiko.AuthenticationException:
            client.close()
            raise AuthenticationFailed("the server refused our credentials", host=self.label,
                                       expected=f"user {ep.username!r} accepted", found="refused") from None
        except (paramiko.SSHException, EOFError, OSError) as e:
            client.close()
            raise ServerUnavailable(f"cannot connect ({type(e).__name__}: {e})", host=self.label) from e
        log.debug("%s: connected as %s", self.label, ep.username)
        self._client, self._sftp = client, sftp
        return sftp

    def _session(self) -> paramiko.SFTPClient:
        return self._sftp if self._sftp is not None else self._connect()

    def _connection_alive(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    def close(self) -> None:
        client, self._client, self._sftp = self._client, None, None
        if client is not None:
            client.close()

    def _run(self, action: str, operation: Callable[[], T]) -> T:
        attempt = 1
        while True:
            try:
                return operation()
            except (ConnectionLost, ServerUnavailable) as e:
                self._back_off(action, attempt, e)
                attempt += 1

    def _back_off(self, action: str, attempt: int, error: ConnectorError) -> None:
        """After the `attempt`-th network fault of `action`: close the connection, then raise `error` if that was
        the last attempt, else wait before the next."""
        self.close()
        if attempt >= self.max_attempts:
            log.error("%s: giving up after %d attempts: %s", action, attempt, error)
            raise error
        delay = min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds)
        log.warning("%s: %s (attempt %d of %d); reconnecting in %.1f s", action, error, attempt, self.max_attempts,
                    delay)
        time.sleep(delay)

    @contextmanager
    def _remote(self, remote_path: str) -> Iterator[paramiko.SFTPClient]:
        """Translate what paramiko raises during one SFTP request into our errors.

        `FileNotFoundError` passes through (the protocol decides what "absent" means). A broken connection
        becomes `ConnectionLost` (retried); any other refusal by the server becomes `RemoteFileError`.
        """
        try:
            yield self._session()
        except (ConnectorError, FileNotFoundError):
            raise
        except _NETWORK_ERRORS as e:
            raise ConnectionLost(f"connection lost ({type(e).__name__}: {e})", host=self.label,
                                 path=remote_path) from e
        except OSError as e:
            if not self._connection_alive():
                raise ConnectionLost(f"connection lost ({type(e).__name__}: {e})", host=self.label,
                                     path=remote_path) from e
            raise RemoteFileError(f"the server refused: {e}", host=self.label, path=remote_path) from e

    # -- many files at once --------------------------------------------------------------------------------

    def fetch_many(self, remote_dir: str, names: Iterable[str], local_dir: Path | str) -> Iterator[FetchedFile]:
        """`Source.fetch_many`: the small plain files listed with their flags (by `list` of `remote_dir`), many
        at once, each read whole into memory, checked against its flag, then written as `fetch` writes it; the
        others (gzip, large, unlisted) and anything unusual by `fetch`. After a dropped connection, the files not
        yet finished start again on a new one (retried as every operation is)."""
        remote_dir = check_dir(remote_dir, host=self.label)
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        return _read_ahead(self._fetch_many(remote_dir, names, local_dir))

    def _fetch_many(self, remote_dir: str, names: Iterable[str], local_dir: Path) -> Iterator[FetchedFile]:
        # Each file is written (and fsynced) by a pool as soon as it is verified, while the others download:
        # fsync releases the GIL, and the file system commits many files' fsyncs at once.
        with ThreadPoolExecutor(FILES_WRITTEN_AT_ONCE, thread_name_prefix="write fetched") as writer:
            jobs = deque(_SmallFetch(self, remote_dir, name, lambda job: writer.submit(job.keep, local_dir))
                         for name in names)
            for job in self._pipelined(f"fetch from {remote_dir}", jobs):
                yield (self.fetch(remote_dir, job.name, local_dir) if job.one_by_one or job.again
                       else job.kept.result())

    def read_flags(self, remote_dir: str, names: Iterable[str]) -> Iterator[Flag]:
        """`Source.read_flags`: the flags listed (by `list` of `remote_dir`) many at once, the others (and a flag
        changed since the listing) by `read_flag`."""
        remote_dir = check_dir(remote_dir, host=self.label)
        jobs = deque(_FlagRead(self, remote_dir, name) for name in names)
        return _read_ahead(self.read_flag(remote_dir, job.name) if job.one_by_one or job.again else job.flag
                           for job in self._pipelined(f"read flags in {remote_dir}", jobs))

    def deliver_many(self, local_paths: Iterable[Path | str], remote_dir: str, *,
                     force: bool = False) -> Iterator[Delivery]:
        """`Source.deliver_many`: one listing of `remote_dir` (made if missing) says which names have a flag
        there already; those go through `deliver` (which reads the flag: already delivered, or a conflict), as do
        large files and everything when `force`; the others are uploaded many at once, each as `deliver` does."""
        remote_dir = check_dir(remote_dir, host=self.label)

        def listing() -> set[str]:
            if remote_dir not in self._made_dirs:
                self._makedirs(remote_dir)
                self._made_dirs.add(remote_dir)
            return {entry.name for entry in self._list(remote_dir)}

        def deliveries() -> Iterator[Delivery]:
            present = self._run(f"list {remote_dir}", listing)
            jobs = deque(_SmallDelivery(self, Path(p), remote_dir, present, force) for p in local_paths)
            for job in self._pipelined(f"deliver to {remote_dir}", jobs):
                yield (self.deliver(job.local_path, remote_dir, force=force) if job.one_by_one or job.again
                       else job.keep())

        return _read_ahead(deliveries())

    def _pipelined(self, action: str, jobs: deque[_Job]) -> Iterator[_Job]:
        """Run `jobs`, FILES_IN_FLIGHT at once, and yield each finished one in order (its error raised when its
        turn comes). A one-by-one job is yielded with nothing in flight, for the caller to do it alone. A dropped
        connection starts the unfinished jobs again on a new one, after the backoff; `max_attempts` faults in a
        row (no job finished in between) raise it."""
        attempt = 1
        pipe: _Pipe | None = None
        try:
            while jobs:
                try:
                    with self._remote(jobs[0].remote_path) as sftp:
                        if pipe is None or pipe.sftp is not sftp:
                            pipe = _Pipe(sftp, self.label)
                        job = self._next_finished(pipe, jobs)
                except (ConnectionLost, ServerUnavailable) as e:
                    self._back_off(action, attempt, e)
                    attempt += 1
                    for job in jobs:
                        if not job.finished or job.error is not None:
                            job.reset()
                    continue
                attempt = 1
                jobs.popleft()
                if job.error is not None:
                    raise job.error
                yield job
        finally:
            if pipe is not None and pipe.busy:
                self.close()    # answers still due on this session: a new one for whatever comes next

    @staticmethod
    def _next_finished(pipe: _Pipe, jobs: deque[_Job]) -> _Job:
        """Start the jobs of the window (up to the first one-by-one job), then take answers until the first job
        is finished; one to be done alone is returned once nothing else is in flight."""
        for job in itertools.islice(jobs, FILES_IN_FLIGHT):
            if job.one_by_one:
                break
            if not job.started:
                job.start(pipe)
        head = jobs[0]
        while not head.finished or ((head.one_by_one or head.again) and pipe.busy):
            pipe.answer()
        return head

    # -- primitives ----------------------------------------------------------------------------------------

    def _list(self, remote_dir: str) -> list[RemoteEntry]:
        with self._remote(remote_dir) as sftp:
            attrs = sftp.listdir_attr(remote_dir)
        return [RemoteEntry(a.filename, a.st_size or 0, int(a.st_mtime or 0)) for a in attrs
                if a.st_mode is None or stat.S_ISREG(a.st_mode)]

    def _read_small(self, remote_path: str, limit: int) -> bytes:
        with self._remote(remote_path) as sftp:
            with sftp.open(remote_path, "rb") as f:
                return f.read(limit)

    def _size(self, remote_path: str) -> int:
        with self._remote(remote_path) as sftp:
            return sftp.stat(remote_path).st_size

    def _download(self, remote_path: str, out: BinaryIO, offset: int, expected_size: int) -> None:
        with self._remote(remote_path) as sftp:
            remote = sftp.open(remote_path, "rb")
        try:
            remote.__class__ = _PrefetchingFile  # paramiko's open makes an SFTPFile; only its prefetch differs
            remote.MAX_REQUEST_SIZE = SFTP_READ_BYTES  # paramiko's read size, a class constant set per file
            with self._remote(remote_path):
                remote.seek(offset)
                if expected_size > offset:
                    remote.prefetch(expected_size, max_concurrent_requests=PREFETCH_REQUESTS)

            def read(n: int) -> bytes:
                # One SFTP answer per call: paramiko's read of more joins the answers by bytes concatenation,
                # copying each megabyte eight times over.
                with self._remote(remote_path):
                    return remote.read(min(n, SFTP_READ_BYTES))

            self._copy_capped(read, out, offset, remote_path)
        finally:
            try:
                remote.close()
            except (*_NETWORK_ERRORS, OSError):
                pass  # the connection is already gone; nothing is left open on our side

    def _makedirs(self, remote_dir: str) -> None:
        with self._remote(remote_dir) as sftp:
            path = "/" if remote_dir.startswith("/") else ""
            for part in [p for p in remote_dir.split("/") if p]:
                path = posixpath.join(path, part) if path else part
                try:
                    sftp.stat(path)
                except FileNotFoundError:
                    try:
                        sftp.mkdir(path)
                    except OSError:
                        sftp.stat(path)  # made meanwhile by someone else is fine; otherwise this raises

    def _upload(self, local_path: Path, remote_path: str) -> None:
        with self._remote(remote_path) as sftp:
            sftp.put(str(local_path), remote_path, confirm=True)  # confirm: compares the size written

    def _upload_bytes(self, data: bytes, remote_path: str) -> None:
        with self._remote(remote_path) as sftp:
            sftp.putfo(io.BytesIO(data), remote_path, file_size=len(data), confirm=True)

    def _replace(self, source_path: str, target_path: str) -> None:
        with self._remote(target_path) as sftp:
            try:
                sftp.posix_rename(source_path, target_path)  # OpenSSH extension: atomic replace
                return
            except FileNotFoundError:
                raise
            except OSError:
                if not self._connection_alive():
                    raise
            # A server without posix-rename: plain SFTP rename refuses an existing target, so remove it first.
            try:
                sftp.remove(target_path)
            except FileNotFoundError:
                pass
            sftp.rename(source_path, target_path)

    def _remove(self, remote_path: str) -> None:
        with self._remote(remote_path) as sftp:
            try:
                sftp.remove(remote_path)
            except FileNotFoundError:
                pass


# --- Opening a source -------------------------------------------------------------------------------------------

def open_source(target: str | Path | SftpEndpoint, *, env: Mapping[str, str] | None = None,
                env_prefix: str = "DUIZHANG_SFTP_", **options) -> Source:
    """An `SftpSource` for an `SftpEndpoint` or an ``sftp://user@host:port`` URL (secrets from `env`, see
    `SftpEndpoint.from_url`), or a `LocalDirSource` for a directory (a path or a ``file://`` URL).

    `options` go to the source: ``max_file_bytes``, ``max_unpacked_bytes``, and for SFTP ``max_attempts``,
    ``backoff_seconds``, ``max_backoff_seconds``. Raises `ConnectorConfigError`.
    """
    if isinstance(target, SftpEndpoint):
        return SftpSource(target, **options)
    text = str(target)
    if text.startswith("sftp://"):
        return SftpSource(SftpEndpoint.from_url(text, env=env, env_prefix=env_prefix), **options)
    if text.startswith("file://"):
        text = unquote(urlsplit(text).path)
    root = Path(text)
    if not root.is_dir():
        raise ConnectorConfigError("local exchange directory does not exist", path=str(root))
    return LocalDirSource(root, **options)
