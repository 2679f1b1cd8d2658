"""Tiny two-sided tables for the engine tests: ACOMN records and journal rows, built field by field."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from connectors.ledger import JOURNAL_SCHEMA
from formats.specs.unionpay.acomn import LAYOUT as ACOMN

T = dt.date(2026, 11, 21)


def acomn(stan: str, time: str = "1121100000", amount: int = 10000, *, msg: str = "0200", proc: str = "000000",
          resp: str = "00", pan: str = "6222021234567890123", orig_stan: str = "000000",
          orig_time: str = "0000000000", line: int = 1) -> dict:
    row = {f.name: "" for f in ACOMN.detail.fields}
    row.update(stan=stan, txn_time=time, amount_fen=amount, partial_amount_fen=0, cardholder_fee_fen=0,
               msg_type=msg, proc_code=proc, resp_code=resp, pan=pan, orig_stan=orig_stan,
               orig_txn_time=orig_time, acq_fee_receivable=0, acq_fee_payable=0, switch_fee=0,
               instalment_fee_fen=0, _file="IND26112101ACOMN", _line=line)
    return row


def journal(ref: str, amount: int = 10000, *, status: str = "S", time: str = "2026-11-21 10:00:00",
            date: dt.date = T, journal_no: str | None = None, pan: str = "6222021234567890123",
            dr_cr: str = "D", reversal_of: str | None = None) -> dict:
    return {"acct_date": date, "journal_no": journal_no or f"J{ref}", "seq_no": 1, "channel": "UNIONPAY_ACQ",
            "channel_ref": ref, "batch_no": None, "txn_time": dt.datetime.fromisoformat(time), "account_no": pan,
            "account_name": "张三", "dr_cr": dr_cr, "amount_fen": amount, "currency": "CNY", "status": status,
            "reason_code": None, "reversal_of": reversal_of, "memo": "POS"}


def cp_table(rows: list[dict]) -> pa.Table:
    schema = pa.schema([*ACOMN.arrow_schema(), ("_file", pa.string()), ("_line", pa.int64())])
    for i, r in enumerate(rows, start=1):
        r["_line"] = i
    return pa.Table.from_pylist(rows, schema=schema)


def ledger_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=JOURNAL_SCHEMA)


@pytest.fixture
def hash_key() -> str:
    return "test-key"
