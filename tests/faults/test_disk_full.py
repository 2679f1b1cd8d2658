"""The disk fills up while a stage writes: the workdir lives on a small tmpfs sized so that the stage runs out of space
half-way through what it writes in the undisturbed night.

The step must fail with a message that says so (ENOSPC, "No space left on device" or SQLite's "disk is full") and
not as a Terminal error (the input is fine: an operator frees space and retries); nothing half-written may be
visible to a reader; once space is freed (the tmpfs remounted larger) the rerun ends exactly as the undisturbed
night did after that stage.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import (ROOT, Counterparty, Driver, being_written, copy_workdir, differences, state, tally,
                       visible_partial_files)

pytestmark = pytest.mark.integration

STAGES = ("fetch", "parse", "load_ledger", "match", "validate", "answer", "clear", "report")
PAGE = 4096
ROOM_AFTER = 1 << 30   # what "freeing space" gives back
HUNG_AFTER = 90        # seconds: a stage that has not failed by then on a full disk hangs


def du(path: Path) -> int:
    """Bytes the files under `path` take on a tmpfs (whole pages)."""
    return sum(-(-p.stat().st_size // PAGE) * PAGE for p in path.rglob("*") if p.is_file())


def mount_tmpfs(where: Path, size: int) -> None:
    where.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True,
                   capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts a tmpfs where asked and always unmounts it."""
    mounted: list[Path] = []

    def mount(where: Path, size: int) -> Path:
        mount_tmpfs(where, size)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("stage", STAGES)
def test_a_full_disk_fails_the_stage_cleanly_and_a_rerun_after_freeing_space_completes(stage, reference, night,
                                                                                        tmp_path, tmpfs):
    i = reference.order.index(stage)
    before = reference.before[stage] / "work"
    after = reference.before[reference.order[i + 1]] / "work" if i + 1 < len(reference.order) else reference.workdir
    grows = du(after) - du(before)
    disk = tmpfs(tmp_path / "disk", 2 * du(after) + ROOM_AFTER)
    work = copy_workdir(reference, stage, disk / "work")
    fs = os.statvfs(disk)
    size = (fs.f_blocks - fs.f_bfree) * fs.f_frsize + max(grows // 2 // PAGE, 1) * PAGE   # half what the stage writes
    subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)
    counterparty = Counterparty(tmp_path / "sftp", night, inbox_from=reference.before[stage] / "inbox")
    problems = []
    try:
        driver = Driver(work, counterparty.url, night.ledger, counterparty.env, first=stage, last=stage,
                        log=tmp_path / "full.log")
        try:
            code = driver.finish(timeout=HUNG_AFTER)
        except AssertionError:   # killed by finish
            code = "hung"
        error = driver.error or {}
        full = error.get("errno") == 28 or any(s in error.get("message", "") for s in
                                               ("No space left on device", "disk is full"))
        if code == 0 or not full:
            problems.append(f"{stage} on a full disk ended {code}: {error or 'no error'} (expected ENOSPC)")
        elif error.get("terminal"):
            problems.append(f"a full disk is reported as a Terminal error (bad input): {error}")
        # space freed first: reading the state opens control.db, and SQLite needs room for that
        subprocess.run(["mount", "-o", f"remount,size={size + ROOM_AFTER}", str(disk)], check=True)
        if partial := visible_partial_files(work, counterparty.root, reference.state_before[stage],
                                            reference.state_after(stage)):
            problems.append(f"half-written files visible: {partial}")
        rerun = Driver(work, counterparty.url, night.ledger, counterparty.env, first=stage, last=stage,
                       log=tmp_path / "rerun.log")
        if (code := rerun.finish()) != 0:
            problems.append(f"the rerun with space freed failed ({code}): {rerun.error}")
        problems += differences(state(work, counterparty.root), reference.state_after(stage))
        if written := being_written(work, counterparty.root):
            problems.append(f"left under a temporary name after the rerun: {written}")
        print(f"{stage}: {size // 1024} KiB disk ({grows // 1024} KiB to write): {error.get('type')}: "
              f"{error.get('message', '')[:160]}")
    finally:
        counterparty.close()
    tally(f"disk full in {stage}", survived=not problems)
    assert not problems


def test_the_parquet_reader_on_a_full_disk_raises_instead_of_hanging(tmp_path, tmpfs):
    """Minimal case of a fault the suite found: the fixed-width reader's writer thread hits ENOSPC after it has
    taken the end-of-stream marker (a file smaller than a row group is written whole at the end), then waits for a
    second marker that never comes while the caller waits for it: the parse step hangs forever on a full disk."""
    disk = tmpfs(tmp_path / "disk", PAGE)
    sample = next((ROOT / "sample_files" / "unionpay" / "acomn").glob("ok_*.txt"))
    code = (f"from pathlib import Path\nfrom formats import registry\n"
            f"registry.read_to_parquet(Path({str(sample)!r}), 'unionpay.acomn', Path({str(disk / 'out.parquet')!r}))")
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("read_to_parquet onto a full disk hung (no error after 60 s)")
    assert done.returncode != 0 and "No space left on device" in done.stderr, done.stderr[-500:]
    assert not list(disk.iterdir()), "a partial Parquet file is left"
