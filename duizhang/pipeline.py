"""The nightly chain for one channel and business date, step by step: fetch, parse, load_ledger, match, validate
(duizhang/quality.py), answer, clear, deliver, report.

The CLI (`duizhang run`) and the Airflow DAG tasks call these same functions. Every step is keyed by
(channel, business date, file version), reads only what earlier steps published, and replaces its own outputs
atomically, so running or rerunning any step gives the same bytes and never duplicates a row or a file.
Steps take a lock per (channel, date), and `run` one for the whole chain: two runs of the same date never
interleave (the second waits).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clearing.disputes import reply_disputes
from clearing.entries import Line, pair, reversal_vouchers, suspense_vouchers, write_entries
from clearing.error_file import write_error_file
from clearing.returns import BUILDERS, BatchHeld, InboundBatch, build_returns, runs
from clearing.unionpay import unionpay_net
from connectors.sftp import fsync_dir, open_source
from formats import registry
from formats.errors import FileRejected, Terminal, Transient
from formats.flag import parse_flag
from formats.result import ReadResult
from recon.channels import CHANNELS
from recon.outcomes import BREAKS_SQL
from recon.engine import Inputs, ParsedFile, check_conservation, reconcile_to_parquet, summarise
from recon.rules import MatchRule
from duizhang.channels import CHANNEL_FILES
from duizhang.workdir import Workdir, now, write_parquet

log = logging.getLogger("duizhang.pipeline")

PAN_KEY_ENV = "DUIZHANG_PAN_HASH_KEY"


class NothingToReconcile(Terminal):
    """A step found no input where one is required (no file delivered, no ledger rows)."""


class RunLocked(Transient):
    """Another run holds the lock of this channel and date; retry later."""


class LedgerNotReady(Transient):
    """The core's extract of T (or its flag) is not there yet."""


@contextlib.contextmanager
def locked(wd: Workdir, channel: str, date: dt.date, timeout: float = 600) -> Iterator[None]:
    path = wd.root / "locks"
    path.mkdir(exist_ok=True)
    with open(path / f"{channel}_{date:%Y%m%d}.lock", "w") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RunLocked(f"{channel} {date}: another run holds the lock for {timeout:.0f} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- 1. fetch ---------------------------------------------------------------------------------------------


REGISTER_EVERY = 100
"""Downloads registered together, in one transaction: a registry transaction costs more than a small file's
download. A kill loses at most these registrations, and the rerun downloads those files again."""


def fetch(channel: str, date: dt.date, source: str, wd: Workdir, *, wait_seconds: float = 0) -> list[dict]:
    """Download the channel's files for T with their flags, verify them and register them.

    A file already registered with the same content is recognised and not stored twice; a changed file under a
    known name becomes the next version, kept beside the old one."""
    spec = CHANNEL_FILES[channel]
    matcher = spec.matcher(date)
    remote_dir = spec.remote_dir(date)
    staging = wd.landing(channel, date) / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    registered: list[dict] = []
    with locked(wd, channel, date), open_source(source) as src:
        if wait_seconds:
            src.wait_for(remote_dir, [matcher.pattern], timeout=wait_seconds)
        names = sorted(e.name for e in src.list(remote_dir)
                       if matcher.match(e.name.removesuffix(".gz")) and not e.name.endswith((".ok", ".tmp")))
        if not names:
            raise NothingToReconcile(f"{channel} {date}: no file matching {matcher.pattern} in {remote_dir} "
                                     f"on {source if '@' not in str(source) else 'the SFTP server'}")
        with wd.control() as db:
            held: dict[str, list[dict]] = {}
            for r in db.execute("SELECT * FROM files WHERE channel=? AND business_date=?",
                                (channel, date.isoformat())):
                held.setdefault(r["name"], []).append(dict(r))
        # only a name received before can be a file already held: its flag (read many at once) says whether it is
        received_before = [name for name in names if name.removesuffix(".gz") in held]
        flags = dict(zip(received_before, src.read_flags(remote_dir, received_before)))
        to_fetch = []
        for name in names:
            if name in flags and (known := _already_received(held, channel, date, name, flags[name])):
                registered.append(known)
            else:
                to_fetch.append(name)
        fetched = []
        for got in src.fetch_many(remote_dir, to_fetch, staging):   # many small files in flight at once
            fetched.append(got)
            if len(fetched) == REGISTER_EVERY:
                registered += _register_all(wd, channel, date, fetched)
                fetched = []
        registered += _register_all(wd, channel, date, fetched)
    shutil.rmtree(staging, ignore_errors=True)
    order = {name.removesuffix(".gz"): i for i, name in reversed(list(enumerate(names)))}
    return sorted(registered, key=lambda r: order[r["name"]])   # in the listing's order


def _already_received(held: dict[str, list[dict]], channel: str, date: dt.date, remote_name: str,
                      flag) -> dict | None:
    """The registry row (of `held`, the rows of T by name) of a file received before with the MD5 and record count
    its flag now announces: no need to download it (a corrected count on the same data is downloaded and
    registered as a flag correction)."""
    known = next((r for r in held.get(remote_name.removesuffix(".gz"), [])
                  if r["remote_md5"] == flag.md5 and r["flag_records"] == flag.record_count), None)
    if known is None or not Path(known["local_path"]).exists():
        return None
    log.info("%s %s: %s already received as version %s (its flag announces the same MD5): not downloaded again",
             channel, date, remote_name, known["version"])
    return known | {"duplicate": True}


def _register(wd: Workdir, channel: str, date: dt.date, got) -> dict:
    """Move a verified download (`FetchedFile`) into the landing area and register it."""
    return _register_all(wd, channel, date, [got])[0]


def _register_all(wd: Workdir, channel: str, date: dt.date, fetched: list) -> list[dict]:
    """`_register` of each of `fetched`, in one transaction."""
    if not fetched:
        return []
    d = date.isoformat()
    rows = []
    with wd.control() as db:
        db.execute("BEGIN IMMEDIATE")
        for got in fetched:
            rows.append(_register_one(db, wd, channel, date, got))
        for folder in {Path(row["local_path"]).parent for row in rows}:
            fsync_dir(folder)   # the names on disk before the registry says they are there
        db.execute("COMMIT")
    for row in rows:
        if row["duplicate"]:
            log.info("%s %s: %s already received as version %s (same MD5): not stored again",
                     channel, d, row["name"], row["version"])
        else:
            log.info("%s %s: registered %s version %d (%d bytes, %d records by its flag, md5 %s)",
                     channel, d, row["name"], row["version"], row["size"], row["flag_records"], row["md5"])
    return rows


def _register_one(db, wd: Workdir, channel: str, date: dt.date, got) -> dict:
    d = date.isoformat()
    known = db.execute("SELECT * FROM files WHERE channel=? AND business_date=? AND name=? AND md5=?",
                       (channel, d, got.name, got.md5)).fetchone()
    if known and Path(known["local_path"]).exists():
        if known["flag_records"] != got.flag.record_count:
            # The same data with a corrected flag (the count was wrong): the version keeps its data, takes
            # the new flag, and is parsed again.
            Path(known["local_path"]).with_name(f"{got.name}.ok").write_bytes(got.flag.render())
            db.execute("UPDATE files SET flag_records=?, remote_md5=?, status='received', detail=NULL WHERE "
                       "channel=? AND business_date=? AND name=? AND md5=?",
                       (got.flag.record_count, got.flag.md5, channel, d, got.name, got.md5))
            log.warning("%s %s: %s version %s received again with a corrected flag (%d records, was %d)",
                        channel, d, got.name, known["version"], got.flag.record_count, known["flag_records"])
        return dict(known) | {"flag_records": got.flag.record_count, "duplicate": True}
    version = db.execute("SELECT coalesce(max(version), 0) + 1 FROM files WHERE channel=? AND business_date=? "
                         "AND name=?", (channel, d, got.name)).fetchone()[0]
    if known:
        version = known["version"]
    target = wd.landing(channel, date) / f"v{version}" / got.name
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got.local_path, target)
    (target.parent / f"{got.name}.ok").write_bytes(got.flag.render())
    db.execute("INSERT OR REPLACE INTO files (channel, business_date, name, version, md5, remote_md5, size,"
               " flag_records, local_path, received_at, status) VALUES (?,?,?,?,?,?,?,?,?,?, 'received')",
               (channel, d, got.name, version, got.md5, got.flag.md5, got.size, got.flag.record_count,
                str(target), now()))
    return {"channel": channel, "business_date": d, "name": got.name, "version": version, "md5": got.md5,
            "size": got.size, "flag_records": got.flag.record_count, "local_path": str(target), "duplicate": False}


