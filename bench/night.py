"""A UnionPay night at scale through the whole chain, stage by stage: time, records per second, peak memory.

    python bench/night.py [--records 10000000] [--via sftp|dir] [--plain] [--airflow] [--data DIR] [--workdir DIR]

Generates (once per size, cached in --data) a CUPS ACOMN file of N records for T = 2026-11-21, the core
journal extract that goes with it (every approved record posted; one in a thousand posted with an amount one fen
off, one in a thousand never posted, one in a thousand journal rows without a CUPS record; one record in 40,000
unreadable, quarantined) and an ERRN file of disputes (one per hundred approved purchases), serves the files from the embedded SFTP server (`--via sftp`, the
ACOMN gzip-compressed as the specs allow unless `--plain`) or a local directory laid out the same way
(`--via dir`), then runs the chain of `duizhang run` (fetch, parse, load_ledger, match, validate, answer, clear,
deliver, report), each stage in its own process as an Airflow task would, and prints per stage the seconds,
records per second and peak resident memory. `--airflow` runs the same night through the real DAG instead
(`airflow dags test unionpay_acq`, SQLite metadata database, tasks in Airflow's process) and prints each task's
seconds from the task instances. The fault suite (tests/faults/) uses `generate` for its night. The targets (issue 9): 10 million records end to end in at most
3 minutes and 3 GB.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import duckdb  # noqa: E402

from formats import registry  # noqa: E402
from formats.flag import Flag, write_flag  # noqa: E402

T = dt.date(2026, 11, 21)
CHANNEL = "unionpay_acq"
NIGHT_VERSION = 2        # in the cache folder's name: a night generated differently is generated anew
SPOILED_EVERY = 40_000   # one ACOMN record in so many has a letter in its amount: quarantined, never matched


def generate(records: int, data: Path, *, gzipped: bool) -> Path:
    """The counterparty account (`outbox/YYYYMMDD/`) and the ledger folder of a night of `records` records."""
    import gen_acomn
    night = data / f"night_{records}_v{NIGHT_VERSION}"
    account, ledger = night / "account", night / "ledger"
    acomn_dir = account / "outbox" / f"{T:%Y%m%d}"
    acomn = acomn_dir / f"IND{T:%y%m%d}01ACOMN"
    errn = acomn_dir / f"IND{T:%y%m%d}01ERRN"
    journal = ledger / f"CORE_JOURNAL_{T:%Y%m%d}.csv"
    if not acomn.with_name(acomn.name + ".ok").exists():
        print(f"generating {records:,} ACOMN records in {acomn_dir}", flush=True)
        gen_acomn.generate(records, acomn_dir, T)
        _spoil(acomn, records)
    if gzipped and not (gz := acomn.with_name(acomn.name + ".gz.ok")).exists():
        _gzip_with_flag(acomn, records)
    if not (journal.with_name(journal.name + ".ok").exists() and errn.with_name(errn.name + ".ok").exists()):
        print(f"deriving the core journal in {ledger} and the disputes {errn.name}", flush=True)
        ledger.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=night) as tmp:
            parsed = Path(tmp) / "acomn.parquet"
            registry.read_to_parquet(acomn, "unionpay.acomn", parsed)
            rows = _derive_journal(parsed, journal)
            disputes = _derive_errn(parsed, errn)
        write_flag(journal, rows)
        write_flag(errn, disputes)
    served = night / ("served_gz" if gzipped else "served_plain")
    target = served / "outbox" / f"{T:%Y%m%d}"
    if not (target / (errn.name + ".ok")).exists():   # the account as the counterparty exposes it
        shutil.rmtree(served, ignore_errors=True)
        target.mkdir(parents=True)
        names = [acomn.name + ".gz", acomn.name + ".gz.ok"] if gzipped else [acomn.name, acomn.name + ".ok"]
        for name in [*names, errn.name, errn.name + ".ok"]:
            (target / name).hardlink_to(acomn_dir / name)
    return night


def _spoil(acomn: Path, records: int) -> None:
    """A letter in the amount of record 17 and of every SPOILED_EVERY-th after it (a bad record the reader
    quarantines with its line, as CUPS files sometimes have); the flag is written again for the new bytes."""
    from formats.specs.unionpay.acomn import LAYOUT
    amount = next(f for f in LAYOUT.detail.fields if f.name == "amount_fen")
    with open(acomn, "r+b") as f:
        for line in range(17, records + 1, SPOILED_EVERY):
            f.seek((line - 1) * (LAYOUT.record_bytes + 2) + amount.start + 4)
            f.write(b"X")
    write_flag(acomn, records)


def _gzip_with_flag(acomn: Path, records: int) -> None:
    gz = acomn.with_name(acomn.name + ".gz")
    tmp = gz.with_name(gz.name + ".tmp")
    with open(acomn, "rb") as src, gzip.open(tmp, "wb", compresslevel=1) as out:
        shutil.copyfileobj(src, out, 1 << 22)
    tmp.replace(gz)
    md5 = hashlib.md5()
    with open(gz, "rb") as f:
        while chunk := f.read(1 << 22):
            md5.update(chunk)
    gz.with_name(gz.name + ".ok").write_bytes(Flag(gz.name, gz.stat().st_size, records, md5.hexdigest()).render())


def _derive_journal(acomn_parquet: Path, journal: Path) -> int:
    """The bank's side of the night, in the CSV extract format of specs/ledger.md (DuckDB writes it)."""
    year = T.year
    query = f"""
        WITH a AS (SELECT *, row_number() OVER (ORDER BY _line) AS n FROM read_parquet('{acomn_parquet}')
                   WHERE resp_code = '00')
        SELECT DATE '{T}' AS acct_date, lpad(CAST(n AS VARCHAR), 20, '0') AS journal_no, 1 AS seq_no,
               'UNIONPAY_ACQ' AS channel, stan || txn_time AS channel_ref, NULL AS batch_no,
               strptime('{year}' || txn_time, '%Y%m%d%H%M%S') AS txn_time, pan AS account_no,
               'CARDHOLDER' AS account_name, CASE WHEN proc_code = '200000' THEN 'C' ELSE 'D' END AS dr_cr,
               amount_fen + CASE WHEN n % 1000 = 3 THEN 1 ELSE 0 END AS amount_fen, 'CNY' AS currency,
               'S' AS status, NULL AS reason_code, NULL AS reversal_of, 'POS' AS memo
        FROM a WHERE n % 1000 <> 5
        UNION ALL
        SELECT DATE '{T}', 'L' || lpad(CAST(n AS VARCHAR), 19, '0'), 1, 'UNIONPAY_ACQ', 'X' || stan || txn_time,
               NULL, strptime('{year}' || txn_time, '%Y%m%d%H%M%S'), pan, 'CARDHOLDER', 'D', amount_fen, 'CNY',
               'S', NULL, NULL, 'POS'
        FROM a WHERE n % 1000 = 7
    """
    duckdb.execute(f"COPY ({query}) TO '{journal}' (FORMAT csv, HEADER, DELIMITER ',')")
    return duckdb.execute(f"SELECT count(*) FROM read_csv('{journal}')").fetchone()[0]


