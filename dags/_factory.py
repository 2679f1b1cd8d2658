"""The one DAG factory: a channel's declaration (duizhang/channels.py) and its timetable (timetable.toml) in, the
channel's nightly DAG out.

The chain is data: `CHAIN` lists the steps of `duizhang.pipeline` in order, each with what it is called with and
whether it retries. A step added to the pipeline is one line here. Before the chain, a sensor waits for the
counterparty's files; `parse_files` is mapped, one task per parse group of the fetched files (at most 250 files and
512 MB a group: `pipeline.parse_groups`).
"""
from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pendulum
from airflow.sdk import Asset, DeadlineAlert, DeadlineReference, Param, SyncCallback, chain, dag, task

from _alerts import deadline_missed, task_failed
from _tasks import CounterpartyFilesSensor, business_date, ledger, pipeline, run_step, source, workdir

TIMETABLE = Path(__file__).with_name("timetable.toml")
# The go-live date: the scheduler starts runs on its own from this date on; before it a channel runs only by hand
# or by backfill (rehearsals, `make airflow`, the integration tests set a date far ahead).
GO_LIVE = pendulum.parse(os.environ.get("DUIZHANG_GO_LIVE", "2026-11-01"), tz="Asia/Shanghai")
RETRIES = {
    # the network may come back: a few tries, spaced out
    "network": {"retries": 3, "retry_delay": dt.timedelta(minutes=2), "retry_exponential_backoff": True},
    # another run of the same channel and date holds the lock (pipeline.RunLocked after 10 min): try again later
    "lock": {"retries": 2, "retry_delay": dt.timedelta(minutes=1), "retry_exponential_backoff": True},
    None: {"retries": 0},
}
LEDGER_ASSET = Asset(name="core_journal", uri="duizhang://ledger/core_journal", group="duizhang")


def results_asset(channel: str) -> Asset:
    return Asset(name=f"recon_result_{channel}", uri=f"duizhang://warehouse/recon_result/{channel}", group="duizhang")


@dataclass(frozen=True)
class Step:
    name: str
    """The task's id, and the function of `module` it calls."""
    args: tuple[str, ...]
    """What it is called with, in order (see `_argument`)."""
    retry: str | None
    """`network`, `lock` or None: a key of RETRIES (terminal errors never retry)."""
    per_group: bool = False
    """Mapped: one task per parse group (a list of file names) that `fetch` returned."""
    module: str = "duizhang.pipeline"


CHAIN = (
    Step("fetch", ("channel", "date", "source", "wd"), "network"),
    Step("parse_files", ("channel", "date", "wd", "names"), "lock", per_group=True),
    Step("write_manifest", ("channel", "date", "wd"), "lock"),
    Step("load_ledger", ("date", "ledger", "wd"), "network"),
    Step("match", ("channel", "date", "wd"), "lock"),
    # data quality of the files, the ledger and the results, before anything leaves the bank
    Step("validate", ("channel", "date", "wd"), None, module="duizhang.quality"),
    Step("answer", ("channel", "date", "wd"), "lock"),
    Step("clear", ("channel", "date", "wd"), "lock"),
    Step("deliver", ("channel", "date", "source", "wd"), "network"),
    Step("report", ("channel", "date", "wd"), None),
)


def _argument(arg: str, channel: str, context, names: list[str] | None):
    return {"channel": lambda: channel, "date": lambda: business_date(context), "source": lambda: source(channel),
            "ledger": ledger, "wd": workdir, "names": lambda: names}[arg]()


def timetable(channel: str) -> dict:
    table = tomllib.loads(TIMETABLE.read_text())
    return table["default"] | table.get(channel, {})


