"""The daily report of one business date over every channel in the workdir: an Excel workbook and an HTML page.

Both are built from the warehouse only (the same views analysts query), so what they show is what a query
returns. Both are byte-identical on a rerun: no clock anywhere (the workbook's properties and zip entry times are
fixed from T), rows in a fixed order. The HTML page is self-contained (inline SVG charts drawn here from the data,
a few lines of inline script, no network), so it opens from the filesystem or from the Airflow UI.

Money is kept in integer fen throughout; it becomes yuan only as an exact `Decimal` in a cell or as text.
"""
from __future__ import annotations

import datetime as dt
import html
import io
import os
import re
import zipfile
from decimal import Decimal
from pathlib import Path

import duckdb

from recon.outcomes import BREAKS, BREAKS_SQL, Outcome
from duizhang.workdir import Workdir

OUTCOMES = [o.value for o in Outcome]
COLOURS = {"MATCHED": "#4c9a2a", "AMOUNT_MISMATCH": "#d9534f", "STATUS_MISMATCH": "#f0ad4e",
           "COUNTERPARTY_ONLY": "#8e44ad", "LEDGER_ONLY": "#2c7fb8", "DUPLICATE": "#e377c2", "PENDING": "#999999",
           "QUARANTINED": "#333333"}
AGE_BUCKETS = ((0, 0, "0 days"), (1, 1, "1 day"), (2, 3, "2-3 days"), (4, 7, "4-7 days"), (8, 30, "8-30 days"),
               (31, 10**6, "over 30 days"))
TREND_DAYS = 30
YUAN = "#,##0.00"


def yuan(fen: int | None) -> Decimal:
    return Decimal(int(fen or 0)) / 100


def yuan_text(fen: int | None) -> str:
    return f"{yuan(fen):,.2f}"


# --- the numbers ------------------------------------------------------------------------------------------


