"""Two runs of the same date at once: each waits for the other's lock (or refuses with RunLocked, a Transient error)
and never interleaves inside a step; the night ends as one undisturbed run leaves it: the same bytes, one
registration and one delivery per file, every record counted once.

Also the ledger extract, which every channel's night loads for the same date (`ledger/core_journal_T.parquet` is
one file for all channels): two channels' load_ledger steps at the same moment must both end with the one extract.
"""
from __future__ import annotations

import shutil

import pytest

from .conftest import EXIT_TRANSIENT, Counterparty, Driver, differences, invariants, start_from, state, tally

pytestmark = pytest.mark.integration


def test_two_runs_of_the_same_date_started_at_once_end_as_one(reference, night, tmp_path):
    counterparty = Counterparty(tmp_path / "sftp", night)
    work = tmp_path / "work"
    try:
        runs = [Driver(work, counterparty.url, night.ledger, counterparty.env, log=tmp_path / f"run{i}.log")
                for i in (1, 2)]
        codes = [run.finish() for run in runs]
        problems = [f"run {i} ended {code}: {run.error}" for i, (run, code) in enumerate(zip(runs, codes), 1)
                    if code != 0 and not (code == EXIT_TRANSIENT and "RunLocked" in run.error["type"])]
        if 0 not in codes:
            problems.append("neither run completed")
        problems += differences(state(work, counterparty.root), reference.final)
        problems += invariants(work, counterparty.root, night)
        print("two runs at once: " + "; ".join(f"{c} {r.error['type'] if r.error else 'completed'}"
                                               for r, c in zip(runs, codes)))
    finally:
        counterparty.close()
    tally("two runs of one date at once", survived=not problems)
    assert not problems


@pytest.mark.parametrize("attempt", range(2))
def test_two_load_ledger_steps_of_the_same_date_at_once_leave_the_one_extract(attempt, reference, night, tmp_path):
    work, counterparty = start_from(reference, "load_ledger", night, tmp_path)
    counterparty.close()
    runs = [Driver(work, "unused", night.ledger, {}, first="load_ledger", last="load_ledger",
                   log=tmp_path / f"ledger{i}.log") for i in (1, 2)]
    codes = [run.finish() for run in runs]
    problems = [f"load_ledger {i} ended {code}: {run.error}" for i, (run, code) in enumerate(zip(runs, codes), 1)
                if code != 0]
    problems += differences(state(work), {k: v for k, v in reference.state_after("load_ledger").items()
                                          if not k.startswith("counterparty:")})
    shutil.rmtree(work)
    tally("two load_ledger steps at once", survived=not problems)
    assert not problems
