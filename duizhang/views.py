"""The tables and views analysts query in `warehouse.duckdb`: one declaration, used to create them, to print
`duizhang sql --help` and to write the README's table.

Names and columns are stable: a column may be added, never renamed or removed. Card and account numbers appear
only masked (`account_masked`, first 6 and last 4) and as a keyed SHA-256 (`account_hash`) to join on.
"""
from __future__ import annotations

from dataclasses import dataclass

from recon.outcomes import BREAKS_SQL


@dataclass(frozen=True)
class Table:
    about: str
    columns: tuple[tuple[str, str, str], ...]  # (name, DuckDB type, meaning)

    def empty_select(self) -> str:
        cols = ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t, _ in self.columns)
        return f"SELECT {cols} WHERE false"


@dataclass(frozen=True)
class View:
    about: str
    sql: str


_KEY = (("channel", "VARCHAR", "channel id"), ("business_date", "DATE", "business date T of the run"))

TABLES = {
    "recon_result": Table("one row per record that entered reconciliation, on either side", _KEY + (
        ("side", "VARCHAR", "counterparty or ledger"),
        ("record_ref", "VARCHAR", "FILE:LINE for a counterparty record, JOURNAL_NO:SEQ for a journal row"),
        ("match_ref", "VARCHAR", "the match key"),
        ("outcome", "VARCHAR", "MATCHED, AMOUNT_MISMATCH, STATUS_MISMATCH, COUNTERPARTY_ONLY, LEDGER_ONLY, "
                               "DUPLICATE, PENDING or QUARANTINED"),
        ("reason", "VARCHAR", "the outcome in words; one-sided breaks name the nearest candidate"),
        ("amount_fen", "BIGINT", "this record's amount in fen"),
        ("counterparty_amount_fen", "BIGINT", "the counterparty's amount for the key"),
        ("ledger_amount_fen", "BIGINT", "the ledger's amount for the key"),
        ("status", "VARCHAR", "S moved, F declined/failed, R moved then reversed"),
        ("counterparty_status", "VARCHAR", "the counterparty's status for the key"),
        ("ledger_status", "VARCHAR", "the ledger's status for the key"),
        ("journal_no", "VARCHAR", "the journal number"),
        ("matched_with", "VARCHAR", "record_ref of the record it matched"),
        ("source_file", "VARCHAR", "counterparty file name"),
        ("source_line", "BIGINT", "line in that file"),
        ("origin_date", "DATE", "the date the item entered (before T when carried)"),
        ("account_masked", "VARCHAR", "card/account number, first 6 and last 4"),
        ("account_hash", "VARCHAR", "keyed SHA-256 of the card/account number, to join on"),
        ("event_time", "TIMESTAMP", "transaction time"),
        ("sign", "INTEGER", "+1 money in, -1 money out for the bank"),
        ("detail", "VARCHAR", "a short description"),
        ("open_days", "INTEGER", "business dates the item has been open (carried items)"),
        ("batch_no", "VARCHAR", "the journal's batch of a batch control row (settlement, centre, employer)"))),
    "recon_files": Table("which file and version each reconciliation read: the provenance of its results", _KEY + (
        ("file", "VARCHAR", "file name (recon_result.source_file)"), ("version", "BIGINT", "the version read"),
        ("md5", "VARCHAR", "MD5 of that version"), ("records", "BIGINT", "detail records, readable and quarantined"),
        ("quarantined", "BIGINT", "records quarantined"), ("amount_fen", "BIGINT", "their money in fen"))),
    "returns": Table("one row per inbound batch: answered (its return file), rejected whole, or held and why", _KEY + (
        ("file", "VARCHAR", "the inbound batch file"), ("version", "BIGINT", "its version"),
        ("records", "BIGINT", "its detail records"), ("status", "VARCHAR", "answered, rejected whole or held"),
        ("return_file", "VARCHAR", "the return file sent back (none when held)"),
        ("reason", "VARCHAR", "why it was held or rejected"))),
    "dispute_decisions": Table("UnionPay disputes (ERRN) and the bank's decision on each (ERRR)", _KEY + (
        ("err_type", "VARCHAR", "the dispute type"), ("stan", "VARCHAR", "trace number"),
        ("txn_time", "VARCHAR", "MMDDhhmmss"), ("orig_stan", "VARCHAR", "original trace number"),
        ("orig_txn_time", "VARCHAR", "original MMDDhhmmss"), ("pan_masked", "VARCHAR", "card, first 6 and last 4"),
        ("amount_fen", "BIGINT", "disputed amount"), ("reason_code", "VARCHAR", "CUPS reason code"),
        ("decision", "VARCHAR", "A accept, R refuse, P undecided (queued for analysts)"),
        ("decision_amount_fen", "BIGINT", "amount accepted"), ("reply_reason", "VARCHAR", "the reply's reason"),
        ("rule", "INTEGER", "the decision rule of unionpay.md that applied"), ("remark", "VARCHAR", "in words"),
        ("source_file", "VARCHAR", "the ERRN file"), ("source_line", "BIGINT", "line in it"))),
}
TABLES["dispute_queue"] = Table("the undecided disputes (P): what analysts must decide",
                                TABLES["dispute_decisions"].columns)
