"""`make airflow`: the Airflow UI (`airflow standalone`) on this project, with an embedded SFTP server per channel
serving its sample nights and the sample core journal, so that a newcomer can see every channel's DAG and trigger or
rerun it on the sample files (business dates 2026-11-21 and 2026-11-22)."""
from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from duizhang.demo import NIGHTS, PROJECT, airflow_env, night_channels, serve_nights


def main() -> int:
    root = PROJECT / "var" / "airflow-ui"
    with serve_nights(root) as connections:
        env = airflow_env(root / "airflow", connections | {
            "DUIZHANG_WORKDIR": str(root / "work"),
            "DUIZHANG_LEDGER": str(NIGHTS / "ledger"),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # The sample nights are in the past: no scheduled run of "yesterday"; trigger with a business_date.
            "DUIZHANG_GO_LIVE": "2100-01-01",
            # One JWT secret for every component (unset, each would draw its own and reject the others' tokens).
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        })
        print(f"Airflow UI on http://127.0.0.1:8080 with the DAGs {', '.join(night_channels())}: trigger one with "
              "business_date 2026-11-21 (then 2026-11-22); Ctrl-C stops")
        return subprocess.call([str(Path(sys.executable).with_name("airflow")), "standalone"], env=env)


if __name__ == "__main__":
    sys.exit(main())
