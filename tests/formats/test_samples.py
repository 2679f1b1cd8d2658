"""Every sample file against its expected result, discovered from sample_files/**/<case>.expected.json.

Adding a case adds two files and no code. `UPDATE_GOLDEN=1` rewrites the expected results of the cases that
load (never on CI: a golden file is a statement of what the spec requires, reviewed like code).

An expected result is either
  {"raises": "ControlTotalMismatch", "line": 3, "message_contains": "..."}           a rejected file, or
  {"records": 5, "loaded": 4, "quarantine": [{"line": 3, "field": "amount_fen"}],     a loaded file
   "header": {...}, "trailer": {...}, "check": [{"line": 2, "field": value, ...}]}   (subsets compared)
"""
from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from formats import errors, registry
from formats.flag import parse_flag

from .conftest import data_file, layout_of, sample_cases

CASES = sample_cases()


def _plain(value):
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _read(expected_path):
    path = data_file(expected_path)
    flag_path = path.with_name(path.name + ".ok")
    flag = parse_flag(flag_path.read_bytes(), flag_path.name) if flag_path.exists() else None
    return registry.read(path, layout_of(expected_path), flag)


@pytest.mark.parametrize("expected_path", CASES, ids=[str(c.relative_to(c.parents[2]))[: -len(".expected.json")]
                                                      for c in CASES])
def test_sample(expected_path):
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    if "raises" in expected:
        error_type = getattr(errors, expected["raises"])
        with pytest.raises(error_type) as info:
            _read(expected_path)
        e = info.value
        assert type(e).__name__ == expected["raises"], f"raised {type(e).__name__}: {e}"
        assert data_file(expected_path).name in str(e) or isinstance(e, errors.FlagMismatch), \
            f"the message must name the file: {e}"
        if "line" in expected:
            assert e.line == expected["line"], str(e)
        if "message_contains" in expected:
            assert expected["message_contains"] in str(e), str(e)
        return
    result = _read(expected_path)
    actual_q = [{"line": r["_line"], "field": r["_field"]} for r in result.quarantine.to_pylist()]
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected.update(records=result.detail_count, loaded=result.records.num_rows, quarantine=actual_q)
        expected_path.write_text(json.dumps(expected, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert result.detail_count == expected["records"]
    assert result.records.num_rows == expected["loaded"]
    assert actual_q == expected["quarantine"]
    # conservation: every detail record is either loaded or quarantined
    assert result.records.num_rows + result.quarantined == result.detail_count
    for part in ("header", "trailer"):
        for key, value in expected.get(part, {}).items():
            assert _plain(getattr(result, part)[key]) == value, f"{part}.{key}"
    rows = {r["_line"]: r for r in result.records.to_pylist()}
    for check in expected.get("check", []):
        row = rows[check["line"]]
        for key, value in check.items():
            if key == "line":
                continue
            assert _plain(row[key]) == value, f"line {check['line']} {key}: {row[key]!r}"
    summary = result.summary()
    assert summary["records"] == expected["records"] and summary["quarantined"] == len(expected["quarantine"])


@pytest.mark.parametrize("expected_path", CASES, ids=[str(c.relative_to(c.parents[2]))[: -len(".expected.json")]
                                                      for c in CASES])
def test_cli_parse(expected_path, tmp_path, capsys):
    """`duizhang parse LAYOUT FILE -o OUT.parquet` loads every valid sample and refuses every broken one, exit
    code 1 and a message naming the file and what is wrong."""
    import pyarrow.parquet as pq

    from duizhang.cli import main

    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    out = tmp_path / "out.parquet"
    code = main(["parse", layout_of(expected_path), str(data_file(expected_path)), "-o", str(out)])
    stdout, stderr = capsys.readouterr()
    if "raises" in expected:
        assert code == 1 and not out.exists()
        assert stderr.startswith("duizhang: error: ") and expected.get("message_contains", "") in stderr
        assert data_file(expected_path).name in stderr or expected["raises"] == "FlagMismatch", stderr
        return
    assert code == 0, stderr
    assert pq.read_metadata(out).num_rows == expected["loaded"]
    summary = json.loads(stdout)
    assert (summary["records"], summary["quarantined"]) == (expected["records"], len(expected["quarantine"]))
    quarantine = out.with_name(out.name + ".quarantine.parquet")
    assert quarantine.exists() == bool(expected["quarantine"])
