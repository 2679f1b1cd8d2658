"""Safe reruns through the real scheduler on PostgreSQL, driven through the REST API as an operator drives the UI.

A night of unionpay_acq fails in one task because the core journal extract is corrupt; the failure is terminal (no
retry, an alert for the operator); the extract is repaired and the failed task cleared through the API; the run
then succeeds with outputs byte-identical to an undisturbed run, no duplicated row, one registration per file and
one delivery per file. Clearing the whole successful run changes nothing either. Then a backfill of two
consecutive dates runs them in order and the item left open on the 21st is matched on the 22nd.
"""
from __future__ import annotations

import datetime as dt
import time

import duckdb
import pytest

from duizhang import pipeline
from duizhang.demo import NIGHTS
from duizhang.workdir import Workdir
from tests.accounts import account

from .conftest import PAN_KEY, tree_digest

pytestmark = pytest.mark.integration

DAG = "unionpay_acq"
T = dt.date(2026, 11, 21)


def outputs(wd: Workdir, date: dt.date) -> dict[str, str]:
    """Every output of the night for (channel, date), by path relative to the workdir, as sha256."""
    got = {}
    for part in ("outbox", "parsed"):
        base = wd.root / part / DAG / f"{date:%Y%m%d}"
        got |= {f"{part}/{k}": v for k, v in tree_digest(base).items() if k != "clear.json"}
    for table in sorted(p.name for p in (wd.root / "warehouse").iterdir()):
        partition = wd.table_path(table, DAG, date)
        if partition.exists():
            got[f"warehouse/{table}"] = tree_digest(partition.parent)["part.parquet"]
    clear = (wd.parsed(DAG, date) / "clear.json").read_text().replace(str(wd.root), "<workdir>")
    got["parsed/clear.json"] = clear
    return got


def reference_outputs(tmp_path, date: dt.date, monkeypatch) -> dict[str, str]:
    """An undisturbed night without Airflow (`pipeline.run`) in a workdir of its own, day by day up to `date`,
    with the PAN hash key Airflow's workers have (recon_result holds keyed hashes)."""
    monkeypatch.setenv(pipeline.PAN_KEY_ENV, PAN_KEY)
    wd = Workdir(tmp_path / "reference")
    day = T
    while day <= date:
        pipeline.run(DAG, day, str(account(DAG, tmp_path)), str(NIGHTS / "ledger"), wd)
        day += dt.timedelta(days=1)
    return outputs(wd, date)


def control_rows(wd: Workdir, sql: str) -> list[tuple]:
    with wd.control() as db:
        return [tuple(r) for r in db.execute(sql)]


