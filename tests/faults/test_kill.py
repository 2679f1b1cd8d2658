"""Every stage of the chain killed (SIGKILL: no handler, no cleanup) at seeded points inside it, then rerun as Airflow
retries a failed task: nothing is lost, nothing is done twice.

A trial starts from the workdir and the counterparty's inbox as they were when the stage started in the undisturbed
night, runs the stage in a child process, and kills it either at a random moment of the stage (a fraction of its
undisturbed duration) or the moment a file is being written (Parquet, a warehouse partition, an output file, a
download, an upload: anything under a `.tmp`/`.part` name). While it lies dead, a reader must see no half-written
file: every visible file is as it was before the stage or as the undisturbed night left it. The stage is then rerun
in a new process and the whole state (every file of the workdir, the registry, the deliveries, the counterparty's
inbox) must equal the undisturbed night's after that stage, byte for byte; every later stage reads only that state,
so the rest of the night is the undisturbed one. A file the counterparty already held whole must not be written
again, and nothing may be left under a temporary name.

The whole night is also killed at seeded moments (wherever that falls) and rerun to the end by the operator's
command, `duizhang run`: the finished night equals the reference, every record is counted once, conservation
holds, one registration and one delivery per file.
"""
from __future__ import annotations

import random
import signal
import sys
import time
from pathlib import Path

import pytest

from .conftest import (CHANNEL, POINTS, SEED, STAGES, T, Counterparty, Driver, Reference, being_written, differences,
                       in_flight, invariants, start_from, state, tally, visible_partial_files)

pytestmark = pytest.mark.integration

def test_the_reference_night_runs_every_stage(reference):
    assert tuple(reference.order) == STAGES, "the chain changed: update STAGES so every stage is killed"


def kill_points(stage: str, reference: Reference) -> list[tuple[str, float]]:
    """Seeded: (`moment`, fraction of the stage's undisturbed time), (`writing`, extra delay in seconds after a
    temporary file appears) and (`replace`, which of the stage's renames of a finished temporary file into place
    the process dies at, when the stage has any)."""
    rng = random.Random(f"{SEED}:{stage}")
    points = [("moment", rng.uniform(0.05, 0.9)) for _ in range(max(1, POINTS - 2))]
    if POINTS > 1:
        points.append(("writing", rng.uniform(0, 0.01)))
    if POINTS > 2 and reference.replaces.get(stage):
        points.append(("replace", rng.randint(1, reference.replaces[stage])))
    return points


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_killed_anywhere_is_rerun_to_the_same_bytes(stage, reference: Reference, night, tmp_path):
    if stage not in reference.order:
        pytest.fail(f"{stage} is not a stage of the chain any more")
    failures = []
    for i, (how, where) in enumerate(kill_points(stage, reference)):
        for attempt in range(3):   # a stage quicker than in the reference ends before its moment: earlier then
            base = tmp_path / f"{i}_{how}_{attempt}"
            work, counterparty = start_from(reference, stage, night, base)
            try:
                report = trial(stage, how, where, reference, night, work, counterparty, base)
            finally:
                counterparty.close()
            print(f"{stage} {how} {where:.3f}: {report['verdict']}" + (f" ({report['detail']})" if report["detail"]
                                                                        else ""))
            if report["verdict"] != "missed" or how != "moment":
                break
            where /= 2
        if report["verdict"] == "missed":
            continue
        survived = report["verdict"] == "survived"
        tally(f"kill in {stage}" + (" while writing" if report["writing"] else ""), survived=survived)
        if not survived:
            failures.append(f"{how} {where:.3f}: {report['detail']}")
    assert not failures, f"{stage}: " + "; ".join(failures)