def build(channel: str):
    when = timetable(channel)
    # The deadline counts from the scheduled time (the logical date): a run by hand has none. (Airflow 3.3.2 cannot
    # clear a run whose deadline counts from DAGRUN_QUEUED_AT: the recalculation reads the stored interval as seconds
    # and crashes.) `airflow dags test` (the demo) cannot finish a DAG that has a DeadlineAlert: DagRun.update_state
    # looks the alerts up by id and dag.test hands it the objects; the demo turns the alert off.
    deadline = None if os.environ.get("DUIZHANG_DEADLINE_ALERTS", "on") == "off" else DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE, interval=dt.timedelta(minutes=when["deadline"]),
        callback=SyncCallback(deadline_missed, kwargs={"channel": channel, "deadline_minutes": when["deadline"]}))

    @dag(dag_id=channel, schedule=when["schedule"], start_date=GO_LIVE, catchup=False, max_active_runs=1,
         tags=["duizhang", channel], doc_md=_doc(channel, when),
         default_args={"on_failure_callback": task_failed},
         deadline=deadline,
         params={"business_date": Param(None, type=["null", "string"], format="date",
                                        description="T, YYYY-MM-DD; empty: the day before the run")})
    def channel_dag():
        wait = CounterpartyFilesSensor(task_id="wait_for_files", channel=channel, counterparty=when["counterparty"],
                                       files_due=when["files_due"], poke_interval=60,
                                       timeout=dt.timedelta(minutes=when["wait_minutes"]), **RETRIES["network"])
        tasks, fetched = [wait], None
        for step in CHAIN:
            task_fn = _step_task(channel, step)
            tasks.append(task_fn.expand(names=fetched) if step.per_group else task_fn())
            if step.name == "fetch":
                fetched = tasks[-1]
        chain(*tasks)

    return channel_dag()


def _step_task(channel: str, step: Step):
    outlets = {"load_ledger": [LEDGER_ASSET], "report": [results_asset(channel)]}.get(step.name, [])

    @task(task_id=step.name, outlets=outlets, **RETRIES[step.retry])
    def run(names: list[str] | None = None, **context):
        date = business_date(context)
        function = getattr(importlib.import_module(step.module), step.name)
        result = run_step(function, *(_argument(a, channel, context, names) for a in step.args))
        return _publish(step.name, channel, date, result, context)

    return run


def _publish(step: str, channel: str, date: dt.date, result, context):
    """What a step leaves for the next tasks (XCom), the asset events and the operator's log line."""
    if step == "fetch":
        # the files that count (latest version, latest resend), in groups: one parse task each
        groups = pipeline().parse_groups(channel, date, workdir())
        print(f"{channel} {date}: {sum(map(len, groups))} file(s) to parse in {len(groups)} task(s): "
              f"{'; '.join(', '.join(g) for g in groups)}")
        return groups
    if step == "parse_files":   # per file the same lines are in the log; the XCom stays small
        return {"files": len(result), "records": sum(f["records"] for f in result),
                "quarantined": sum(f["quarantined"] for f in result)}
    if step == "load_ledger":
        context["outlet_events"][LEDGER_ASSET].extra = {"business_date": date.isoformat(), "path": str(result)}
        return str(result)
    if step == "report":
        summary = {"business_date": date.isoformat(),
                   "files": [{k: f[k] for k in ("name", "version", "records", "quarantined")} for f in result["files"]],
                   "outcomes": result["outcomes"], "conservation": result["match"]["conservation"],
                   "clearing": {k: v for k, v in result["clearing"].items() if k.endswith(("_fen", "vouchers"))}}
        summary = json.loads(json.dumps(summary, ensure_ascii=False, default=str))
        context["outlet_events"][results_asset(channel)].extra = summary
        print(f"{channel} {date}: {json.dumps(summary, ensure_ascii=False)}")
        return summary
    return json.loads(json.dumps(result, ensure_ascii=False, default=str))


def _doc(channel: str, when: dict) -> str:
    return (f"### {channel}: the nightly reconciliation with {when['counterparty']}\n\n"
            f"Runs `{when['schedule']}` (Beijing time) for business date T, the day before the run; the files of T "
            f"are due T+1 {when['files_due']}. Trigger by hand with the `business_date` param.\n\n"
            f"Tasks: wait_for_files, then {', '.join(s.name for s in CHAIN)} (`duizhang.pipeline`). A task that "
            "fails on bad input fails at once and says what to correct; clear it after the correction: every task "
            "is idempotent and a rerun gives the same bytes, the same rows and no second delivery.")
