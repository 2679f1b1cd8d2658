"""The core ledger's PostgreSQL becomes unreachable while the journal is extracted (load_ledger).

The night's journal is loaded into a table of a schema of its own in the `test` database on 127.0.0.1:5432
(`connectors.ledger.load_journal_table`); the ledger URL points at it through a relay that can cut the line. Refused
(nothing listens on the port) or cut in the middle of the rows, the step must fail with a typed Transient error (the
database may come back: Airflow retries) and leave no partial extract; the rerun gives the extract an undisturbed
load from the database gives.
"""
from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from connectors.ledger import load_journal_table
from formats import registry
from formats.flag import parse_flag

from .conftest import (EXIT_TRANSIENT, T, Driver, Relay, being_written, copy_workdir, differences, free_port, state,
                       tally)

pytestmark = pytest.mark.integration

PG = "postgresql+psycopg2://postgres@127.0.0.1:{port}/test?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="module")
def ledger_db(night, tmp_path_factory):
    """The night's journal in `faults_<pid>.core_journal`, dropped afterwards."""
    schema = f"faults_{os.getpid()}"
    csv = night.ledger / f"CORE_JOURNAL_{T:%Y%m%d}.csv"
    parquet = tmp_path_factory.mktemp("journal") / "journal.parquet"
    registry.read_to_parquet(csv, "ledger.journal", parquet,
                             parse_flag(csv.with_name(csv.name + ".ok").read_bytes(), csv.name + ".ok"))
    engine = sa.create_engine(PG.format(port=5432, schema=schema))
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    load_journal_table(engine, parquet, db_schema=schema)
    yield schema
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    engine.dispose()


def load_ledger(work, ledger_url: str, night, log) -> Driver:
    return Driver(work, "unused", ledger_url, {}, first="load_ledger", last="load_ledger", log=log)


@pytest.fixture(scope="module")
def from_database(reference, night, ledger_db, tmp_path_factory):
    """The state after an undisturbed load_ledger from the database, and how many bytes the extract moved."""
    base = tmp_path_factory.mktemp("ledger_reference")
    copy_workdir(reference, "load_ledger", base / "work")
    relay = Relay(5432)
    try:
        driver = load_ledger(base / "work", PG.format(port=relay.port, schema=ledger_db), night, base / "log")
        assert driver.finish() == 0, driver.error
    finally:
        relay.close()
    return state(base / "work"), relay.bytes_down


@pytest.mark.parametrize("fault, fraction", [("refused", None), ("cut", 0.1), ("cut", 0.5), ("cut", 0.9)])
def test_an_unreachable_ledger_fails_as_transient_leaves_no_partial_extract_and_the_rerun_completes(
        fault, fraction, reference, night, ledger_db, from_database, tmp_path):
    """`refused`: nothing listens on the URL's port; `cut`: the line drops after that fraction of the rows."""
    expected, total = from_database
    work = copy_workdir(reference, "load_ledger", tmp_path / "work")
    relay = Relay(5432, cut_after_down=int(total * fraction) if fraction else None)
    problems = []
    try:
        port = free_port() if fault == "refused" else relay.port
        failed = load_ledger(work, PG.format(port=port, schema=ledger_db), night, tmp_path / "failed.log")
        code = failed.finish()
        if fault == "cut" and relay.cuts == 0:
            problems.append("the line was never cut")
        if code != EXIT_TRANSIENT or not (failed.error or {}).get("transient"):
            problems.append(f"{fault} ({relay.bytes_down:,} of {total:,} bytes through) ended {code}: "
                            f"{failed.error} (expected a Transient error)")
        extract = work / "ledger" / f"core_journal_{T:%Y%m%d}.parquet"
        if extract.exists() or being_written(work):
            problems.append(f"a partial extract is left: {extract.exists()}, {being_written(work)}")
        rerun = load_ledger(work, PG.format(port=relay.port, schema=ledger_db), night, tmp_path / "rerun.log")
        if rerun.finish() != 0:
            problems.append(f"the rerun failed: {rerun.error}")
    finally:
        relay.close()
    problems += differences(state(work), expected)
    print(f"ledger {fault} {fraction or ''}: {failed.error}")
    tally(f"ledger database {fault}", survived=not problems)
    assert not problems