def current_files(wd: Workdir, channel: str, date: dt.date) -> list[dict]:
    """The files of T that count: per name the latest version; for UnionPay/PBOC only the highest NN per kind."""
    spec = CHANNEL_FILES[channel]
    with wd.control() as db:
        rows = [dict(r) for r in db.execute(
            "SELECT * FROM files f WHERE channel=? AND business_date=? AND version = (SELECT max(version) FROM files "
            "g WHERE g.channel=f.channel AND g.business_date=f.business_date AND g.name=f.name) ORDER BY name",
            (channel, date.isoformat()))]
    if spec.latest_sequence_wins:
        latest: dict[str, tuple[str, dict]] = {}
        for r in rows:
            kind, m = spec.kind_matching(r["name"], date)
            if kind.kind not in latest or m.group("seq") > latest[kind.kind][0]:
                latest[kind.kind] = (m.group("seq"), r)
        rows = sorted((r for _, r in latest.values()), key=lambda r: r["name"])
    return rows


# --- 2. parse ---------------------------------------------------------------------------------------------


PARSE_GROUP_FILES = 250
PARSE_GROUP_BYTES = 512 << 20
"""Under Airflow the files of T are parsed in groups of at most so many files and bytes, one task each: a task
per file would start a thousand task processes (seconds each) for a night of a thousand small batches. A file
larger than the bytes (UnionPay's 5 GB ACOMN) is a group of its own."""


def parse(channel: str, date: dt.date, wd: Workdir) -> dict:
    """Read every current file of T into Parquet with its quarantine, then write the channel's manifest."""
    parse_files(channel, date, wd, [f["name"] for f in current_files(wd, channel, date)])
    return write_manifest(channel, date, wd)


def parse_groups(channel: str, date: dt.date, wd: Workdir) -> list[list[str]]:
    """The names of the current files of T in parse groups (PARSE_GROUP_FILES, PARSE_GROUP_BYTES), in name order."""
    groups: list[list[str]] = []
    size = 0
    for f in current_files(wd, channel, date):
        full = groups and (len(groups[-1]) == PARSE_GROUP_FILES or size + f["size"] > PARSE_GROUP_BYTES)
        if not groups or full:
            groups.append([])
            size = 0
        groups[-1].append(f["name"])
        size += f["size"]
    return groups


def parse_files(channel: str, date: dt.date, wd: Workdir, names: list[str]) -> list[dict]:
    """Read the current version of each named file of T into Parquet, its quarantine and `{name}.v{N}.json`; per
    file what was read.

    One task per parse group under Airflow (dynamic task mapping). A rejected file raises FileRejected once the
    registry has the statuses of the files read before it; the channel stops at `write_manifest`, which finds no
    result for it."""
    current = {f["name"]: f for f in current_files(wd, channel, date)}
    if not names:
        raise NothingToReconcile(f"{channel} {date}: no file registered; run the fetch step first")
    if unknown := [n for n in names if n not in current]:
        raise NothingToReconcile(f"{channel} {date}: {', '.join(unknown)} is not a current file of this date; "
                                 "run the fetch step")
    statuses: list[tuple] = []
    try:   # the registry read once (per file it was quadratic in a night of thousands of batches)
        return [_parse_current(channel, date, wd, current[name], statuses) for name in names]
    finally:   # one registry transaction for the files, also when a file stops the channel
        _set_status(wd, statuses)


