"""The fault suite's machinery: a UnionPay night big enough that every stage takes a while (bench/night.py), the
counterparty's SFTP account on the embedded server (behind a relay that can slow uploads or cut the line), the
chain in a child process that says when each stage starts (driver.py), the undisturbed reference run with the state
copied between every two stages, and the comparisons a trial ends with.

Knobs (environment): DUIZHANG_FAULT_RECORDS (ACOMN records of the night, default 150,000),
DUIZHANG_FAULT_POINTS (kill points per stage, default 3), DUIZHANG_FAULT_SEED (default 20261121).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import os
import queue
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from connectors.sftp_server import EmbeddedSftpServer

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("driver.py")
CHANNEL = "unionpay_acq"
T = dt.date(2026, 11, 21)
RECORDS = int(os.environ.get("DUIZHANG_FAULT_RECORDS", "150000"))
POINTS = int(os.environ.get("DUIZHANG_FAULT_POINTS", "3"))
SEED = int(os.environ.get("DUIZHANG_FAULT_SEED", "20261121"))
PAN_KEY = "fault-suite-pan-hash-key"
UPLOAD_BYTES_PER_S = 100_000   # a slow line to the counterparty: an upload lasts long enough to be cut into
WRITING = (".tmp", ".part")     # how a file being written is named until it is renamed into place
EXIT_TRANSIENT, EXIT_TERMINAL = 75, 65
STAGES = ("fetch", "parse", "load_ledger", "match", "validate", "answer", "clear", "deliver", "report")
"""`pipeline.run`'s order; test_kill checks it against the reference run, so a stage added to the chain is noticed."""

TALLY: dict[str, dict[str, int]] = {}
"""Faults per kind: tried (the fault happened while the chain ran), survived (the rerun proved nothing lost)."""


def tally(kind: str, *, survived: bool) -> None:
    row = TALLY.setdefault(kind, {"tried": 0, "survived": 0})
    row["tried"] += 1
    row["survived"] += survived


def pytest_terminal_summary(terminalreporter) -> None:
    if not TALLY:
        return
    terminalreporter.section("faults tried and survived")
    for kind, row in sorted(TALLY.items()):
        terminalreporter.write_line(f"{kind:<40} {row['survived']:>3} of {row['tried']:>3} survived")
    tried, survived = sum(r["tried"] for r in TALLY.values()), sum(r["survived"] for r in TALLY.values())
    terminalreporter.write_line(f"{'total':<40} {survived:>3} of {tried:>3} survived "
                                f"({RECORDS:,} ACOMN records, seed {SEED})")


# --- the night ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Night:
    served: Path       # the counterparty's account as it serves the night (outbox/YYYYMMDD/)
    ledger: Path       # the core journal extract (CSV + flag)
    records: int


@pytest.fixture(scope="session")
def night() -> Night:
    spec = importlib.util.spec_from_file_location("bench_night", ROOT / "bench" / "night.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = bench.generate(RECORDS, ROOT / "var" / "bench", gzipped=True)
    return Night(path / "served_gz", path / "ledger", RECORDS)


# --- the counterparty --------------------------------------------------------------------------------------

class Relay:
    """A TCP relay on 127.0.0.1 to a server port: at most `up_rate` bytes a second from client to server and
    `down_rate` back (None: as fast as it goes); `cut()` drops every open connection; `cut_after_down` drops them
    once that many bytes went down. A connection it cannot pass on (the server is down) is closed at once."""

    def __init__(self, target_port: int, *, up_rate: int | None = None, down_rate: int | None = None,
                 cut_after_down: int | None = None) -> None:
        self.target_port, self.cut_after_down = target_port, cut_after_down
        self.rates = {True: up_rate, False: down_rate}
        self.bytes_down = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True, name="relay").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()   # the server is down: the client sees the line drop
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            rate = self.rates[up]
            while data := src.recv(16384 if rate else 262144):
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
                if not up:
                    self.bytes_down += len(data)
                    if self.cut_after_down is not None and self.bytes_down >= self.cut_after_down:
                        self.cut_after_down = None
                        self.cut()
        except OSError:
            pass
        finally:
            for s in (src, dst):
                _close(s)

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self.cuts += 1
        for s in sockets:
            _close(s)

    def close(self) -> None:
        self._listener.close()
        self.cut()


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


