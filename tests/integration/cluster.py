"""A real Airflow on this machine for the integration tests: its own PostgreSQL metadata database, the scheduler,
DAG processor, API server and triggerer (and Celery workers) as child processes, the REST API as an operator uses it.

Every process runs in its own process group and is killed with its children when the cluster stops, even when a
test fails; the database is dropped. Ports are picked free at start.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg2

from duizhang.demo import airflow_env

PG_ADMIN = os.environ.get("DUIZHANG_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
FINISHED = {"success", "failed"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresDatabase:
    """A fresh database `duizhang_it_<random>` on the machine's PostgreSQL, dropped on `drop()`."""

    def __init__(self) -> None:
        self.name = f"duizhang_it_{secrets.token_hex(4)}"
        self._admin(f"CREATE DATABASE {self.name}")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.name}"

    def drop(self) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")

    @staticmethod
    def _admin(sql: str) -> None:
        con = psycopg2.connect(PG_ADMIN)
        try:
            con.autocommit = True
            con.cursor().execute(sql)
        finally:
            con.close()


class AirflowCluster:
    """Scheduler + DAG processor + API server + triggerer (+ `celery_workers` Celery workers) on `db`."""

    def __init__(self, home: Path, db: PostgresDatabase, extra_env: dict[str, str], *, celery_workers: int = 0):
        self.home = home
        self.port = free_port()
        self.password = secrets.token_urlsafe(12)
        self.celery_workers = celery_workers
        self.queue = f"duizhang_{secrets.token_hex(4)}"   # a Redis queue of its own: parallel sessions never mix
        base_url = f"http://127.0.0.1:{self.port}"
        env = {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db.url,
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "operator:op",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__PARALLELISM": "4",
            # the log servers of the workers and the triggerer: free ports too (parallel sessions, the API port)
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "DUIZHANG_GO_LIVE": "2100-01-01",   # no scheduled run: runs only by trigger and backfill
        }
        if celery_workers:
            env |= {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": os.environ.get("DUIZHANG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db.url,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            }
        self.env = airflow_env(home, env | extra_env)
        self.processes: dict[str, subprocess.Popen] = {}
        self._token: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> AirflowCluster:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({"operator": self.password}))
        migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=self.env, capture_output=True, text=True, timeout=600)
        if migrate.returncode:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-5000:]}")
        commands = {"api-server": ["api-server", "--port", str(self.port), "--host", "127.0.0.1"],
                    "scheduler": ["scheduler"], "dag-processor": ["dag-processor"], "triggerer": ["triggerer"]}
        for i in range(self.celery_workers):
            # the logs are files under one AIRFLOW_HOME, read by the API server: no log server per worker
            commands[f"celery-worker-{i + 1}"] = ["celery", "worker", "--queues", self.queue, "--concurrency", "2",
                                                  "--celery-hostname", f"worker{i + 1}-{self.queue}@%h",
                                                  "--skip-serve-logs"]
        for name, args in commands.items():
            log = open(self.home / f"{name}.log", "wb")
            self.processes[name] = subprocess.Popen([AIRFLOW, *args], env=self.env, stdout=log,
                                                    stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_for_api()
        return self

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:   # the group too: gunicorn/uvicorn and task runners are children
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(f"--- {name} ---\n{(self.home / f'{name}.log').read_text(errors='replace')[-tail:]}"
                         for name in self.processes)

    def _wait_for_api(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited with {proc.returncode}\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"the API server did not answer in {timeout} s\n{self.logs()}")

    # --- the REST API, as an operator ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, **kwargs) -> dict:
        if self._token is None:
            r = httpx.post(f"{self.url}/auth/token", json={"username": "operator", "password": self.password},
                           timeout=30)
            r.raise_for_status()
            self._token = r.json()["access_token"]
        r = httpx.request(method, f"{self.url}/api/v2{path}", headers={"Authorization": f"Bearer {self._token}"},
                          timeout=60, **kwargs)
        if r.status_code >= 400:
            raise AssertionError(f"{method} {path}: {r.status_code} {r.text}")
        return r.json() if r.content else {}

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Until the DAG processor has parsed the DAG; then unpause it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api("GET", f"/dags/{dag_id}")
                self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
                return
            except AssertionError:
                time.sleep(2)
        raise AssertionError(f"DAG {dag_id} was not parsed in {timeout} s\n{self.logs()}")

    def trigger(self, dag_id: str, conf: dict) -> str:
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in FINISHED:
                return state
            time.sleep(2)
        raise AssertionError(f"{dag_id} {run_id} still {state} after {timeout} s: {self.task_states(dag_id, run_id)}"
                             f"\n{self.logs()}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"]
                for ti in self.task_instances(dag_id, run_id)}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        got = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                       params={"map_index": map_index, "full_content": True})
        return "\n".join(str(line.get("event", line)) if isinstance(line, dict) else str(line)
                         for line in got.get("content", []))

    def clear_failed(self, dag_id: str, run_id: str, task_ids: list[str]) -> list[dict]:
        """What the UI's "Clear" on a failed task does: clear it and its downstream tasks in this run."""
        got = self.api("POST", f"/dags/{dag_id}/clearTaskInstances", json={
            "dry_run": False, "dag_run_id": run_id, "task_ids": task_ids, "include_downstream": True,
            "only_failed": False, "reset_dag_runs": True})
        return got["task_instances"]
