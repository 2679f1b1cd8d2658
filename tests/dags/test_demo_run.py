"""`duizhang demo`: a real Airflow DAG run (`airflow dags test`) against the embedded SFTP server, end to end."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys

import duckdb

from duizhang.workdir import Workdir


def test_demo_runs_the_dag_and_publishes_results(tmp_path):
    out = subprocess.run([sys.executable, "-m", "duizhang.cli", "demo", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    assert "DagRun Finished: dag_id=unionpay_acq" in out.stdout + out.stderr
    assert "state=success" in out.stdout + out.stderr
    assert "conservation OK (counterparty): 18 records" in out.stdout
    wd = Workdir(tmp_path / "work")
    con = duckdb.connect(str(wd.root / "warehouse.duckdb"), read_only=True)
    try:
        counts = dict(con.execute("SELECT outcome, count(*) FROM breaks GROUP BY ALL").fetchall())
    finally:
        con.close()
    assert counts == {"AMOUNT_MISMATCH": 2, "STATUS_MISMATCH": 2, "COUNTERPARTY_ONLY": 2, "LEDGER_ONLY": 2,
                      "DUPLICATE": 3}
    # The file came over SFTP: it was registered with its MD5 from the flag.
    with wd.control() as db:
        (name, md5), = db.execute("SELECT name, md5 FROM files").fetchall()
    assert name == "IND26112101ACOMN" and len(md5) == 32
    assert (wd.outbox("unionpay_acq", dt.date(2026, 11, 21)) / "ENTRIES_UNIONPAY_ACQ_20261121_01.csv.ok").exists()
    # No card number in clear anywhere an analyst looks.
    assert "6222021234567890123" not in out.stdout