class Counterparty:
    """The counterparty's SFTP account for one test: its outbox holds the night's files (hard links: nobody writes
    them), its inbox what the bank delivered. Served by the embedded server, through a `Relay` if asked."""

    def __init__(self, root: Path, night: Night, *, inbox_from: Path | None = None, down_rate: int | None = None,
                 port: int = 0) -> None:
        self.root = root
        shutil.copytree(night.served / "outbox", root / "outbox", copy_function=os.link)
        if inbox_from is not None and inbox_from.exists():
            shutil.copytree(inbox_from, root / "inbox")
        (root / "inbox").mkdir(exist_ok=True)
        self.server = EmbeddedSftpServer(root, port=port or free_port()).start()
        self.relay = Relay(self.server.port, up_rate=UPLOAD_BYTES_PER_S, down_rate=down_rate)

    @property
    def url(self) -> str:
        return f"sftp://{self.server.username}@127.0.0.1:{self.relay.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"DUIZHANG_SFTP_PRIVATE_KEY": self.server.client_private_key,
                "DUIZHANG_SFTP_HOST_KEY": self.server.host_key_line}

    def stop(self) -> None:
        """The server goes away as a crashed process does: its connections close, its port refuses new ones (the
        relay then drops them at once). (`EmbeddedSftpServer.stop` alone leaves open sessions silent: the client
        would only notice after its I/O timeout, two minutes as measured.)"""
        self.server.stop()
        self.relay.cut()

    def restart(self) -> None:
        """Back on the same port with the same host key, as a restarted server is."""
        self.server.start()

    def close(self) -> None:
        self.relay.close()
        self.server.stop()


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


# --- the chain in a child process --------------------------------------------------------------------------

class Driver:
    """driver.py in a child process: its stage events as they come, and a SIGKILL at any moment."""

    def __init__(self, workdir: Path, source: str, ledger: str | Path, env: dict[str, str], *,
                 first: str | None = None, last: str | None = None, pause: bool = False, log: Path,
                 argv: list[str] | None = None, env_extra: dict[str, str] | None = None) -> None:
        args = argv or [sys.executable, str(DRIVER), CHANNEL, T.isoformat(), source, str(ledger), str(workdir),
                        *([first or ""] if first or last else []), *([last] if last else [])]
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self.log = log
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(log, "ab"), text=True,
            env=os.environ | env | {"DUIZHANG_PAN_HASH_KEY": PAN_KEY, "FAULTS_PAUSE": "1" if pause else "0",
                                    "PYTHONPATH": str(ROOT)} | (env_extra or {}))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue   # not an event (`duizhang run` prints its summary)
            if isinstance(event, dict) and "event" in event:
                self.seen.append(event)
                self.events.put(event)
        self.events.put(None)

    def next_event(self, timeout: float = 900) -> dict | None:
        return self.events.get(timeout=timeout)

    def wait_for(self, stage: str, event: str, timeout: float = 900) -> dict | None:
        """The event, or None if the process ended without it."""
        deadline = time.monotonic() + timeout
        while (got := self.next_event(max(0.1, deadline - time.monotonic()))) is not None:
            if got.get("stage") == stage and got["event"] == event:
                return got
        return None

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    @property
    def running_stage(self) -> str | None:
        """The stage started and not ended, as the child last said."""
        started = [e for e in self.seen if e["event"] in ("start", "end")]
        return started[-1]["stage"] if started and started[-1]["event"] == "start" else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(timeout=10)

    def finish(self, timeout: float = 900) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the chain did not finish in {timeout:.0f} s; log: {self.log}") from None
        self._reader.join(timeout=10)
        return code

    @property
    def error(self) -> dict | None:
        return next((e for e in self.seen if e["event"] == "error"), None)

    def durations(self) -> dict[str, float]:
        starts = {e["stage"]: e["t"] for e in self.seen if e["event"] == "start"}
        return {e["stage"]: e["t"] - starts[e["stage"]] for e in self.seen if e["event"] == "end"}


# --- what a trial compares ---------------------------------------------------------------------------------

def being_written(*roots: Path) -> list[str]:
    """Files still under their temporary name (`.tmp`, `.part`) or a fetch's staging folder, under `roots`."""
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            found += [os.path.join(dirpath, d) for d in dirnames if d == ".staging"]
            found += [os.path.join(dirpath, f) for f in filenames if f.endswith(WRITING)]
    return sorted(found)


def in_flight(*roots: Path) -> list[str]:
    """Files being written right now: under a temporary name (a download, an upload, a Parquet file...)."""
    return [p for p in being_written(*roots) if p.endswith(WRITING)]


def state(workdir: Path, counterparty_root: Path | None = None) -> dict[str, str]:
    """Everything a later stage, an analyst or the counterparty reads, as sha256 by path: every file of the workdir
    (its absolute path written as <workdir>) but the control database, the lock files and the view database
    (`warehouse.duckdb` is rebuilt from the Parquet partitions by every report); the control database's registry
    and deliveries as rows without their clock; what the counterparty's inbox holds."""
    got: dict[str, str] = {}
    for path in sorted(p for p in workdir.rglob("*") if p.is_file()):
        rel = path.relative_to(workdir).as_posix()
        if rel.startswith(("locks/", "control.db")) or rel == "warehouse.duckdb":
            continue
        data = path.read_bytes()
        if path.suffix == ".json":
            data = data.replace(str(workdir).encode(), b"<workdir>")
        got[rel] = hashlib.sha256(data).hexdigest()
    for table, rows in control_rows(workdir).items():
        got[f"control.db:{table}"] = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    if counterparty_root is not None:
        for path in sorted(p for p in (counterparty_root / "inbox").rglob("*") if p.is_file()):
            got[f"counterparty:{path.relative_to(counterparty_root).as_posix()}"] = hashlib.sha256(
                path.read_bytes()).hexdigest()
    return got


