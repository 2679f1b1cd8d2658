"""What a killed process leaves in the workdir is cleaned up or never used."""
from __future__ import annotations

import os
import subprocess
import sys

from duizhang.workdir import Workdir


def test_a_warehouse_rebuild_left_by_a_dead_process_is_removed_and_a_live_ones_kept(tmp_path):
    wd = Workdir(tmp_path / "work")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = wd.root / f".warehouse.duckdb.{int(dead.stdout)}.tmp"
    orphan_wal = wd.root / f".warehouse.duckdb.{int(dead.stdout)}.tmp.wal"
    alive = wd.root / f".warehouse.duckdb.{os.getppid()}.tmp"
    for path in (orphan, orphan_wal, alive):
        path.write_bytes(b"half a database")
    wd.refresh_views()
    assert not orphan.exists() and not orphan_wal.exists()
    assert alive.exists(), "a rebuild in progress in a live process must not be touched"
    assert (wd.root / "warehouse.duckdb").exists()


def test_two_processes_generating_the_key_at_once_get_the_same_key(tmp_path, monkeypatch):
    monkeypatch.delenv("DUIZHANG_TEST_KEY", raising=False)
    code = ("import sys; from duizhang.workdir import Workdir; "
            f"print(Workdir({str(tmp_path / 'work')!r}).secret('k', 'DUIZHANG_TEST_KEY'))")
    runs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    keys = {r.communicate()[0].strip() for r in runs}
    assert len(keys) == 1 and len(keys.pop()) == 64
    assert not [p.name for p in (tmp_path / "work" / "secrets").iterdir() if p.name != "k"]


def test_a_workdir_from_before_the_flag_md5_column_is_upgraded_in_place(tmp_path):
    import sqlite3
    root = tmp_path / "old"
    root.mkdir()
    old = sqlite3.connect(root / "control.db")
    old.execute("CREATE TABLE files (channel TEXT NOT NULL, business_date TEXT NOT NULL, name TEXT NOT NULL, "
                "version INTEGER NOT NULL, md5 TEXT NOT NULL, size INTEGER NOT NULL, flag_records INTEGER NOT NULL, "
                "local_path TEXT NOT NULL, received_at TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'received', "
                "detail TEXT, PRIMARY KEY (channel, business_date, name, md5))")
    old.commit()
    old.close()
    with Workdir(root).control() as db:
        db.execute("INSERT INTO files (channel, business_date, name, version, md5, remote_md5, size, flag_records, "
                   "local_path, received_at) VALUES ('c', '2026-11-21', 'F', 1, 'a', 'b', 1, 1, '/x', 'now')")
        assert db.execute("SELECT remote_md5 FROM files").fetchone()[0] == "b"
    Workdir(root)   # opening it again changes nothing