def _parse_current(channel: str, date: dt.date, wd: Workdir, f: dict, statuses: list[tuple]) -> dict:
    """`parse_files` of `f`, a row of `current_files`; its registry status is appended to `statuses` (the caller
    writes them)."""
    kind, _ = CHANNEL_FILES[channel].kind_matching(f["name"], date)
    out_dir = wd.parsed(channel, date)
    path = Path(f["local_path"])
    stem = f"{f['name']}.v{f['version']}"
    with locked(wd, f"{channel}.{f['name']}", date):
        flag = parse_flag(path.with_name(path.name + ".ok").read_bytes(), path.name + ".ok")
        rejected = None
        try:
            result = registry.read_to_parquet(path, kind.layout, out_dir / f"{stem}.parquet", flag)
        except FileRejected as e:
            statuses.append((f, "rejected", str(e)))
            (out_dir / f"{stem}.json").unlink(missing_ok=True)
            if CHANNEL_FILES[channel].latest_sequence_wins or e.partial is None:
                raise   # the night's only file, or a file whose records cannot even be counted: stop the channel
            log.warning("%s %s: %s v%d rejected whole, its records quarantined, the other batches go on: %s",
                        channel, date, f["name"], f["version"], e)
            result, rejected = _quarantined_whole(e), str(e)
            write_parquet(e.partial.records.slice(0, 0).drop_columns(["_line"]), out_dir / f"{stem}.parquet")
        quarantine = result.quarantine.append_column("_file", pa.array([f["name"]] * result.quarantined, pa.string()))
        if "amount_fen" not in quarantine.column_names:  # one name for the amount, whatever the layout calls it
            quarantine = quarantine.append_column("amount_fen", quarantine[kind.amount_field])
        write_parquet(quarantine, out_dir / f"{stem}.quarantine.parquet")
        parsed = {"name": f["name"], "version": f["version"], "md5": f["md5"], "kind": kind.kind,
                  "records": result.detail_count, "quarantined": result.quarantined,
                  "amount_fen": _amounts(out_dir / f"{stem}.parquet", kind.amount_field, quarantine),
                  "parquet": f"{stem}.parquet", "quarantine": f"{stem}.quarantine.parquet",
                  "header": {k: str(v) for k, v in (result.header or {}).items() if v is not None},
                  "rejected": rejected}
        _write_json(out_dir / f"{stem}.json", parsed)
        if not rejected:
            statuses.append((f, "parsed", json.dumps(result.summary(), ensure_ascii=False)))
    log.info("%s %s: parsed %s v%d: %d records, %d quarantined", channel, date, f["name"], f["version"],
             result.detail_count, result.quarantined)
    return parsed


def _quarantined_whole(err: FileRejected) -> ReadResult:
    """A batch rejected whole (control totals, a duplicate key) as a read result whose every record is quarantined
    with the file's reason: the batch is answered as rejected (TIPS 94999, payroll 批次校验失败) and counted."""
    read, n = err.partial, err.partial.records.num_rows
    whole = pa.table({"_line": read.records["_line"], "_record": pa.array(["detail"] * n, pa.string()),
                      "_field": pa.array(["(whole file)"] * n, pa.string()),
                      "_expected": pa.array([f"{err.problem}: expected {err.expected}"] * n, pa.string()),
                      "_actual": pa.array([str(err.found)] * n, pa.string()), "_raw": pa.nulls(n, pa.binary())})
    for name in read.records.column_names[1:]:
        whole = whole.append_column(name, read.records[name])
    quarantine = pa.concat_tables([read.quarantine, whole], promote_options="default").sort_by("_line")
    return dataclasses.replace(read, records=read.records.slice(0, 0), quarantine=quarantine)


def write_manifest(channel: str, date: dt.date, wd: Workdir) -> dict:
    """`manifest.json`: the parse results of every current file of T (each must have been parsed)."""
    files = current_files(wd, channel, date)
    if not files:
        raise NothingToReconcile(f"{channel} {date}: no file registered; run the fetch step first")
    out_dir = wd.parsed(channel, date)
    manifest = {"channel": channel, "business_date": date.isoformat(),
                "files": [_read_json(out_dir / f"{f['name']}.v{f['version']}.json") for f in files]}
    with locked(wd, channel, date):
        _write_json(out_dir / "manifest.json", manifest)
    return manifest


def _amounts(parquet: Path, amount_field: str, quarantine: pa.Table) -> int:
    # ParquetFile.read of one column: ~0.3 ms a file, where a DuckDB query took ~1-4 ms (thousands of batches)
    with pq.ParquetFile(parquet) as good:
        total = pc.sum(good.read(columns=[amount_field])[amount_field]).as_py()
    return int(total or 0) + int(pc.sum(quarantine["amount_fen"]).as_py() or 0)


def _set_status(wd: Workdir, statuses: list[tuple[dict, str, str]]) -> None:
    """Record (file row, status, detail) in the registry, all in one transaction (one commit, not one a file)."""
    if not statuses:
        return
    with wd.control() as db:
        db.execute("BEGIN")
        db.executemany("UPDATE files SET status=?, detail=? WHERE channel=? AND business_date=? AND name=? AND md5=?",
                       [(status, detail, f["channel"], f["business_date"], f["name"], f["md5"])
                        for f, status, detail in statuses])
        db.execute("COMMIT")


# --- 3. ledger --------------------------------------------------------------------------------------------