def test_a_failed_task_cleared_through_the_api_reruns_to_identical_outputs(airflow_cluster, night, tmp_path,
                                                                          monkeypatch):
    cluster, wd = airflow_cluster, Workdir(night["workdir"])
    extract = night["ledger"] / f"CORE_JOURNAL_{T:%Y%m%d}.csv"
    good = extract.read_bytes()
    extract.write_bytes(good[: len(good) // 2])          # the fault: a truncated extract (its flag says otherwise)
    cluster.wait_for_dag(DAG)

    run_id = cluster.trigger(DAG, {"business_date": T.isoformat()})
    assert cluster.wait_for_run(DAG, run_id) == "failed"
    states = cluster.task_states(DAG, run_id)
    assert states["load_ledger"] == "failed"
    assert states["match"] == states["report"] == "upstream_failed"
    assert states["fetch"] == states["parse_files[0]"] == "success"
    failed = next(ti for ti in cluster.task_instances(DAG, run_id) if ti["task_id"] == "load_ledger")
    assert failed["try_number"] == 1, "a terminal error must not be retried"
    log = cluster.task_log(DAG, run_id, "load_ledger")
    assert "CORE_JOURNAL_20261121.csv" in log and "retrying will not help" in log
    # Task logs say which file and how many records.
    parse_log = cluster.task_log(DAG, run_id, "parse_files", map_index=0)
    assert "parsed IND26112101ACOMN v1: 18 records, 1 quarantined" in parse_log, parse_log[-2000:]
    # The operator's alert names the task and the fault.
    alerts = control_rows(wd, "SELECT kind, channel, business_date, task_id, message FROM alerts")
    assert [(a[0], a[1], a[2], a[3]) for a in alerts] == [("task_failed", DAG, "2026-11-21", "load_ledger")]
    assert "CORE_JOURNAL_20261121.csv" in alerts[0][4]

    extract.write_bytes(good)                             # the repair
    cleared = cluster.clear_failed(DAG, run_id, ["load_ledger"])
    assert {ti["task_id"] for ti in cleared} >= {"load_ledger", "match", "clear", "deliver", "report"}
    assert "fetch" not in {ti["task_id"] for ti in cleared}
    assert cluster.wait_for_run(DAG, run_id) == "success", cluster.task_states(DAG, run_id)

    expected = reference_outputs(tmp_path, T, monkeypatch)
    assert outputs(wd, T) == expected
    assert_single(wd)

    # Clearing the whole successful run (the UI's "Clear" on the run) gives the same bytes again.
    cluster.api("POST", f"/dags/{DAG}/clearTaskInstances", json={
        "dry_run": False, "dag_run_id": run_id, "only_failed": False, "reset_dag_runs": True})
    assert cluster.wait_for_run(DAG, run_id) == "success", cluster.task_states(DAG, run_id)
    assert outputs(wd, T) == expected
    assert_single(wd)
    # The run's summary is in the UI: the results asset's event carries it.
    events = cluster.api("GET", "/assets/events", params={"source_dag_id": DAG, "source_run_id": run_id})
    summaries = [e["extra"] for e in events["asset_events"] if e["uri"] == f"duizhang://warehouse/recon_result/{DAG}"]
    assert summaries and all(s["business_date"] == "2026-11-21" for s in summaries)
    assert {o["outcome"] for o in summaries[-1]["outcomes"]} >= {"MATCHED", "PENDING", "AMOUNT_MISMATCH"}


def assert_single(wd: Workdir) -> None:
    """One registration per file, one delivery per file, no duplicated row in the warehouse."""
    assert control_rows(wd, "SELECT name, count(*) FROM files GROUP BY name HAVING count(*) > 1") == []
    assert control_rows(wd, "SELECT name, count(*) FROM deliveries GROUP BY name HAVING count(*) > 1") == []
    con = duckdb.connect(str(wd.root / "warehouse.duckdb"), read_only=True)
    try:
        total, distinct = con.execute(
            "SELECT count(*), count(DISTINCT (side, record_ref)) FROM recon_result "
            f"WHERE channel = '{DAG}' AND business_date = DATE '{T}'").fetchone()
    finally:
        con.close()
    assert total == distinct > 0


def test_a_backfill_runs_consecutive_dates_in_order_and_carries_open_items(airflow_cluster, night, tmp_path,
                                                                           monkeypatch):
    cluster, wd = airflow_cluster, Workdir(night["workdir"])
    cluster.wait_for_dag(DAG)
    # Logical dates are the 04:30 runs of T+1 (dags/timetable.toml): the 22nd and the 23rd reconcile T = 21, 22.
    backfill = cluster.api("POST", "/backfills", json={
        "dag_id": DAG, "from_date": "2026-11-22T00:00:00+08:00", "to_date": "2026-11-23T23:00:00+08:00",
        "run_backwards": False, "max_active_runs": 1, "reprocess_behavior": "completed", "dag_run_conf": {}})
    runs = []
    for _ in range(120):
        runs = [r for r in cluster.api("GET", f"/dags/{DAG}/dagRuns", params={"limit": 50})["dag_runs"]
                if r.get("run_type") == "backfill"]
        if len(runs) == 2 and all(r["state"] in ("success", "failed") for r in runs):
            break
        time.sleep(3)
    assert sorted(r["state"] for r in runs) == ["success", "success"], (backfill, runs, cluster.logs())
    first, second = sorted(runs, key=lambda r: r["logical_date"])
    assert first["end_date"] <= second["start_date"], "the 22nd must start after the 21st finished"

    # The ledger item of the 21st left PENDING (after the 23:00 cut-off) is MATCHED on the 22nd with its origin.
    carried = duckdb.connect().execute(
        "SELECT outcome, origin_date FROM read_parquet(?) WHERE origin_date = DATE '2026-11-21'",
        [str(wd.table_path("recon_result", DAG, dt.date(2026, 11, 22)))]).fetchall()
    assert carried and all(o == "MATCHED" for o, _ in carried), carried
    assert outputs(wd, dt.date(2026, 11, 22)) == reference_outputs(tmp_path, dt.date(2026, 11, 22), monkeypatch)
    assert_single(wd)
