"""Errors of the connectors (SFTP, local exchange directories, the core-ledger database).

Every error is marked `Terminal` (retrying cannot help: the configuration or the counterparty's files must
change) or `Transient` (a retry may help), the markers `formats.errors` defines for every package. The Airflow
bridge fails a task at once on `Terminal` and leaves `Transient` errors to Airflow's retry policy.

Messages name the host, the path or file, what was expected and what was found, in words an operator can act
on. They never contain a password, a private key or a database URL with its password.
"""
from __future__ import annotations

from formats.errors import Terminal, Transient


class ConnectorError(Exception):
    """Base for everything `connectors` raises.

    The context is kept in attributes as well as in the message: `host` (``host:port`` for SFTP, the directory
    for a local source, the database URL without its password for the ledger), `path` (remote path or table),
    `problem`, `expected` and `found`.
    """

    def __init__(self, problem: str, *, host: str | None = None, path: str | None = None,
                 expected: object = None, found: object = None) -> None:
        self.problem, self.host, self.path, self.expected, self.found = problem, host, path, expected, found
        where = " ".join(part for part in (host, path) if part)
        detail = ""
        if expected is not None or found is not None:
            detail = f": expected {expected}, found {found}"
        super().__init__(f"{where}: {problem}{detail}" if where else f"{problem}{detail}")


# --- Transient: a retry (a reconnect, or waiting longer) may help -------------------------------------------

class FileNotReady(ConnectorError, Transient):
    """The flag file (`NAME.ok`) of an expected data file is not there yet; a sensor keeps waiting.

    `missing` lists the data files (or patterns) still without their flag.
    """

    def __init__(self, problem: str, *, missing: tuple[str, ...] = (), **context) -> None:
        self.missing = tuple(missing)
        super().__init__(problem, **context)


class ConnectionLost(ConnectorError, Transient):
    """The SSH connection broke during an operation (reset, EOF, timeout); the operation is redone on a new one."""


class ServerUnavailable(ConnectorError, Transient):
    """The server (SFTP or database) could not be reached, or did not complete the handshake (refused, timed out,
    no banner)."""


# --- Terminal: the configuration, the server's key or the files must change ----------------------------------

class HostKeyMismatch(ConnectorError, Terminal):
    """The server's host key is not the pinned one (or no key is pinned for it). Never auto-accepted."""


class AuthenticationFailed(ConnectorError, Terminal):
    """The server refused our credentials (wrong user or key, key not authorised)."""


class ConnectorConfigError(ConnectorError, Terminal):
    """An endpoint or URL is incomplete or unsafe (no credentials, unreadable key, host-key checking disabled)."""


class UnsafeRemotePath(ConnectorError, Terminal):
    """A file or directory name could escape its folder (``/``, ``\\``, ``..``, an absolute path, NUL)."""


class RemoteFileError(ConnectorError, Terminal):
    """The server refused a file operation for a reason other than "not there yet" (permission denied, ...)."""


class FileTooLarge(ConnectorError, Terminal):
    """A download, or a gzip file once decompressed, is larger than the configured limit (a gzip bomb stops here)."""


class DeliveryConflict(ConnectorError, Terminal):
    """A different file (other MD5 or size) was already delivered under the same name; only an operator may force."""


class LedgerError(ConnectorError, Terminal):
    """The core-ledger table cannot give a valid extract: table or column missing, wrong type, NULL in a required
    column, or no rows for the date (an empty extract is a fault upstream)."""