def control_rows(workdir: Path) -> dict[str, list]:
    """The registry and the deliveries without their clock. A delivery the server already had when the registry
    learnt of it (`already_delivered`: the upload finished, the process died before writing its row) is a
    delivery: both say the counterparty has the file once."""
    db_path = workdir / "control.db"
    if not db_path.exists():
        return {}
    db = sqlite3.connect(db_path)
    try:
        files = db.execute("SELECT channel, business_date, name, version, md5, remote_md5, size, flag_records, "
                           "replace(local_path, ?, '<workdir>'), status, detail FROM files ORDER BY 1, 2, 3, 4",
                           (str(workdir),)).fetchall()
        deliveries = db.execute("SELECT channel, business_date, name, md5, destination, CASE status WHEN "
                                "'already_delivered' THEN 'delivered' ELSE status END FROM deliveries "
                                "ORDER BY 1, 2, 3, 4").fetchall()
    finally:
        db.close()
    return {"files": files, "deliveries": deliveries}


def visible_partial_files(work: Path, counterparty: Path, before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Files a reader sees that are neither as before the stage nor as after it. Not seen: hidden files (analysts'
    globs and the steps skip them), files under a temporary name (the counterparty waits for the flag)."""
    now = state(work, counterparty)
    return [k for k, v in now.items() if not k.startswith("control.db:") and not k.endswith(WRITING)
            and not any(part.startswith(".") for part in k.split(":")[-1].split("/"))
            and v not in (before.get(k), after.get(k))]


def differences(got: dict[str, str], expected: dict[str, str]) -> list[str]:
    return [f"{k}: {'missing' if k not in got else 'extra' if k not in expected else 'differs'}"
            for k in sorted(got.keys() | expected.keys()) if got.get(k) != expected.get(k)]


def invariants(workdir: Path, counterparty_root: Path, night: Night) -> list[str]:
    """What must hold of a finished night whatever happened on the way, checked from the stored data."""
    problems = []
    results = workdir / "warehouse" / "recon_result" / f"channel={CHANNEL}" / f"business_date={T}" / "part.parquet"
    con = duckdb.connect()
    try:
        sides = dict(con.execute(f"SELECT side, count(*) - count(DISTINCT record_ref) FROM read_parquet('{results}') "
                                 "GROUP BY side").fetchall())
        if any(sides.values()):
            problems.append(f"records counted twice in recon_result: {sides}")
        counterparty = con.execute(f"SELECT count(*) FROM read_parquet('{results}') WHERE side = 'counterparty'"
                                   ).fetchone()[0]
        quarantined = con.execute(f"SELECT count(*) FROM read_parquet('{results}') WHERE outcome = 'QUARANTINED'"
                                  ).fetchone()[0]
        listed = con.execute(f"SELECT count(*) FROM read_parquet('{str(results).replace('recon_result', 'quarantine')}')"
                             ).fetchone()[0]
    finally:
        con.close()
    match = json.loads((workdir / "parsed" / CHANNEL / f"{T:%Y%m%d}" / "match.json").read_text())
    conservation = match["conservation"]
    if counterparty != conservation["counterparty"]["records"]:
        problems.append(f"recon_result holds {counterparty} counterparty records, conservation says "
                        f"{conservation['counterparty']['records']}")
    manifest = json.loads((workdir / "parsed" / CHANNEL / f"{T:%Y%m%d}" / "manifest.json").read_text())
    acomn = next(f for f in manifest["files"] if f["kind"] == "acomn")
    if acomn["records"] != night.records or conservation["counterparty"]["records"] != night.records:
        problems.append(f"ACOMN: {night.records} records sent, {acomn['records']} parsed, "
                        f"{conservation['counterparty']['records']} reconciled")
    parsed_bad = sum(f["quarantined"] for f in manifest["files"] if f["kind"] == "acomn")
    if not quarantined == listed == parsed_bad > 0:
        problems.append(f"quarantine: {parsed_bad} ACOMN records unreadable, {listed} listed for analysts, "
                        f"{quarantined} with the QUARANTINED outcome")
    with sqlite3.connect(workdir / "control.db") as db:
        files = db.execute("SELECT name, count(*), max(version), group_concat(status) FROM files GROUP BY name"
                           ).fetchall()
        deliveries = db.execute("SELECT name, count(*) FROM deliveries GROUP BY name").fetchall()
    served = sorted(p.name.removesuffix(".gz") for p in (night.served / "outbox" / f"{T:%Y%m%d}").iterdir()
                    if not p.name.endswith(".ok"))
    if sorted(f[0] for f in files) != served or any(f[1:] != (1, 1, "parsed") for f in files):
        problems.append(f"file registry: {files} (expected one parsed version 1 of each of {served})")
    outgoing = workdir / "outbox" / CHANNEL / f"{T:%Y%m%d}" / "to_counterparty"
    sent = sorted(p.name for p in outgoing.iterdir() if not p.name.endswith(".ok"))
    if sorted(deliveries) != [(name, 1) for name in sent]:
        problems.append(f"deliveries registered {deliveries}, outgoing files {sent}")
    inbox = counterparty_root / "inbox" / f"{T:%Y%m%d}"
    for name in sent:
        for suffix in ("", ".ok"):
            remote = inbox / (name + suffix)
            if not remote.exists() or remote.read_bytes() != (outgoing / (name + suffix)).read_bytes():
                problems.append(f"the counterparty does not hold {name + suffix} as the bank wrote it")
    if written := being_written(workdir, counterparty_root):
        problems.append(f"left under a temporary name: {written}")
    return problems


# --- the undisturbed reference -----------------------------------------------------------------------------

@dataclass
class Reference:
    order: list[str]                       # the stages as `pipeline.run` calls them
    durations: dict[str, float]            # seconds each took, undisturbed
    replaces: dict[str, int]               # how many finished temporary files each put in place
    before: dict[str, Path]                # a copy of the workdir and the counterparty's inbox as each stage starts
    state_before: dict[str, dict[str, str]] = field(default_factory=dict)
    final: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    counterparty: Path | None = None

    def state_after(self, stage: str) -> dict[str, str]:
        i = self.order.index(stage)
        return self.state_before[self.order[i + 1]] if i + 1 < len(self.order) else self.final


@pytest.fixture(scope="session")
def reference(night, tmp_path_factory) -> Reference:
    """The night run once undisturbed (one process, as `duizhang run`), pausing before each stage to copy the
    workdir and the counterparty's inbox: what a trial starts from and what it must end with."""
    base = tmp_path_factory.mktemp("reference")
    counterparty = Counterparty(base / "sftp", night)
    work = base / "work"
    driver = Driver(work, counterparty.url, night.ledger, counterparty.env, pause=True, log=base / "driver.log")
    ref = Reference([], {}, {}, {}, workdir=work, counterparty=base / "sftp")
    try:
        while (event := driver.next_event()) is not None:
            if event["event"] == "ready":
                stage = event["stage"]
                snapshot = base / "before" / stage
                shutil.copytree(work, snapshot / "work")
                shutil.copytree(base / "sftp" / "inbox", snapshot / "inbox")
                ref.order.append(stage)
                ref.before[stage] = snapshot
                ref.state_before[stage] = state(work, base / "sftp")
                driver.go()
        code = driver.finish()
    finally:
        counterparty.close()
    assert code == 0, f"the undisturbed night failed: {driver.error}; log {driver.log}"
    ref.durations = driver.durations()
    for event in driver.seen:
        if event["event"] == "replace":
            ref.replaces[event["stage"]] = ref.replaces.get(event["stage"], 0) + 1
    ref.final = state(work, base / "sftp")
    assert not (problems := invariants(work, base / "sftp", night)), problems
    print(f"\nreference night ({night.records:,} records): " +
          ", ".join(f"{s} {ref.durations[s]:.1f} s ({ref.replaces.get(s, 0)} renames)" for s in ref.order))
    return ref


def copy_workdir(reference: Reference, stage: str, target: Path) -> Path:
    """The workdir as it was when `stage` started in the undisturbed night, copied to `target`. The registry
    (and the steps' JSON records) hold absolute paths into the workdir: they are pointed at the copy, or the trial
    would read the reference's files."""
    shutil.copytree(reference.before[stage] / "work", target)
    for record in target.rglob("*.json"):
        record.write_bytes(record.read_bytes().replace(str(reference.workdir).encode(), str(target).encode()))
    db = sqlite3.connect(target / "control.db")
    try:
        db.execute("UPDATE files SET local_path = replace(local_path, ?, ?)", (str(reference.workdir), str(target)))
        db.commit()
    finally:
        db.close()
    return target


def start_from(reference: Reference, stage: str, night: Night, base: Path, **counterparty_options):
    """A workdir and a counterparty account as they were when `stage` started in the undisturbed night."""
    copy_workdir(reference, stage, base / "work")
    counterparty = Counterparty(base / "sftp", night, inbox_from=reference.before[stage] / "inbox",
                                **counterparty_options)
    return base / "work", counterparty