def gather(wd: Workdir, date: dt.date) -> dict:
    """Everything the report shows for T, from the warehouse views."""
    from duizhang.quarantine import publish_registry
    with wd.control() as db:
        channels_with_files = [r[0] for r in db.execute(
            "SELECT DISTINCT channel FROM files WHERE business_date = ? ORDER BY channel", (date.isoformat(),))]
    for channel in channels_with_files:  # rejected files show even when the night stopped before matching
        publish_registry(wd, channel, date)
    con = duckdb.connect(str(wd.refresh_views()), read_only=True)
    t = date.isoformat()

    def rows(sql: str, *args) -> list[dict]:
        rel = con.execute(sql, list(args))
        cols = [d[0] for d in rel.description]
        return [dict(zip(cols, r)) for r in rel.fetchall()]

    try:
        outcomes = rows("SELECT channel, side, outcome, CAST(sum(records) AS BIGINT) AS records, "
                        "CAST(sum(amount_fen) AS BIGINT) AS amount_fen FROM recon_summary WHERE business_date = ? "
                        "GROUP BY ALL ORDER BY channel, side, outcome", t)
        channels = sorted({r["channel"] for r in outcomes} | set(channels_with_files))
        summary = []
        for ch in channels:
            mine = [r for r in outcomes if r["channel"] == ch]

            def total(pred, key="records"):
                return sum(r[key] for r in mine if pred(r))
            clearing = rows("SELECT net_fen FROM clearing WHERE channel = ? AND business_date = ?", ch, t)
            checks = rows("SELECT count(*) AS n, count(*) FILTER (WHERE NOT success) AS failed FROM validation "
                          "WHERE channel = ? AND business_date = ?", ch, t)[0]
            summary.append({
                "channel": ch,
                "counterparty_records": total(lambda r: r["side"] == "counterparty"),
                "counterparty_fen": total(lambda r: r["side"] == "counterparty", "amount_fen"),
                "ledger_records": total(lambda r: r["side"] == "ledger"),
                "ledger_fen": total(lambda r: r["side"] == "ledger", "amount_fen"),
                "matched": total(lambda r: r["outcome"] == "MATCHED"),
                "breaks": total(lambda r: r["outcome"] in BREAKS),
                "breaks_fen": total(lambda r: r["outcome"] in BREAKS, "amount_fen"),
                "pending": total(lambda r: r["outcome"] == "PENDING"),
                "quarantined": total(lambda r: r["outcome"] == "QUARANTINED"),
                "rejected_files": rows("SELECT count(*) AS n FROM file_registry_snapshot WHERE channel = ? AND "
                                       "business_date = ? AND status = 'rejected'", ch, t)[0]["n"],
                "checks": checks["n"], "checks_failed": checks["failed"],
                "net_fen": clearing[0]["net_fen"] if clearing else None,
            })
        by_outcome = {ch: {o: sum(r["records"] for r in outcomes if r["channel"] == ch and r["outcome"] == o)
                           for o in OUTCOMES} for ch in channels}
        breaks = rows("SELECT channel, record_ref, side, outcome, amount_fen, match_ref, journal_no, account_masked, "
                      "reason, status, status_by, status_at, status_note FROM breaks WHERE business_date = ? "
                      "ORDER BY channel, record_ref", t)
        open_items = rows(f"""
            SELECT 'break' AS kind, channel, amount_fen, DATE '{t}' - business_date AS age_days FROM breaks
            WHERE business_date <= DATE '{t}' AND status IN ('new', 'investigating')
            UNION ALL
            SELECT 'pending', channel, amount_fen, DATE '{t}' - origin_date FROM recon_result
            WHERE business_date = DATE '{t}' AND outcome = 'PENDING'""")
        ageing = [{"bucket": label,
                   "items": sum(1 for r in open_items if lo <= r["age_days"] <= hi),
                   "amount_fen": sum(r["amount_fen"] or 0 for r in open_items if lo <= r["age_days"] <= hi)}
                  for lo, hi, label in AGE_BUCKETS]
        since = date - dt.timedelta(days=TREND_DAYS - 1)
        trend_rows = rows(f"""
            SELECT business_date,
                   CAST(sum(records) FILTER (WHERE outcome = 'MATCHED') AS BIGINT) AS matched,
                   CAST(sum(records) FILTER (WHERE outcome IN {BREAKS_SQL}) AS BIGINT) AS breaks,
                   CAST(sum(amount_fen) FILTER (WHERE outcome IN {BREAKS_SQL}) AS BIGINT) AS breaks_fen
            FROM recon_summary WHERE business_date BETWEEN DATE '{since}' AND DATE '{t}' GROUP BY ALL""")
        by_day = {r["business_date"]: r for r in trend_rows}
        trend = [{"date": d, "matched": (by_day.get(d) or {}).get("matched") or 0,
                  "breaks": (by_day.get(d) or {}).get("breaks") or 0,
                  "breaks_fen": (by_day.get(d) or {}).get("breaks_fen") or 0}
                 for d in (since + dt.timedelta(days=i) for i in range(TREND_DAYS))]
        validation = rows("SELECT channel, file, description, expectation, success, element_count, unexpected_count, "
                          "offending FROM validation WHERE business_date = ? ORDER BY success, channel, file, description", t)
        quarantine = rows("SELECT channel, file, line, record, field, expected, found, amount_fen FROM quarantine "
                          "WHERE business_date = ? ORDER BY channel, file, line", t)
        rejected = rows("SELECT channel, name, version, detail FROM file_registry_snapshot WHERE business_date = ? "
                        "AND status = 'rejected' ORDER BY channel, name, version", t)
        history = rows("SELECT h.channel, h.record_ref, h.seq, h.status, h.changed_by, h.changed_at, h.note "
                       "FROM break_status h WHERE h.business_date = ? ORDER BY h.channel, h.record_ref, h.seq", t)
    finally:
        con.close()
    return {"date": date, "channels": channels, "summary": summary, "by_outcome": by_outcome, "breaks": breaks,
            "ageing": ageing, "trend": trend, "validation": validation, "quarantine": quarantine,
            "rejected": rejected, "history": history}


# --- the workbook -----------------------------------------------------------------------------------------

SUMMARY_COLUMNS = (("channel", "channel", None), ("counterparty_records", "counterparty records", None),
                   ("counterparty_fen", "counterparty yuan", YUAN), ("ledger_records", "ledger records", None),
                   ("ledger_fen", "ledger yuan", YUAN), ("matched", "matched", None), ("breaks", "breaks", None),
                   ("breaks_fen", "yuan in breaks", YUAN), ("pending", "pending", None),
                   ("quarantined", "quarantined", None), ("rejected_files", "rejected files", None),
                   ("checks", "quality checks", None), ("checks_failed", "checks failed", None),
                   ("net_fen", "clearing net yuan", YUAN))
