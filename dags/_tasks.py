"""The bridge between Airflow and duizhang's packages: settings, connections, error types, the file sensor.

`run_step` is the one place where errors cross into Airflow: a `Terminal` error (bad input, wrong
configuration) fails the task at once with no retry and tells the operator what to do; a `Transient` one
(network, lock, file not ready) propagates unchanged so that the task's retries handle it.

Imports of the packages happen inside the functions, when a task runs, so that parsing the DAG files stays fast.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Callable
from typing import Any

import pendulum
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout
from airflow.sdk import BaseSensorOperator

from duizhang.channels import CHANNEL_FILES

log = logging.getLogger("duizhang.airflow")
TZ = pendulum.timezone("Asia/Shanghai")


def run_step(step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from formats.errors import Terminal
    try:
        return step(*args, **kwargs)
    except Terminal as e:
        raise AirflowFailException(f"{e} -- retrying will not help: correct the input or the configuration, "
                                   "then clear this task in the UI to rerun it") from e


def business_date(context) -> dt.date:
    """T: the `business_date` param when given, else the day before the run's date in Beijing time."""
    given = (context.get("params") or {}).get("business_date")
    if given:
        return dt.date.fromisoformat(str(given))
    when = context.get("logical_date") or context["dag_run"].run_after
    return (pendulum.instance(when).in_timezone(TZ) - dt.timedelta(days=1)).date()


def pipeline():
    from duizhang import pipeline as steps
    return steps


def workdir():
    from duizhang.workdir import Workdir
    return Workdir(os.environ.get("DUIZHANG_WORKDIR") or os.path.join(os.environ["AIRFLOW_HOME"], "duizhang"))


def source(channel: str):
    """Where the channel's files are: the Airflow connection `duizhang_<channel>` (SFTP, host key pinned in its
    `host_key` extra), or a local directory from `DUIZHANG_SOURCE_<CHANNEL>` (tests, rehearsals)."""
    local = os.environ.get(f"DUIZHANG_SOURCE_{channel.upper()}")
    if local:
        return local
    from airflow.sdk import BaseHook

    from connectors.sftp import SftpEndpoint
    return SftpEndpoint.from_airflow_connection(BaseHook.get_connection(f"duizhang_{channel}"))


def ledger() -> str:
    """The core journal: a SQLAlchemy URL or an extract directory, from `DUIZHANG_LEDGER`."""
    value = os.environ.get("DUIZHANG_LEDGER")
    if not value:
        raise AirflowFailException("DUIZHANG_LEDGER is not set: give the core journal's database URL or the "
                                   "directory of its CSV extracts")
    return value


def missing_files(channel: str, date: dt.date) -> list[str]:
    """The file kinds of T a reconciliation needs that are not complete (data file and its `.ok` flag) yet."""
    from connectors.errors import FileNotReady
    from connectors.sftp import open_source
    spec = CHANNEL_FILES[channel]
    remote_dir = spec.remote_dir(date)
    with open_source(source(channel)) as src:
        try:
            names = {e.name for e in src.list(remote_dir)}
        except FileNotReady:
            names = set()
    missing = []
    for kind in spec.kinds:
        matcher = kind.matcher(date)
        if kind.reconciled_by and not any(matcher.match(n.removesuffix(".gz")) and f"{n}.ok" in names for n in names):
            missing.append(re.sub(r"\(\?P<seq>[^)]*\)", "NN", matcher.pattern.removesuffix("$")))
    return missing


class CounterpartyFilesSensor(BaseSensorOperator):
    """Waits, in reschedule mode (no worker slot held between pokes), until the counterparty's files of T that
    a reconciliation needs are on its SFTP /outbox with their flags; on timeout fails naming them."""

    def __init__(self, *, channel: str, counterparty: str, files_due: str, **kwargs) -> None:
        super().__init__(mode="reschedule", **kwargs)
        self.channel, self.counterparty, self.files_due = channel, counterparty, files_due
        self._missing: list[str] = []

    def poke(self, context) -> bool:
        date = business_date(context)
        self._missing = missing_files(self.channel, date)
        if self._missing:
            log.info("%s %s: waiting for %s from %s", self.channel, date, ", ".join(self._missing), self.counterparty)
        return not self._missing

    def execute(self, context) -> None:
        try:
            super().execute(context)
        except AirflowSensorTimeout as e:
            date = business_date(context)
            raise AirflowSensorTimeout(
                f"{self.channel} {date}: {self.counterparty} has not delivered {', '.join(self._missing)} (data file "
                f"and .ok flag) to {CHANNEL_FILES[self.channel].remote_dir(date)}, due T+1 {self.files_due}, after "
                f"waiting {self.timeout / 60:.0f} min: ask {self.counterparty} to send it, then clear this task"
            ) from e
