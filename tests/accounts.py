"""The sample counterparty accounts (sample_files/nights/<channel>), copied before a test runs the chain on them:
the chain delivers its answers into the account's /inbox, which must never be the repository's samples."""
from __future__ import annotations

import shutil
from pathlib import Path

NIGHTS = Path(__file__).resolve().parents[1] / "sample_files" / "nights"


def account(channel: str, under: Path) -> Path:
    """A private copy of `channel`'s sample account under `under` (made once; later calls return it)."""
    path = Path(under) / f"account_{channel}"
    if not path.exists():
        shutil.copytree(NIGHTS / channel, path)
    return path