def load_ledger(date: dt.date, ledger: str, wd: Workdir) -> Path:
    """Bring the core journal of T into Parquet: from a database URL (SQLAlchemy) or a CSV extract with flag.

    `ledger` is a URL (`postgresql+psycopg2://...`), a CSV file, or a directory holding
    `CORE_JOURNAL_{YYYYMMDD}.csv` and its `.ok`. An empty journal stops the run (a fault upstream). Channels of
    the same date share the extract: one writes it at a time (a lock per date), each rewrite is atomic."""
    out = wd.ledger_extract(date)
    with locked(wd, "ledger", date):
        try:
            _extract_ledger(date, ledger, out)
            rows = duckdb.execute(f"SELECT count(*) FROM read_parquet('{out.as_posix()}') "
                                  f"WHERE acct_date = DATE '{date}'").fetchone()[0]
            if rows == 0:
                raise NothingToReconcile(f"the core journal has no rows for {date}: an empty extract is a fault "
                                         "upstream; nothing was matched")
        except Terminal:
            out.unlink(missing_ok=True)   # never leave a bad extract where the match step would read it
            raise
    return out


def _extract_ledger(date: dt.date, ledger: str, out: Path) -> None:
    memo = out.with_name(f"{out.stem}.source.json")
    if "://" in ledger:
        from connectors.ledger import extract_journal
        memo.unlink(missing_ok=True)
        extract_journal(ledger, date, out)
        return
    path = Path(ledger)
    if path.is_dir():
        path = path / f"CORE_JOURNAL_{date:%Y%m%d}.csv"
    flag_path = path.with_name(path.name + ".ok")
    if not path.exists() or not flag_path.exists():
        raise LedgerNotReady(f"the core's extract {path} or its flag {flag_path.name} is not there yet")
    # The channels of a date read the same extract: one that is already in Parquet, unchanged since (its flag, with
    # the extract's MD5, its size and modification time), is not read again. A database is always read again.
    flag = flag_path.read_bytes()
    source = {"extract": str(path.resolve()), "flag": flag.decode("latin-1"), "size": path.stat().st_size,
              "mtime_ns": path.stat().st_mtime_ns}
    if out.exists() and memo.exists() and _read_json(memo) == source:
        return
    memo.unlink(missing_ok=True)
    result = registry.read_to_parquet(path, "ledger.journal", out, parse_flag(flag, flag_path.name))
    if result.quarantined:
        raise FileRejected(path.name, f"{result.quarantined} journal rows are unreadable; the extract must be "
                           "corrected upstream (first: line "
                           f"{result.quarantine['_line'][0].as_py()}, {result.quarantine['_field'][0].as_py()})")
    _write_json(memo, source)


# --- 4. match ---------------------------------------------------------------------------------------------


def match(channel: str, date: dt.date, wd: Workdir) -> dict:
    """Reconcile T for each reconciliation of the channel (tips: `tips` then `tips_3111`); publish recon_result,
    recon_summary and quarantine per reconciliation; check conservation (a violation fails the step)."""
    parsed = wd.parsed(channel, date)
    done = {recon: _match_one(channel, CHANNELS[recon], date, wd) for recon in CHANNEL_FILES[channel].reconciliations()}
    out = {"channel": channel, "business_date": date.isoformat(), "reconciliations": done} | done[channel]
    _write_json(parsed / "match.json", out)
    return out


def _match_one(channel: str, rule: MatchRule, date: dt.date, wd: Workdir) -> dict:
    parsed = wd.parsed(channel, date)
    files = [f for f in _reconciled_files(parsed, channel, rule.channel)
             if all(f["header"].get(k) == v for k, v in (rule.file_header_where or {}).items())]
    if waiting := _incomplete(rule, files):
        log.info("%s %s: %s not reconciled: %s", channel, date, rule.channel, waiting)
        return {"waiting": waiting}
    # The engine reads the Parquet files itself (10 million records a side never sit in this process as Arrow)
    cp = [ParsedFile(parsed / f["parquet"], f["name"], f["header"]) for f in files]
    quarantine = [parsed / f["quarantine"] for f in files]
    ledger = wd.ledger_extract(date)
    prev, prev_date = _previous_results(wd, rule.channel, date)
    key = wd.secret("pan_hash_key", PAN_KEY_ENV)
    with locked(wd, channel, date):
        results = wd.table_path("recon_result", rule.channel, date)
        unchecked = results.with_name(f".{results.name}.unchecked")   # not a table until conservation holds
        reconcile_to_parquet(rule, date, Inputs(cp, quarantine, ledger, prev), key, unchecked)
        inputs = {"counterparty": (sum(f["records"] for f in files), sum(f["amount_fen"] for f in files)),
                  "ledger": _ledger_in(rule, date, ledger)}
        expected = {side: tuple(a + b for a, b in zip(today, _carried_in(prev, side)))
                    for side, today in inputs.items()}
        summary = summarise(unchecked)
        conservation = check_conservation(summary, {k: v for k, v in expected.items() if v[0]})
        os.replace(unchecked, results)
        wd.publish("recon_summary", rule.channel, date, summary)
        # only the files that quarantined something are read (a night of 2,000 batches has a few); one for the schema
        with_rows = [q for q, f in zip(quarantine, files) if f["quarantined"]] or quarantine[:1]
        wd.publish("quarantine", rule.channel, date, _analyst_quarantine(
            pa.concat_tables([pq.read_table(q) for q in with_rows], promote_options="default"), rule.channel, date))
        wd.publish("recon_files", rule.channel, date, pa.Table.from_pylist(
            [{"channel": rule.channel, "business_date": date, "file": f["name"], "version": f["version"],
              "md5": f["md5"], "records": f["records"], "quarantined": f["quarantined"], "amount_fen": f["amount_fen"]}
             for f in files]))
    return {"conservation": conservation, "carried_in": sum(_carried_in(prev, side)[0] for side in inputs),
            "previous_day_results": prev is not None, "previous_results_date": prev_date,
            "files": [f["name"] for f in files]}


