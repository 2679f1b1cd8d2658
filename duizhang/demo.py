"""`duizhang demo`: a real night on embedded defaults.

A real SFTP server (asyncssh, key authentication, its host key pinned by the client) serves the UnionPay sample
account; the real Airflow DAG `unionpay_acq` runs (`airflow dags test`) against the sample core-journal extract;
the summary and the places of the outputs are printed at the end.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
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
        # `airflow standalone` starts its components as `airflow ...` from PATH: this virtualenv's, not another
        "PATH": os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")])),
    })
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    env.update(extra or {})
    return env


def night_channels() -> list[str]:
    """The channels that have sample nights (a folder with an SFTP `outbox/`)."""
    return sorted(p.parent.name for p in NIGHTS.glob("*/outbox"))


@contextlib.contextmanager
def serve_nights(root: Path, channels: list[str] | None = None) -> Iterator[dict[str, str]]:
    """One embedded SFTP server per channel over a copy of its sample nights under `root/sftp/<channel>` (copied
    once; a rerun keeps what the runs delivered), each with its own keys; yields the Airflow connections as
    `AIRFLOW_CONN_DUIZHANG_<CHANNEL>` environment variables (host key pinned)."""
    from connectors.sftp_server import EmbeddedSftpServer
    with contextlib.ExitStack() as stack:
        env = {}
        for channel in channels or night_channels():
            sftp_root = root / "sftp" / channel
            if not sftp_root.exists():
                shutil.copytree(NIGHTS / channel, sftp_root)
            server = stack.enter_context(EmbeddedSftpServer(sftp_root))
            env[f"AIRFLOW_CONN_DUIZHANG_{channel.upper()}"] = json.dumps(server.airflow_connection())
        yield env


def airflow(args: list[str], env: dict[str, str], quiet: bool = False) -> None:
    exe = Path(sys.executable).with_name("airflow")
    out = subprocess.DEVNULL if quiet else None
    subprocess.run([str(exe), *args], env=env, check=True, stdout=out)


def run_demo(workdir: Path, date: dt.date) -> int:
    from duizhang import pipeline
    from duizhang.cli import format_summary
    from duizhang.workdir import Workdir

    workdir = workdir.resolve()
    wd = Workdir(workdir / "work")
    with serve_nights(workdir, ["unionpay_acq"]) as connections:
        conn = json.loads(connections["AIRFLOW_CONN_DUIZHANG_UNIONPAY_ACQ"])
        print(f"SFTP server on {conn['host']}:{conn['port']}, host key pinned: {conn['extra']['host_key'].split()[0]}")
        env = airflow_env(workdir / "airflow", connections | {
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
