"""The error-handling file (差错处理清单) for operations: every break of a channel and business date with its
reason, the proposed action and the amount in yuan, as a CSV (UTF-8 with a BOM so that Excel opens it, CRLF)
and an Excel workbook (frozen header, yuan formats, filters, column widths, a summary sheet).

The proposed action is data (`ACTIONS`, first match wins), decided from the outcome, the side and the statuses:
- post (补账): money moved at the counterparty that the ledger does not show (counterparty-only S; counterparty S
  but ledger F);
- reverse (冲正): the ledger shows money that did not move at the counterparty (ledger-only S; ledger S but
  counterparty F; a duplicate posting in the ledger);
- ask the counterparty (向对方查询): the two sides disagree on what happened (amounts differ, a reversal only one
  side knows, a record the counterparty sent twice);
- hold (挂账待查): anything else (a one-sided row that moved no money), kept for review.
Both files are byte-identical on a rerun: nothing in them comes from the clock (the workbook's timestamps are T).
Card numbers appear only masked (recon_result's `account_masked`).
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
import zipfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa

from formats.excel import _fix_zip   # the workbook's zip re-dated to T: one implementation, the format engine's
from recon.outcomes import BREAKS_SQL

OUTCOME_TEXT = {"AMOUNT_MISMATCH": "金额不符", "STATUS_MISMATCH": "状态不符", "COUNTERPARTY_ONLY": "对方有我方无",
                "LEDGER_ONLY": "我方有对方无", "DUPLICATE": "重复"}
ACTION_TEXT = {"post": "补账", "reverse": "冲正", "ask": "向对方查询", "hold": "挂账待查"}
SIDE_TEXT = {"counterparty": "对方", "ledger": "我方"}


@dataclass(frozen=True)
class Action:
    action: str
    outcome: str | None = None               # None: any
    side: str | None = None
    counterparty_status: str | None = None   # for a one-sided break, the row's own status
    ledger_status: str | None = None


ACTIONS = (
    Action("reverse", "DUPLICATE", side="ledger"),
    Action("ask", "DUPLICATE", side="counterparty"),
    Action("post", "STATUS_MISMATCH", counterparty_status="S", ledger_status="F"),
    Action("reverse", "STATUS_MISMATCH", counterparty_status="F", ledger_status="S"),
    Action("ask", "STATUS_MISMATCH"),
    Action("ask", "AMOUNT_MISMATCH"),
    Action("post", "COUNTERPARTY_ONLY", counterparty_status="S"),
    Action("reverse", "LEDGER_ONLY", ledger_status="S"),
    Action("hold"),
)

# (column, heading, kind): kind "yuan" is an amount in fen shown in yuan; widths in characters for the workbook
COLUMNS = (
    ("business_date", "业务日期", "date", 11), ("channel", "渠道", "text", 14),
    ("outcome_text", "差错类型", "text", 12), ("outcome", "outcome", "text", 18), ("side_text", "方", "text", 5),
    ("record_ref", "记录", "text", 30), ("match_ref", "匹配键", "text", 24), ("account_masked", "账号(掩码)", "text", 21),
    ("amount_fen", "金额(元)", "yuan", 14), ("counterparty_amount_fen", "对方金额(元)", "yuan", 14),
    ("ledger_amount_fen", "我方金额(元)", "yuan", 14), ("difference_fen", "差额(元)", "yuan", 14),
    ("counterparty_status", "对方状态", "text", 8), ("ledger_status", "我方状态", "text", 8),
    ("journal_no", "核心流水号", "text", 22), ("action_text", "建议处理", "text", 12), ("action", "action", "text", 9),
    ("reason", "原因", "text", 60), ("source_file", "来源文件", "text", 28), ("source_line", "行号", "int", 7),
)
YUAN_FORMAT = "#,##0.00"


def breaks_table(results: pa.Table, channel: str, date: dt.date) -> pa.Table:
    """The breaks of `channel` on `date` with their proposed action, one row per recon_result row, in record
    order; the columns of `COLUMNS`."""
    def matches(a: Action) -> str:
        conds = [f"{col} = '{val}'" for col, val in (("outcome", a.outcome), ("side", a.side),
                                                     ("cp_status", a.counterparty_status),
                                                     ("lg_status", a.ledger_status)) if val is not None]
        return " AND ".join(conds) or "true"

    action = "CASE " + " ".join(f"WHEN {matches(a)} THEN '{a.action}'" for a in ACTIONS) + " END"
    con = duckdb.connect()
    try:
        con.register("r", results)
        for name, mapping in (("outcome_texts", OUTCOME_TEXT), ("action_texts", ACTION_TEXT),
                              ("side_texts", SIDE_TEXT)):
            con.register(name, pa.table({"k": list(mapping), "v": list(mapping.values())}))
        return con.sql(f"""
            WITH b AS (
                SELECT *,
                       -- a one-sided break carries its own status on its side
                       coalesce(counterparty_status, CASE WHEN side = 'counterparty' THEN status END) AS cp_status,
                       coalesce(ledger_status, CASE WHEN side = 'ledger' THEN status END) AS lg_status
                FROM r WHERE channel = ? AND business_date = ? AND outcome IN {BREAKS_SQL}),
            a AS (SELECT *, {action} AS action FROM b)
            SELECT a.business_date, a.channel, (SELECT v FROM outcome_texts WHERE k = a.outcome) AS outcome_text,
                   a.outcome, (SELECT v FROM side_texts WHERE k = a.side) AS side_text, a.record_ref, a.match_ref,
                   a.account_masked, a.amount_fen, a.counterparty_amount_fen, a.ledger_amount_fen,
                   a.counterparty_amount_fen - a.ledger_amount_fen AS difference_fen,
                   a.cp_status AS counterparty_status, a.lg_status AS ledger_status, a.journal_no,
                   (SELECT v FROM action_texts WHERE k = a.action) AS action_text, a.action, a.reason,
                   a.source_file, a.source_line
            FROM a ORDER BY a.side, a.source_file NULLS LAST, a.source_line NULLS LAST, a.record_ref""",
                       params=[channel, date]).to_arrow_table()
    finally:
        con.close()


def write_error_file(results: pa.Table, channel: str, date: dt.date, out_dir: Path) -> tuple[Path, Path]:
    """Write `CHACUO_{channel}_{YYYYMMDD}.csv` and `.xlsx` into `out_dir`; returns their paths."""
    table = breaks_table(results, channel, date)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"CHACUO_{channel}_{date:%Y%m%d}"
    csv_path, xlsx_path = stem.with_suffix(".csv"), stem.with_suffix(".xlsx")
    _atomic(csv_path, _csv_bytes(table))
    _atomic(xlsx_path, _workbook_bytes(table, channel, date))
    return csv_path, xlsx_path


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def yuan_text(fen: int | None) -> str:
    """Fen as yuan with two decimals (`-12.30`), by integer arithmetic."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _cell(value, kind: str):
    if value is None:
        return None
    if kind == "yuan":
        return Decimal(value).scaleb(-2)   # an exact decimal, written as the number it is
    return value.isoformat() if kind == "date" else value


