"""The counterparty's SFTP server disappears mid-night, during a download (fetch) or an upload (deliver).

Gone for good: the step retries on new connections, then fails with a typed Transient error (Airflow retries it);
nothing half-transferred is visible; once the server is back, the rerun ends exactly as the undisturbed night.
Back within the step's retries: the step itself completes, with the same result.
"""
from __future__ import annotations

import time

import pytest

from .conftest import (EXIT_TRANSIENT, Driver, being_written, differences, in_flight, start_from, state, tally,
                       visible_partial_files)

pytestmark = pytest.mark.integration

DOWNLOAD_BYTES_PER_S = 2_000_000   # the night's file takes seconds to come down: time to pull the plug mid-way


def server_vanishes(stage: str, reference, night, tmp_path, *, back_after: float | None) -> list[str]:
    work, counterparty = start_from(reference, stage, night, tmp_path, down_rate=DOWNLOAD_BYTES_PER_S)
    problems = []
    try:
        driver = Driver(work, counterparty.url, night.ledger, counterparty.env, first=stage, last=stage,
                        log=tmp_path / "outage.log")
        assert driver.wait_for(stage, "start"), driver.error
        deadline = time.monotonic() + 120
        while not in_flight(work, counterparty.root) and driver.alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert driver.alive() and in_flight(work, counterparty.root), \
            f"{stage} never started a transfer (log {driver.log})"
        time.sleep(0.3)
        counterparty.stop()
        transfers = in_flight(work, counterparty.root)
        if back_after is not None:
            time.sleep(back_after)
            counterparty.restart()
        code = driver.finish(timeout=300)
        if back_after is None:
            error = driver.error or {}
            if code != EXIT_TRANSIENT or not error.get("transient"):
                problems.append(f"{stage} with the server gone ended {code}: {error} (expected a Transient error)")
            if partial := visible_partial_files(work, counterparty.root, reference.state_before[stage],
                                                reference.state_after(stage)):
                problems.append(f"half-transferred files visible: {partial}")
            counterparty.restart()
            rerun = Driver(work, counterparty.url, night.ledger, counterparty.env, first=stage, last=stage,
                           log=tmp_path / "rerun.log")
            if (code := rerun.finish()) != 0:
                problems.append(f"the rerun after the server came back failed ({code}): {rerun.error}")
        elif code != 0:
            problems.append(f"{stage} did not ride out a {back_after} s outage: {driver.error}")
        problems += differences(state(work, counterparty.root), reference.state_after(stage))
        if written := being_written(work, counterparty.root):
            problems.append(f"left under a temporary name: {written}")
        print(f"{stage}: server stopped while {[p.rsplit('/', 1)[-1] for p in transfers]} was in flight; "
              f"{'back after ' + str(back_after) + ' s' if back_after is not None else 'the step failed'}: "
              f"{driver.error or 'completed'}")
    finally:
        counterparty.close()
    return problems


@pytest.mark.parametrize("stage", ["fetch", "deliver"])
def test_the_server_gone_for_good_fails_the_step_as_transient_and_a_rerun_completes(stage, reference, night,
                                                                                    tmp_path):
    problems = server_vanishes(stage, reference, night, tmp_path, back_after=None)
    tally(f"SFTP server gone during {stage}", survived=not problems)
    assert not problems


@pytest.mark.parametrize("stage", ["fetch", "deliver"])
def test_the_server_back_within_the_retries_lets_the_step_complete(stage, reference, night, tmp_path):
    problems = server_vanishes(stage, reference, night, tmp_path, back_after=1.0)
    tally(f"SFTP server restarted during {stage}", survived=not problems)
    assert not problems
