"""One engine for every channel: a MatchRule becomes DuckDB SQL that gives every record exactly one outcome.

The steps, all set-based:
1. items: the counterparty's records (the rule's SQL), the journal rows of the channel for T, and the items left
   PENDING on T-1 (read from T-1's stored results: state is derived, never accumulated, so rerunning T gives the
   same answer whatever ran after it);
2. groups: per match key, how many items each side has, their amounts and statuses, the single item's reference
   (narrow: no account, time or detail, so 10 million keys stay in memory);
3. outcome, in a fixed precedence: QUARANTINED, DUPLICATE, AMOUNT_MISMATCH, STATUS_MISMATCH, MATCHED, PENDING,
   COUNTERPARTY_ONLY, LEDGER_ONLY, each with a reason in words;
4. for one-sided breaks, the nearest candidate on the other side (same account and amount), searched among the
   breaks only, named in the reason.
Conservation is then checked against counts taken from the inputs, not from the results.

At volume (bench/bench_recon.py): the narrow facts (groups, batches, nearest candidates) are temporary tables; the
items are never materialised but stream from the inputs into each part of the result (the counterparty's records,
its quarantined lines, the journal rows, the carried items), and each part is sorted on its own, so no sort or
UNION ALL ever holds both sides' wide rows together.
"""
from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from formats.errors import Terminal
from recon.outcomes import BREAKS, Outcome
from recon.rules import MatchRule


RESULT_SCHEMA = pa.schema([
    pa.field("channel", pa.string(), nullable=False), pa.field("business_date", pa.date32(), nullable=False),
    ("side", pa.string()), ("record_ref", pa.string()), ("match_ref", pa.string()),
    pa.field("outcome", pa.string(), nullable=False), ("reason", pa.string()), ("amount_fen", pa.int64()),
    ("counterparty_amount_fen", pa.int64()), ("ledger_amount_fen", pa.int64()), ("status", pa.string()),
    ("counterparty_status", pa.string()), ("ledger_status", pa.string()), ("journal_no", pa.string()),
    ("matched_with", pa.string()), ("source_file", pa.string()), ("source_line", pa.int64()),
    ("origin_date", pa.date32()), ("account_masked", pa.string()), ("account_hash", pa.string()),
    ("event_time", pa.timestamp("us")), ("sign", pa.int32()), ("detail", pa.string()), ("open_days", pa.int32()),
    ("batch_no", pa.string())])
RESULT_COLUMNS = ", ".join(RESULT_SCHEMA.names)
THREADS = 2
MEMORY_LIMIT = "2GB"
BATCH_ROWS = 1 << 17          # rows per Arrow batch streamed out of DuckDB
PARQUET_ROW_GROUP = 1 << 20   # rows per Parquet row group of reconcile_to_parquet
_ACCOUNT_FIELDS = "'pan', 'account_no', 'acct_no', 'PayAcct', 'payer_acct', 'payee_acct', 'transfer_in_pan'"


class ConservationError(Terminal):
    """Records in != matched + breaks + pending + quarantined for a side: the run must not publish."""


@dataclass(frozen=True)
class ParsedFile:
    """A counterparty file as the parse step wrote it: its records' Parquet, the name they carry as `_file`, and
    its header fields, each of which becomes an `h_<field>` text column (a batch's identity)."""

    parquet: Path
    name: str
    header: dict[str, str]


@dataclass(frozen=True)
class Inputs:
    """What enters reconciliation for one channel and date: Arrow tables or Parquet file paths (the parsed files
    themselves, so that 10 million records a side never sit in the caller's memory)."""

    counterparty: pa.Table | Path | list[ParsedFile]   # parsed detail records (`_line`; `_file` unless ParsedFile)
    quarantine: pa.Table | Path | list[Path]  # quarantined records: `_file`, `_line`, `_field`, `_expected`, ...
    ledger: pa.Table | Path         # journal rows (any channel; the rule's channel is selected)
    carried: pa.Table | Path | None  # results of the previous business date (PENDING ones are carried)


