"""The load_ledger step: channels of one date share the extract without racing; a missing extract is "not yet"
(retried), a bad one is refused and never left where the match step would read it."""
from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing as mp
import shutil
from pathlib import Path

import pytest

from duizhang import pipeline
from duizhang.workdir import Workdir
from formats.errors import FileRejected
from formats.flag import write_flag

LEDGER = Path(__file__).resolve().parents[1] / "sample_files" / "nights" / "ledger"
T1 = dt.date(2026, 11, 21)


def _load(root: str, ledger: str, rounds: int) -> None:
    for _ in range(rounds):
        pipeline.load_ledger(T1, ledger, Workdir(root))


def test_channels_of_one_date_load_the_shared_extract_at_the_same_time(tmp_path):
    root = tmp_path / "work"
    Workdir(root)
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_load, args=(str(root), str(LEDGER), 5)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    alone = Workdir(tmp_path / "alone")
    pipeline.load_ledger(T1, str(LEDGER), alone)
    digest = lambda wd: hashlib.sha256(wd.ledger_extract(T1).read_bytes()).hexdigest()  # noqa: E731
    assert digest(Workdir(root)) == digest(alone)
    assert not [p.name for p in Workdir(root).ledger_extract(T1).parent.iterdir() if p.name.endswith(".tmp")]


def test_a_missing_extract_is_not_ready_yet(tmp_path):
    with pytest.raises(pipeline.LedgerNotReady, match="not there yet"):
        pipeline.load_ledger(T1, str(tmp_path), Workdir(tmp_path / "work"))


def test_an_unreadable_extract_is_refused_and_not_left_for_the_match_step(tmp_path):
    wd = Workdir(tmp_path / "work")
    pipeline.load_ledger(T1, str(LEDGER), wd)                    # yesterday's good extract of T ...
    bad_dir = tmp_path / "ledger"
    shutil.copytree(LEDGER, bad_dir)
    csv = bad_dir / "CORE_JOURNAL_20261121.csv"
    lines = csv.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b",CNY,", b",XXX,")               # ... corrected upstream into a bad one
    csv.write_bytes(b"\n".join(lines))
    write_flag(csv, record_count=len([x for x in lines[1:] if x]))
    with pytest.raises(FileRejected, match="line 4"):
        pipeline.load_ledger(T1, str(bad_dir), wd)
    assert not wd.ledger_extract(T1).exists()
