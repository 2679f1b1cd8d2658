"""Quarantine an operator can work with: every rejected file and every quarantined record, with the reason, the
raw bytes and where it came from; and the release of a corrected file into the next run.

Rejected files are the control.db `files` rows with status `rejected` (the reason in `detail`); quarantined
records are the per-file quarantine Parquet the parse step writes beside the records (`_raw` holds the record as
received). A released file is registered as the next version of its name through the same registry as a fetched
file (`pipeline._register`), so the next run's parse picks it up as the current version.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from formats.errors import FileRejected, Terminal
from formats.flag import flag_for, md5_of, parse_flag, verify_file
from duizhang.workdir import Workdir

log = logging.getLogger("duizhang.quarantine")

# A card number (13 to 19 digits) inside a raw record is shown masked; a 12-digit fixed-width amount is not.
_PAN_IN_RAW = re.compile(r"(?<!\d)(\d{6})(\d{3,9})(\d{4})(?!\d)")


def show_raw(raw: bytes | None, encoding: str = "gbk") -> str:
    """The raw record as an operator may see it: decoded where possible, card numbers masked."""
    if raw is None:
        return ""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = text.rstrip("\r\n")
    return _PAN_IN_RAW.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)


def rejected_files(wd: Workdir, channel: str | None = None, date: dt.date | None = None) -> list[dict]:
    where, args = ["status = 'rejected'"], []
    if channel:
        where.append("channel = ?")
        args.append(channel)
    if date:
        where.append("business_date = ?")
        args.append(date.isoformat())
    with wd.control() as db:
        return [dict(r) for r in db.execute(
            f"SELECT channel, business_date, name, version, md5, size, local_path, received_at, detail FROM files "
            f"WHERE {' AND '.join(where)} ORDER BY channel, business_date, name, version", args)]


def quarantined_records(wd: Workdir, channel: str | None = None, date: dt.date | None = None) -> list[dict]:
    """Quarantined records of the files the last parse read (its manifest), with their raw bytes."""
    out = []
    for manifest in sorted((wd.root / "parsed").glob("*/*/manifest.json")):
        m = json.loads(manifest.read_text())
        if (channel and m["channel"] != channel) or (date and m["business_date"] != date.isoformat()):
            continue
        for f in m["files"]:
            q = pq.read_table(manifest.parent / f["quarantine"], columns=["_line", "_record", "_field", "_expected",
                                                                          "_actual", "_raw"])
            for r in q.to_pylist():
                out.append({"channel": m["channel"], "business_date": m["business_date"], "file": f["name"],
                            "version": f["version"], "line": r["_line"], "record": r["_record"],
                            "field": r["_field"], "expected": r["_expected"],
                            "found": "(masked)" if _is_account(r["_field"]) else r["_actual"], "raw": r["_raw"]})
    return out


def _is_account(field: str | None) -> bool:
    return bool(field) and bool(re.search(r"pan|acct|account|card", field, re.IGNORECASE))


def release(wd: Workdir, corrected: Path, channel: str, date: dt.date, *, by: str = "") -> dict:
    """Register `corrected` (a corrected copy of a rejected or quarantining file) as the next version of its name
    for (channel, T); the next run parses it instead of the earlier version.

    The file must carry the channel's name for T and read cleanly with the channel's layout (a file that would be
    rejected again is refused here). Its flag is `CORRECTED.ok` when present (verified), else written from the
    file as the bank writes its own flags."""
    from connectors.sftp import FetchedFile
    from duizhang.channels import CHANNEL_FILES
    from duizhang.pipeline import _register
    from formats import registry
    corrected = Path(corrected)
    if not corrected.is_file():
        raise Terminal(f"{corrected}: no such file")
    spec = CHANNEL_FILES[channel]
    try:
        kind, _ = spec.kind_matching(corrected.name, date)
    except KeyError:
        raise Terminal(f"{corrected.name}: not a {channel} file name for {date} (expected "
                       f"{spec.matcher(date).pattern})") from None
    flag_path = corrected.with_name(corrected.name + ".ok")
    flag = parse_flag(flag_path.read_bytes(), flag_path.name) if flag_path.exists() else None
    if flag:
        verify_file(corrected, flag)
    try:
        result = registry.read(corrected, kind.layout, flag)
    except FileRejected as e:
        raise Terminal(f"{corrected.name} is not released: it would be rejected again: {e}") from e
    if result.quarantined:
        log.warning("%s: released with %d records still quarantined", corrected.name, result.quarantined)
    staging = wd.landing(channel, date) / ".release"
    staging.mkdir(exist_ok=True)
    copy = staging / corrected.name
    shutil.copyfile(corrected, copy)
    flag = flag or flag_for(copy, result.detail_count)
    registered = _register(wd, channel, date, FetchedFile(copy.name, copy, copy.stat().st_size, md5_of(copy), flag,
                                                          False))
    shutil.rmtree(staging, ignore_errors=True)
    if registered.get("duplicate"):
        raise Terminal(f"{corrected.name}: this exact content is already version {registered['version']}; nothing "
                       "to release")
    log.info("%s %s: released %s as version %d by %s (md5 %s, %d records, %d still quarantined)", channel, date,
             corrected.name, registered["version"], by or "(unnamed)", registered["md5"], result.detail_count,
             result.quarantined)
    publish_registry(wd, channel, date)
    return registered | {"records": result.detail_count, "quarantined": result.quarantined}


def publish_registry(wd: Workdir, channel: str, date: dt.date) -> None:
    """Publish the (channel, T) rows of the file registry as `file_registry_snapshot` (rejected files included)."""
    schema = pa.schema([("channel", pa.string()), ("business_date", pa.date32()), ("name", pa.string()),
                        ("version", pa.int64()), ("md5", pa.string()), ("size", pa.int64()),
                        ("flag_records", pa.int64()), ("status", pa.string()), ("detail", pa.string()),
                        ])
    with wd.control() as db:
        rows = [dict(r) for r in db.execute("SELECT * FROM files WHERE channel=? AND business_date=? ORDER BY name, "
                                            "version", (channel, date.isoformat()))]
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names if k != "business_date"}
                                  | {"business_date": date} for r in rows], schema=schema)
    wd.publish("file_registry_snapshot", channel, date, table)