def _mask(col: str) -> str:
    return (f"CASE WHEN length({col}) >= 11 THEN left({col}, 6) || repeat('*', length({col}) - 10) || right({col}, 4)"
            f" ELSE {col} END")


def reconcile(rule: MatchRule, business_date: dt.date, inputs: Inputs, hash_key: str) -> pa.Table:
    """Classify every item of `inputs` for `rule` and date; return the `recon_result` rows (Arrow)."""
    con = _connect(inputs, hash_key)
    try:
        return pa.Table.from_batches(list(_result_batches(con, rule, business_date)), RESULT_SCHEMA)
    finally:
        con.close()


def reconcile_to_parquet(rule: MatchRule, business_date: dt.date, inputs: Inputs, hash_key: str, out: Path) -> int:
    """As `reconcile`, streamed batch by batch into the zstd Parquet file `out` (for volumes that should not sit in
    Python memory); returns the number of result rows."""
    con = _connect(inputs, hash_key)
    rows = 0
    try:
        # zstd level 1 and Parquet 2 encodings (delta strings): the hashes and references compress as well as at
        # the default level, for a third less CPU
        with pq.ParquetWriter(out, RESULT_SCHEMA, compression="zstd", compression_level=1,
                              data_page_version="2.0", use_dictionary=["channel", "side", "outcome", "status",
                                                                      "source_file", "detail"]) as writer:
            for batch in _result_batches(con, rule, business_date):
                writer.write_batch(batch, row_group_size=PARQUET_ROW_GROUP)
                rows += batch.num_rows
        return rows
    finally:
        con.close()


def _result_batches(con: duckdb.DuckDBPyConnection, rule: MatchRule, business_date: dt.date):
    """The result rows as Arrow batches, part after part, each part in its own order."""
    for statement in prepare_statements(rule, business_date):
        con.execute(statement)
    for part in result_parts(rule, business_date):
        for batch in con.sql(part).to_arrow_reader(BATCH_ROWS):
            yield batch.cast(RESULT_SCHEMA)


def _connect(inputs: Inputs, hash_key: str) -> duckdb.DuckDBPyConnection:
    """A connection with the inputs as `cp_raw`, `cp_quarantine`, `ledger_raw`, `prev` (Arrow or Parquet paths).

    Both cores; DuckDB's own memory capped so that a night of 10 million records a side stays within the 3 GB the
    process may use (the groups and the joins spill to disk beyond it); insertion order preserved, so each part of
    the result streams out in its input's order."""
    con = duckdb.connect(config={"threads": THREADS, "memory_limit": MEMORY_LIMIT,
                                 "temp_directory": str(Path(tempfile.gettempdir()) / "duizhang-recon-spill"),
                                 "preserve_insertion_order": True})
    con.execute("SET enable_progress_bar = false")   # no bars in the task logs
    carried = inputs.carried if inputs.carried is not None else _empty_results()
    for name, data in (("cp_raw", inputs.counterparty), ("cp_quarantine", inputs.quarantine),
                       ("ledger_raw", inputs.ledger), ("prev", carried)):
        if isinstance(data, pa.Table):
            con.register(name, data)
        elif data and isinstance(data, list) and isinstance(data[0], ParsedFile):
            # every file in one scan; `filename` says which file a record came from, hence its columns
            con.register(f"{name}_files", pa.Table.from_pylist(
                [{"filename": f.parquet.as_posix(), "_file": f.name} | {f"h_{k}": v for k, v in f.header.items()}
                 for f in data]))
            con.execute(f"""CREATE {_relation(data)} {name} AS SELECT r.* EXCLUDE (filename), f.* EXCLUDE (filename)
                FROM read_parquet({[f.parquet.as_posix() for f in data]!r}, filename = true, union_by_name = true) r
                JOIN {name}_files f USING (filename)""")
        else:
            paths = [Path(p).as_posix() for p in (data if isinstance(data, list) else [data])]
            con.execute(f"CREATE {_relation(paths)} {name} AS "
                        f"SELECT * FROM read_parquet({paths!r}, union_by_name = true)")
    con.execute("SET VARIABLE hash_key = ?", [hash_key])
    return con


