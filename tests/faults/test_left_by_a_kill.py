"""States a kill can leave that the seeded kills rarely hit (the window is a few microseconds), set up directly.

Each test builds exactly what a SIGKILL between two system calls leaves on disk and checks that the next run
recovers from it.
"""
from __future__ import annotations

import pytest

from duizhang.pipeline import PAN_KEY_ENV
from duizhang.workdir import Workdir

pytestmark = pytest.mark.integration


def test_a_pan_hash_key_file_left_empty_by_a_kill_is_not_used_as_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv(PAN_KEY_ENV, raising=False)
    wd = Workdir(tmp_path / "work")
    (wd.root / "secrets").mkdir()
    (wd.root / "secrets" / "pan_hash_key").touch(mode=0o600)   # created, killed before the write
    try:
        key = wd.secret("pan_hash_key", PAN_KEY_ENV)
    except Exception:   # refusing with a clear error is as good as a fresh key
        return
    assert len(key) >= 32, f"an empty file became the PAN hash key ({key!r}): card hashes are unkeyed sha256"