def _derive_errn(acomn_parquet: Path, errn: Path) -> int:
    """CUPS's disputes of the night (specs/unionpay.md, ERRN): one per hundred approved purchases, every one
    pointing at a real ACOMN record, in rotation a duplicate-processing chargeback (CB1 4512: the bank answers R,
    posted once), a credit adjustment request (CRA: no earlier ledger-only break, so P) and a retrieval request
    (RTR: P). The other fields are those of a sample dispute. Same ACOMN, same bytes."""
    template = registry.read(ROOT / "sample_files" / "unionpay" / "errn" / "ok_chinese_merchant_name.txt",
                             "unionpay.errn").records.slice(0, 1).drop_columns(["_line"])
    con = duckdb.connect()
    try:
        con.register("template", template)
        varied = ["err_type", "stan", "txn_time", "pan", "amount_fen", "orig_stan", "orig_txn_time",
                  "orig_amount_fen", "reason_code", "orig_rrn"]
        disputes = con.sql(f"""
            WITH a AS (SELECT *, row_number() OVER (ORDER BY _line) AS n FROM read_parquet('{acomn_parquet}')
                       WHERE resp_code = '00' AND proc_code = '000000' AND msg_type = '0200'),
            d AS (SELECT *, row_number() OVER (ORDER BY n) AS k FROM a WHERE n % 100 = 42)
            SELECT ['CB1', 'CRA', 'RTR'][k % 3 + 1] AS err_type, lpad(CAST(k % 1000000 AS VARCHAR), 6, '0') AS stan,
                   '{T + dt.timedelta(days=1):%m%d}' || lpad(CAST(k // 1000000 AS VARCHAR), 6, '0') AS txn_time,
                   d.pan, d.amount_fen, d.stan AS orig_stan, d.txn_time AS orig_txn_time,
                   d.amount_fen AS orig_amount_fen, ['4512', '4507', '4570'][k % 3 + 1] AS reason_code,
                   d.rrn AS orig_rrn, t.* EXCLUDE ({", ".join(varied)})
            FROM d, template t ORDER BY k""").to_arrow_table()
    finally:
        con.close()
    registry.write(errn, "unionpay.errn", disputes.select(template.column_names).cast(template.schema))
    return disputes.num_rows