def _incomplete(rule: MatchRule, files: list[dict]) -> str | None:
    """Why the reconciliation cannot run yet (no file; a multi-file whole with parts missing), or None."""
    if not files:
        return "no file of this reconciliation for the date"
    if rule.complete_when:
        whole, parts = rule.complete_when
        for value in sorted({f["header"][whole] for f in files}):
            got = [f for f in files if f["header"][whole] == value]
            if len(got) != int(got[0]["header"][parts]):
                return f"{whole} {value}: {len(got)} of {got[0]['header'][parts]} files arrived"
    return None


def _previous_results(wd: Workdir, recon: str, date: dt.date) -> tuple[pa.Table | None, str | None]:
    """The items left PENDING in the stored results of the latest earlier business date this reconciliation ran
    (its business calendar): the only rows of it that enter T."""
    channel_dir = wd.table_path("recon_result", recon, date).parent.parent
    earlier = sorted(p.name.removeprefix("business_date=") for p in channel_dir.glob("business_date=*")
                     if p.name.removeprefix("business_date=") < date.isoformat() and (p / "part.parquet").exists())
    if not earlier:
        return None, None
    return wd.read_table("recon_result", recon, dt.date.fromisoformat(earlier[-1]),
                         filters=[("outcome", "=", "PENDING")]), earlier[-1]


def _carried_in(prev: pa.Table | None, side: str) -> tuple[int, int]:
    """The items of one side left PENDING on the previous business date: they enter today's reconciliation."""
    if prev is None:
        return 0, 0
    open_items = prev.filter(pc.and_(pc.equal(prev["outcome"], "PENDING"), pc.equal(prev["side"], side)))
    return open_items.num_rows, int(pc.sum(open_items["amount_fen"]).as_py() or 0)


def _ledger_in(rule: MatchRule, date: dt.date, extract: Path) -> tuple[int, int]:
    """The journal rows of T entering the reconciliation, counted from the extract."""
    con = duckdb.connect()
    try:
        n, fen = con.execute(f"SELECT count(*), coalesce(sum(amount_fen), 0) FROM read_parquet(?) WHERE channel = ? "
                             f"AND acct_date = ? AND ({rule.ledger_where})",
                             [extract.as_posix(), rule.ledger_channel, date]).fetchone()
    finally:
        con.close()
    return int(n), int(fen)


def _reconciled_files(parsed: Path, channel: str, reconciliation: str) -> list[dict]:
    """The manifest's files whose kind is the counterparty side of `reconciliation`."""
    kinds = {k.kind for k in CHANNEL_FILES[channel].kinds if reconciliation in k.reconciled_by}
    return [f for f in _read_json(parsed / "manifest.json")["files"] if f["kind"] in kinds]


def _analyst_quarantine(q: pa.Table, channel: str, date: dt.date) -> pa.Table:
    """What analysts see of the quarantine: no raw bytes, and card numbers never in clear."""
    masked = pc.if_else(pc.is_in(q["_field"], pa.array(["pan", "account_no", "transfer_in_pan"])), "(masked)",
                        q["_actual"])
    return pa.table({"channel": pa.array([channel] * q.num_rows, pa.string()),
                     "business_date": pa.array([date] * q.num_rows, pa.date32()),
                     "file": q["_file"], "line": q["_line"], "record": q["_record"], "field": q["_field"],
                     "expected": q["_expected"], "found": masked, "amount_fen": q["amount_fen"]})


# --- 5. answer --------------------------------------------------------------------------------------------


def answer(channel: str, date: dt.date, wd: Workdir) -> dict:
    """What goes back: a return file (回盘) for every inbound batch whose records all have a final outcome (a batch
    that has not is held, with the reason, and nothing of it is written), UnionPay's dispute replies (ERRR) with
    the undecided cases queued for analysts, and the error-handling file (差错) of every reconciliation.

    Returns and replies go to the counterparty outbox (`deliver` sends them); the 差错 files stay in the outbox for
    operations. Published: `returns` (one row per inbound batch), `dispute_decisions`, `dispute_queue` and
    `dispute_resolved` (breaks an accepted dispute resolved: `clear` reverses their suspense)."""
    spec = CHANNEL_FILES[channel]
    parsed = wd.parsed(channel, date)
    manifest = _read_json(parsed / "manifest.json")
    to_counterparty = wd.to_counterparty(channel, date)
    out = {"channel": channel, "business_date": date.isoformat(), "returns": [], "errors_files": []}
    with locked(wd, channel, date):
        kinds = {k.kind: k for k in spec.kinds}
        batches = [f for f in manifest["files"] if kinds[f["kind"]].layout in BUILDERS]
        if batches:   # the journal is read only for a channel with batches to answer
            journal = pq.read_table(wd.ledger_extract(date), filters=[("channel", "=", spec.ledger_channel)])
            results = _answer_results(wd, date, {r for f in batches for r in kinds[f["kind"]].reconciled_by})
            inbound = _inbound_batches(wd, channel, date, batches)
            sent = build_returns(inbound, results, journal, date, to_counterparty)
            out["returns"] = [_answered(channel, date, f, batch, sent[f["name"]])
                              for f, batch in zip(batches, inbound)]
        for f in manifest["files"]:
            if kinds[f["kind"]].layout == "unionpay.errn":
                out["disputes"] = _answer_disputes(wd, channel, date, f, to_counterparty)
        for recon in spec.reconciliations():
            results = _read_breaks(wd, recon, date)
            if results is not None:
                csv_path, _ = write_error_file(results, recon, date, wd.outbox(channel, date))
                out["errors_files"].append(csv_path.name)
        if out["returns"]:
            wd.publish("returns", channel, date, pa.Table.from_pylist(
                [{"channel": channel, "business_date": date} | r for r in out["returns"]]))
    _write_json(parsed / "answer.json", out)
    return out


