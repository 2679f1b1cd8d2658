"""Alerts for the operators: a task that failed, a run that missed its deadline.

Every alert goes to one hook. The default hook logs it at ERROR (the task log, or the executor's log for a
deadline) and records it in the `alerts` table of the workdir's control.db, where the morning shift reads them:

    sqlite3 <workdir>/control.db "SELECT * FROM alerts ORDER BY raised_at"

A bank plugs its own channel (mail, pager, the monitoring system) with `DUIZHANG_ALERT_HOOK=package.module:function`,
a callable taking one `Alert`; it replaces the default hook.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import logging
import os

log = logging.getLogger("duizhang.alerts")

ALERTS_SCHEMA = """CREATE TABLE IF NOT EXISTS alerts (
    raised_at TEXT NOT NULL, kind TEXT NOT NULL, channel TEXT NOT NULL, business_date TEXT, run_id TEXT,
    task_id TEXT, message TEXT NOT NULL)"""


@dataclasses.dataclass(frozen=True)
class Alert:
    kind: str
    """`task_failed` or `deadline_missed`."""
    channel: str
    business_date: str | None
    run_id: str | None
    task_id: str | None
    message: str


def record_in_control_db(alert: Alert) -> None:
    from _tasks import workdir
    log.error("ALERT %s %s %s run %s task %s: %s", alert.kind, alert.channel, alert.business_date, alert.run_id,
              alert.task_id, alert.message)
    with workdir().control() as db:
        db.execute(ALERTS_SCHEMA)
        db.execute("INSERT INTO alerts VALUES (?,?,?,?,?,?,?)",
                   (dt.datetime.now().isoformat(timespec="seconds"), *dataclasses.astuple(alert)))


def hook():
    """The configured alert hook: `DUIZHANG_ALERT_HOOK=module:function`, else `record_in_control_db`."""
    target = os.environ.get("DUIZHANG_ALERT_HOOK")
    if not target:
        return record_in_control_db
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def task_failed(context) -> None:
    """`on_failure_callback` of every task: the error as the operator must read it."""
    from _tasks import business_date
    ti = context["ti"]
    hook()(Alert("task_failed", ti.dag_id, business_date(context).isoformat(), ti.run_id, ti.task_id,
                 str(context.get("exception") or "failed")))


def deadline_missed(channel: str, deadline_minutes: int, context: dict | None = None, **_) -> None:
    """The DeadlineAlert callback: the run of `channel` is still going `deadline_minutes` after its scheduled start."""
    import pendulum

    from _tasks import business_date
    run = (context or {}).get("dag_run") or {}
    get = run.get if isinstance(run, dict) else lambda key: getattr(run, key, None)
    logical_date = get("logical_date")
    when = business_date({"params": get("conf") or {},
                          "logical_date": pendulum.parse(logical_date) if isinstance(logical_date, str) else logical_date,
                          "dag_run": run})
    hook()(Alert("deadline_missed", channel, when.isoformat(), get("run_id"), None,
                 f"the run has not finished {deadline_minutes} minutes after its scheduled start: the answers due to the "
                 "counterparty may be late; look at the running or failed tasks of this run"))
