"""The core-ledger extract against the machine's PostgreSQL: Arrow -> table -> Parquet, and what is refused."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from connectors.errors import LedgerError, ServerUnavailable
from connectors.ledger import (JOURNAL_SCHEMA, extract_journal, journal_table, load_journal_table,
                               read_journal_parquet)
from formats.errors import Terminal, Transient

T = dt.date(2026, 11, 21)
CHANNELS = ["UNIONPAY_ACQ", "CNAPS", "TIPS", "HOUSING_FUND", "UTILITY", "PAYROLL"]


def journal_rows(acct_date: dt.date, count: int, *, start: int = 0) -> pa.Table:
    """Rows as the core writes them: Chinese names, empty and NULL optional fields, amounts past 2**31 fen."""
    rows = []
    for i in range(start, start + count):
        status = "SFR"[i % 3]
        rows.append({
            "acct_date": acct_date,
            "journal_no": f"{acct_date:%Y%m%d}{i:012d}",
            "seq_no": 1 + i % 2,
            "channel": CHANNELS[i % len(CHANNELS)],
            "channel_ref": f"REF{i:010d}",
            "batch_no": None if i % 4 == 0 else ("" if i % 4 == 1 else f"B{i // 100:06d}"),
            "txn_time": dt.datetime.combine(acct_date, dt.time(i % 24, i % 60, (i * 7) % 60)),
            "account_no": f"6222{i:015d}",
            "account_name": ["张三", "李四", "王五·测试", "O'Brien, \"Ltd\""][i % 4],
            "dr_cr": "DC"[i % 2],
            "amount_fen": 1 + i * 7_919 if i % 50 else 987_654_321_012,  # some amounts beyond 32 bits
            "currency": "CNY",
            "status": status,
            "reason_code": "E001" if status == "F" else None,
            "reversal_of": f"{acct_date:%Y%m%d}{i - 1:012d}" if status == "R" else None,
            "memo": None if i % 5 == 0 else f"代收 第{i}笔\n换行",
        })
    return pa.Table.from_pylist(rows, schema=JOURNAL_SCHEMA)


def sorted_journal(table: pa.Table) -> pa.Table:
    return table.sort_by([("journal_no", "ascending"), ("seq_no", "ascending")])


def test_round_trip_arrow_table_parquet_is_identical(pg_engine, journal_table_name, tmp_path):
    day_t = journal_rows(T, 2_500)
    other_day = journal_rows(T - dt.timedelta(days=1), 300, start=10_000)
    # Loaded in a shuffled order: the extract must not depend on the table's physical order.
    shuffled = pa.concat_tables([other_day, day_t]).take(pa.array(list(range(2_800))[::-1]))
    assert load_journal_table(pg_engine, shuffled, journal_table_name) == 2_800

    out = tmp_path / "CORE_JOURNAL_20261121.parquet"
    extract = extract_journal(pg_engine, T, out, table=journal_table_name, chunk_rows=1_000)

    assert extract.row_count == 2_500 and extract.path == out and extract.acct_date == T
    assert extract.amount_total_fen == sum(day_t.column("amount_fen").to_pylist())
    back = read_journal_parquet(out)
    assert back.schema == JOURNAL_SCHEMA
    assert back.equals(sorted_journal(day_t))
    metadata = pq.ParquetFile(out).metadata
    assert metadata.num_row_groups == 3  # streamed in chunks of 1,000 rows
    assert metadata.row_group(0).column(0).compression == "ZSTD"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left


def test_a_rerun_writes_the_same_bytes(pg_engine, journal_table_name, tmp_path):
    load_journal_table(pg_engine, journal_rows(T, 500), journal_table_name)
    first = extract_journal(pg_engine, T, tmp_path / "a.parquet", table=journal_table_name, chunk_rows=200)
    second = extract_journal(pg_engine, T, tmp_path / "b.parquet", table=journal_table_name, chunk_rows=200)
    assert first.path.read_bytes() == second.path.read_bytes()


def test_load_from_a_parquet_file_and_replace(pg_engine, journal_table_name, tmp_path):
    source = tmp_path / "seed.parquet"
    pq.write_table(journal_rows(T, 120), source)
    load_journal_table(pg_engine, journal_rows(T, 50), journal_table_name)
    assert load_journal_table(pg_engine, source, journal_table_name, replace=True) == 120
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text(f'SELECT count(*) FROM "{journal_table_name}"')).scalar() == 120


def test_an_amount_declared_numeric_with_no_fraction_is_read_as_integer_fen(pg_engine, journal_table_name,
                                                                            tmp_path):
    rows = journal_rows(T, 40)
    load_journal_table(pg_engine, rows, journal_table_name)
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'ALTER TABLE "{journal_table_name}" ALTER COLUMN amount_fen TYPE NUMERIC(18, 0)'))
    extract = extract_journal(pg_engine, T, tmp_path / "x.parquet", table=journal_table_name)
    assert read_journal_parquet(extract.path).column("amount_fen") == sorted_journal(rows).column("amount_fen")


def test_a_time_zone_aware_column_becomes_naive_beijing_time(pg_engine, journal_table_name, tmp_path):
    rows = journal_rows(T, 30)
    load_journal_table(pg_engine, rows, journal_table_name)
    with pg_engine.begin() as conn:
        conn.execute(sa.text("SET TIME ZONE 'UTC'"))
        conn.execute(sa.text(f'ALTER TABLE "{journal_table_name}" ALTER COLUMN txn_time TYPE timestamptz '
                             "USING txn_time AT TIME ZONE 'Asia/Shanghai'"))
    extract = extract_journal(pg_engine, T, tmp_path / "x.parquet", table=journal_table_name)
    assert read_journal_parquet(extract.path).column("txn_time") == sorted_journal(rows).column("txn_time")


def test_missing_table_is_a_ledger_error(pg_engine, journal_table_name, tmp_path):
    with pytest.raises(LedgerError, match="journal table not found") as caught:
        extract_journal(pg_engine, T, tmp_path / "x.parquet", table=journal_table_name)
    assert isinstance(caught.value, Terminal)
    assert journal_table_name in str(caught.value)
    assert not (tmp_path / "x.parquet").exists()


def test_wrong_column_type_names_the_column_and_both_types(pg_engine, journal_table_name, tmp_path):
    load_journal_table(pg_engine, journal_rows(T, 10), journal_table_name)
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'ALTER TABLE "{journal_table_name}" ALTER COLUMN amount_fen TYPE DOUBLE PRECISION'))
    with pytest.raises(LedgerError) as caught:
        extract_journal(pg_engine, T, tmp_path / "x.parquet", table=journal_table_name)
    message = str(caught.value)
    assert "amount_fen" in message and "integer type" in message and "DOUBLE" in message.upper()
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize("column, new_type, expected", [
    ("acct_date", "TIMESTAMP", "DATE"),
    ("txn_time", "VARCHAR(19)", "TIMESTAMP"),
    ("journal_no", "BIGINT USING 0", "text"),
    ("amount_fen", "NUMERIC(18, 2)", "an integer"),
])
def test_other_wrong_types_are_refused(pg_engine, journal_table_name, tmp_path, column, new_type, expected):
    load_journal_table(pg_engine, journal_rows(T, 5), journal_table_name)
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'ALTER TABLE "{journal_table_name}" ALTER COLUMN {column} TYPE {new_type}'))
    with pytest.raises(LedgerError, match=f"column {column} has the wrong type.*expected {expected}"):
        extract_journal(pg_engine, T, tmp_path / "x.parquet", table=journal_table_name)


def test_missing_column_is_named(pg_engine, journal_table_name, tmp_path):
    load_journal_table(pg_engine, journal_rows(T, 5), journal_table_name)
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'ALTER TABLE "{journal_table_name}" DROP COLUMN reversal_of'))
    with pytest.raises(LedgerError, match="column reversal_of missing"):
        extract_journal(pg_engine, T, tmp_path / "x.parquet", table=journal_table_name)


def test_a_date_with_no_rows_is_a_ledger_error_and_writes_nothing(pg_engine, journal_table_name, tmp_path):
    load_journal_table(pg_engine, journal_rows(T, 5), journal_table_name)
    with pytest.raises(LedgerError, match="no journal rows for accounting date 2026-11-22") as caught:
        extract_journal(pg_engine, T + dt.timedelta(days=1), tmp_path / "x.parquet", table=journal_table_name)
    assert caught.value.found == 0
    assert list(tmp_path.iterdir()) == []


def test_null_in_a_required_column_is_a_ledger_error(pg_engine, journal_table_name, tmp_path):
    metadata = sa.MetaData()
    definition = journal_table(journal_table_name, metadata=metadata)
    definition.c.account_name.nullable = True  # a core table that allows NULL where the spec does not
    metadata.create_all(pg_engine)
    load_journal_table(pg_engine, journal_rows(T, 5), journal_table_name)
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'UPDATE "{journal_table_name}" SET account_name = NULL WHERE seq_no = 2'))
    with pytest.raises(LedgerError, match="column account_name is NULL in 2 row"):
        extract_journal(pg_engine, T, tmp_path / "x.parquet", table=journal_table_name)
    assert list(tmp_path.iterdir()) == []


def test_the_password_never_reaches_a_message_or_the_log(pg_engine, journal_table_name, tmp_path, caplog):
    # Trust authentication ignores the password, so a fake one still connects.
    url = pg_engine.url.set(password="s3cret-pw")
    caplog.set_level("DEBUG", logger="duizhang.connectors")
    load_journal_table(url, journal_rows(T, 5), journal_table_name)
    extract_journal(url, T, tmp_path / "x.parquet", table=journal_table_name)
    with pytest.raises(LedgerError) as caught:
        extract_journal(url, T, tmp_path / "y.parquet", table=journal_table_name + "_missing")
    assert "extracted 5 journal rows" in caplog.text
    assert "s3cret-pw" not in caplog.text and "s3cret-pw" not in str(caught.value)
    assert "***" in caplog.text


def test_an_unreachable_database_is_transient(unused_port, tmp_path):
    url = f"postgresql+psycopg2://postgres:s3cret-pw@127.0.0.1:{unused_port}/test"
    with pytest.raises(ServerUnavailable) as caught:
        extract_journal(url, T, tmp_path / "x.parquet")
    assert isinstance(caught.value, Transient)
    assert "s3cret-pw" not in str(caught.value)