def _read_breaks(wd: Workdir, recon: str, date: dt.date) -> pa.Table | None:
    """The break rows of a night's results (a 10M night has a few thousand of its 20M rows), in the results' order.

    DuckDB reads the `outcome` column and then only the rows that pass of the others (a Parquet filter in pyarrow
    decoded whole row groups of every column: 1.8 GB at 2M records; batch by batch, 11 CPU s at 10M, now ~6)."""
    path = wd.table_path("recon_result", recon, date)
    if not path.exists():
        return None
    con = duckdb.connect(config={"threads": 2, "memory_limit": "1GB"})
    con.execute("SET enable_progress_bar = false")
    try:
        # the row number restores the file's order (the parallel scan does not keep it); few rows to sort
        breaks = con.sql(f"SELECT * EXCLUDE (file_row_number) FROM read_parquet('{path.as_posix()}', "
                         f"file_row_number = true, hive_partitioning = false) WHERE outcome IN "
                         f"{BREAKS_SQL} ORDER BY file_row_number"
                         ).to_arrow_table()
    finally:
        con.close()
    return breaks.cast(pq.read_schema(path))


def _answer_results(wd: Workdir, date: dt.date, reconciliations: set[str]) -> pa.Table:
    """The counterparty rows of the night's results of the reconciliations that answer batches."""
    return pa.concat_tables([t for r in sorted(reconciliations) if (t := wd.read_table(
        "recon_result", r, date, filters=[("side", "=", "counterparty")])) is not None], promote_options="default")


def _inbound_batches(wd: Workdir, channel: str, date: dt.date, files: list[dict]) -> list[InboundBatch]:
    """The batches of `files` (manifest entries) as the parse step stored them: records and quarantine read in one
    DuckDB scan per schema, the header from the manifest, the XML's encoding from the
    registry (reading each inbound file again, an XML parse each, was most of the answer's time). A batch rejected
    whole is read again from its landed file: its answer needs what was read before the rejection."""
    parsed = wd.parsed(channel, date)
    kinds = {k.kind: k for k in CHANNEL_FILES[channel].kinds}
    landed = _landed_paths(wd, channel, date)
    stored = {path: table for part in ("parquet", "quarantine")   # a scan each: their columns differ
              for path, table in _read_cut([parsed / f[part] for f in files if not f["rejected"]]).items()}
    batches = []
    for f in files:
        layout, (path, detail) = kinds[f["kind"]].layout, landed[(f["name"], f["version"])]
        if f["rejected"]:
            flag = parse_flag(path.with_name(path.name + ".ok").read_bytes(), path.name + ".ok")
            try:
                batches.append(InboundBatch.from_read(registry.read(path, layout, flag)))
            except FileRejected as e:
                batches.append(InboundBatch.from_rejection(e))
        else:
            batches.append(InboundBatch.from_parsed(
                f["name"], layout, f["header"], stored[(parsed / f["parquet"]).as_posix()],
                stored[(parsed / f["quarantine"]).as_posix()], json.loads(detail or "{}").get("encoding")))
    return batches


def _read_cut(paths: list[Path]) -> dict[str, pa.Table]:
    """Parquet files read in one DuckDB scan (a thousand small files cost 2.3 ms each read one by one), cut per
    file: by path, each in `_line` order."""
    if not paths:
        return {}
    con = duckdb.connect()
    try:
        group = [path.as_posix() for path in paths]
        table = con.sql(f"SELECT * FROM read_parquet({group!r}, filename = '_parquet', union_by_name = true) "
                        "ORDER BY _parquet, _line").to_arrow_table()
    finally:
        con.close()
    at = runs(table["_parquet"])
    table = table.drop_columns(["_parquet"])
    return {path: table.slice(*at.get(path, (0, 0))) for path in group}


def _answered(channel: str, date: dt.date, f: dict, batch: InboundBatch, sent: Path | BatchHeld) -> dict:
    """The `returns` row of one batch, logged."""
    row = {"file": f["name"], "version": f["version"], "records": f["records"]}
    if isinstance(sent, BatchHeld):
        log.warning("%s %s: return of %s held: %s", channel, date, f["name"], sent)
        return row | {"status": "held", "return_file": None, "reason": str(sent)}
    log.info("%s %s: return %s written for %s (%d records)", channel, date, sent.name, f["name"], f["records"])
    return row | {"status": "rejected whole" if batch.rejected else "answered", "return_file": sent.name,
                  "reason": batch.rejected}


def _answer_disputes(wd: Workdir, channel: str, date: dt.date, f: dict, out_dir: Path) -> dict:
    parsed = wd.parsed(channel, date)
    errn = pq.read_table(parsed / f["parquet"])
    errn_quarantine = pq.read_table(parsed / f["quarantine"])
    # A dispute may name a transaction of an earlier settlement day: the ACOMN records, journal rows and results
    # up to T, narrowed in DuckDB (over the Parquet files) to what the disputes name, so memory stays small.
    t = f"{date:%Y%m%d}"
    days = sorted(p for p in parsed.parent.iterdir() if p.name <= t and (p / "manifest.json").exists())
    acomn_files = [(d / g["parquet"]).as_posix() for d in days for g in _read_json(d / "manifest.json")["files"]
                   if g["kind"] == "acomn"]
    journal_files = [p.as_posix() for p in sorted(wd.ledger_extract(date).parent.glob("core_journal_*.parquet"))
                     if p.stem.removeprefix("core_journal_") <= t]
    result_files = [path.as_posix() for d in days if d.name < t and (path := wd.table_path(
        "recon_result", channel, dt.datetime.strptime(d.name, "%Y%m%d").date())).exists()]
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")   # a 10M-record scan: no bar in the task log
    try:
        con.register("errn", errn)
        acomn = con.sql(f"""
            SELECT a.* FROM read_parquet({acomn_files!r}, union_by_name = true) a
            SEMI JOIN errn e ON a.orig_stan = e.orig_stan AND a.orig_txn_time = e.orig_txn_time""").to_arrow_table()
        con.register("acomn", acomn)
        journal = con.sql(f"""
            SELECT * FROM read_parquet({journal_files!r}) WHERE channel = 'UNIONPAY_ACQ' AND channel_ref IN (
                SELECT orig_stan || orig_txn_time FROM errn UNION SELECT stan || txn_time FROM acomn)""").to_arrow_table()
        breaks = (con.sql(f"""
            SELECT * FROM read_parquet({result_files!r}, union_by_name = true)
            WHERE match_ref IN (SELECT orig_stan || orig_txn_time FROM errn)""").to_arrow_table() if result_files
                  # no earlier day: no break to resolve; only the results' columns (reading T's 20M rows for
                  # them held 9 GB at 10M)
                  else pq.read_schema(wd.table_path("recon_result", channel, date)).empty_table())
    finally:
        con.close()
    reply = reply_disputes(f["name"], errn, errn_quarantine, acomn, journal, breaks, date, out_dir)
    for name, decided in (("dispute_decisions", reply.decisions), ("dispute_queue", reply.queue)):
        wd.publish(name, channel, date, decided.add_column(0, "channel", pa.array([channel] * decided.num_rows,
                                                                                   pa.string())))
    wd.publish("dispute_resolved", channel, date, reply.resolved)
    log.info("%s %s: disputes of %s answered in %s: %d decided, %d queued for analysts, %d breaks resolved",
             channel, date, f["name"], reply.path.name, reply.decisions.num_rows - reply.queue.num_rows,
             reply.queue.num_rows, reply.resolved.num_rows)
    return {"file": f["name"], "reply": reply.path.name, "decided": reply.decisions.num_rows - reply.queue.num_rows,
            "queued": reply.queue.num_rows, "resolved_breaks": reply.resolved.num_rows}


