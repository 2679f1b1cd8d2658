"""The CLI: `parse` accepts a good file and refuses a bad one with a message; `sql` reads the warehouse and lists
its tables; the operator's commands (breaks, quarantine, report, hash-account) work end to end."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

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
    assert main(["sql", "SELECT count(*) AS n FROM open_items WHERE kind = 'pending' AND age_days = 0", "--workdir",
                 str(work), "--csv"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "1"


def test_sql_help_lists_every_table_and_view_with_columns(capsys):
    from duizhang.views import ANALYST_MACROS, ANALYST_VIEWS, TABLES
    with pytest.raises(SystemExit):
        main(["sql", "--help"])
    out = capsys.readouterr().out
    for name in [*TABLES, *ANALYST_VIEWS, *ANALYST_MACROS]:
        assert f"  {name}" in out, name
    assert "account_hash VARCHAR" in out and "age_days BIGINT" in out and "status_by VARCHAR" in out


def test_operator_commands(tmp_path, capsys):
    work = str(tmp_path / "work")
    assert main(["run", "unionpay_acq", "--date", "2026-11-21", "--source", str(NIGHTS / "unionpay_acq"),
                 "--ledger", str(NIGHTS / "ledger"), "--workdir", work]) == 0
    capsys.readouterr()
    assert main(["breaks", "list", "--status", "new", "--workdir", work]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "11 break(s)"
    assert main(["breaks", "set", "IND26112101ACOMN:12", "written_off", "--channel", "unionpay_acq", "--date",
                 "2026-11-21", "--by", "zhou.mgr", "--note", "below threshold, approved", "--workdir", work]) == 0
    assert main(["breaks", "set", "IND26112101ACOMN:1", "resolved", "--channel", "unionpay_acq", "--date",
                 "2026-11-21", "--by", "zhou.mgr", "--note", "x", "--workdir", work]) == 1
    assert "MATCHED, not a break" in capsys.readouterr().err
    assert main(["breaks", "history", "IND26112101ACOMN:12", "--workdir", work]) == 0
    assert "written_off   by zhou.mgr: below threshold, approved" in capsys.readouterr().out
    assert main(["breaks", "list", "--status", "new", "--workdir", work]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "10 break(s)"
    assert main(["quarantine", "list", "--channel", "unionpay_acq", "--workdir", work]) == 0
    out = capsys.readouterr().out
    assert "IND26112101ACOMN v1 line 17 detail.amount_fen" in out and "raw: " in out and "621700*********4567" in out
    assert main(["report", "--date", "2026-11-21", "--workdir", work]) == 0
    out = capsys.readouterr().out
    assert "unionpay_acq: 21 matched, 11 breaks" in out and Path(out.split("page: ")[1].strip()).exists()
    assert main(["hash-account", "6217000010001234567", "--workdir", work]) == 0
    digest = capsys.readouterr().out.strip()
    assert main(["sql", f"SELECT count(*) FROM history_of_account('{digest}')", "--workdir", work, "--csv"]) == 0
    assert int(capsys.readouterr().out.strip().splitlines()[-1]) > 0
