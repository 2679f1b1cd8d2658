"""`duizhang`: the command line of the pipeline (the DAG tasks call the same functions).

    duizhang demo                      the UnionPay night of 2026-11-21 end to end through a real Airflow DAG run
    duizhang run CHANNEL --date D --source SFTP_URL_OR_DIR --ledger URL_OR_DIR --workdir DIR
    duizhang parse LAYOUT FILE -o OUT.parquet [--flag FILE.ok]
    duizhang sql "QUERY" --workdir DIR
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
    lines.append(f"  warehouse (DuckDB, open read-only): {summary['warehouse']}")
    lines.append(f"  files to send back: {summary['outbox']}")
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

    p = sub.add_parser("parse", help="read one counterparty file into Parquet (exit 1 and a message if rejected)")
    p.add_argument("layout")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--flag", help="the flag file (default: FILE.ok when it exists)")
    p.set_defaults(func=cmd_parse)

    from duizhang.views import ANALYST_VIEWS
    p = sub.add_parser("sql", help="query the warehouse (read-only)", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Tables: recon_result, recon_summary, quarantine, clearing.\nViews: "
                       + ", ".join(ANALYST_VIEWS) + ".\nColumns are documented in the README.")
    p.add_argument("query")
    p.add_argument("--workdir", required=True)
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    p.add_argument("--max-rows", type=int, default=100)
    p.set_defaults(func=cmd_sql)

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
