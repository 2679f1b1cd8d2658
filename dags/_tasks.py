"""The bridge between Airflow and duizhang's packages: settings, connections and error types.

`run_step` is the one place where errors cross into Airflow: a `Terminal` error (bad input, wrong
configuration) fails the task at once with no retry and tells the operator what to do; a `Transient` one
(network, lock, file not ready) propagates unchanged so that the task's retries handle it.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from typing import Any

import pendulum
from airflow.exceptions import AirflowFailException

from formats.errors import Terminal

log = logging.getLogger("duizhang.airflow")
TZ = pendulum.timezone("Asia/Shanghai")


def run_step(step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return step(*args, **kwargs)
    except Terminal as e:
        raise AirflowFailException(f"{e} -- retrying will not help: correct the input or the configuration, "
                                   "then clear this task in the UI to rerun it") from e


def business_date(context: dict) -> dt.date:
    """T: the `business_date` param when given, else the day before the run's date in Beijing time."""
    given = (context.get("params") or {}).get("business_date")
    if given:
        return dt.date.fromisoformat(str(given))
    when = context.get("logical_date") or context["dag_run"].run_after
    return (pendulum.instance(when).in_timezone(TZ) - dt.timedelta(days=1)).date()


def pipeline():
    """The chain's steps, imported when a task runs, so that parsing the DAG files stays fast."""
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
