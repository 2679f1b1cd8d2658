"""A reconciliation's matching rule, as data. `recon/engine.py` compiles it to DuckDB SQL; `recon/channels.py` lists
them.

Both sides are first brought to one shape, the *items* of the reconciliation: one row per record with its match
key, amount, status and side. The rule says how (SQL expressions over the parsed file and the journal extract) and
how items compare. Statuses are normalised on both sides to `S` (money moved), `F` (declined or failed, nothing
moved), `R` (moved, then reversed) and, on the counterparty side only, `P` (in transit: queued at the
counterparty, it may still settle on a later date, e.g. CNAPS2 `PR05`).

Cardinalities:
- one-to-one: a counterparty record and a journal row with the same key (every channel's detail records);
- one-to-many / many-to-one: a batch's *control rows* on the journal (a utility's settlement credit, a housing-fund
  centre row, a payroll employer debit and its refund) against the batch's successful detail rows; the batch
  balances when the signed sum of both is zero (`batch_control_when`);
- a key present more than once on a side is ambiguous: DUPLICATE, never guessed.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MatchRule:
    channel: str
    """The reconciliation's id: the channel id of the CLI and the DAG (`unionpay_acq`), or a second reconciliation
    of a channel (`tips_3111`). Results carry it in their `channel` column."""
    ledger_channel: str
    """The journal's `channel` column value for this channel (`UNIONPAY_ACQ`)."""
    counterparty_items: str
    """A SELECT over `cp_rows` (the parsed files' detail records with `_line`, `_file` and the file's header fields
    as `h_<field>` text columns) returning, row for row, the item columns: match_ref, amount_fen, status, sign (+1
    money in for the bank, -1 out), account, event_time (timestamp), detail (short text for the analyst), _file,
    _line. `cp_rows` is all the records or a chunk of them; what needs the other records (a reversal's original)
    reads `cp_raw`, always all of them. `{business_date}` is replaced by T."""
    ledger_key: str = "channel_ref"
    """The SQL expression over the journal that equals `match_ref`."""
    ledger_where: str = "true"
    """Which of the channel's journal rows of T enter this reconciliation (tips_3111: only successful ones)."""
    amount_tolerance_fen: int = 0
    agreeing_statuses: frozenset[tuple[str, str]] = frozenset({("S", "S"), ("F", "F"), ("R", "R")})
    """(counterparty status, ledger status) pairs that agree."""
    needs_no_ledger_row: frozenset[str] = frozenset({"F"})
    """Counterparty statuses for which having no journal row is agreement (a declined card transaction)."""
    ledger_pending_when: str | None = None
    """A SQL predicate over a journal row: when true and the row is unmatched, it is PENDING (may match later)."""
    carry_forward_days: int = 0
    """On how many later business dates (dates this reconciliation ran) a PENDING item is retried before it
    becomes a break."""
    pending_note: str = ""
    """Why an item is pending, in words for the analyst."""
    batch_control_when: str | None = None
    """A SQL predicate over a journal row marking a batch's control row (settlement credit, centre row, employer
    debit or refund). Control rows are not matched one-to-one: each batch's control rows must balance its
    successful detail rows (Σ signed amounts = 0, the batch being the journal's `batch_no`)."""
    control_note: str = "control row"
    """What a control row is, in words (`settlement credit`, `centre account row`, `employer debit or refund`)."""
    file_header_where: dict[str, str] | None = None
    """Only files whose header has these values are reconciled (tips_3111: `ChkAcctType` 1, day-end); others are
    registered and parsed only."""
    complete_when: tuple[str, str] | None = None
    """(part-of field, parts field) of the file header: the files with the same first field are parts of one whole
    whose number of parts is the second (tips_3111: `ChkAcctOrd`, `ChildPackNum`); reconciled only once complete."""
    clearing_account: str = "SUSPENSE"
    """The channel's clearing account, debited or credited against SUSPENSE for breaks that move money."""