TABLES["dispute_resolved"] = Table("breaks an accepted dispute resolved: their suspense is reversed",
                                   TABLES["recon_result"].columns + (("resolved_on", "DATE", "resolution date"),))
TABLES |= {
    "recon_summary": Table("records and money per side and outcome", _KEY + (
        ("side", "VARCHAR", "counterparty or ledger"), ("outcome", "VARCHAR", "the outcome"),
        ("records", "BIGINT", "number of records"), ("amount_fen", "BIGINT", "their money in fen"))),
    "quarantine": Table("records that could not be read, with the reason (no raw bytes, no card number)", _KEY + (
        ("file", "VARCHAR", "file name"), ("line", "BIGINT", "line in the file"),
        ("record", "VARCHAR", "record type"), ("field", "VARCHAR", "the first field that failed"),
        ("expected", "VARCHAR", "what the layout expects"), ("found", "VARCHAR", "what was found ((masked) for PANs)"),
        ("amount_fen", "BIGINT", "the amount when it could be read"))),
    "clearing": Table("the net position and the accounting entries of the night", _KEY + (
        ("transactions_fen", "BIGINT", "net of the transactions"), ("fees_fen", "BIGINT", "net of the fees"),
        ("net_fen", "BIGINT", "net settlement; positive: the counterparty pays the bank"),
        ("vouchers", "BIGINT", "balanced vouchers written"), ("entry_lines", "BIGINT", "lines of the ENTRIES file"))),
    "validation": Table("one row per data-quality check (Great Expectations) of the night", _KEY + (
        ("dataset", "VARCHAR", "layout name, ledger.journal or recon_result"), ("file", "VARCHAR", "what was checked"),
        ("description", "VARCHAR", "the check in words"), ("expectation", "VARCHAR", "the GX expectation type"),
        ("column", "VARCHAR", "the column(s) checked"), ("success", "BOOLEAN", "whether it held"),
        ("element_count", "BIGINT", "rows checked"), ("unexpected_count", "BIGINT", "rows that failed"),
        ("offending", "VARCHAR", "up to 5 failing rows with their line, card numbers masked"))),
    "break_status": Table("the history of every break's status: append-only, the latest row is the status", _KEY + (
        ("record_ref", "VARCHAR", "the break's record_ref in recon_result"),
        ("seq", "BIGINT", "order of the changes (the highest is the current status)"),
        ("status", "VARCHAR", "new, investigating, resolved or written_off"),
        ("changed_by", "VARCHAR", "who changed it"), ("changed_at", "VARCHAR", "when (local time, ISO 8601)"),
        ("note", "VARCHAR", "why"))),
    "file_registry_snapshot": Table("every version of every file received, with its status", _KEY + (
        ("name", "VARCHAR", "file name"), ("version", "BIGINT", "1, 2, ... for each content received"),
        ("md5", "VARCHAR", "MD5 of the content"), ("size", "BIGINT", "bytes"),
        ("flag_records", "BIGINT", "record count declared by the flag file"),
        ("status", "VARCHAR", "received (a released correction too), parsed or rejected"),
        ("detail", "VARCHAR", "the parse summary or the rejection reason"))),
}