def _relation(files: list) -> str:
    """One file (UnionPay's 10 million records) is a view, scanned where it is used; many (a night's thousands of
    batches) are read once into a table: each scan of them costs every file's metadata again, 0.7 CPU s for 2,000
    files, and the statements scan them several times."""
    return "TEMP TABLE" if len(files) > 1 else "VIEW"


def prepare_statements(rule: MatchRule, business_date: dt.date) -> list[str]:
    """The rule as DuckDB statements over `cp_raw`, `ledger_raw` and `prev` (T-1's results) that leave the narrow
    facts of the classification in temporary tables: `groups` (per match key, what each side holds), `batches`
    (per batch, its control rows against its detail rows) and `nearest` (a one-sided break's nearest candidate).

    The item views (`today_cp`, `today_lg`, `carried_items`) are not materialised: each use streams from the inputs,
    so no wide copy of 20 million rows is ever held."""
    t = business_date.isoformat()
    return [
        f"CREATE TEMP VIEW today_cp AS {_today_cp(rule, business_date, 'cp_raw')}",
        f"CREATE TEMP VIEW today_lg AS {_today_lg(rule, business_date, 'ledger_raw')}",
        # the items left open on the previous business date, as they were stored (state derived, not kept); few
        f"""CREATE TEMP TABLE carried AS
        SELECT side, record_ref, match_ref, amount_fen, status, sign, NULL::VARCHAR AS account, account_masked,
               account_hash, event_time, detail, source_file, source_line, journal_no, origin_date,
               open_days + 1 AS open_days, true AS pending_eligible, false AS is_control, NULL::VARCHAR AS batch
        FROM prev WHERE outcome = 'PENDING' AND business_date < DATE '{t}'""",
        # a carried in-transit item whose key arrives again today on its side is closed by today's record
        """CREATE TEMP TABLE carried_items AS
        WITH superseded AS (
            SELECT k.record_ref, min(t.record_ref) AS superseded_by
            FROM carried k JOIN (SELECT side, match_ref, record_ref FROM today_cp
                                 UNION ALL SELECT side, match_ref, record_ref FROM today_lg) t
              ON t.side = k.side AND t.match_ref = k.match_ref
            WHERE k.status = 'P' GROUP BY k.record_ref)
        SELECT c.*, s.superseded_by FROM carried c LEFT JOIN superseded s USING (record_ref)""",
        """CREATE TEMP VIEW items AS
        SELECT * FROM today_cp UNION ALL SELECT * FROM today_lg UNION ALL SELECT * FROM carried_items""",
        # per key, what each side holds (a key held once per side is the common case); a duplicate's reason names
        # no record, so `ref` and `journal` are read only where the side holds one item
        f"""CREATE TEMP TABLE groups AS
        WITH cp_keys AS ({_per_key('counterparty')}), lg_keys AS ({_per_key('ledger')})
        SELECT coalesce(c.match_ref, l.match_ref) AS match_ref, coalesce(c.n, 0) AS n_cp, coalesce(l.n, 0) AS n_lg,
               coalesce(c.n_transit, 0) AS n_transit, c.amount AS cp_amount, l.amount AS lg_amount,
               c.status AS cp_status, l.status AS lg_status, c.sign AS cp_sign, l.sign AS lg_sign, c.ref AS cp_ref,
               l.ref AS lg_ref, l.journal AS lg_journal,
               -- the item's own facts when the key has a single one (its outcome is then known from the group)
               coalesce(c.open_days, l.open_days) AS open_days,
               coalesce(c.pending_eligible, l.pending_eligible) AS pending_eligible
        FROM cp_keys c FULL JOIN lg_keys l ON c.match_ref = l.match_ref""",
        # one-to-many: a batch's control rows against its successful detail rows; balanced when Σ signed = 0
        f"""CREATE TEMP TABLE batches AS
        SELECT batch,
               count(*) FILTER (WHERE is_control) AS n_control,
               count(DISTINCT match_ref) FILTER (WHERE is_control) AS n_control_keys,
               CAST(coalesce(sum(sign * amount_fen) FILTER (WHERE is_control), 0) AS BIGINT) AS control_net,
               count(*) FILTER (WHERE NOT is_control) AS n_detail,
               count(*) FILTER (WHERE NOT is_control AND status = 'S') AS n_detail_ok,
               CAST(coalesce(sum(sign * amount_fen) FILTER (WHERE NOT is_control AND status = 'S'), 0) AS BIGINT)
                 AS detail_net
        FROM today_lg WHERE batch IS NOT NULL AND {'true' if rule.batch_control_when else 'false'}
        GROUP BY batch""",
        # for a one-sided break (few), the nearest break on the other side with the same account and amount
        f"""CREATE TEMP TABLE nearest AS
        WITH one_sided_keys AS (
            SELECT coalesce(cp_ref, lg_ref) AS record_ref
            FROM (SELECT *, NULL AS superseded_by, false AS is_control FROM groups WHERE n_cp + n_lg = 1) g
            WHERE {_outcome(rule, 'g', 'g')} IN ('COUNTERPARTY_ONLY', 'LEDGER_ONLY')),
        one_sided AS (
            -- their account and time, read from the items (a pass over narrow columns, joined to the few keys)
            SELECT i.side, i.record_ref, i.match_ref, i.amount_fen, i.event_time,
                   coalesce(sha256(getvariable('hash_key') || i.account), i.account_hash) AS account_hash
            FROM items i SEMI JOIN one_sided_keys k ON k.record_ref = i.record_ref
            WHERE NOT i.is_control AND i.superseded_by IS NULL)
        SELECT a.record_ref, b.record_ref AS near_ref, b.match_ref AS near_key,
               CAST(round((epoch(b.event_time) - epoch(a.event_time)) / 60) AS BIGINT) AS minutes
        FROM one_sided a JOIN one_sided b
          ON a.side <> b.side AND a.account_hash = b.account_hash AND a.amount_fen = b.amount_fen
        QUALIFY row_number() OVER (PARTITION BY a.record_ref
                                   ORDER BY abs(coalesce(epoch(b.event_time) - epoch(a.event_time), 0)),
                                            b.record_ref) = 1""",
    ]


