"""Following a break to its end: its status (new, investigating, resolved, written_off), who changed it, when,
and why.

The history is append-only rows in control.db's `break_status` (triggers refuse UPDATE and DELETE); a break's
status is its latest row, and a break with no row is `new`. After every change the (channel, date) history is
published to the warehouse table `break_status`, which the `breaks` and `open_items` views join: a resolved or
written-off break leaves the open list, never the history.
"""
from __future__ import annotations

import datetime as dt
import logging

import duckdb
import pyarrow as pa

from formats.errors import Terminal
from recon.outcomes import BREAKS
from duizhang.workdir import Workdir

log = logging.getLogger("duizhang.breaks")

STATUSES = ("new", "investigating", "resolved", "written_off")
CLOSED = ("resolved", "written_off")

_SCHEMA = pa.schema([("channel", pa.string()), ("business_date", pa.date32()), ("record_ref", pa.string()),
                     ("seq", pa.int64()), ("status", pa.string()), ("changed_by", pa.string()),
                     ("changed_at", pa.string()), ("note", pa.string())])


class BreakError(Terminal):
    """A status change that cannot be recorded: no such break, an unknown status, no name or no note."""


def _break(wd: Workdir, channel: str, date: dt.date, record_ref: str) -> dict:
    path = wd.table_path("recon_result", channel, date)
    if not path.exists():
        raise BreakError(f"{channel} {date}: no reconciliation results; nothing to set a status on")
    row = duckdb.execute(f"SELECT outcome, amount_fen, reason FROM read_parquet('{path.as_posix()}') "
                         "WHERE record_ref = ?", [record_ref]).fetchone()
    if row is None:
        raise BreakError(f"{channel} {date}: no record {record_ref!r} in the reconciliation results")
    if row[0] not in {b.value for b in BREAKS}:
        raise BreakError(f"{channel} {date}: {record_ref} is {row[0]}, not a break; only breaks have a status")
    return {"outcome": row[0], "amount_fen": row[1], "reason": row[2]}


def set_status(wd: Workdir, channel: str, date: dt.date, record_ref: str, status: str, by: str, note: str) -> dict:
    """Append a status change for one break and republish the (channel, date) history; returns the new row."""
    if status not in STATUSES[1:]:
        raise BreakError(f"status must be one of {', '.join(STATUSES[1:])} (every break starts as new), "
                         f"not {status!r}")
    if not by.strip():
        raise BreakError("--by: say who changes the status")
    if not note.strip():
        raise BreakError("--note: say why (a resolved or written-off break must be explained)")
    _break(wd, channel, date, record_ref)
    changed_at = dt.datetime.now().isoformat(timespec="microseconds")  # an operator's act: wall clock is the fact
    with wd.control() as db:
        db.execute("BEGIN IMMEDIATE")
        current = db.execute("SELECT status FROM break_status WHERE channel=? AND business_date=? AND record_ref=? "
                             "ORDER BY id DESC LIMIT 1", (channel, date.isoformat(), record_ref)).fetchone()
        if current and current["status"] == status:
            db.execute("ROLLBACK")
            raise BreakError(f"{channel} {date} {record_ref} is already {status}")
        db.execute("INSERT INTO break_status (channel, business_date, record_ref, status, changed_by, changed_at, note)"
                   " VALUES (?,?,?,?,?,?,?)", (channel, date.isoformat(), record_ref, status, by, changed_at, note))
        db.execute("COMMIT")
    log.info("%s %s break %s: %s -> %s by %s: %s", channel, date, record_ref, current["status"] if current else "new",
             status, by, note)
    publish(wd, channel, date)
    return {"channel": channel, "business_date": date.isoformat(), "record_ref": record_ref, "status": status,
            "changed_by": by, "changed_at": changed_at, "note": note}


def history_rows(wd: Workdir, record_ref: str | None = None, channel: str | None = None,
                 date: dt.date | None = None) -> list[dict]:
    """Status changes, oldest first, filtered by any of record_ref, channel and date."""
    where, args = ["1=1"], []
    for col, value in (("record_ref", record_ref), ("channel", channel),
                       ("business_date", date.isoformat() if date else None)):
        if value is not None:
            where.append(f"{col} = ?")
            args.append(value)
    with wd.control() as db:
        return [dict(r) | {"seq": r["id"]} for r in db.execute(
            f"SELECT * FROM break_status WHERE {' AND '.join(where)} ORDER BY id", args)]


def publish(wd: Workdir, channel: str, date: dt.date) -> None:
    rows = history_rows(wd, channel=channel, date=date)
    table = pa.Table.from_pylist([{k: r[k] for k in _SCHEMA.names if k != "business_date"}
                                  | {"business_date": date} for r in rows], schema=_SCHEMA)
    wd.publish("break_status", channel, date, table)
    wd.refresh_views()


def current(wd: Workdir, channel: str | None = None, date: dt.date | None = None,
            status: str | None = None) -> list[dict]:
    """Every break with its current status, from the warehouse view `breaks` (filters optional)."""
    if status is not None and status not in STATUSES:
        raise BreakError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    con = duckdb.connect(str(wd.refresh_views()), read_only=True)
    try:
        where, args = ["1=1"], []
        for col, value in (("channel", channel), ("business_date", date), ("status", status)):
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        rel = con.execute(f"SELECT channel, business_date, record_ref, side, outcome, amount_fen, status, status_by, "
                          f"status_at, reason FROM breaks WHERE {' AND '.join(where)} "
                          "ORDER BY channel, business_date, record_ref", args)
        cols = [d[0] for d in rel.description]
        return [dict(zip(cols, r)) for r in rel.fetchall()]
    finally:
        con.close()