def _landed_paths(wd: Workdir, channel: str, date: dt.date) -> dict[tuple[str, int], tuple[Path, str | None]]:
    """Where the fetch step stored each version of each file of T, and the registry's `detail` of it (the parse
    step's summary), by (name, version)."""
    with wd.control() as db:
        return {(r["name"], r["version"]): (Path(r["local_path"]), r["detail"]) for r in db.execute(
            "SELECT name, version, local_path, detail FROM files WHERE channel=? AND business_date=?",
            (channel, date.isoformat()))}


# --- 6. clear ---------------------------------------------------------------------------------------------


def clear(channel: str, date: dt.date, wd: Workdir) -> dict:
    """Net position and the balanced accounting entries file (ENTRIES_{LEDGER_CHANNEL}_{YYYYMMDD}_01.csv)."""
    rule = CHANNELS[channel]
    parsed = wd.parsed(channel, date)
    results = _read_breaks(wd, channel, date)   # only breaks post suspense
    if results is None:
        raise NothingToReconcile(f"{channel} {date}: no reconciliation results; run the match step first")
    lines: list[Line] = []
    clearing = {"channel": channel, "business_date": date.isoformat()}
    if channel == "unionpay_acq":
        files = _reconciled_files(parsed, channel, channel)
        net = unionpay_net([parsed / f["parquet"] for f in files])
        ref = ",".join(f"{f['name']}#v{f['version']}" for f in files)
        lines += pair(f"CLR-{rule.ledger_channel}-{date:%Y%m%d}-TXN", "CUPS-CLR", "MERCH-STL", net.transactions_fen,
                      f"{rule.ledger_channel} {date} clearing: purchases and withdrawals less refunds", ref)
        fee_accounts = ("CUPS-CLR", "FEE-INC") if net.fees_fen > 0 else ("FEE-EXP", "CUPS-CLR")
        lines += pair(f"CLR-{rule.ledger_channel}-{date:%Y%m%d}-FEE", *fee_accounts, abs(net.fees_fen),
                      f"{rule.ledger_channel} {date} clearing: fees", ref)
        clearing |= {"transactions_fen": net.transactions_fen, "fees_fen": net.fees_fen, "net_fen": net.net_fen,
                     "settled_records": net.settled_records}
    lines += suspense_vouchers(results, rule.ledger_channel, rule.clearing_account, date)
    resolved = _resolved_breaks(wd, channel, date)
    lines += reversal_vouchers(resolved, rule.ledger_channel, rule.clearing_account, date)
    out = wd.outbox(channel, date) / f"ENTRIES_{rule.ledger_channel}_{date:%Y%m%d}_01.csv"
    with locked(wd, channel, date):
        write_entries(lines, date, out)
        clearing |= {"vouchers": len({line.voucher_no for line in lines}), "entry_lines": len(lines),
                     "entries_file": str(out)}
        wd.publish("clearing", channel, date, pa.Table.from_pylist([{
            k: clearing.get(k) for k in ("channel", "transactions_fen", "fees_fen", "net_fen", "vouchers",
                                         "entry_lines")} | {"business_date": date}]))
    _write_json(parsed / "clear.json", clearing)
    return clearing


