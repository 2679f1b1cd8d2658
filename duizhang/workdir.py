"""Where a run keeps its state: landing files, parsed Parquet, the warehouse, outgoing files, the control database.

Storage design (so that channels run in parallel and analysts read while the night runs):
- every published table is Parquet, one file per (table, channel, business date), written to a temporary name
  and renamed: a reader sees the old file or the new one, never half of one, and two channels never write the
  same file;
- `warehouse.duckdb` holds only views over those files, so analysts open it read-only and never block a run;
- `control.db` (SQLite, WAL) holds the small transactional state: the file registry, deliveries and run locks.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import re
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

_CONTROL_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    channel TEXT NOT NULL, business_date TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    md5 TEXT NOT NULL, remote_md5 TEXT, size INTEGER NOT NULL, flag_records INTEGER NOT NULL,
    local_path TEXT NOT NULL,
    received_at TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'received', detail TEXT,
    PRIMARY KEY (channel, business_date, name, md5)
);
CREATE TABLE IF NOT EXISTS deliveries (
    channel TEXT NOT NULL, business_date TEXT NOT NULL, name TEXT NOT NULL, md5 TEXT NOT NULL,
    destination TEXT NOT NULL, delivered_at TEXT NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY (channel, business_date, name, md5)
);
CREATE TABLE IF NOT EXISTS runs (
    channel TEXT NOT NULL, business_date TEXT NOT NULL, step TEXT NOT NULL, finished_at TEXT NOT NULL,
    summary TEXT NOT NULL, PRIMARY KEY (channel, business_date, step)
);
-- Append-only: a break's status is its latest row; a break with no row is 'new' (duizhang/breaks.py).
CREATE TABLE IF NOT EXISTS break_status (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL, business_date TEXT NOT NULL, record_ref TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('new', 'investigating', 'resolved', 'written_off')),
    changed_by TEXT NOT NULL, changed_at TEXT NOT NULL, note TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS break_status_ref ON break_status (channel, business_date, record_ref, id);
CREATE TRIGGER IF NOT EXISTS break_status_append_only_u BEFORE UPDATE ON break_status
    BEGIN SELECT RAISE(ABORT, 'break_status is append-only'); END;
CREATE TRIGGER IF NOT EXISTS break_status_append_only_d BEFORE DELETE ON break_status
    BEGIN SELECT RAISE(ABORT, 'break_status is append-only'); END;
"""


class Workdir:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        with self.control() as db:
            db.executescript(_CONTROL_SCHEMA)
            # a workdir made before the registry kept the flag's MD5 (files.remote_md5) gets the column
            if "remote_md5" not in {row["name"] for row in db.execute("PRAGMA table_info(files)")}:
                db.execute("ALTER TABLE files ADD COLUMN remote_md5 TEXT")

    # --- paths -------------------------------------------------------------------------------------------
    def landing(self, channel: str, date: dt.date) -> Path:
        return self._dir("landing", channel, date.strftime("%Y%m%d"))

    def parsed(self, channel: str, date: dt.date) -> Path:
        return self._dir("parsed", channel, date.strftime("%Y%m%d"))

    def outbox(self, channel: str, date: dt.date) -> Path:
        return self._dir("outbox", channel, date.strftime("%Y%m%d"))

    def to_counterparty(self, channel: str, date: dt.date) -> Path:
        """The outgoing files for the counterparty (returns, dispute replies): `deliver` uploads this folder.

        The rest of the outbox (the entries file for the core, the error-handling file for operations) stays
        here for the core's and operations' own pickup."""
        return self._dir("outbox", channel, date.strftime("%Y%m%d"), "to_counterparty")

    def ledger_extract(self, date: dt.date) -> Path:
        return self._dir("ledger") / f"core_journal_{date:%Y%m%d}.parquet"

    def table_path(self, table: str, channel: str, date: dt.date) -> Path:
        return self._dir("warehouse", table, f"channel={channel}", f"business_date={date.isoformat()}") / "part.parquet"

    def _dir(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- the warehouse -----------------------------------------------------------------------------------
    def publish(self, table: str, channel: str, date: dt.date, data: pa.Table) -> Path:
        """Replace the (table, channel, date) partition atomically; reruns overwrite, never append."""
        path = self.table_path(table, channel, date)
        write_parquet(data, path)
        return path

    def read_table(self, table: str, channel: str, date: dt.date, filters: list | None = None) -> pa.Table | None:
        path = self.table_path(table, channel, date)
        return pq.read_table(path, filters=filters) if path.exists() else None

    def refresh_views(self) -> Path:
        """(Re)create `warehouse.duckdb`: one view per published table over its Parquet partitions."""
        db_path = self.root / "warehouse.duckdb"
        tmp = db_path.with_name(f".warehouse.duckdb.{os.getpid()}.tmp")  # two processes may refresh at once
        _remove_orphans(self.root, ".warehouse.duckdb.*.tmp*")
        con = duckdb.connect(str(tmp))
        try:
            from duizhang.views import TABLES, create_all
            published = {p.parent.parent.parent.name for p in (self.root / "warehouse").glob("*/*/*/part.parquet")}
            for table in sorted(published | set(TABLES)):
                glob = (self.root / "warehouse" / table / "**" / "*.parquet").as_posix()
                if table in published:
                    con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{glob}', hive_partitioning = "
                                "false, union_by_name = true)")
                else:  # declared but nothing published yet: an empty view with the documented columns
                    con.execute(f"CREATE VIEW {table} AS {TABLES[table].empty_select()}")
            create_all(con)
        finally:
            con.close()
        os.replace(tmp, db_path)
        return db_path

    # --- control database --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def control(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.root / "control.db", timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            db.row_factory = sqlite3.Row
            yield db
        except sqlite3.OperationalError as e:
            # SQLite says "disk I/O error" when the disk is full: say what happened, as any other write would.
            if "disk I/O error" in str(e) and shutil.disk_usage(self.root).free < 1 << 20:
                raise OSError(errno.ENOSPC, f"no space left on device for {self.root / 'control.db'}") from e
            raise
        finally:
            db.close()

    def secret(self, name: str, env: str) -> str:
        """A secret from the environment, else one generated once for this workdir (mode 0600, never logged)."""
        if value := os.environ.get(env):
            return value
        path = self._dir("secrets") / name
        if not path.exists() or not path.read_text().strip():
            # Written whole under a private name, then linked into place: a kill never leaves an empty key, and of
            # two processes generating at once the first link wins and both read the same key.
            tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)       # the first link wins; the others read its key
            if not path.read_text().strip():   # an empty key left by a crash before this fix: replace it
                os.replace(tmp, path)
            tmp.unlink(missing_ok=True)
        return path.read_text().strip()


def _remove_orphans(directory: Path, pattern: str) -> None:
    """Remove `NAME.<pid>.tmp` files whose process is gone (killed while writing): nobody will finish them."""
    for leftover in directory.glob(pattern):
        if not (pid := re.search(r"\.(\d+)\.tmp", leftover.name)):
            continue
        try:
            os.kill(int(pid.group(1)), 0)
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
        except PermissionError:
            pass   # alive, another user's


def write_parquet(data: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(data, tmp, compression="zstd")
    os.replace(tmp, path)


def now() -> str:
    """Wall-clock time, only for registry metadata (never inside an output file)."""
    return dt.datetime.now().isoformat(timespec="seconds")
