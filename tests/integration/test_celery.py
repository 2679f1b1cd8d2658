"""Scale-out: the same DAGs on the CeleryExecutor, Redis (this machine's) as the broker, PostgreSQL as the result
backend, two Celery workers. Every channel's night of 2026-11-21 is triggered at once: the tasks of the six channels
run in parallel on both workers while an analyst keeps reading the warehouse, and every channel ends with the outputs
of an undisturbed `pipeline.run` of its own."""
from __future__ import annotations

import datetime as dt
import re
import threading
import time

import duckdb
import pytest

from duizhang import pipeline
from duizhang.demo import NIGHTS, night_channels
from duizhang.workdir import Workdir
from tests.accounts import account

from .conftest import PAN_KEY, cluster_for, tree_digest

pytestmark = pytest.mark.integration

T = dt.date(2026, 11, 21)


@pytest.fixture(scope="module")
def celery_cluster(night, tmp_path_factory):
    yield from cluster_for(night, tmp_path_factory.mktemp("airflow-celery"), celery_workers=2)


def channel_outputs(wd: Workdir, channel: str) -> dict[str, str]:
    got = {f"outbox/{k}": v for k, v in tree_digest(wd.outbox(channel, T)).items()}
    for table in sorted(p.name for p in (wd.root / "warehouse").iterdir()):
        partition = wd.table_path(table, channel, T)
        if partition.exists():
            got[f"warehouse/{table}"] = tree_digest(partition.parent)["part.parquet"]
    return got


def test_every_channel_runs_in_parallel_on_two_celery_workers(celery_cluster, night, tmp_path, monkeypatch):
    cluster, wd = celery_cluster, Workdir(night["workdir"])
    channels = night_channels()
    assert len(channels) == 6
    for channel in channels:
        cluster.wait_for_dag(channel)

    stop, reads, read_errors = threading.Event(), [0], []

    def analyst() -> None:   # reads the warehouse all along, as analysts do while the night runs
        while not stop.is_set():
            db = wd.root / "warehouse.duckdb"
            if db.exists():
                try:
                    con = duckdb.connect(str(db), read_only=True)
                    try:
                        con.execute("SELECT count(*) FROM recon_result").fetchone()
                        reads[0] += 1
                    finally:
                        con.close()
                except duckdb.CatalogException:
                    pass      # the first channel has not published recon_result yet
                except Exception as e:   # anything else is a reader blocked or a torn write
                    read_errors.append(repr(e))
            time.sleep(0.2)

    reader = threading.Thread(target=analyst)
    reader.start()
    try:
        runs = {channel: cluster.trigger(channel, {"business_date": T.isoformat()}) for channel in channels}
        states = {channel: cluster.wait_for_run(channel, run_id, timeout=1200) for channel, run_id in runs.items()}
    finally:
        stop.set()
        reader.join()
    assert states == {channel: "success" for channel in channels}, {
        c: cluster.task_states(c, r) for c, r in runs.items() if states[c] != "success"}
    assert read_errors == [] and reads[0] > 0

    # Both workers took tasks: the Celery executor spread the night.
    for worker in ("celery-worker-1", "celery-worker-2"):
        log = (cluster.home / f"{worker}.log").read_text(errors="replace")
        received = re.findall(r"Task execute_workload\[[0-9a-f-]+\] received", log)
        assert len(received) >= 5, f"{worker} took {len(received)} tasks:\n{log[-3000:]}"

    monkeypatch.setenv(pipeline.PAN_KEY_ENV, PAN_KEY)
    reference = Workdir(tmp_path / "reference")
    for channel in channels:
        pipeline.run(channel, T, str(account(channel, tmp_path)), str(NIGHTS / "ledger"), reference)
        assert channel_outputs(wd, channel) == channel_outputs(reference, channel), channel
