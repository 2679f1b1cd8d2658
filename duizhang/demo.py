"""`duizhang demo`: a real night on embedded defaults.

A real SFTP server (asyncssh, key authentication, its host key pinned by the client) serves the UnionPay sample
account; the real Airflow DAG `unionpay_acq` runs (`airflow dags test`) against the sample core-journal extract;
the summary and the places of the outputs are printed at the end.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
NIGHTS = PROJECT / "sample_files" / "nights"


def airflow_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every Airflow command of the project runs with (project-local, no examples)."""
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(PROJECT / "airflow.cfg"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), str(PROJECT / "dags"), env.get("PYTHONPATH")])),
    })
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    env.update(extra or {})
    return env


def airflow(args: list[str], env: dict[str, str], quiet: bool = False) -> None:
    exe = Path(sys.executable).with_name("airflow")
    out = subprocess.DEVNULL if quiet else None
    subprocess.run([str(exe), *args], env=env, check=True, stdout=out)


def run_demo(workdir: Path, date: dt.date) -> int:
    from connectors.sftp_server import EmbeddedSftpServer
    from duizhang import pipeline
    from duizhang.cli import format_summary
    from duizhang.workdir import Workdir

    workdir = workdir.resolve()
    sftp_root = workdir / "sftp" / "unionpay_acq"
    if not sftp_root.exists():
        shutil.copytree(NIGHTS / "unionpay_acq", sftp_root)
    wd = Workdir(workdir / "work")
    with EmbeddedSftpServer(sftp_root) as server:
        print(f"SFTP server on 127.0.0.1:{server.port}, host key pinned: {server.host_key_line.split()[0]}")
        env = airflow_env(workdir / "airflow", {
            "AIRFLOW_CONN_DUIZHANG_UNIONPAY_ACQ": json.dumps(server.airflow_connection()),
            "DUIZHANG_WORKDIR": str(wd.root),
            "DUIZHANG_LEDGER": str(NIGHTS / "ledger"),
            "DUIZHANG_DEADLINE_ALERTS": "off",   # `dags test` cannot finish a DAG with a DeadlineAlert (dags/_factory.py)
        })
        print("airflow db migrate ...")
        airflow(["db", "migrate"], env, quiet=True)
        print(f"airflow dags test unionpay_acq (business date {date}) ...")
        airflow(["dags", "test", "unionpay_acq", "-c", json.dumps({"business_date": date.isoformat()})], env)
    print()
    print(format_summary(pipeline.report("unionpay_acq", date, wd)))
    print(f"\nQuery it: .venv/bin/duizhang sql \"SELECT * FROM breaks\" --workdir {wd.root}")
    return 0
