"""`make airflow`: the Airflow UI (`airflow standalone`) on this project, with the demo's SFTP server and ledger,
so that a newcomer can see every channel's DAG and trigger or rerun it on the sample files."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from connectors.sftp_server import EmbeddedSftpServer
from duizhang.demo import NIGHTS, PROJECT, airflow_env


def main() -> int:
    root = PROJECT / "var" / "airflow-ui"
    sftp_root = root / "sftp" / "unionpay_acq"
    if not sftp_root.exists():
        shutil.copytree(NIGHTS / "unionpay_acq", sftp_root)
    with EmbeddedSftpServer(sftp_root) as server:
        env = airflow_env(root / "airflow", {
            "AIRFLOW_CONN_DUIZHANG_UNIONPAY_ACQ": json.dumps(server.airflow_connection()),
            "DUIZHANG_WORKDIR": str(root / "work"),
            "DUIZHANG_LEDGER": str(NIGHTS / "ledger"),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        })
        print("Airflow UI on http://127.0.0.1:8080 (trigger `unionpay_acq` with business_date 2026-11-21); Ctrl-C stops")
        return subprocess.call([str(Path(sys.executable).with_name("airflow")), "standalone"], env=env)


if __name__ == "__main__":
    sys.exit(main())
