"""The core ledger's journal (核心流水) for accounting date T: database table -> one Parquet file.

specs/ledger.md: table ``core_journal`` in the core's reporting database, read through SQLAlchemy with a URL the
caller gives (environment or Airflow connection; never hard-coded, never logged with its password).
Only the rows of date T are read, streamed in chunks through a server-side cursor, and written as row groups of
one zstd Parquet file, so memory stays bounded by the chunk size whatever the size of the day. The file appears
(``os.replace``) only once complete. Rows are ordered by ``(journal_no, seq_no)``, so a rerun writes the same
bytes. Money stays integer: ``amount_fen`` is selected as BIGINT and written as int64, never as a float.

`JOURNAL_SCHEMA` is the Arrow schema of the extract, derived from the format engine's `ledger.journal` layout (the
reader of the CSV extract ``CORE_JOURNAL_{YYYYMMDD}.csv``): one declaration, so both ways in give the same table.

`load_journal_table` does the reverse (Arrow -> table, with COPY on PostgreSQL): it seeds the database for the
tests, the benchmark and the demo.
"""
from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import sqlalchemy as sa

from connectors.errors import ConnectionLost, LedgerError, ServerUnavailable
from formats import registry

log = logging.getLogger("duizhang.connectors")

JOURNAL_TABLE = "core_journal"

_JOURNAL_LAYOUT = registry.get("ledger.journal")
JOURNAL_SCHEMA = pa.schema([
    field.with_nullable(bool(getattr(column.type, "blank", False)))   # only a field that may be empty is nullable
    for field, column in zip(_JOURNAL_LAYOUT.arrow_schema(), _JOURNAL_LAYOUT.detail.fields)
])
"""The journal extract as Arrow: the contract between the database extract, the CSV extract and the matcher."""

# Column SQL types when `load_journal_table` creates the table (lengths from specs/ledger.md).
_SQL_TYPES: dict[str, sa.types.TypeEngine] = {
    "acct_date": sa.Date(), "journal_no": sa.String(20), "seq_no": sa.BigInteger(), "channel": sa.String(16),
    "channel_ref": sa.String(64), "batch_no": sa.String(40), "txn_time": sa.DateTime(),
    "account_no": sa.String(32), "account_name": sa.String(60), "dr_cr": sa.String(1),
    "amount_fen": sa.BigInteger(), "currency": sa.String(3), "status": sa.String(1), "reason_code": sa.String(4),
    "reversal_of": sa.String(20), "memo": sa.String(60),
}

# China has kept UTC+8 without daylight saving since 1991: a fixed offset is exact for ledger dates.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")

DEFAULT_CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class JournalExtract:
    """What `extract_journal` wrote."""
    path: Path
    acct_date: date
    row_count: int
    amount_total_fen: int
    """Sum of `amount_fen` over all rows (debits and credits alike): a control total for the next stages."""


# --- Reading: table -> Parquet ----------------------------------------------------------------------------------

def extract_journal(url: str | sa.URL | sa.Engine, acct_date: date, parquet_path: Path | str, *,
                    table: str = JOURNAL_TABLE, db_schema: str | None = None,
                    chunk_rows: int = DEFAULT_CHUNK_ROWS) -> JournalExtract:
    """Write the journal rows of `acct_date` from `table` to `parquet_path` (zstd), atomically.

    Streams `chunk_rows` rows at a time (server-side cursor), one Parquet row group per chunk; the output is
    written to a hidden temporary file beside `parquet_path` and renamed only when complete, so a crash leaves
    no partial extract. Ordered by ``(journal_no, seq_no)``: a rerun writes the same bytes.

    Raises `LedgerError` (Terminal) if the table or a column is missing, a column has the wrong type (an amount
    that is not an integer type, a date that is not a DATE...), a required column holds NULL, or the date has
    no rows (an empty extract is a fault upstream). Raises `ServerUnavailable` (Transient) if the database
    cannot be reached.
    """
    engine = url if isinstance(url, sa.Engine) else sa.create_engine(url)
    where = engine.url.render_as_string(hide_password=True)
    parquet_path = Path(parquet_path)
    tmp_path = parquet_path.with_name(f".{parquet_path.name}.tmp")
    try:
        with _connect(engine, where) as conn:
            _check_columns(conn, table, db_schema, where)
            statement = _select_date(table, db_schema, acct_date)
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(statement)
            row_count = amount_total_fen = 0
            parquet_path.parent.mkdir(parents=True, exist_ok=True)
            with pq.ParquetWriter(tmp_path, JOURNAL_SCHEMA, compression="zstd") as writer:
                for rows in result.partitions():
                    batch = _rows_to_batch(rows, table, where)
                    writer.write_batch(batch, row_group_size=len(rows))
                    row_count += batch.num_rows
                    amount_total_fen += pc.sum(batch.column("amount_fen")).as_py() or 0
        if row_count == 0:
            raise LedgerError(f"no journal rows for accounting date {acct_date.isoformat()} (an empty extract "
                              "is a fault upstream: has the core's day-end run?)", host=where, path=table,
                              expected="at least 1 row", found=0)
        _fsync(tmp_path)
        os.replace(tmp_path, parquet_path)
    except sa.exc.OperationalError as e:
        # the connection dropped during the extract (only `_connect` saw errors before: this one was untyped)
        raise ConnectionLost(f"connection to the ledger database lost during the extract: {str(e.orig).strip()}",
                             host=where) from None
    finally:
        tmp_path.unlink(missing_ok=True)
        if engine is not url:
            engine.dispose()
    log.info("%s %s: extracted %d journal rows of %s (amount total %d fen) to %s", where, table, row_count,
             acct_date.isoformat(), amount_total_fen, parquet_path)
    return JournalExtract(parquet_path, acct_date, row_count, amount_total_fen)


