"""Every channel's sample night: the quality suites hold, and the daily report covers every channel with the
warehouse's numbers (the code knows no channel by name)."""
from __future__ import annotations

import re
from pathlib import Path

import duckdb

from duizhang import pipeline, quality, report
from duizhang.channels import CHANNEL_FILES
from duizhang.workdir import Workdir
from tests.accounts import account
from tests.quality.night import NIGHTS, T1


def test_every_channel_validates_and_reports(tmp_path):
    wd = Workdir(tmp_path / "work")
    for channel in CHANNEL_FILES:
        pipeline.run(channel, T1, str(account(channel, tmp_path)), str(NIGHTS / "ledger"), wd)
        assert quality.validate(channel, T1, wd)["failed"] == 0, channel
    out = report.build(wd, T1)
    con = duckdb.connect(str(wd.root / "warehouse.duckdb"), read_only=True)
    expected = {(ch, o): n for ch, o, n in con.execute(
        "SELECT channel, outcome, CAST(sum(records) AS BIGINT) FROM recon_summary GROUP BY ALL").fetchall()}
    channels = {ch for ch, in con.execute("SELECT DISTINCT channel FROM validation").fetchall()}
    con.close()
    assert channels == set(CHANNEL_FILES)
    assert {ch for ch, _ in expected} <= set(out["channels"])
    page = Path(out["html"]).read_text()
    figure = re.search(r'<figure id="outcomes">.*?</figure>', page, re.S).group(0)
    bars = {(row, series): int(v) for row, series, v in re.findall(
        r'data-row="([^"]*)" data-series="([^"]*)" data-value="(\d+)"', figure)}
    assert bars == expected
