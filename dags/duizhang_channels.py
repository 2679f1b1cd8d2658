"""One DAG per channel, built by one factory from the channel declarations (duizhang/channels.py).

Each DAG runs the nightly chain for business date T (the day before the run, or the `business_date` param):
wait for the files, fetch, parse, load the ledger, match, clear, report. Every task is a call into
`duizhang.pipeline`; nothing here decides anything about the business.
"""
from __future__ import annotations

import json

import pendulum
from airflow.sdk import Param, dag, task

from _tasks import business_date, ledger, pipeline, run_step, source, workdir
from duizhang.channels import CHANNEL_FILES

SCHEDULES = {"unionpay_acq": "30 4 * * *"}   # CUPS files for T arrive on T+1 by 04:00 (unionpay.md)
TRANSFER_RETRIES = {"retries": 3, "retry_delay": pendulum.duration(minutes=2), "retry_exponential_backoff": True}


def build(channel: str):
    @dag(dag_id=channel, schedule=SCHEDULES.get(channel), start_date=pendulum.datetime(2026, 11, 1, tz="Asia/Shanghai"),
         catchup=False, max_active_runs=1, tags=["duizhang", channel], doc_md=__doc__,
         params={"business_date": Param(None, type=["null", "string"], format="date",
                                        description="T, YYYY-MM-DD; empty: the day before the run")})
    def channel_dag():
        @task(**TRANSFER_RETRIES)
        def fetch(**context) -> list[str]:
            got = run_step(pipeline().fetch, channel, business_date(context), source(channel), workdir())
            return [f"{f['name']} v{f['version']}" + (" (already received)" if f["duplicate"] else "") for f in got]

        @task
        def parse(_fetched, **context) -> dict:
            manifest = run_step(pipeline().parse, channel, business_date(context), workdir())
            return {f["name"]: {"records": f["records"], "quarantined": f["quarantined"]} for f in manifest["files"]}

        @task(**TRANSFER_RETRIES)
        def load_ledger(**context) -> str:
            return str(run_step(pipeline().load_ledger, business_date(context), ledger(), workdir()))

        @task
        def match(_parsed, _ledger, **context) -> dict:
            return run_step(pipeline().match, channel, business_date(context), workdir())["conservation"]

        @task
        def clear(_matched, **context) -> dict:
            return run_step(pipeline().clear, channel, business_date(context), workdir())

        @task
        def report(_cleared, **context) -> str:
            summary = run_step(pipeline().report, channel, business_date(context), workdir())
            text = json.dumps(summary["outcomes"], ensure_ascii=False, default=str)
            print(f"{channel} {summary['business_date']}: {text}")
            return summary["warehouse"]

        report(clear(match(parse(fetch()), load_ledger())))

    return channel_dag()


for _channel in CHANNEL_FILES:
    globals()[_channel] = build(_channel)