def read_journal_parquet(path: Path | str) -> pa.Table:
    """An extract read back with exactly `JOURNAL_SCHEMA`.

    Parquet has no seconds unit for timestamps: ``txn_time`` is stored as milliseconds and pyarrow reads it back
    as ``timestamp[ms]``; this casts it (losslessly) back to ``timestamp[s]``.
    """
    return pq.read_table(path).select(JOURNAL_SCHEMA.names).cast(JOURNAL_SCHEMA)


def _connect(engine: sa.Engine, where: str) -> sa.Connection:
    try:
        return engine.connect()
    except sa.exc.OperationalError as e:
        # str(e.orig): the driver's message (host, port, reason), without the URL's password.
        raise ServerUnavailable(f"cannot connect to the ledger database: {str(e.orig).strip()}",
                                host=where) from None


def _type_problem(column: str, found: sa.types.TypeEngine) -> str | None:
    """What is wrong with the SQL type of `column`, or None if it can be read into `JOURNAL_SCHEMA`."""
    arrow_type = JOURNAL_SCHEMA.field(column).type
    if pa.types.is_string(arrow_type):
        ok = isinstance(found, sa.String)
        return None if ok else "text (CHAR, VARCHAR, TEXT)"
    if pa.types.is_int64(arrow_type):
        # An integer, or a NUMERIC(p, 0) as some cores declare amounts; never a float or a decimal with a
        # fraction (that would be yuan, not fen, or a float that loses fen).
        if isinstance(found, sa.Integer):
            return None
        if isinstance(found, sa.Numeric) and not isinstance(found, sa.Float) and found.scale == 0:
            return None
        return "an integer type (BIGINT, INTEGER or NUMERIC(p,0))"
    if pa.types.is_date32(arrow_type):
        return None if isinstance(found, sa.Date) else "DATE"
    if pa.types.is_timestamp(arrow_type):
        return None if isinstance(found, sa.DateTime) else "TIMESTAMP"
    raise AssertionError(f"no type rule for {column}")  # JOURNAL_SCHEMA and this function disagree


def _check_columns(conn: sa.Connection, table: str, db_schema: str | None, where: str) -> None:
    inspector = sa.inspect(conn)
    if not inspector.has_table(table, schema=db_schema):
        raise LedgerError("journal table not found", host=where, path=_qualified(table, db_schema),
                          expected=f"table {table!r}", found="no such table")
    columns = {c["name"].lower(): c["type"] for c in inspector.get_columns(table, schema=db_schema)}
    for name in JOURNAL_SCHEMA.names:
        if name not in columns:
            raise LedgerError(f"column {name} missing", host=where, path=_qualified(table, db_schema),
                              expected=f"column {name} ({JOURNAL_SCHEMA.field(name).type})",
                              found=f"columns {', '.join(sorted(columns))}")
        problem = _type_problem(name, columns[name])
        if problem:
            raise LedgerError(f"column {name} has the wrong type", host=where, path=_qualified(table, db_schema),
                              expected=problem, found=str(columns[name]))


def _select_date(table: str, db_schema: str | None, acct_date: date) -> sa.Select:
    t = sa.table(table, *(sa.column(name, _SQL_TYPES[name]) for name in JOURNAL_SCHEMA.names), schema=db_schema)
    selected = [sa.cast(t.c[name], sa.BigInteger).label(name) if name in ("seq_no", "amount_fen") else t.c[name]
                for name in JOURNAL_SCHEMA.names]
    return sa.select(*selected).where(t.c.acct_date == acct_date).order_by(t.c.journal_no, t.c.seq_no)