def _today_cp(rule: MatchRule, business_date: dt.date, source: str) -> str:
    """The counterparty's items of T: the rule's SELECT over `cp_rows`, here all of `source`."""
    t = business_date.isoformat()
    cp_sql = rule.counterparty_items.replace("{business_date}", t)
    return f"""
        WITH cp_rows AS (SELECT * FROM {source})
        SELECT 'counterparty' AS side, _file || ':' || _line AS record_ref, match_ref, amount_fen, status, sign,
               account, NULL::VARCHAR AS account_masked, NULL::VARCHAR AS account_hash, event_time, detail,
               _file AS source_file, _line AS source_line, NULL::VARCHAR AS journal_no, DATE '{t}' AS origin_date,
               0 AS open_days, status = 'P' AS pending_eligible, false AS is_control, NULL::VARCHAR AS batch,
               NULL::VARCHAR AS superseded_by
        FROM ({cp_sql})"""


def _today_lg(rule: MatchRule, business_date: dt.date, source: str) -> str:
    """The journal rows of T for the rule, read from `source`."""
    t = business_date.isoformat()
    pending = rule.ledger_pending_when or "false"
    control = rule.batch_control_when or "false"
    return f"""
        SELECT 'ledger' AS side, journal_no || ':' || seq_no AS record_ref, {rule.ledger_key} AS match_ref, amount_fen,
               status, CASE dr_cr WHEN 'C' THEN -1 ELSE 1 END AS sign, account_no AS account,
               NULL::VARCHAR AS account_masked, NULL::VARCHAR AS account_hash, txn_time AS event_time, memo AS detail,
               NULL::VARCHAR AS source_file, NULL::BIGINT AS source_line, journal_no, acct_date AS origin_date,
               0 AS open_days, coalesce({pending}, false) AS pending_eligible, coalesce({control}, false) AS is_control,
               batch_no AS batch, NULL::VARCHAR AS superseded_by
        FROM {source}
        WHERE channel = '{rule.ledger_channel}' AND acct_date = DATE '{t}' AND ({rule.ledger_where})"""