def _resolved_breaks(wd: Workdir, channel: str, date: dt.date) -> pa.Table:
    """Every break of the channel resolved up to T, by an accepted dispute (`dispute_resolved`) or by an analyst
    (`break_status` resolved or written off; resolved on the day of the change): the rows of each break's key on
    its business date, with `resolved_on`. `reversal_vouchers` reverses those first resolved on T."""
    with wd.control() as db:
        closed = [dict(r) for r in db.execute(
            "SELECT business_date, record_ref, min(substr(changed_at, 1, 10)) AS resolved_on FROM break_status "
            "WHERE channel = ? AND status IN ('resolved', 'written_off') GROUP BY business_date, record_ref",
            (channel,))]
    dates = sorted({r["business_date"] for r in closed})
    parts = [p.as_posix() for d in dates if (p := wd.table_path("recon_result", channel, dt.date.fromisoformat(d))).exists()]
    by_dispute = sorted(p.as_posix() for p in wd.table_path("dispute_resolved", channel, date).parent.parent.glob(
        "business_date=*/part.parquet") if p.parent.name.removeprefix("business_date=") <= date.isoformat())
    con = duckdb.connect()
    try:
        con.register("closed", pa.Table.from_pylist(closed, schema=pa.schema(
            [("business_date", pa.string()), ("record_ref", pa.string()), ("resolved_on", pa.string())])))
        selects = [f"SELECT * FROM read_parquet({by_dispute!r}, union_by_name = true)"] if by_dispute else []
        if parts:
            selects.append(f"""
                SELECT r.*, CAST(c.resolved_on AS DATE) AS resolved_on
                FROM read_parquet({parts!r}, union_by_name = true) r
                JOIN (SELECT k.business_date, k.match_ref, min(c.resolved_on) AS resolved_on
                      FROM read_parquet({parts!r}, union_by_name = true) k
                      JOIN closed c ON CAST(c.business_date AS DATE) = k.business_date AND c.record_ref = k.record_ref
                      GROUP BY ALL) c USING (business_date, match_ref)""")
        if not selects:
            return wd.read_table("recon_result", channel, date).slice(0, 0).append_column(
                "resolved_on", pa.array([], pa.date32()))
        return con.sql(" UNION ALL BY NAME ".join(selects)).filter(f"resolved_on <= DATE '{date}'").to_arrow_table()
    finally:
        con.close()


# --- 7. deliver -------------------------------------------------------------------------------------------


def deliver(channel: str, date: dt.date, source: str, wd: Workdir, *, force: bool = False) -> list[dict]:
    """Upload every flagged file of the counterparty outbox to the counterparty's `/inbox/YYYYMMDD/`, once.

    A file already delivered with the same content is not sent again (the registry says so without connecting;
    the server's flag says so if the registry was lost). A changed file under a delivered name is refused
    (`DeliveryConflict`) unless an operator passes `force`, which is logged and registered as `forced`."""
    outgoing = sorted(p for p in wd.to_counterparty(channel, date).iterdir()
                      if not p.name.startswith(".") and not p.name.endswith(".ok")
                      and p.with_name(p.name + ".ok").exists())
    remote_dir = f"/inbox/{date:%Y%m%d}"
    d = date.isoformat()
    done: list[dict] = []
    with locked(wd, channel, date), wd.control() as db:   # one registry connection for the step
        # A commit survives a kill, not a power cut (no fsync of each of thousands of commits): a delivery whose
        # row is lost is found on the server by its flag and not sent again.
        db.execute("PRAGMA synchronous=NORMAL")
        sent = {(r["name"], r["md5"]) for r in db.execute(
            "SELECT name, md5 FROM deliveries WHERE channel=? AND business_date=? AND status IN ('delivered', "
            "'forced', 'already_delivered')", (channel, d))}
        pending = []
        for path in outgoing:
            flag = parse_flag(path.with_name(path.name + ".ok").read_bytes(), path.name + ".ok")
            if (path.name, flag.md5) in sent:
                done.append({"name": path.name, "md5": flag.md5, "status": "already_delivered"})
            else:
                pending.append(path)
        if pending:
            with open_source(source) as dst:
                # many small files in flight at once; each registered as soon as it is made, so a rerun does not
                # send it again (one made but not yet registered when the step dies has its flag on the server)
                for got in dst.deliver_many(pending, remote_dir, force=force):
                    db.execute("INSERT OR REPLACE INTO deliveries (channel, business_date, name, md5, destination,"
                               " delivered_at, status) VALUES (?,?,?,?,?,?,?)",
                               (channel, d, got.name, got.md5, got.remote_path, now(), got.status))
                    if got.status == "forced":
                        log.warning("%s %s: %s redelivered by operator's force (md5 %s)", channel, d, got.name,
                                    got.md5)
                    done.append({"name": got.name, "md5": got.md5, "status": got.status})
    for item in done:
        log.info("%s %s: %s %s", channel, d, item["name"], item["status"].replace("_", " "))
    return done


# --- 8. report --------------------------------------------------------------------------------------------


def report(channel: str, date: dt.date, wd: Workdir) -> dict:
    """Refresh the analysts' views and return the night's summary for this channel and date."""
    wd.refresh_views()
    parsed = wd.parsed(channel, date)
    summary = wd.read_table("recon_summary", channel, date)
    return {"channel": channel, "business_date": date.isoformat(),
            "files": _read_json(parsed / "manifest.json")["files"],
            "outcomes": summary.to_pylist() if summary is not None else [],
            "match": _read_json(parsed / "match.json"), "clearing": _read_json(parsed / "clear.json"),
            "answer": _read_json(parsed / "answer.json"), "deliveries": _deliveries(wd, channel, date),
            "warehouse": str(wd.root / "warehouse.duckdb"), "outbox": str(wd.outbox(channel, date))}


def _deliveries(wd: Workdir, channel: str, date: dt.date) -> list[dict]:
    with wd.control() as db:
        return [dict(r) for r in db.execute("SELECT name, md5, destination, status FROM deliveries WHERE channel=? "
                                            "AND business_date=? ORDER BY name", (channel, date.isoformat()))]


def run(channel: str, date: dt.date, source: str, ledger: str, wd: Workdir) -> dict:
    """The whole chain for one channel and date, without Airflow (the DAG runs the same steps as tasks)."""
    from duizhang.quality import validate   # Great Expectations is slow to import: only when a chain runs
    with locked(wd, f"{channel}.run", date):   # a second run of the date waits for the whole first one
        fetch(channel, date, source, wd)
        parse(channel, date, wd)
        load_ledger(date, ledger, wd)
        match(channel, date, wd)
        validate(channel, date, wd)   # the files, the ledger and the results, before anything leaves the bank
        answer(channel, date, wd)
        clear(channel, date, wd)
        deliver(channel, date, source, wd)
        return report(channel, date, wd)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    if not path.exists():
        raise NothingToReconcile(f"{path.name} is missing in {path.parent}: run the earlier steps first")
    return json.loads(path.read_text())