BREAK_COLUMNS = (("record_ref", "record", None), ("side", "side", None), ("outcome", "outcome", None),
                 ("amount_fen", "yuan", YUAN), ("match_ref", "match key", None), ("journal_no", "journal no", None),
                 ("account_masked", "account", None), ("reason", "reason", None), ("status", "status", None),
                 ("status_by", "status by", None), ("status_at", "status at", None), ("status_note", "note", None))


def _sheet(wb, title: str, rows: list[dict], columns) -> None:
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    ws = wb.create_sheet(title[:31])
    ws.append([label for _, label, _ in columns])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for r in rows:
        ws.append([yuan(r[k]) if fmt == YUAN and r[k] is not None else r[k] for k, _, fmt in columns])
    for i, (_, label, fmt) in enumerate(columns, start=1):
        letter = get_column_letter(i)
        ws.column_dimensions[letter].width = max(10, min(60, len(label) + 4))
        if fmt:
            for cell in ws[letter][1:]:
                cell.number_format = fmt
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{max(1, len(rows) + 1)}"


def write_workbook(data: dict, path: Path) -> Path:
    from openpyxl import Workbook
    from openpyxl.chart import BarChart, Reference
    from openpyxl.styles import Font
    date = data["date"]
    wb = Workbook()
    ws = wb.active
    ws.title = "Summary"
    ws.append([f"duizhang daily reconciliation report, business date {date}"])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append([])
    header_row = 3
    ws.append([label for _, label, _ in SUMMARY_COLUMNS])
    for cell in ws[header_row]:
        cell.font = Font(bold=True)
    for s in data["summary"]:
        ws.append([yuan(s[k]) if fmt == YUAN and s[k] is not None else s[k] for k, _, fmt in SUMMARY_COLUMNS])
    for i, (_, _, fmt) in enumerate(SUMMARY_COLUMNS, start=1):
        ws.column_dimensions[ws.cell(header_row, i).column_letter].width = 16
        if fmt:
            for r in range(header_row + 1, header_row + 1 + len(data["summary"])):
                ws.cell(r, i).number_format = YUAN
    # The outcomes per channel, as a table the native chart reads.
    top = header_row + len(data["summary"]) + 3
    ws.cell(top, 1, "outcomes (records)").font = Font(bold=True)
    ws.cell(top + 1, 1, "channel")
    for j, o in enumerate(OUTCOMES, start=2):
        ws.cell(top + 1, j, o)
    for i, ch in enumerate(data["channels"], start=top + 2):
        ws.cell(i, 1, ch)
        for j, o in enumerate(OUTCOMES, start=2):
            ws.cell(i, j, data["by_outcome"][ch][o])
    if data["channels"]:
        chart = BarChart()
        chart.type, chart.grouping, chart.overlap = "bar", "stacked", 100
        chart.title, chart.y_axis.title = f"Outcomes per channel, {date}", "records"
        last = top + 1 + len(data["channels"])
        chart.add_data(Reference(ws, min_col=2, max_col=1 + len(OUTCOMES), min_row=top + 1, max_row=last),
                       titles_from_data=True)
        chart.set_categories(Reference(ws, min_col=1, min_row=top + 2, max_row=last))
        chart.width, chart.height = 24, 4 + 1.5 * len(data["channels"])
        ws.add_chart(chart, f"A{last + 3}")
    for ch in data["channels"]:
        _sheet(wb, f"breaks {ch}", [b for b in data["breaks"] if b["channel"] == ch], BREAK_COLUMNS)
    _sheet(wb, "Quality", data["validation"], tuple((k, k, None) for k in (
        "channel", "file", "description", "expectation", "success", "element_count", "unexpected_count", "offending")))
    _sheet(wb, "Quarantine", data["quarantine"], tuple((k, k, YUAN if k == "amount_fen" else None) for k in (
        "channel", "file", "line", "record", "field", "expected", "found", "amount_fen")))
    _sheet(wb, "Rejected files", data["rejected"], tuple((k, k, None) for k in ("channel", "name", "version",
                                                                                 "detail")))
    _sheet(wb, "Status history", data["history"], tuple((k, k, None) for k in (
        "channel", "record_ref", "seq", "status", "changed_by", "changed_at", "note")))
    stamp = dt.datetime.combine(date, dt.time())
    wb.properties.creator = "duizhang"
    wb.properties.created = wb.properties.modified = stamp
    buffer = io.BytesIO()
    wb.save(buffer)
    _write_fixed_zip(buffer.getvalue(), path, stamp)
    return path