def result_parts(rule: MatchRule, business_date: dt.date) -> list[str]:
    """The queries giving the published rows, in their order: the counterparty's records by file and line, its
    quarantined lines, its carried items, then the journal rows by record_ref and the journal's carried items.
    Each part is sorted on its own (two sorts of N rows instead of one of 2N, with no UNION ALL of wide rows),
    which DuckDB streams in order; reruns give the same rows in the same order."""
    t = business_date.isoformat()
    carried_cp = "SELECT * FROM carried_items WHERE side = 'counterparty'"
    carried_lg = "SELECT * FROM carried_items WHERE side = 'ledger'"
    quarantined = f"""
        SELECT '{rule.channel}' AS channel, DATE '{t}' AS business_date, 'counterparty' AS side,
               _file || ':' || _line AS record_ref, NULL AS match_ref, 'QUARANTINED' AS outcome,
               'line ' || _line || ', field ' || _field || ': expected ' || _expected || ', found '
                 || CASE WHEN _field IN ({_ACCOUNT_FIELDS}) THEN '(masked)' ELSE _actual END AS reason,
               amount_fen, NULL AS counterparty_amount_fen, NULL AS ledger_amount_fen, NULL AS status,
               NULL AS counterparty_status, NULL AS ledger_status, NULL AS journal_no, NULL AS matched_with,
               _file AS source_file, _line AS source_line, DATE '{t}' AS origin_date, NULL AS account_masked,
               NULL AS account_hash, NULL AS event_time, NULL AS sign, NULL AS detail, 0 AS open_days,
               NULL AS batch_no
        FROM cp_quarantine ORDER BY source_file, source_line"""
    return [_classified(rule, business_date, "today_cp", "c.source_file, c.source_line"), quarantined,
            _classified(rule, business_date, carried_cp, "c.source_file, c.source_line, c.record_ref"),
            _classified(rule, business_date, "today_lg", "c.record_ref"),
            _classified(rule, business_date, carried_lg, "c.record_ref")]


