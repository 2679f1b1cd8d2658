"""Great Expectations only when a check fails: importing it costs seconds a process (pandas about one more), so a
night where every check holds imports neither; a check that fails is judged and reported by GX as it was when GX
ran on every check."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from duizhang import quality
from duizhang.quality import ExpectationFailed
from tests.quality.night import CHANNEL, T1
from tests.quality.test_quality import inject_every_kind_of_fault, parsed_file, set_row, validation

ROOT = Path(__file__).resolve().parents[2]
# What the code before checks were data (commit 50758bb, GX judging every check) reported for these faults.
REPORTED_BEFORE = Path(__file__).with_name("every_kind_of_fault.expected.json")

VALIDATE_IN_A_FRESH_PROCESS = """
import datetime as dt, json, sys
from duizhang.quality import ExpectationFailed, validate
from duizhang.workdir import Workdir
try:
    validate(sys.argv[1], dt.date.fromisoformat(sys.argv[2]), Workdir(sys.argv[3]))
    failed = False
except ExpectationFailed:
    failed = True
print(json.dumps({"failed": failed,
                  "imported": sorted({m.partition(".")[0] for m in sys.modules} & {"great_expectations", "pandas"})}))
"""


def validate_in_a_fresh_process(wd) -> dict:
    run = subprocess.run([sys.executable, "-c", VALIDATE_IN_A_FRESH_PROCESS, CHANNEL, T1.isoformat(), str(wd.root)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(run.stdout.splitlines()[-1])


def test_a_passing_validate_imports_neither_gx_nor_pandas_and_a_failing_one_does(wd):
    extract = wd.ledger_extract(T1)
    extract.with_name(f"{extract.stem}.validation.json").unlink()   # the journal's suite runs too, not its memo
    assert validate_in_a_fresh_process(wd) == {"failed": False, "imported": []}
    set_row(parsed_file(wd), 5, amount_fen=0)
    assert validate_in_a_fresh_process(wd) == {"failed": True, "imported": ["great_expectations", "pandas"]}


def test_a_failing_validate_reports_as_when_gx_judged_every_check(wd):
    inject_every_kind_of_fault(wd)
    with pytest.raises(ExpectationFailed) as e:
        quality.validate(CHANNEL, T1, wd)
    before = json.loads(REPORTED_BEFORE.read_text())
    assert str(e.value) == before["message"]
    assert [r | {"business_date": r["business_date"].isoformat()} for r in validation(wd)] == before["validation"]


def test_duckdb_and_gx_disagreeing_stops_the_step(wd, monkeypatch):
    """A translation to SQL that GX does not share (here: every value present offends) stops validate."""
    monkeypatch.setattr(quality, "_unexpected_sql", lambda check, schema: f'"{check.kwargs["column"]}" IS NOT NULL')
    with pytest.raises(RuntimeError, match="IND26112101ACOMN: DuckDB and GX disagree on "):
        quality.validate(CHANNEL, T1, wd)


def test_each_check_is_the_gx_expectation_of_its_type_and_arguments():
    from formats.registry import LAYOUTS
    suites = [quality.layout_suite(layout, T1) for layout in LAYOUTS.values()] + [quality.results_suite(T1)]
    checks = [check for suite in suites for check in suite.rows]
    assert {c.type for c in checks} == {"expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set",
                                        "expect_column_values_to_be_between",
                                        "expect_column_values_to_not_match_regex"}
    for check in checks:
        config = check.expectation().configuration
        assert (config.type, config.kwargs) == (check.type, check.kwargs), check.words