def _write_fixed_zip(data: bytes, path: Path, stamp: dt.datetime) -> None:
    """Re-pack openpyxl's zip with every entry dated T: openpyxl stamps the entries and `dcterms:modified` with the
    clock when it saves, whatever the workbook's properties say."""
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            content = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + f"{stamp:%Y-%m-%dT%H:%M:%SZ}".encode(),
                                 content)
            fixed = zipfile.ZipInfo(info.filename, date_time=stamp.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(fixed, content)
    os.replace(tmp, path)


# --- the page ---------------------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _hbars(chart_id: str, title: str, rows: list[tuple[str, list[tuple[str, int, str]]]], unit: str) -> str:
    """Horizontal (stacked) bars: rows of (label, [(series, value, shown text)]); values drawn to one scale."""
    width, left, bar_h, gap = 760, 170, 22, 10
    biggest = max([sum(v for _, v, _ in segs) for _, segs in rows] + [1])
    height = 30 + len(rows) * (bar_h + gap) + 30
    out = [f'<figure id="{chart_id}"><figcaption>{_e(title)}</figcaption>'
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 120}" height="{height}" role="img">']
    for i, (label, segs) in enumerate(rows):
        y = 20 + i * (bar_h + gap)
        out.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" class="label">{_e(label)}</text>')
        x = float(left)
        for series, value, shown in segs:
            w = (width - left) * value / biggest
            out.append(f'<rect class="bar" x="{x:.2f}" y="{y}" width="{w:.2f}" height="{bar_h}" '
                       f'fill="{COLOURS.get(series, "#2c7fb8")}" data-row="{_e(label)}" data-series="{_e(series)}" '
                       f'data-value="{value}"><title>{_e(label)} {_e(series)}: {_e(shown)} {unit}</title></rect>')
            x += w
        total_text = segs[0][2] if len(segs) == 1 else str(sum(v for _, v, _ in segs))
        out.append(f'<text x="{x + 6:.2f}" y="{y + 16}" class="value" data-row="{_e(label)}">{_e(total_text)}</text>')
    out.append("</svg></figure>")
    return "".join(out)


def _trend(data: dict) -> str:
    width, height, left, bottom = 860, 260, 50, 40
    points = data["trend"]
    biggest = max([max(p["matched"], p["breaks"]) for p in points] + [1])
    step = (width - left - 20) / max(1, len(points) - 1)

    def y(v: int) -> float:
        return height - bottom - (height - bottom - 20) * v / biggest

    out = [f'<figure id="trend"><figcaption>Matched records and breaks, last {TREND_DAYS} days</figcaption>'
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#999"/>']
    for series, colour in (("matched", COLOURS["MATCHED"]), ("breaks", COLOURS["AMOUNT_MISMATCH"])):
        coords = " ".join(f"{left + i * step:.2f},{y(p[series]):.2f}" for i, p in enumerate(points))
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
        for i, p in enumerate(points):
            out.append(f'<circle class="point" cx="{left + i * step:.2f}" cy="{y(p[series]):.2f}" r="3" '
                       f'fill="{colour}" data-series="{series}" data-date="{p["date"]}" data-value="{p[series]}">'
                       f'<title>{p["date"]} {series}: {p[series]}</title></circle>')
    for i, p in enumerate(points):
        if i % 5 == 0 or i == len(points) - 1:
            out.append(f'<text x="{left + i * step:.2f}" y="{height - bottom + 16}" text-anchor="middle" '
                       f'class="axis">{p["date"]:%m-%d}</text>')
    out.append(f'<text x="{left}" y="14" class="axis">max {biggest} records; green matched, red breaks</text>')
    out.append("</svg></figure>")
    return "".join(out)


def _table(table_id: str, rows: list[dict], columns, money: tuple[str, ...] = ()) -> str:
    if not rows:
        return f'<p id="{table_id}" class="none">none</p>'
    head = "".join(f"<th>{_e(label)}</th>" for _, label in columns)
    body = []
    for r in rows:
        cells = "".join(f'<td class="num">{yuan_text(r[k])}</td>' if k in money and r[k] is not None
                        else f"<td>{_e(r[k])}</td>" for k, _ in columns)
        body.append(f"<tr>{cells}</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


_STYLE = """body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 24px}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:left}td.num{text-align:right}
th{background:#f0f0f0;position:sticky;top:0}figure{margin:12px 0 28px}figcaption{font-weight:bold;margin-bottom:6px}
.label,.value,.axis{font-size:12px}.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}"""

# Runs in the browser: records each drawn bar's rendered width, so a test can see the charts were laid out.
_SCRIPT = """document.querySelectorAll('rect.bar').forEach(function(r){
  r.setAttribute('data-rendered-width', r.getBBox().width.toFixed(1));});
document.documentElement.setAttribute('data-rendered', 'yes');"""


def write_page(data: dict, path: Path) -> Path:
    date = data["date"]
    summary = data["summary"]
    outcomes = [(ch, [(o, data["by_outcome"][ch][o], str(data["by_outcome"][ch][o])) for o in OUTCOMES
                      if data["by_outcome"][ch][o]]) for ch in data["channels"]]
    money = [(s["channel"], [("fen in breaks", s["breaks_fen"], yuan_text(s["breaks_fen"]))]) for s in summary]
    ageing = [(a["bucket"], [("open items", a["items"], str(a["items"]))]) for a in data["ageing"]]
    legend = "".join(f'<span><i style="background:{COLOURS[o]}"></i>{o}</span>' for o in OUTCOMES)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>duizhang report {date}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Reconciliation report, business date {date}</h1>",
        f'<p>{len(data["channels"])} channel(s). Money in yuan. Built from the warehouse; the same numbers as '
        "<code>duizhang sql</code>.</p>",
        "<h2>Summary</h2>",
        _table("summary", summary, [(k, label) for k, label, _ in SUMMARY_COLUMNS],
               money=tuple(k for k, _, f in SUMMARY_COLUMNS if f == YUAN)),
        f'<div class="legend">{legend}</div>',
        _hbars("outcomes", "Outcomes per channel (records)", outcomes, "records"),
        _hbars("money", "Money in breaks per channel (yuan)", money, "yuan"),
        _hbars("ageing", "Open items by age (unresolved breaks and pending items)", ageing, "items"),
        _trend(data),
        "<h2>Breaks</h2>",
        _table("breaks", data["breaks"], [(k, label) for k, label, _ in (("channel", "channel", None),
                                                                          *BREAK_COLUMNS)], money=("amount_fen",)),
        "<h2>Break status history</h2>",
        _table("history", data["history"], [(k, k) for k in ("channel", "record_ref", "seq", "status", "changed_by",
                                                              "changed_at", "note")]),
        "<h2>Data quality</h2>",
        _table("validation", data["validation"], [(k, k) for k in ("channel", "file", "description", "expectation",
                                                                   "success", "element_count", "unexpected_count",
                                                                   "offending")]),
        "<h2>Quarantine</h2>",
        _table("rejected", data["rejected"], [(k, k) for k in ("channel", "name", "version", "detail")]),
        _table("quarantine", data["quarantine"], [(k, k) for k in ("channel", "file", "line", "record", "field",
                                                                   "expected", "found", "amount_fen")],
               money=("amount_fen",)),
        f"<script>{_SCRIPT}</script></body></html>",
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path


def build(wd: Workdir, date: dt.date, out_dir: Path | None = None) -> dict:
    """Write `report_{T}.xlsx` and `report_{T}.html` (default under `reports/{T}/` of the workdir)."""
    data = gather(wd, date)
    out = Path(out_dir) if out_dir else wd.root / "reports" / f"{date:%Y%m%d}"
    out.mkdir(parents=True, exist_ok=True)
    xlsx = write_workbook(data, out / f"report_{date:%Y%m%d}.xlsx")
    page = write_page(data, out / f"report_{date:%Y%m%d}.html")
    return {"xlsx": str(xlsx), "html": str(page), "channels": data["channels"], "summary": data["summary"]}