def _rows_to_batch(rows: Sequence[Sequence], table: str, where: str) -> pa.RecordBatch:
    """A chunk of result rows as a RecordBatch of `JOURNAL_SCHEMA` (column by column: the loops run in Arrow)."""
    columns = list(zip(*rows))
    arrays = []
    for field, values in zip(JOURNAL_SCHEMA, columns):
        if field.name == "txn_time":
            values = _beijing_naive(values)
        array = pa.array(values, type=field.type)  # timestamp[s]: fractions of a second (if any) are dropped
        if not field.nullable and array.null_count:
            raise LedgerError(f"column {field.name} is NULL in {array.null_count} row(s)", host=where, path=table,
                              expected="a value in every row", found=f"{array.null_count} NULL(s)")
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=JOURNAL_SCHEMA)


def _beijing_naive(values: Sequence[datetime | None]) -> Sequence[datetime | None]:
    """Timestamps as naive Beijing time: a TIMESTAMP WITH TIME ZONE column is converted, a naive one kept."""
    first = next((v for v in values if v is not None), None)
    if first is None or first.tzinfo is None:
        return values
    return [v.astimezone(BEIJING).replace(tzinfo=None) if v is not None else None for v in values]


def _qualified(table: str, db_schema: str | None) -> str:
    return f"{db_schema}.{table}" if db_schema else table


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


# --- Seeding: Arrow -> table ------------------------------------------------------------------------------------

def journal_table(table: str = JOURNAL_TABLE, db_schema: str | None = None,
                  metadata: sa.MetaData | None = None) -> sa.Table:
    """The SQLAlchemy definition of a journal table as specs/ledger.md describes it."""
    metadata = metadata if metadata is not None else sa.MetaData()
    columns = [sa.Column(f.name, _SQL_TYPES[f.name], nullable=f.nullable) for f in JOURNAL_SCHEMA]
    return sa.Table(table, metadata, *columns,
                    sa.Index(f"{table}_acct_date_journal_idx", "acct_date", "journal_no", "seq_no"),
                    schema=db_schema)


def load_journal_table(url: str | sa.URL | sa.Engine, source: Path | str | pa.Table | pa.RecordBatchReader,
                       table: str = JOURNAL_TABLE, *, db_schema: str | None = None, replace: bool = False,
                       chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """Create `table` if missing (dropped first if `replace`) and append the rows of `source`; return the count.

    `source` is a Parquet file, an Arrow table or a record batch reader with the columns of `JOURNAL_SCHEMA`
    (extra columns are ignored). On PostgreSQL the rows go in with COPY (psycopg2); elsewhere with batched INSERTs.
    Used to seed the database for tests, the benchmark and the demo. Raises `LedgerError` if a column is
    missing or cannot be cast to `JOURNAL_SCHEMA`.
    """
    engine = url if isinstance(url, sa.Engine) else sa.create_engine(url)
    where = engine.url.render_as_string(hide_password=True)
    definition = journal_table(table, db_schema)
    row_count = 0
    try:
        with engine.begin() as conn:
            if replace:
                definition.drop(conn, checkfirst=True)
            definition.create(conn, checkfirst=True)
            for batch in _conformed_batches(source, chunk_rows, where):
                if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2":
                    _copy_into(conn, _qualified(table, db_schema), batch)
                else:
                    conn.execute(definition.insert(), batch.to_pylist())
                row_count += batch.num_rows
    finally:
        if engine is not url:
            engine.dispose()
    log.info("%s %s: loaded %d journal rows", where, _qualified(table, db_schema), row_count)
    return row_count


def _conformed_batches(source: Path | str | pa.Table | pa.RecordBatchReader, chunk_rows: int,
                       where: str) -> Iterator[pa.RecordBatch]:
    if isinstance(source, (str, Path)):
        batches = pq.ParquetFile(source).iter_batches(batch_size=chunk_rows)
    elif isinstance(source, pa.Table):
        batches = iter(source.to_batches(max_chunksize=chunk_rows))
    else:
        batches = iter(source)
    for batch in batches:
        missing = [name for name in JOURNAL_SCHEMA.names if name not in batch.schema.names]
        if missing:
            raise LedgerError(f"source has no column {', '.join(missing)}", host=where,
                              expected=f"columns {', '.join(JOURNAL_SCHEMA.names)}",
                              found=f"columns {', '.join(batch.schema.names)}")
        try:
            yield batch.select(JOURNAL_SCHEMA.names).cast(JOURNAL_SCHEMA)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise LedgerError(f"source columns cannot be cast to the journal schema: {e}", host=where) from None


def _copy_into(conn: sa.Connection, qualified_table: str, batch: pa.RecordBatch) -> None:
    """COPY one batch as CSV: an unquoted empty field is NULL, a quoted one ("") an empty string."""
    buffer = io.BytesIO()
    pa_csv.write_csv(batch, buffer, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    buffer.seek(0)
    quoted = ".".join(conn.dialect.identifier_preparer.quote(part) for part in qualified_table.split("."))
    column_list = ", ".join(conn.dialect.identifier_preparer.quote(n) for n in JOURNAL_SCHEMA.names)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {quoted} ({column_list}) FROM STDIN WITH (FORMAT csv)", buffer)
    finally:
        cursor.close()
