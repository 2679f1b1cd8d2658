"""Constructed-but-realistic reconciliation results and journal rows for real inbound sample files.

`night(batch, ...)` gives each record of an inbound batch the journal row the core would have written (by the
channel's spec: channel_ref, batch_no, account, debit or credit) and the `recon_result` rows the engine gives a
record with exactly one journal row (MATCHED on both sides), unless `plan` says otherwise for a line:
`("F", "E001")` a failed row with that reason, `("R",)` a reversed one, or an outcome name (`"COUNTERPARTY_ONLY"`,
`"PENDING"`, ...) for a record that did not end matched. Quarantined records get a QUARANTINED result.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from clearing.returns import InboundBatch
from connectors.ledger import JOURNAL_SCHEMA
from formats import registry
from formats.errors import FileRejected

SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"
T = dt.date(2026, 11, 21)

RESULT_SCHEMA = pa.schema([
    ("channel", pa.string()), ("business_date", pa.date32()), ("side", pa.string()), ("record_ref", pa.string()),
    ("match_ref", pa.string()), ("outcome", pa.string()), ("reason", pa.string()), ("amount_fen", pa.int64()),
    ("counterparty_amount_fen", pa.int64()), ("ledger_amount_fen", pa.int64()), ("status", pa.string()),
    ("counterparty_status", pa.string()), ("ledger_status", pa.string()), ("journal_no", pa.string()),
    ("matched_with", pa.string()), ("source_file", pa.string()), ("source_line", pa.int64()),
    ("origin_date", pa.date32()), ("account_masked", pa.string()), ("account_hash", pa.string()),
    ("event_time", pa.timestamp("us")), ("sign", pa.int32()), ("detail", pa.string()),
])


def read_batch(family_kind: str, sample: str, as_name: str) -> InboundBatch:
    """A sample inbound file read by the format engine, as if it had arrived under its spec name `as_name`."""
    layout = family_kind.replace("/", ".")
    try:
        batch = InboundBatch.from_read(registry.read(SAMPLES / family_kind / sample, layout))
    except FileRejected as err:
        batch = InboundBatch.from_rejection(err)
    return dataclasses.replace(batch, file=as_name)


def mask(account: str) -> str:
    return account[:6] + "*" * (len(account) - 10) + account[-4:] if len(account) >= 11 else account


def night(batch: InboundBatch, channel: str, ledger_channel: str, ref, plan: dict | None = None,
          date: dt.date = T) -> tuple[pa.Table, pa.Table]:
    """(recon_result rows, journal rows) for `batch`. `ref(row)` -> (channel_ref, batch_no, account, dr_cr,
    amount_fen) of the record's journal row."""
    plan = plan or {}
    results, journal = [], []
    base = {"channel": channel, "business_date": date, "origin_date": date, "account_hash": "h",
            "event_time": None, "detail": ""}
    for row in batch.quarantine.to_pylist():
        results.append(base | {
            "side": "counterparty", "record_ref": f"{batch.file}:{row['_line']}", "match_ref": None,
            "outcome": "QUARANTINED", "reason": f"line {row['_line']}, field {row['_field']}: expected "
                                                f"{row['_expected']}, found {row['_actual']}",
            "amount_fen": None, "source_file": batch.file, "source_line": row["_line"]})
    for row in batch.records.to_pylist():
        line = row["_line"]
        channel_ref, batch_no, account, dr_cr, amount = ref(row)
        what = plan.get(line, ("S",))
        cp = base | {"side": "counterparty", "record_ref": f"{batch.file}:{line}", "match_ref": channel_ref,
                     "amount_fen": amount, "counterparty_amount_fen": amount, "status": "S",
                     "counterparty_status": "S", "source_file": batch.file, "source_line": line,
                     "account_masked": mask(account), "sign": 1}
        if isinstance(what, str):           # a record that did not end matched: no journal row for it
            results.append(cp | {"outcome": what, "reason": f"no ledger row with key {channel_ref}"})
            continue
        status, reason_code = what[0], (what[1] if len(what) > 1 else None)
        journal_no = f"J{date:%Y%m%d}{line:011d}"
        journal.append({"acct_date": date, "journal_no": journal_no, "seq_no": 1, "channel": ledger_channel,
                        "channel_ref": channel_ref, "batch_no": batch_no,
                        "txn_time": dt.datetime.combine(date, dt.time(21, 0, line % 60)), "account_no": account,
                        "account_name": "户名", "dr_cr": dr_cr, "amount_fen": amount, "currency": "CNY",
                        "status": status, "reason_code": reason_code, "reversal_of": None, "memo": "batch"})
        both = {"outcome": "MATCHED", "reason": "key, amount and status agree", "ledger_amount_fen": amount,
                "ledger_status": status}
        results.append(cp | both | {"matched_with": f"{journal_no}:1", "journal_no": journal_no})
        results.append(base | both | {
            "side": "ledger", "record_ref": f"{journal_no}:1", "match_ref": channel_ref, "amount_fen": amount,
            "counterparty_amount_fen": amount, "status": status, "counterparty_status": "S",
            "journal_no": journal_no, "matched_with": f"{batch.file}:{line}", "account_masked": mask(account),
            "sign": 1})
    return (pa.Table.from_pylist(results, schema=RESULT_SCHEMA),
            pa.Table.from_pylist(journal, schema=JOURNAL_SCHEMA))


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "inbox"