def _classified(rule: MatchRule, business_date: dt.date, items: str, order: str) -> str:
    """The result rows of `items` (a view or query) sorted by `order`: each item joined to its key's group (and, for a
    control row, its batch; for a one-sided break, its nearest candidate), given its outcome and reason, its account
    masked and hashed.

    The rows are sorted before the reason, the mask and the hash are made (a projection keeps its input's order):
    the sort then moves the facts, not the wide texts (at 10M a side, 146 -> 119 CPU seconds)."""
    t = business_date.isoformat()
    tol = rule.amount_tolerance_fen
    other = "CASE WHEN c.side = 'counterparty' THEN 'ledger' ELSE 'counterparty file' END"
    pending_note = rule.pending_note.replace("'", "''")
    control_note = rule.control_note.replace("'", "''")
    return f"""
    WITH classified AS (
        SELECT i.*, g.n_cp, g.n_lg, g.n_transit, g.cp_sign, g.lg_sign, g.cp_amount, g.lg_amount, g.cp_status,
               g.lg_status, g.lg_journal, CASE WHEN i.side = 'counterparty' THEN g.lg_ref ELSE g.cp_ref END AS other_ref,
               b.n_control, b.n_control_keys, b.control_net, b.n_detail, b.n_detail_ok, b.detail_net,
               {_outcome(rule, 'i', 'g', 'b')} AS outcome
        FROM ({items}) i
        LEFT JOIN groups g ON g.match_ref = i.match_ref AND NOT i.is_control AND i.superseded_by IS NULL
        LEFT JOIN batches b ON b.batch = i.batch AND i.is_control
    )
    SELECT '{rule.channel}' AS channel, DATE '{t}' AS business_date, c.side, c.record_ref, c.match_ref, c.outcome,
           CASE
             WHEN c.superseded_by IS NOT NULL THEN 'in transit since ' || c.origin_date || ', closed by '
                  || c.superseded_by || ' of ' || DATE '{t}'
             WHEN c.is_control THEN 'batch ' || c.batch || ': ' || CASE c.outcome
                 WHEN 'DUPLICATE' THEN 'ambiguous, ' || c.n_control || ' {control_note} rows for '
                      || c.n_control_keys || ' key(s); which one settles the batch cannot be decided'
                 WHEN 'LEDGER_ONLY' THEN '{control_note} of ' || abs(c.control_net)
                      || ' fen but no detail row of the batch in the ledger of ' || DATE '{t}'
                 WHEN 'AMOUNT_MISMATCH' THEN '{control_note} nets ' || abs(c.control_net) || ' fen, its '
                      || c.n_detail_ok || ' successful detail row(s) ' || abs(c.detail_net)
                      || ' fen: differs by ' || abs(c.control_net + c.detail_net) || ' fen'
                 ELSE '{control_note} balances its ' || c.n_detail_ok || ' successful detail row(s) ('
                      || abs(c.detail_net) || ' fen)' END
             WHEN c.outcome = 'DUPLICATE' THEN 'ambiguous: key ' || c.match_ref || ' appears ' || c.n_cp
                  || ' time(s) on the counterparty side and ' || c.n_lg
                  || ' time(s) in the ledger; none of them is matched'
             WHEN c.outcome = 'AMOUNT_MISMATCH' THEN
                  (CASE WHEN c.side = 'counterparty' THEN 'ledger ' || c.lg_journal
                        ELSE 'counterparty record ' || c.other_ref END) || ' has the same key'
                  || CASE WHEN c.cp_amount <> c.lg_amount THEN ', amount differs by ' || (c.cp_amount - c.lg_amount)
                          || ' fen (counterparty ' || c.cp_amount || ', ledger ' || c.lg_amount || ', tolerance {tol})'
                          ELSE '' END
                  || CASE WHEN c.cp_sign <> c.lg_sign THEN ', direction differs (counterparty '
                          || CASE c.cp_sign WHEN 1 THEN 'debit' ELSE 'credit' END || ' of the customer, ledger '
                          || CASE c.lg_sign WHEN 1 THEN 'debit' ELSE 'credit' END || ')' ELSE '' END
             WHEN c.outcome = 'STATUS_MISMATCH' THEN 'same key and amount, but the counterparty says '
                  || c.cp_status || ' and the ledger says ' || c.lg_status
                  || ' (S succeeded, F failed, R reversed, P in transit)'
                  || CASE WHEN c.origin_date < DATE '{t}' THEN ' (carried from ' || c.origin_date
                          || ', window ended)' ELSE '' END
             WHEN c.outcome = 'MATCHED' THEN CASE
                  WHEN c.n_lg = 0 THEN 'declined by the counterparty and absent from the ledger: no money moved'
                  WHEN c.origin_date < DATE '{t}' THEN 'carried from ' || c.origin_date || ', matched on '
                       || DATE '{t}' || ' by ' || c.other_ref
                  WHEN c.cp_status <> c.lg_status THEN 'one row each; the ledger says ' || c.lg_status
                       || ' (reported to the counterparty in the return file)'
                  ELSE 'key, amount and status agree' END
             WHEN c.outcome = 'PENDING' THEN CASE WHEN c.n_transit > 0
                  THEN 'in transit at the counterparty (status P); expected to settle in the next file'
                  ELSE '{pending_note}' END || ' (open since ' || c.origin_date || ')'
             ELSE 'no ' || {other} || ' row with key ' || c.match_ref
                  || CASE WHEN c.origin_date < DATE '{t}' THEN ' (carried from ' || c.origin_date
                          || ', window ended)' ELSE '' END
                  || coalesce('; ' || {other} || ' ' || c.near_ref || ' has the same account and amount '
                     || CASE WHEN c.minutes IS NULL OR c.minutes = 0 THEN 'at the same time'
                             WHEN c.minutes > 0 THEN c.minutes || ' minutes later'
                             ELSE (-c.minutes) || ' minutes earlier' END
                     || ' with another key (' || c.near_key || ')', '')
           END AS reason,
           c.amount_fen,
           c.cp_amount AS counterparty_amount_fen, c.lg_amount AS ledger_amount_fen,
           c.status, c.cp_status AS counterparty_status, c.lg_status AS ledger_status,
           coalesce(c.journal_no, CASE WHEN c.outcome = 'MATCHED' THEN c.lg_journal END) AS journal_no,
           CASE WHEN c.superseded_by IS NOT NULL THEN c.superseded_by
                WHEN c.is_control AND c.outcome IN ('MATCHED', 'AMOUNT_MISMATCH') THEN 'batch ' || c.batch
                WHEN c.outcome IN ('MATCHED', 'AMOUNT_MISMATCH', 'STATUS_MISMATCH') THEN c.other_ref END
             AS matched_with,
           c.source_file, c.source_line, c.origin_date,
           coalesce({_mask('c.account')}, c.account_masked) AS account_masked,
           coalesce(sha256(getvariable('hash_key') || c.account), c.account_hash) AS account_hash,
           c.event_time, c.sign, c.detail, c.open_days, c.batch AS batch_no
    FROM (SELECT c.*, n.near_ref, n.near_key, n.minutes
          FROM classified c
          LEFT JOIN nearest n ON n.record_ref = c.record_ref AND c.outcome IN ('COUNTERPARTY_ONLY', 'LEDGER_ONLY')
          ORDER BY {order}) c
    """


