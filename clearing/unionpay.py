"""UnionPay net settlement (清算) for settlement date T, from the ACOMN file: specs/unionpay.md, "Clearing".

Over the records of T that are approved and not reversed, whatever their reconciliation outcome (CUPS settles
what its file says): Σ purchases and withdrawals − Σ refunds + the three signed fee fields. A `0420` and the
original it reverses in the same file are left out; a `0420` reversing an original of an earlier file subtracts
that original's amount, taken as the reversal's own `amount_fen` (a reversal carries the amount it reverses;
the specs do not say otherwise). Quarantined records cannot be read, so they are not in the net: the report
lists them for the operator.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa


@dataclass(frozen=True)
class UnionPayNet:
    transactions_fen: int      # purchases + withdrawals − refunds (incl. cross-file reversals)
    fees_fen: int              # Σ fee(acq_fee_receivable) + fee(acq_fee_payable) + fee(switch_fee)
    settled_records: int
    cross_file_reversals: int

    @property
    def net_fen(self) -> int:
        """Positive: CUPS pays the bank."""
        return self.transactions_fen + self.fees_fen


def unionpay_net(acomn: pa.Table | list[Path]) -> UnionPayNet:
    """The net of the night's ACOMN records: an Arrow table, or the parse step's Parquet files (read by DuckDB
    column by column: 10 million records never sit in the process as Arrow)."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")   # no bar in the task log
    try:
        if isinstance(acomn, pa.Table):
            con.register("r", acomn)
        else:
            con.execute(f"CREATE VIEW r AS SELECT * FROM read_parquet({[Path(p).as_posix() for p in acomn]!r}, "
                        "union_by_name = true)")
        row = con.execute("""
            WITH rev AS (SELECT * FROM r WHERE msg_type = '0420' AND resp_code = '00'),
            settled AS (
                SELECT r.* FROM r
                WHERE r.resp_code = '00' AND r.msg_type <> '0420'
                  AND NOT EXISTS (SELECT 1 FROM rev WHERE rev.orig_stan = r.stan AND rev.orig_txn_time = r.txn_time)),
            cross_file AS (
                SELECT rev.* FROM rev
                WHERE NOT EXISTS (SELECT 1 FROM r o WHERE o.msg_type <> '0420' AND o.stan = rev.orig_stan
                                                       AND o.txn_time = rev.orig_txn_time))
            SELECT
              (SELECT coalesce(sum(CASE WHEN proc_code = '200000' THEN -amount_fen ELSE amount_fen END), 0) FROM settled)
              - (SELECT coalesce(sum(CASE WHEN proc_code = '200000' THEN -amount_fen ELSE amount_fen END), 0) FROM cross_file),
              (SELECT coalesce(sum(acq_fee_receivable + acq_fee_payable + switch_fee), 0) FROM settled),
              (SELECT count(*) FROM settled),
              (SELECT count(*) FROM cross_file)
        """).fetchone()
    finally:
        con.close()
    return UnionPayNet(int(row[0]), int(row[1]), int(row[2]), int(row[3]))