def run_stages(stages: list[tuple], records: int, prefix: str = "") -> tuple[float, int, bool]:
    """Run each (name, function, args) in its own process, one after another as Airflow runs tasks, printing a line
    per stage (seconds, records/s, CPU seconds of all its threads: what the work cost when the 2 cores are shared;
    peak MB, a brief result or the error); stop at the first that fails. Returns the seconds in the stages, the peak
    resident memory (bytes) and whether one failed."""
    total, peak = 0.0, 0
    # spawn, not fork: a child forked while the SFTP server's thread or the reader's thread pool holds a lock
    # waits forever on it (seen: parse hung in futex_wait after the generator had run in this process)
    ctx = mp.get_context("spawn")
    for name, fn, stage_args in stages:
        receive, send = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_stage, args=(name, fn, stage_args, send))
        process.start()
        seconds, cpu, rss, error, brief = receive.recv()
        process.join()
        total += seconds
        peak = max(peak, rss)
        print(f"{prefix}{name:<12}{seconds:>9.2f}{records / seconds:>14,.0f}{cpu:>9.1f}{rss / 2**20:>10,.0f}  "
              f"{error or brief}", flush=True)
        if error:
            return total, peak, True
    return total, peak, False


def _stage(name: str, fn, args, out) -> None:
    """Run one stage in this (spawned) process; send back seconds, CPU seconds, peak RSS and a short result."""
    start, cpu = time.perf_counter(), time.process_time()
    try:
        result = fn(*args)
        error = None
    except Exception as e:   # reported, and the night stops, as the scheduler would
        result, error = None, f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - start
    out.send((seconds, time.process_time() - cpu, _peak_rss(), error, _brief(name, result)))


def _peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM, which a new program image starts afresh (getrusage's
    ru_maxrss keeps the high-water mark of the process that spawned this one)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


def _brief(name: str, result) -> str:
    if name == "match" and result:
        return ", ".join(f"{side} {c['records']:,}" for side, c in result["conservation"].items())
    if name == "report" and result:
        return ", ".join(f"{o['side'][:2]} {o['outcome']} {o['records']:,}" for o in result["outcomes"])
    return ""


