"""`duizhang`: the command line of the pipeline (the DAG tasks call the same functions).

    duizhang demo                      the UnionPay night of 2026-11-21 end to end through a real Airflow DAG run
    duizhang run CHANNEL --date D --source SFTP_URL_OR_DIR --ledger URL_OR_DIR --workdir DIR
    duizhang deliver CHANNEL --date D --source SFTP_URL_OR_DIR --workdir DIR [--force]
    duizhang parse LAYOUT FILE -o OUT.parquet [--flag FILE.ok]
    duizhang sql "QUERY" --workdir DIR           (`duizhang sql --help` lists the tables and views)
    duizhang report --date D --workdir DIR       the daily report: Excel workbook and HTML page
    duizhang quarantine list [--channel C] [--date D] --workdir DIR
    duizhang quarantine release CORRECTED_FILE --channel C --date D --workdir DIR [--by NAME]
    duizhang breaks list [--channel C] [--date D] [--status S] --workdir DIR
    duizhang breaks set RECORD_REF --channel C --date D STATUS --by NAME --note TEXT --workdir DIR
    duizhang breaks history RECORD_REF [--channel C] [--date D] --workdir DIR
    duizhang hash-account NUMBER --workdir DIR   the keyed hash to find a card's history (account_history)
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path

from formats.errors import Terminal, Transient


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value if "-" in value else f"{value[:4]}-{value[4:6]}-{value[6:]}")
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def cmd_run(args) -> int:
    from duizhang import pipeline
    from duizhang.workdir import Workdir
    summary = pipeline.run(args.channel, args.date, args.source, args.ledger, Workdir(args.workdir))
    print(format_summary(summary))
    return 0


def cmd_deliver(args) -> int:
    from duizhang import pipeline
    from duizhang.workdir import Workdir
    if args.force:
        logging.getLogger("duizhang.cli").warning("operator forces redelivery of %s %s", args.channel, args.date)
    for d in pipeline.deliver(args.channel, args.date, args.source, Workdir(args.workdir), force=args.force):
        print(f"{d['name']}: {d['status'].replace('_', ' ')} (md5 {d['md5']})")
    return 0


def cmd_parse(args) -> int:
    import pyarrow.parquet as pq

    from formats import registry
    from formats.flag import parse_flag
    flag_path = Path(args.flag) if args.flag else Path(args.file + ".ok")
    flag = parse_flag(flag_path.read_bytes(), flag_path.name) if flag_path.exists() else None
    result = registry.read(Path(args.file), args.layout, flag)
    pq.write_table(result.records, args.output, compression="zstd")
    if result.quarantined:
        pq.write_table(result.quarantine.drop(["_raw"]), str(args.output) + ".quarantine.parquet")
    print(json.dumps(result.summary(), ensure_ascii=False, default=str))
    return 0


def cmd_sql(args) -> int:
    import duckdb

    from duizhang.workdir import Workdir
    db = Workdir(args.workdir).refresh_views()
    con = duckdb.connect(str(db), read_only=True)
    try:
        rel = con.sql(args.query)
        if rel is None:
            return 0
        if args.csv:
            rel.to_df().to_csv(sys.stdout, index=False)
        else:
            rel.show(max_rows=args.max_rows, max_width=200)
    finally:
        con.close()
    return 0


def cmd_report(args) -> int:
    from duizhang.report import build
    from duizhang.workdir import Workdir
    out = build(Workdir(args.workdir), args.date, Path(args.out) if args.out else None)
    for s in out["summary"]:
        print(f"{s['channel']}: {s['matched']} matched, {s['breaks']} breaks ({s['breaks_fen'] / 100:,.2f} yuan), "
              f"{s['pending']} pending, {s['quarantined']} quarantined, {s['rejected_files']} rejected file(s), "
              f"{s['checks_failed']} of {s['checks']} quality checks failed")
    print(f"workbook: {out['xlsx']}\npage: {out['html']}")
    return 0


def cmd_quarantine(args) -> int:
    from duizhang import quarantine
    from duizhang.workdir import Workdir
    wd = Workdir(args.workdir)
    if args.action == "release":
        got = quarantine.release(wd, Path(args.file), args.channel, args.date, by=args.by)
        print(f"released {got['name']} as version {got['version']} of {args.channel} {args.date} (md5 {got['md5']}, "
              f"{got['records']} records, {got['quarantined']} still quarantined): the next run parses it")
        return 0
    files = quarantine.rejected_files(wd, args.channel, args.date)
    records = quarantine.quarantined_records(wd, args.channel, args.date)
    print(f"rejected files: {len(files)}")
    for f in files:
        print(f"  {f['channel']} {f['business_date']} {f['name']} v{f['version']} (md5 {f['md5']}, {f['size']} bytes, "
              f"at {f['local_path']}): {f['detail']}")
    print(f"quarantined records: {len(records)}")
    for r in records:
        print(f"  {r['channel']} {r['business_date']} {r['file']} v{r['version']} line {r['line']} "
              f"{r['record']}.{r['field']}: expected {r['expected']}, found {r['found']!r}")
        print(f"    raw: {quarantine.show_raw(r['raw'])}")
    return 0


def cmd_breaks(args) -> int:
    from duizhang import breaks
    from duizhang.workdir import Workdir
    wd = Workdir(args.workdir)
    if args.action == "set":
        row = breaks.set_status(wd, args.channel, args.date, args.record_ref, args.status, args.by, args.note)
        print(f"{row['record_ref']} ({row['channel']} {row['business_date']}): {row['status']} by {row['changed_by']}"
              f" at {row['changed_at']}: {row['note']}")
    elif args.action == "history":
        rows = breaks.history_rows(wd, args.record_ref, args.channel, args.date)
        print(f"{args.record_ref}: status history (a break starts as new; {len(rows)} change(s) recorded)")
        for r in rows:
            print(f"  {r['changed_at']}  {r['status']:<13} by {r['changed_by']}: {r['note']}  "
                  f"({r['channel']} {r['business_date']})")
    else:
        rows = breaks.current(wd, args.channel, args.date, args.status)
        for r in rows:
            print(f"{r['channel']} {r['business_date']} {r['record_ref']:<28} {r['outcome']:<18} "
                  f"{r['amount_fen'] / 100:>14,.2f} {r['status']:<13} {r['reason']}")
        print(f"{len(rows)} break(s)")
    return 0


def cmd_hash_account(args) -> int:
    import hashlib

    from duizhang.pipeline import PAN_KEY_ENV
    from duizhang.workdir import Workdir
    key = Workdir(args.workdir).secret("pan_hash_key", PAN_KEY_ENV)
    # The engine's account_hash: sha256(key || number) in DuckDB (recon/engine.py).
    print(hashlib.sha256((key + args.number).encode()).hexdigest())
    return 0


def cmd_demo(args) -> int:
    from duizhang.demo import run_demo
    return run_demo(Path(args.workdir), args.date)


def format_summary(summary: dict) -> str:
    lines = [f"{summary['channel']} {summary['business_date']}"]
    for f in summary["files"]:
        lines.append(f"  file {f['name']} v{f['version']}: {f['records']} records in, {f['quarantined']} quarantined, "
                     f"{f['amount_fen'] / 100:,.2f} yuan")
    lines.append(f"  {'side':<13}{'outcome':<19}{'records':>8}{'yuan':>16}")
    for o in summary["outcomes"]:
        lines.append(f"  {o['side']:<13}{o['outcome']:<19}{o['records']:>8}{o['amount_fen'] / 100:>16,.2f}")
    for side, c in summary["match"]["conservation"].items():
        lines.append(f"  conservation OK ({side}): {c['records']} records / {c['amount_fen'] / 100:,.2f} yuan in = "
                     "matched + breaks + pending + quarantined")
    clearing = summary["clearing"]
    if "net_fen" in clearing:
        lines.append(f"  clearing net with CUPS: {clearing['net_fen'] / 100:,.2f} yuan (transactions "
                     f"{clearing['transactions_fen'] / 100:,.2f}, fees {clearing['fees_fen'] / 100:,.2f}; positive: "
                     "CUPS pays the bank)")
    lines.append(f"  entries: {clearing['entries_file']} ({clearing['vouchers']} balanced vouchers, "
                 f"{clearing['entry_lines']} lines)")
    answer = summary["answer"]
    for r in answer["returns"]:
        lines.append(f"  return of {r['file']}: {r['status']}" + (f" -> {r['return_file']}" if r["return_file"] else "")
                     + (f" ({r['reason']})" if r["status"] == "held" else ""))
    if d := answer.get("disputes"):
        lines.append(f"  disputes of {d['file']}: {d['decided']} decided, {d['queued']} queued for analysts "
                     f"-> {d['reply']}")
    lines.append(f"  error-handling files (差错): {', '.join(answer['errors_files'])}")
    for d in summary["deliveries"]:
        lines.append(f"  sent {d['name']} to {d['destination']} ({d['status'].replace('_', ' ')})")
    lines.append(f"  warehouse (DuckDB, open read-only): {summary['warehouse']}")
    lines.append(f"  outbox (entries for the core, 差错 for operations): {summary['outbox']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="duizhang", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the UnionPay sample night through Airflow and print the summary")
    p.add_argument("--workdir", default="var/demo", help="where the demo keeps its state (default var/demo)")
    p.add_argument("--date", type=_date, default=dt.date(2026, 11, 21))
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="the whole chain for one channel and date, without Airflow")
    p.add_argument("channel")
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--source", required=True, help="sftp://user@host:port (secrets from DUIZHANG_SFTP_*) or a "
                                                   "directory laid out like the counterparty's account")
    p.add_argument("--ledger", required=True, help="SQLAlchemy URL of the core journal, or the extract directory")
    p.add_argument("--workdir", required=True)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("deliver", help="send the counterparty outbox of a date again; --force replaces a file "
                                       "already delivered under the same name (an operator's decision, logged)")
    p.add_argument("channel")
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--source", required=True, help="the counterparty's SFTP account, as for run")
    p.add_argument("--workdir", required=True)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_deliver)

    p = sub.add_parser("parse", help="read one counterparty file into Parquet (exit 1 and a message if rejected)")
    p.add_argument("layout")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--flag", help="the flag file (default: FILE.ok when it exists)")
    p.set_defaults(func=cmd_parse)

    from duizhang.views import help_text
    p = sub.add_parser("sql", help="query the warehouse (read-only)", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=help_text() + "\nREADME.md (Tables for analysts) says what each column means.")
    p.add_argument("query")
    p.add_argument("--workdir", required=True)
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    p.add_argument("--max-rows", type=int, default=100)
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("report", help="the daily report of a business date over every channel (xlsx and html)")
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", help="directory for the two files (default WORKDIR/reports/YYYYMMDD)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("quarantine", help="rejected files and quarantined records; release a corrected file")
    qsub = p.add_subparsers(dest="action", required=True)
    q = qsub.add_parser("list", help="every rejected file and quarantined record, with reason, raw record and origin")
    q.add_argument("--channel")
    q.add_argument("--date", type=_date)
    q.add_argument("--workdir", required=True)
    q = qsub.add_parser("release", help="register a corrected file as the next version; the next run parses it")
    q.add_argument("file")
    q.add_argument("--channel", required=True)
    q.add_argument("--date", type=_date, required=True)
    q.add_argument("--by", default="", help="who releases it (logged)")
    q.add_argument("--workdir", required=True)
    p.set_defaults(func=cmd_quarantine)

    from duizhang.breaks import STATUSES
    p = sub.add_parser("breaks", help="follow breaks to their end: list, set a status, show the history")
    bsub = p.add_subparsers(dest="action", required=True)
    b = bsub.add_parser("list", help="breaks with their current status")
    b.add_argument("--channel")
    b.add_argument("--date", type=_date)
    b.add_argument("--status", choices=STATUSES)
    b.add_argument("--workdir", required=True)
    b = bsub.add_parser("set", help="record a status change (append-only)")
    b.add_argument("record_ref")
    b.add_argument("status", choices=STATUSES[1:])
    b.add_argument("--channel", required=True)
    b.add_argument("--date", type=_date, required=True)
    b.add_argument("--by", required=True)
    b.add_argument("--note", required=True)
    b.add_argument("--workdir", required=True)
    b = bsub.add_parser("history", help="every status change of a break")
    b.add_argument("record_ref")
    b.add_argument("--channel")
    b.add_argument("--date", type=_date)
    b.add_argument("--workdir", required=True)
    p.set_defaults(func=cmd_breaks)

    p = sub.add_parser("hash-account", help="the keyed hash of a card or account number (account_history)")
    p.add_argument("number")
    p.add_argument("--workdir", required=True)
    p.set_defaults(func=cmd_hash_account)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except Terminal as e:
        print(f"duizhang: error: {e}", file=sys.stderr)
        return 1
    except Transient as e:
        print(f"duizhang: temporary failure, retry later: {e}", file=sys.stderr)
        return 75  # EX_TEMPFAIL


if __name__ == "__main__":
    sys.exit(main())
