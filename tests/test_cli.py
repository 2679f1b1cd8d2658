"""The CLI: `parse` accepts a good file and refuses a bad one with a message; `sql` reads the warehouse."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq

from duizhang.cli import main

NIGHTS = Path(__file__).resolve().parents[1] / "sample_files" / "nights"
ACOMN = NIGHTS / "unionpay_acq" / "outbox" / "20261121" / "IND26112101ACOMN"


def test_parse_writes_parquet_and_quarantine(tmp_path, capsys):
    out = tmp_path / "acomn.parquet"
    assert main(["parse", "unionpay.acomn", str(ACOMN), "-o", str(out)]) == 0
    assert pq.read_metadata(out).num_rows == 17
    assert pq.read_table(str(out) + ".quarantine.parquet").column("_line").to_pylist() == [17]
    assert '"quarantined": 1' in capsys.readouterr().out


def test_parse_refuses_a_file_whose_flag_disagrees(tmp_path, capsys):
    bad = tmp_path / ACOMN.name
    bad.write_bytes(ACOMN.read_bytes())
    (tmp_path / (ACOMN.name + ".ok")).write_bytes(ACOMN.with_name(ACOMN.name + ".ok").read_bytes().replace(b"|18|", b"|19|"))
    assert main(["parse", "unionpay.acomn", str(bad), "-o", str(tmp_path / "x.parquet")]) == 1
    err = capsys.readouterr().err
    assert "IND26112101ACOMN" in err and "flag" in err and "expected 19" in err and "found 18" in err


def test_sql_on_the_warehouse(tmp_path, capsys):
    work = tmp_path / "work"
    assert main(["run", "unionpay_acq", "--date", "2026-11-21", "--source", str(NIGHTS / "unionpay_acq"),
                 "--ledger", str(NIGHTS / "ledger"), "--workdir", str(work)]) == 0
    capsys.readouterr()
    assert main(["sql", "SELECT outcome, records FROM recon_summary WHERE side = 'ledger' AND outcome = 'PENDING'",
                 "--workdir", str(work), "--csv"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == ["outcome,records", "PENDING,1"]
    assert main(["sql", "SELECT count(*) AS n FROM open_items WHERE age_days = 0", "--workdir", str(work),
                 "--csv"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "1"