def _per_key(side: str) -> str:
    """One side's items per key: how many, their amount, status and sign, and the single item's own fields."""
    return f"""
        SELECT match_ref, count(*) AS n, count(*) FILTER (WHERE status = 'P') AS n_transit, max(amount_fen) AS amount,
               max(status) AS status, max(sign) AS sign, any_value(record_ref) AS ref, any_value(journal_no) AS journal,
               any_value(open_days) AS open_days,
               any_value(pending_eligible) AS pending_eligible
        FROM items WHERE side = '{side}' AND NOT is_control AND superseded_by IS NULL GROUP BY match_ref"""


def _outcome(rule: MatchRule, i: str, g: str, b: str | None = None) -> str:
    """The outcome of item `i` given its key's group `g` (and, for a batch control row, its batch `b`), in a fixed
    precedence. One expression, used to classify and to find the one-sided breaks."""
    window = rule.carry_forward_days
    agree = " OR ".join(f"({g}.cp_status = '{x}' AND {g}.lg_status = '{y}')" for x, y in sorted(rule.agreeing_statuses))
    alone_ok = ", ".join(f"'{s}'" for s in sorted(rule.needs_no_ledger_row)) or "NULL"
    control = (f"""WHEN {i}.is_control THEN CASE
                     WHEN {b}.n_control > {b}.n_control_keys THEN 'DUPLICATE'
                     WHEN {b}.n_detail = 0 THEN 'LEDGER_ONLY'
                     WHEN {b}.control_net + {b}.detail_net <> 0 THEN 'AMOUNT_MISMATCH'
                     ELSE 'MATCHED' END""" if b else "")
    return f"""CASE
                 WHEN {i}.superseded_by IS NOT NULL THEN 'MATCHED'
                 {control}
                 WHEN {g}.n_cp > 1 OR {g}.n_lg > 1 THEN 'DUPLICATE'
                 WHEN {g}.n_transit > 0 AND {i}.open_days < {window} THEN 'PENDING'
                 WHEN {g}.n_cp = 1 AND {g}.n_lg = 1 AND (abs({g}.cp_amount - {g}.lg_amount) > {rule.amount_tolerance_fen}
                      OR {g}.cp_sign <> {g}.lg_sign) THEN 'AMOUNT_MISMATCH'
                 WHEN {g}.n_cp = 1 AND {g}.n_lg = 1 AND NOT ({agree}) THEN 'STATUS_MISMATCH'
                 WHEN {g}.n_cp = 1 AND {g}.n_lg = 1 THEN 'MATCHED'
                 WHEN {g}.n_cp = 1 AND {g}.cp_status IN ({alone_ok}) THEN 'MATCHED'
                 WHEN {i}.pending_eligible AND {i}.open_days < {window} THEN 'PENDING'
                 WHEN {g}.n_cp = 1 THEN 'COUNTERPARTY_ONLY'
                 ELSE 'LEDGER_ONLY'
               END"""


