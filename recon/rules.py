"""A channel's matching rule, as data. `recon/engine.py` compiles it to DuckDB SQL; `recon/channels.py` lists them.

Both sides are first brought to one shape, the *items* of the channel: one row per record with its match key,
amount, status and side. The rule says how (SQL expressions over the parsed file and the journal extract) and how
items compare. Statuses are normalised to `S` (money moved), `F` (declined or failed, nothing moved) and `R`
(moved, then reversed) on both sides.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MatchRule:
    channel: str
    """The channel id of the CLI, the DAG and the results (`unionpay_acq`)."""
    ledger_channel: str
    """The journal's `channel` column value for this channel (`UNIONPAY_ACQ`)."""
    counterparty_items: str
    """A SELECT over `cp_raw` (the parsed file's detail records with `_line` and `_file`) returning the item
    columns: match_ref, amount_fen, status, sign (+1 money in for the bank, -1 out), account, event_time
    (timestamp), detail (short text for the analyst), _file, _line. `{business_date}` is replaced by T."""
    ledger_key: str = "channel_ref"
    """The SQL expression over the journal that equals `match_ref`."""
    amount_tolerance_fen: int = 0
    agreeing_statuses: frozenset[tuple[str, str]] = frozenset({("S", "S"), ("F", "F"), ("R", "R")})
    """(counterparty status, ledger status) pairs that agree."""
    needs_no_ledger_row: frozenset[str] = frozenset({"F"})
    """Counterparty statuses for which having no journal row is agreement (a declined card transaction)."""
    ledger_pending_when: str | None = None
    """A SQL predicate over a journal row: when true and the row is unmatched, it is PENDING (may match later)."""
    carry_forward_days: int = 0
    """How many later business dates a PENDING item is retried on before it becomes a break."""
    pending_note: str = ""
    """Why an item is pending, in words for the analyst."""
    clearing_account: str = "SUSPENSE"
    """The channel's clearing account, debited or credited against SUSPENSE for breaks that move money."""
    extra: dict = field(default_factory=dict)
