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
bag = DagBag(dag_folder=%r)
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "dags": {d: sorted(t.task_id for t in bag.dags[d].tasks) for d in bag.dags},
                  "retries": {d: {t.task_id: t.retries for t in bag.dags[d].tasks} for d in bag.dags},
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
    assert report["dags"]["unionpay_acq"] == ["clear", "fetch", "load_ledger", "match", "parse", "report"]
    # Only the tasks that touch the network retry; bad input must fail at once.
    assert report["retries"]["unionpay_acq"]["fetch"] == 3
    assert report["retries"]["unionpay_acq"]["match"] == 0
    assert report["seconds"] < 10