def _csv_bytes(table: pa.Table) -> bytes:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")
    out.writerow([heading for _, heading, _, _ in COLUMNS])
    columns = [(table[name].to_pylist(), kind) for name, _, kind, _ in COLUMNS]
    for i in range(table.num_rows):
        out.writerow([yuan_text(values[i]) if kind == "yuan" else ("" if values[i] is None else
                                                                   _cell(values[i], kind)) for values, kind in columns])
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")


def summary_rows(table: pa.Table) -> list[tuple]:
    """(差错类型, 建议处理, records, amount fen) per outcome and action, in a fixed order."""
    con = duckdb.connect()
    try:
        con.register("t", table)
        return con.execute("""
            SELECT outcome_text, action_text, count(*), CAST(coalesce(sum(amount_fen), 0) AS BIGINT) FROM t
            GROUP BY ALL ORDER BY outcome_text, action_text""").fetchall()
    finally:
        con.close()


def _workbook_bytes(table: pa.Table, channel: str, date: dt.date) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.writer.excel import ExcelWriter

    wb = Workbook()
    ws = wb.active
    ws.title = "差错明细"
    ws.append([heading for _, heading, _, _ in COLUMNS])
    columns = [(table[name].to_pylist(), kind) for name, _, kind, _ in COLUMNS]
    for i in range(table.num_rows):
        ws.append([_cell(values[i], kind) for values, kind in columns])
    for c, (_, _, kind, width) in enumerate(COLUMNS, start=1):
        letter = get_column_letter(c)
        ws.column_dimensions[letter].width = width
        ws.cell(1, c).font = Font(bold=True)
        if kind == "yuan":
            for r in range(2, table.num_rows + 2):
                ws.cell(r, c).number_format = YUAN_FORMAT
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{table.num_rows + 1}"

    sums = wb.create_sheet("汇总")
    sums.append(["渠道", channel])
    sums.append(["业务日期", date.isoformat()])
    sums.append([])
    sums.append(["差错类型", "建议处理", "笔数", "金额(元)"])
    rows = summary_rows(table)
    for outcome, action, n, fen in rows:
        sums.append([outcome, action, n, _cell(fen, "yuan")])
    sums.append(["合计", "", sum(r[2] for r in rows), _cell(sum(r[3] for r in rows), "yuan")])
    for r in range(5, sums.max_row + 1):
        sums.cell(r, 4).number_format = YUAN_FORMAT
    for c, width in enumerate((14, 14, 8, 16), start=1):
        sums.column_dimensions[get_column_letter(c)].width = width
        sums.cell(4, c).font = Font(bold=True)
    sums.freeze_panes = "A5"

    stamp = dt.datetime.combine(date, dt.time())
    wb.properties.creator = wb.properties.lastModifiedBy = "duizhang"
    wb.properties.created = wb.properties.modified = stamp
    wb.properties.title = f"差错处理清单 {channel} {date.isoformat()}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(wb, archive).write_data()   # not wb.save(): it stamps `modified` with the clock
    return _fix_zip(buf.getvalue(), stamp)
