"""A workdir holding the UnionPay sample nights (2026-11-21 and -22), built once per test session and copied
per test, so that tests can change it freely."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from duizhang import pipeline
from duizhang.workdir import Workdir
from tests.accounts import account

NIGHTS = Path(__file__).resolve().parents[2] / "sample_files" / "nights"
T1, T2 = dt.date(2026, 11, 21), dt.date(2026, 11, 22)
CHANNEL = "unionpay_acq"


def run_night(wd: Workdir, date: dt.date, source: Path | None = None) -> dict:
    source = source or account(CHANNEL, wd.root.parent)
    return pipeline.run(CHANNEL, date, str(source), str(NIGHTS / "ledger"), wd)


def build(root: Path, dates=(T1,)) -> Path:
    wd = Workdir(root)
    for date in dates:
        run_night(wd, date)
    return root


def copy(src: Path, dst: Path) -> Workdir:
    """A private copy of a built workdir (paths in the registry point at the copy's landing files)."""
    shutil.copytree(src, dst)
    wd = Workdir(dst)
    with wd.control() as db:
        db.execute("UPDATE files SET local_path = replace(local_path, ?, ?)", (str(src), str(dst)))
    return wd
