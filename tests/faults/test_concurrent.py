"""Two runs of the same date at once: each waits for the other's lock (or refuses with RunLocked, a Transient error)
and never interleaves inside a step; the night ends as one undisturbed run leaves it: the same bytes, one
registration and one delivery per file, every record counted once.

And each step alone, twice at the same moment: the ledger extract in particular is loaded by every channel's night
for the same date (`ledger/core_journal_T.parquet` is one file for all channels).
"""
from __future__ import annotations

import pytest

from .conftest import (EXIT_TRANSIENT, STAGES, Counterparty, Driver, being_written, differences, invariants, start_from,
                       state, tally)

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


@pytest.mark.parametrize("stage", STAGES)
def test_the_same_step_twice_at_once_ends_as_one(stage, reference, night, tmp_path):
    """Each step of the two runs, started at the same moment (as two Airflow task instances, or two channels'
    load_ledger of the one date): both complete or one refuses with RunLocked, and the state is one step's."""
    work, counterparty = start_from(reference, stage, night, tmp_path)
    try:
        runs = [Driver(work, counterparty.url, night.ledger, counterparty.env, first=stage, last=stage,
                       log=tmp_path / f"step{i}.log") for i in (1, 2)]
        codes = [run.finish() for run in runs]
        problems = [f"{stage} {i} ended {code}: {run.error}" for i, (run, code) in enumerate(zip(runs, codes), 1)
                    if code != 0 and not (code == EXIT_TRANSIENT and "RunLocked" in run.error["type"])]
        problems += differences(state(work, counterparty.root), reference.state_after(stage))
        if written := being_written(work, counterparty.root):
            problems.append(f"left under a temporary name: {written}")
    finally:
        counterparty.close()
    tally(f"{stage} twice at once", survived=not problems)
    assert not problems
