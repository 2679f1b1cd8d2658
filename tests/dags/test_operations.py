"""The operator-facing parts of the DAGs without a scheduler: the file sensor's wait and its timeout message, the
alert hook (default record and a plugged one), terminal errors failing at once."""
from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT / "dags"))

from duizhang.demo import NIGHTS  # noqa: E402

PLUGGED: list = []


def plugged_hook(alert) -> None:
    """An alert hook as a bank would plug one (DUIZHANG_ALERT_HOOK=tests.dags.test_operations:plugged_hook)."""
    PLUGGED.append(alert)


class FirstPoke:
    """The bits of a task instance a reschedule-mode sensor reads: this is its first poke."""
    dag_id, run_id, task_id = "unionpay_acq", "manual__test", "wait_for_files"

    def get_first_reschedule_date(self, context):
        return None


@pytest.fixture
def counterparty(tmp_path, monkeypatch):
    """The UnionPay account as a local directory (DUIZHANG_SOURCE_UNIONPAY_ACQ), and a workdir."""
    root = tmp_path / "cups"
    shutil.copytree(NIGHTS / "unionpay_acq", root)
    monkeypatch.setenv("DUIZHANG_SOURCE_UNIONPAY_ACQ", str(root))
    monkeypatch.setenv("DUIZHANG_WORKDIR", str(tmp_path / "work"))
    monkeypatch.delenv("DUIZHANG_ALERT_HOOK", raising=False)
    return root


def sensor(timeout: float):
    from _tasks import CounterpartyFilesSensor
    return CounterpartyFilesSensor(task_id="wait_for_files", channel="unionpay_acq",
                                   counterparty="China UnionPay (CUPS)", files_due="04:00", poke_interval=60,
                                   timeout=timeout)


def test_the_sensor_waits_for_the_flag_and_not_only_the_file(counterparty):
    from _tasks import missing_files
    day = dt.date(2026, 11, 21)
    assert missing_files("unionpay_acq", day) == []
    (counterparty / "outbox" / "20261121" / "IND26112101ACOMN.ok").unlink()   # data file there, flag not yet
    assert missing_files("unionpay_acq", day) == [r"IND261121NNACOMN"]
    assert missing_files("unionpay_acq", dt.date(2026, 11, 25)) == [r"IND261125NNACOMN"]   # no folder at all
    assert sensor(3600).poke({"params": {"business_date": "2026-11-21"}}) is False


def test_the_sensor_times_out_naming_the_missing_file_and_the_counterparty(counterparty):
    from airflow.sdk.exceptions import AirflowSensorTimeout
    with pytest.raises(AirflowSensorTimeout) as e:
        sensor(0).execute({"params": {"business_date": "2026-11-25"}, "ti": FirstPoke()})
    message = str(e.value)
    assert "China UnionPay (CUPS) has not delivered IND261125NNACOMN" in message
    assert "/outbox/20261125" in message and "due T+1 04:00" in message


def test_a_failed_task_is_recorded_for_the_operator(counterparty):
    from _alerts import task_failed
    from duizhang.workdir import Workdir
    task_failed({"ti": FirstPoke(), "params": {"business_date": "2026-11-21"},
                 "exception": ValueError("CORE_JOURNAL_20261121.csv: size 10 != 20 in its flag")})
    with sqlite3.connect(Workdir(counterparty.parent / "work").root / "control.db") as db:
        rows = db.execute("SELECT kind, channel, business_date, run_id, task_id, message FROM alerts").fetchall()
    assert rows == [("task_failed", "unionpay_acq", "2026-11-21", "manual__test", "wait_for_files",
                     "CORE_JOURNAL_20261121.csv: size 10 != 20 in its flag")]


def test_the_alert_hook_is_pluggable_and_deadlines_alert_too(counterparty, monkeypatch):
    from _alerts import deadline_missed
    monkeypatch.setenv("DUIZHANG_ALERT_HOOK", "tests.dags.test_operations:plugged_hook")
    PLUGGED.clear()
    deadline_missed("unionpay_acq", 210, context={"dag_run": {"run_id": "scheduled__x", "conf": {}, "logical_date":
                                                              "2026-11-22T04:30:00+08:00"}})
    (alert,) = PLUGGED
    assert (alert.kind, alert.channel, alert.business_date, alert.run_id) == (
        "deadline_missed", "unionpay_acq", "2026-11-21", "scheduled__x")
    assert "210 minutes after its scheduled start" in alert.message
    assert not (counterparty.parent / "work" / "control.db").exists() or not sqlite3.connect(
        counterparty.parent / "work" / "control.db").execute(
        "SELECT name FROM sqlite_master WHERE name = 'alerts'").fetchall()


def test_terminal_errors_fail_at_once_and_say_what_to_do():
    from _tasks import run_step
    from airflow.sdk.exceptions import AirflowFailException

    from formats.errors import FileRejected

    def bad_input():
        raise FileRejected("IND26112101ACOMN", "line 3, field amount_fen: expected 12 digits, found 'ABC'")

    with pytest.raises(AirflowFailException, match="IND26112101ACOMN.*retrying will not help"):
        run_step(bad_input)
