"""Every DAG file imports without error, quickly, and every channel has its DAG with the expected shape."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]

CHECK = """
import time, json
t = time.monotonic()
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions.mappedoperator import MappedOperator
bag = DagBag(dag_folder=%r)
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "dags": {d: sorted(t.task_id for t in bag.dags[d].tasks) for d in bag.dags},
                  "retries": {d: {t.task_id: t.retries for t in bag.dags[d].tasks} for d in bag.dags},
                  "schedules": {d: bag.dags[d].timetable.expression for d in bag.dags},
                  "mapped": {d: sorted(t.task_id for t in bag.dags[d].tasks if isinstance(t, MappedOperator)) for d in bag.dags},
                  "sensor_mode": {d: bag.dags[d].get_task("wait_for_files").mode for d in bag.dags},
                  "outlets": {d: {t.task_id: [a.uri for a in t.outlets] for t in bag.dags[d].tasks if t.outlets}
                              for d in bag.dags},
                  "seconds": time.monotonic() - t}))
"""


def test_dagbag_imports_cleanly(tmp_path):
    import json

    from duizhang.channels import CHANNEL_FILES
    from duizhang.demo import airflow_env
    env = airflow_env(tmp_path / "airflow")
    out = subprocess.run([sys.executable, "-c", CHECK % str(PROJECT / "dags")], env=env, capture_output=True,
                         text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert set(report["dags"]) == set(CHANNEL_FILES)
    for channel in CHANNEL_FILES:
        assert report["dags"][channel] == sorted(["wait_for_files", "fetch", "parse_files", "write_manifest",
                                                  "load_ledger", "match", "validate", "answer", "clear", "deliver",
                                                  "report"])
        # Tasks touching the network or a lock retry (transient errors); terminal errors fail at once whatever the
        # retries (run_step raises AirflowFailException); the report touches neither and never retries.
        assert report["retries"][channel]["fetch"] == 3
        assert report["retries"][channel]["match"] == 2
        assert report["retries"][channel]["report"] == 0
    assert report["seconds"] < 10


def test_schedules_come_from_the_timetable_and_files_are_mapped(tmp_path):
    import json

    from duizhang.demo import airflow_env
    env = airflow_env(tmp_path / "airflow")
    out = subprocess.run([sys.executable, "-c", CHECK % str(PROJECT / "dags")], env=env, capture_output=True,
                         text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    # The specs' timetables (dags/timetable.toml): CUPS files by 04:00, the CNAPS2 detail by 02:00, TIPS 3111 by 07:00.
    assert report["schedules"]["unionpay_acq"] == "30 4 * * *"
    assert report["schedules"]["cnaps2"] == "30 2 * * *"
    assert report["schedules"]["tips"] == "30 7 * * *"
    for channel, mapped in report["mapped"].items():
        assert mapped == ["parse_files"], channel
        assert report["sensor_mode"][channel] == "reschedule"
        assert report["outlets"][channel] == {"load_ledger": ["duizhang://ledger/core_journal"],
                                              "report": [f"duizhang://warehouse/recon_result/{channel}"]}
