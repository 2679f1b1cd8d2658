"""The daily report on the sample nights: the workbook (numbers, native chart, break sheets, yuan, byte-identical
reruns), the HTML page opened in a real headless Chromium (rendered, charts carrying the warehouse's numbers,
a screenshot), and analysts querying the views while a night runs in another process."""
from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing
import re
import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import openpyxl
import pytest

from duizhang import breaks, quality, report
from tests.quality.night import CHANNEL, T1, T2, run_night


def warehouse(wd, sql):
    con = duckdb.connect(str(wd.refresh_views()), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def reported(wd):
    quality.validate(CHANNEL, T1, wd)
    breaks.set_status(wd, CHANNEL, T1, "IND26112101ACOMN:7", "resolved", "wang.lead", "fee adjustment")
    return wd, report.build(wd, T1)


def test_workbook_numbers_chart_sheets_and_byte_identical_rerun(reported):
    wd, out = reported
    first = {k: hashlib.sha256(Path(out[k]).read_bytes()).hexdigest() for k in ("xlsx", "html")}
    again = report.build(wd, T1)
    assert {k: hashlib.sha256(Path(again[k]).read_bytes()).hexdigest() for k in ("xlsx", "html")} == first
    wb = openpyxl.load_workbook(out["xlsx"])
    assert wb.sheetnames[:2] == ["Summary", f"breaks {CHANNEL}"]
    summary = wb["Summary"]
    header = [c.value for c in summary[3]]
    row = dict(zip(header, [c.value for c in summary[4]]))
    (breaks_n, breaks_fen), = warehouse(wd, "SELECT count(*), sum(amount_fen) FROM breaks WHERE business_date = "
                                            "DATE '2026-11-21'")
    matched, = warehouse(wd, "SELECT sum(records) FROM recon_summary WHERE outcome = 'MATCHED' AND business_date = "
                             "DATE '2026-11-21'")[0]
    assert (row["channel"], row["breaks"], row["matched"]) == (CHANNEL, breaks_n, matched)
    assert Decimal(str(row["yuan in breaks"])) == Decimal(breaks_fen) / 100
    assert summary.cell(4, header.index("yuan in breaks") + 1).number_format == "#,##0.00"
    assert len(summary._charts) == 1 and summary._charts[0].grouping == "stacked"
    sheet = wb[f"breaks {CHANNEL}"]
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == f"A1:L{breaks_n + 1}"
    rows = {r[0]: r for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert len(rows) == breaks_n
    assert rows["IND26112101ACOMN:7"][3] == Decimal("150.00") and rows["IND26112101ACOMN:7"][8] == "resolved"
    assert sheet["D2"].number_format == "#,##0.00"
    assert wb.properties.created == dt.datetime(2026, 11, 21)


def chromium(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    assert exe, "chromium is missing: run scripts/system-deps.sh (make test does)"
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=120)


def test_the_page_renders_in_chromium_with_the_warehouse_numbers(reported, tmp_path):
    wd, out = reported
    url = Path(out["html"]).as_uri()
    dom = chromium("--virtual-time-budget=2000", "--dump-dom", url).stdout
    assert 'data-rendered="yes"' in dom  # the page's script ran in the browser
    figure = re.search(r'<figure id="outcomes">.*?</figure>', dom, re.S).group(0)
    bars = re.findall(r'<rect class="bar"[^>]*data-row="([^"]*)" data-series="([^"]*)" data-value="(\d+)" '
                      r'data-rendered-width="([\d.]+)"', figure)
    expected = dict(((CHANNEL, o), n) for o, n in warehouse(
        wd, "SELECT outcome, sum(records) FROM recon_summary WHERE business_date = DATE '2026-11-21' GROUP BY 1"))
    assert {(row, series): int(v) for row, series, v, _ in bars} == expected
    in_breaks, = warehouse(wd, "SELECT sum(amount_fen) FROM breaks WHERE business_date = DATE '2026-11-21'")[0]
    money = re.search(r'<figure id="money">.*?</figure>', dom, re.S).group(0)
    assert f'data-value="{in_breaks}"' in money and f"{Decimal(in_breaks) / 100:,.2f}" in money
    # Ageing: the open breaks (one was resolved) and the pending item, all 0 days old on T.
    open_items, = warehouse(wd, "SELECT count(*) FROM open_items WHERE business_date = DATE '2026-11-21'")[0]
    ageing = re.search(r'<figure id="ageing">.*?</figure>', dom, re.S).group(0)
    assert re.search(r'data-row="0 days" data-series="open items" data-value="(\d+)"', ageing).group(1) == str(open_items)
    # Trend: 30 points per series, the last one T with the day's numbers.
    points = re.findall(r'data-series="(matched|breaks)" data-date="([\d-]+)" data-value="(\d+)"', dom)
    assert len(points) == 60 and ("breaks", "2026-11-21", str(len(warehouse(
        wd, "SELECT * FROM breaks WHERE business_date = DATE '2026-11-21'")))) in points
    # Laid out to scale: widths proportional to values within a chart.
    widths = {(row, series): float(w) for row, series, _, w in bars}
    matched, dup = expected[(CHANNEL, "MATCHED")], expected[(CHANNEL, "DUPLICATE")]
    assert widths[(CHANNEL, "MATCHED")] / widths[(CHANNEL, "DUPLICATE")] == pytest.approx(matched / dup, rel=0.02)
    assert "http://" not in Path(out["html"]).read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")
    shot = tmp_path / "report.png"
    chromium("--window-size=1100,2400", f"--screenshot={shot}", url)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def _night_in_another_process(root: str) -> None:
    from duizhang.workdir import Workdir
    wd = Workdir(root)
    run_night(wd, T2)
    run_night(wd, T1)  # a rerun replaces T1's partitions while analysts read them


def test_analysts_query_while_a_night_runs(wd):
    full = {d: n for d, n, _ in warehouse(wd, "SELECT business_date, count(*), 0 FROM recon_result GROUP BY 1")}
    t1_breaks = warehouse(wd, "SELECT count(*), sum(amount_fen) FROM breaks WHERE business_date = DATE '2026-11-21'")
    db = wd.root / "warehouse.duckdb"
    proc = multiprocessing.get_context("spawn").Process(target=_night_in_another_process, args=(str(wd.root),))
    proc.start()
    seen, queries = [], 0
    try:
        while proc.is_alive() or queries < 5:
            con = duckdb.connect(str(db), read_only=True)  # a new analyst session each time
            try:
                counts = dict(con.execute("SELECT business_date, count(*) FROM recon_result GROUP BY 1").fetchall())
                assert con.execute("SELECT count(*), sum(amount_fen) FROM breaks WHERE business_date = "
                                   "DATE '2026-11-21'").fetchall() == t1_breaks
                con.execute("SELECT * FROM open_items_older_than(0)").fetchall()
                con.execute("SELECT * FROM breaks_by_channel").fetchall()
            finally:
                con.close()
            assert counts[T1] == full[T1]  # never a partial T1, before, during or after its rerun
            seen.append(counts.get(T2))
            queries += 1
            time.sleep(0.05)
    finally:
        proc.join(timeout=300)
    assert proc.exitcode == 0
    t2_full = warehouse(wd, "SELECT count(*) FROM recon_result WHERE business_date = DATE '2026-11-22'")[0][0]
    assert t2_full > 0 and set(seen) <= {None, t2_full}  # T2 absent or complete, never half
    assert queries >= 5 and None in seen