def _empty_results() -> pa.Table:
    con = duckdb.connect()
    try:
        return con.sql(f"""
            SELECT NULL::VARCHAR AS channel, NULL::DATE AS business_date, NULL::VARCHAR AS side,
                   NULL::VARCHAR AS record_ref, NULL::VARCHAR AS match_ref, NULL::VARCHAR AS outcome,
                   NULL::VARCHAR AS reason, NULL::BIGINT AS amount_fen, NULL::VARCHAR AS status,
                   NULL::VARCHAR AS journal_no, NULL::VARCHAR AS source_file, NULL::BIGINT AS source_line,
                   NULL::DATE AS origin_date, NULL::VARCHAR AS account_masked, NULL::VARCHAR AS account_hash,
                   NULL::TIMESTAMP AS event_time, NULL::INTEGER AS sign, NULL::VARCHAR AS detail,
                   NULL::INTEGER AS open_days
            LIMIT 0""").to_arrow_table()
    finally:
        con.close()


def summarise(results: pa.Table | Path) -> pa.Table:
    """`recon_summary`: per channel, date, side and outcome, the count and the money (fen)."""
    con = _results_connection(results)
    try:
        return con.sql("""
            SELECT channel, business_date, side, outcome, count(*) AS records, CAST(coalesce(sum(amount_fen), 0) AS BIGINT) AS amount_fen
            FROM r GROUP BY ALL ORDER BY channel, business_date, side, outcome""").to_arrow_table()
    finally:
        con.close()


def check_conservation(summary: pa.Table, expected: dict[str, tuple[int, int]]) -> dict[str, dict]:
    """Compare, per side, (records, fen) counted from the inputs with what the outcomes of `summary` (the results'
    `summarise`, one scan of them for both) account for.

    `expected` is {side: (count, fen)} taken from the inputs. Returns the per-side breakdown; raises
    ConservationError naming the side and the difference when anything was lost or counted twice."""
    rows = zip(*(summary[c].to_pylist() for c in ("side", "outcome", "records", "amount_fen")))
    report: dict[str, dict] = {}
    for side, outcome, n, fen in rows:
        report.setdefault(side, {"records": 0, "amount_fen": 0, "outcomes": {}})
        report[side]["records"] += n
        report[side]["amount_fen"] += int(fen)
        report[side]["outcomes"][outcome] = {"records": n, "amount_fen": int(fen)}
    for side, (count, fen) in expected.items():
        got = report.get(side, {"records": 0, "amount_fen": 0})
        if (got["records"], got["amount_fen"]) != (count, fen):
            raise ConservationError(
                f"conservation violated on the {side} side: {count} records / {fen} fen entered, outcomes account "
                f"for {got['records']} records / {got['amount_fen']} fen")
    for side in report:
        if side not in expected:
            raise ConservationError(f"outcomes on an unexpected side {side!r}")
    return report


def _results_connection(results: pa.Table | Path) -> duckdb.DuckDBPyConnection:
    """A connection where `r` is the results (an Arrow table, or the Parquet file reconcile_to_parquet wrote)."""
    con = duckdb.connect(config={"threads": THREADS, "memory_limit": MEMORY_LIMIT})
    if isinstance(results, pa.Table):
        con.register("r", results)
    else:
        con.execute(f"CREATE VIEW r AS SELECT * FROM read_parquet('{Path(results).as_posix()}')")
    return con


def is_break(outcome: str) -> bool:
    return Outcome(outcome) in BREAKS