def _through_airflow(records: int, server, served: Path, ledger: str, workdir: Path) -> int:
    """The night through the DAG: `airflow dags test` (not timed: `airflow db migrate` before it); per task, its
    seconds from the metadata database; the peak memory is Airflow's process, which runs the tasks."""
    import json
    import resource
    import sqlite3
    import subprocess
    from duizhang.demo import airflow, airflow_env
    home = workdir / "airflow"
    env = airflow_env(home, {"DUIZHANG_WORKDIR": str(workdir), "DUIZHANG_LEDGER": ledger,
                             "DUIZHANG_DEADLINE_ALERTS": "off"})   # `dags test` cannot finish with a DeadlineAlert
    if server:
        env[f"AIRFLOW_CONN_DUIZHANG_{CHANNEL.upper()}"] = json.dumps(server.airflow_connection())
    else:
        env[f"DUIZHANG_SOURCE_{CHANNEL.upper()}"] = str(served)
    airflow(["db", "migrate"], env, quiet=True)
    print(f"\nUnionPay night, {records:,} ACOMN records, through Airflow (dags test), workdir {workdir}", flush=True)
    started = time.perf_counter()
    run = subprocess.run([str(Path(sys.executable).with_name("airflow")), "dags", "test", CHANNEL, "-c",
                          json.dumps({"business_date": T.isoformat()})], env=env, capture_output=True, text=True)
    total = time.perf_counter() - started
    (workdir / "dags_test.log").write_text(run.stdout + run.stderr)
    with sqlite3.connect(home / "airflow.db") as db:
        tasks = db.execute("SELECT task_id, count(*), sum(julianday(end_date) - julianday(start_date)) * 86400, "
                           "group_concat(DISTINCT state) FROM task_instance WHERE dag_id = ? GROUP BY task_id "
                           "ORDER BY min(start_date)", (CHANNEL,)).fetchall()
    print(f"{'task':<24}{'seconds':>9}  state")
    for task, n, seconds, states in tasks:
        print(f"{task + (f' (x{n})' if n > 1 else ''):<24}{seconds or 0:>9.1f}  {states}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"{'total (dags test)':<24}{total:>9.1f}{records / total:>14,.0f}{peak / 2**20:>10,.0f} MB peak  "
          f"(targets for 10M: 180 s, 3,072 MB); log: {workdir / 'dags_test.log'}")
    return run.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--via", choices=("sftp", "dir"), default="sftp")
    parser.add_argument("--plain", action="store_true", help="serve the uncompressed file (default: .gz)")
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--workdir", type=Path, help="default: a fresh folder under --data")
    parser.add_argument("--airflow", action="store_true", help="run the DAG unionpay_acq (`airflow dags test`)")
    args = parser.parse_args()

    from connectors.sftp_server import EmbeddedSftpServer
    from duizhang import pipeline
    from duizhang.workdir import Workdir

    night = generate(args.records, args.data, gzipped=not args.plain)
    served = night / ("served_plain" if args.plain else "served_gz")
    workdir = (args.workdir or args.data / f"work_{args.records}_{args.via}{'_plain' if args.plain else ''}").resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    wd = Workdir(workdir)
    ledger = str(night / "ledger")

    server = EmbeddedSftpServer(served) if args.via == "sftp" else None
    if server:
        server.start()
    source = server.endpoint() if server else str(served)
    shutil.rmtree(served / "inbox", ignore_errors=True)   # what the last run delivered
    try:
        if args.airflow:
            return _through_airflow(args.records, server, served, ledger, workdir)
        from duizhang.quality import validate
        # pipeline.run's order (a stage per process, as Airflow runs tasks)
        stages = [("fetch", pipeline.fetch, (CHANNEL, T, source, wd)),
                  ("parse", pipeline.parse, (CHANNEL, T, wd)),
                  ("load_ledger", pipeline.load_ledger, (T, ledger, wd)),
                  ("match", pipeline.match, (CHANNEL, T, wd)),
                  ("validate", validate, (CHANNEL, T, wd)),
                  ("answer", pipeline.answer, (CHANNEL, T, wd)),
                  ("clear", pipeline.clear, (CHANNEL, T, wd)),
                  ("deliver", pipeline.deliver, (CHANNEL, T, source, wd)),
                  ("report", pipeline.report, (CHANNEL, T, wd))]
        print(f"\nUnionPay night, {args.records:,} ACOMN records, via {args.via}"
              f"{' (gzip)' if not args.plain else ''}, workdir {workdir}")
        print(f"{'stage':<12}{'seconds':>9}{'records/s':>14}{'CPU s':>9}{'peak MB':>10}  result")
        total, peak, failed = run_stages(stages, args.records)
        if failed:
            return 1
        print(f"{'total':<12}{total:>9.1f}{args.records / total:>14,.0f}{'':>9}{peak / 2**20:>10,.0f}  "
              f"(targets for 10M: 180 s, 3,072 MB)")
    finally:
        if server:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
