"""Fixtures of the integration tests: a fresh PostgreSQL metadata database, a real Airflow (scheduler, DAG
processor, API server, triggerer; or Celery workers) started as child processes and always stopped, and the demo's
embedded SFTP server serving the sample nights with its host key pinned in the Airflow connection."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from duizhang.demo import NIGHTS, serve_nights

from .cluster import AirflowCluster, PostgresDatabase

PAN_KEY = "integration-test-pan-hash-key"
"""recon_result holds keyed PAN hashes: the workers and the tests' reference runs use this one key."""


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """Every channel's counterparty SFTP account holding its sample nights (one embedded server each, host key
    pinned in the Airflow connection), and a copy of the core journal extracts that a test may break and repair."""
    root = tmp_path_factory.mktemp("night")
    shutil.copytree(NIGHTS / "ledger", root / "ledger")
    with serve_nights(root) as connections:
        yield {"root": root, "connections": connections, "ledger": root / "ledger", "workdir": root / "work"}


def cluster_for(night: dict, home: Path, *, celery_workers: int = 0):
    db = PostgresDatabase()
    cluster = AirflowCluster(home, db, night["connections"] | {
        "DUIZHANG_WORKDIR": str(night["workdir"]),
        "DUIZHANG_LEDGER": str(night["ledger"]),
        "DUIZHANG_PAN_HASH_KEY": PAN_KEY,
    }, celery_workers=celery_workers)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        db.drop()


@pytest.fixture(scope="module")
def airflow_cluster(night, tmp_path_factory):
    yield from cluster_for(night, tmp_path_factory.mktemp("airflow"))


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path (hidden temporaries excluded)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}