ANALYST_VIEWS = {
    "breaks": View("every break with its reason and current status (new until someone sets one)", f"""
        SELECT r.channel, r.business_date, r.side, r.outcome, r.amount_fen, r.reason, r.match_ref, r.record_ref,
               r.journal_no, r.account_masked, r.account_hash, r.source_file, r.source_line,
               coalesce(s.status, 'new') AS status, s.changed_by AS status_by, s.changed_at AS status_at,
               s.note AS status_note
        FROM recon_result r
        LEFT JOIN (SELECT * FROM break_status
                   QUALIFY row_number() OVER (PARTITION BY channel, business_date, record_ref
                                              ORDER BY seq DESC) = 1) s
          USING (channel, business_date, record_ref)
        WHERE r.outcome IN {BREAKS_SQL}"""),
    "breaks_by_channel": View("breaks per channel, date and outcome: records, money, how many still open", """
        SELECT channel, business_date, outcome, count(*) AS records, CAST(sum(amount_fen) AS BIGINT) AS amount_fen,
               count(*) FILTER (WHERE status IN ('new', 'investigating')) AS open_records
        FROM breaks GROUP BY ALL"""),
    "open_items": View("what is still open: unresolved breaks of any date and PENDING items of each channel's "
                       "latest date; age_days counts from the item's date to the channel's latest date", """
        WITH latest AS (SELECT channel, max(business_date) AS latest_date FROM recon_result GROUP BY channel)
        SELECT 'pending' AS kind, r.channel, r.business_date, r.side, r.outcome, r.match_ref, r.record_ref,
               r.amount_fen, r.origin_date, l.latest_date - r.origin_date AS age_days, 'pending' AS status, r.reason,
               r.account_masked
        FROM recon_result r JOIN latest l ON l.channel = r.channel AND l.latest_date = r.business_date
        WHERE r.outcome = 'PENDING'
        UNION ALL
        SELECT 'break', b.channel, b.business_date, b.side, b.outcome, b.match_ref, b.record_ref, b.amount_fen,
               b.business_date, l.latest_date - b.business_date, b.status, b.reason, b.account_masked
        FROM breaks b JOIN latest l USING (channel)
        WHERE b.status IN ('new', 'investigating')"""),
    "account_history": View("every record of a card or account, by its keyed hash, over all dates and channels", """
        SELECT account_hash, account_masked, business_date, channel, side, event_time, amount_fen, sign, status,
               outcome, record_ref, reason
        FROM recon_result WHERE account_hash IS NOT NULL"""),
    "validation_failures": View("the data-quality checks that failed", """
        SELECT * FROM validation WHERE NOT success"""),
}

# Table macros: parameterised views (`SELECT * FROM open_items_older_than(3)`).
ANALYST_MACROS = {
    "open_items_older_than": ("n", "open items whose age_days is more than n",
                              "SELECT * FROM open_items WHERE age_days > n"),
    "history_of_account": ("h", "account_history for one account_hash (see `duizhang hash-account`)",
                           "SELECT * FROM account_history WHERE account_hash = h ORDER BY business_date, event_time"),
}


def create_all(con) -> None:
    """Create the views and macros in `con`, where the tables already exist (as views over Parquet)."""
    for name, view in ANALYST_VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {view.sql}")
    for name, (arg, _, sql) in ANALYST_MACROS.items():
        con.execute(f"CREATE MACRO {name}({arg}) AS TABLE {sql}")


def _described() -> dict[str, list[tuple[str, str]]]:
    """The columns of every view, as DuckDB derives them from the declared tables (nothing to keep in sync)."""
    import duckdb
    con = duckdb.connect()
    try:
        for name, table in TABLES.items():
            con.execute(f"CREATE VIEW {name} AS {table.empty_select()}")
        create_all(con)
        return {name: [(r[0], r[1]) for r in con.execute(f"DESCRIBE {name}").fetchall()] for name in ANALYST_VIEWS}
    finally:
        con.close()


def help_text() -> str:
    """`duizhang sql --help`: every table and view with its columns."""
    lines = ["Tables (one Parquet partition per channel and business date):"]
    for name, t in TABLES.items():
        lines.append(f"  {name}: {t.about}")
        lines.append("    " + ", ".join(f"{c} {ty}" for c, ty, _ in t.columns))
    lines.append("Views:")
    for name, cols in _described().items():
        lines.append(f"  {name}: {ANALYST_VIEWS[name].about}")
        lines.append("    " + ", ".join(f"{c} {ty}" for c, ty in cols))
    lines.append("Macros:")
    for name, (arg, about, _) in ANALYST_MACROS.items():
        lines.append(f"  {name}({arg}): {about}")
    return "\n".join(lines)


def readme_markdown() -> str:
    """The README's section on the analysts' tables, generated from the same declaration."""
    out = []
    for name, t in TABLES.items():
        out += [f"`{name}`: {t.about}.", "", "| column | type | meaning |", "|---|---|---|"]
        out += [f"| `{c}` | {ty} | {m} |" for c, ty, m in t.columns]
        out.append("")
    out += ["| view | what it answers | columns |", "|---|---|---|"]
    out += [f"| `{n}` | {ANALYST_VIEWS[n].about} | {', '.join(c for c, _ in cols)} |" for n, cols in _described().items()]
    out += [f"| `{n}({arg})` (macro) | {about} | as `{sql.split('FROM ')[1].split()[0]}` |"
            for n, (arg, about, sql) in ANALYST_MACROS.items()]
    return "\n".join(out)