def trial(stage: str, how: str, where: float, reference: Reference, night, work: Path, counterparty,
          base: Path) -> dict:
    driver = Driver(work, counterparty.url, night.ledger, counterparty.env, first=stage, last=stage,
                    log=base / "killed.log", env_extra={"FAULTS_KILL_AT_REPLACE": str(where)} if how == "replace" else {})
    assert driver.wait_for(stage, "start"), f"{stage} did not start: {driver.error}; log {driver.log}"
    if how == "replace":
        code = driver.finish()
        renamed = [e["target"] for e in driver.seen if e["event"] == "replace" and e["n"] == where]
        if code != -signal.SIGKILL or not renamed:
            return {"verdict": "missed", "writing": False, "detail": f"no rename {where} ({driver.error or 'ok'})"}
        writing = [f"{renamed[0]} (written whole, not renamed)"]
    else:
        if how == "moment":
            time.sleep(where * reference.durations[stage])
        else:
            deadline = time.monotonic() + 10 * reference.durations[stage] + 10
            while driver.alive() and not in_flight(work, counterparty.root) and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(where)
        if not driver.alive() or driver.running_stage != stage:
            driver.finish()
            return {"verdict": "missed", "writing": False, "detail": f"the stage ended first ({driver.error or 'ok'})"}
        driver.kill()
        writing = [Path(w).name for w in being_written(work, counterparty.root)]
    partial = visible_partial_files(work, counterparty.root, reference.state_before[stage],
                                    reference.state_after(stage))
    problems = [f"a reader sees half-written files: {partial}"] if partial else []
    delivered_whole = _whole_deliveries(counterparty.root)

    rerun = Driver(work, counterparty.url, night.ledger, counterparty.env, first=stage, last=stage,
                   log=base / "rerun.log")
    code = rerun.finish()
    if code != 0:
        problems.append(f"the rerun failed ({code}): {rerun.error}; log {rerun.log}")
    else:
        problems += differences(state(work, counterparty.root), reference.state_after(stage))
        if written := being_written(work, counterparty.root):
            problems.append(f"left under a temporary name after the rerun: {written}")
        problems += written_again(counterparty.root, delivered_whole)
    return {"verdict": "failed" if problems else "survived", "writing": bool(writing),
            "detail": "; ".join(problems[:8]) + (f" killed while writing {writing}" if writing and not problems
                                                  else "")}


def written_again(counterparty: Path, delivered_whole: dict[str, tuple]) -> list[str]:
    return [f"{name} was written again after the counterparty had it whole"
            for name, stamp in delivered_whole.items() if _stamp(counterparty / name) != stamp]


def _whole_deliveries(counterparty: Path) -> dict[str, tuple]:
    """The counterparty's files that are complete (their flag is there), with inode and mtime."""
    inbox = counterparty / "inbox"
    return {p.relative_to(counterparty).as_posix(): _stamp(p) for p in inbox.rglob("*")
            if p.is_file() and not p.name.endswith((".ok", ".tmp")) and p.with_name(p.name + ".ok").exists()}


def _stamp(path: Path) -> tuple | None:
    return (path.stat().st_ino, path.stat().st_mtime_ns) if path.exists() else None


@pytest.mark.parametrize("trial_no", range(2))
def test_the_whole_night_killed_anywhere_is_finished_by_duizhang_run(trial_no, reference: Reference, night, tmp_path):
    moment = random.Random(f"{SEED}:night:{trial_no}").uniform(0.02, 0.9) * sum(reference.durations.values())
    for attempt in range(3):   # a night quicker than the reference ends before the moment: earlier then
        base = tmp_path / str(attempt)
        counterparty = Counterparty(base / "sftp", night)
        try:
            problems = kill_the_night(moment, reference, night, base / "work", counterparty)
        finally:
            counterparty.close()
        if problems is not None:
            break
        moment /= 2
    else:
        pytest.fail("the night always ended before the kill")
    tally("kill anywhere in the night, rerun by duizhang run", survived=not problems)
    assert not problems


def kill_the_night(moment: float, reference: Reference, night, work: Path, counterparty) -> list[str] | None:
    """Kill the night `moment` seconds after it started and finish it with `duizhang run`; None if it ended first."""
    driver = Driver(work, counterparty.url, night.ledger, counterparty.env, log=work.parent / "killed.log")
    assert driver.wait_for(reference.order[0], "start"), driver.error
    time.sleep(moment)
    stage = driver.running_stage
    if not driver.alive():
        driver.finish()
        return None
    driver.kill()
    writing = [Path(w).name for w in in_flight(work, counterparty.root)]
    delivered_whole = _whole_deliveries(counterparty.root)
    rerun = Driver(work, counterparty.url, night.ledger, counterparty.env, log=work.parent / "rerun.log",
                   argv=[sys.executable, "-m", "duizhang.cli", "run", CHANNEL, "--date", T.isoformat(),
                         "--source", counterparty.url, "--ledger", str(night.ledger), "--workdir", str(work)])
    problems = []
    if (code := rerun.finish()) != 0:
        problems.append(f"duizhang run after the kill ended {code}; log {rerun.log}")
    problems += differences(state(work, counterparty.root), reference.final)
    problems += invariants(work, counterparty.root, night)
    problems += written_again(counterparty.root, delivered_whole)
    print(f"night killed at {moment:.1f} s, in {stage or 'between stages'}"
          f"{' while writing ' + str(writing) if writing else ''}: {'; '.join(problems) or 'survived'}")
    return problems
