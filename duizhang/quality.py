"""Data quality: Great Expectations suites per dataset, run on every parsed file, the ledger extract and the
reconciliation results of a channel and business date.

The suites are data. For a counterparty file most of it comes from the file's layout declaration (key fields
present, codes in their tables, amounts within range, dates inside the business-date window, the control totals
it declares); what the declaration cannot say (which keys must be unique, which amounts must be > 0, how wide the
date window is) sits in `RULES`, one line per layout. The reconciliation results have their own suite (`RESULTS`).

How it runs, so that a night of 2,000 small files and a file of 10 million records both take a handful of scans:
- the files of one kind (layout) of a channel and date are validated together, each keeping its own result row per
  check: the row checks are DuckDB aggregates grouped by file over all of them (GX's semantics in SQL, skipped where
  the Parquet statistics prove a check held), and GX judges the first offending rows of each failed (file, check),
  read back in file order, in one validation per check;
- uniqueness is one pass over every file's keys (a 64-bit hash of file and key), control totals one query grouped by
  file; the repeated keys and the totals off, of all files, are judged by one GX validation each;
- the ledger extract, shared by every channel of the date, is validated once per content: its rows are kept next to
  it and reused while its bytes (and the suite) are the same.
A check is data (GX's expectation type, its arguments and its words), built and counted without GX: importing GX
costs ~6.5 CPU seconds a process (pandas ~0.9 of them), so a night where every check holds imports neither. GX is
imported once per process when a check fails, and runs with an ephemeral context through its pandas data source
(notes/airflow3.md §3: its SQL source does not work on DuckDB 2.0), ~50 ms a validation.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from formats.errors import Terminal
from formats.layout import Code, Count, Date8, Fen, FileLayout, Int, IsoDate, Sum, Unique, Yuan
from recon.outcomes import Outcome
from duizhang.workdir import Workdir, _remove_orphans

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no network on a bank's batch host
logging.getLogger("great_expectations").setLevel(logging.WARNING)
log = logging.getLogger("duizhang.quality")

MEMORY_LIMIT = "1536MB"           # DuckDB's own memory (a file whose keys all repeat spills its groups beyond it)
MAX_AMOUNT_FEN = 100_000_000_000  # 10亿元 in one record: above this a file is wrong, not large
SHOW_ROWS = 5                     # offending rows quoted in an error and in the results table
ACCOUNT_COLUMN = re.compile(r"pan|acct|account|card", re.IGNORECASE)  # columns masked when rows are shown

VALIDATION_SCHEMA = pa.schema([("channel", pa.string()), ("business_date", pa.date32()), ("dataset", pa.string()),
                               ("file", pa.string()), ("description", pa.string()), ("expectation", pa.string()),
                               ("column", pa.string()), ("success", pa.bool_()), ("element_count", pa.int64()),
                               ("unexpected_count", pa.int64()), ("offending", pa.string())])


@dataclass(frozen=True)
class Rules:
    """What a layout's declaration cannot say about its data."""

    unique: tuple[str, ...] = ()                 # columns whose values together must be unique in the dataset
    positive: tuple[str, ...] = ("amount_fen",)  # amounts that must be > 0 (others: >= 0)
    date_window: tuple[int, int] = (-31, 1)      # dates allowed, in days from T (T-31 .. T+1)


# Keys that are unique by the spec are unique here; a match key that may repeat (UnionPay, CNAPS2) is the
# reconciliation's DUPLICATE break, not a file fault, and is only required present.
RULES: dict[str, Rules] = {
    "ledger.journal": Rules(unique=("journal_no", "seq_no"), date_window=(-31, 0)),
    "ledger.entries": Rules(unique=("voucher_no", "line_no"), date_window=(0, 0)),
    "tips.3102": Rules(unique=("TraNo",)),
    "housing_fund.bdc_bat": Rules(unique=("seq_no",)),
    "housing_fund.bdc_res": Rules(unique=("seq_no",)),
    "payroll.batch_xlsx": Rules(unique=("seq_no",)),
    "payroll.batch_csv": Rules(unique=("seq_no",)),
    "payroll.result_xlsx": Rules(unique=("seq_no",), positive=()),  # a failed row may echo an unreadable amount
    "payroll.result_csv": Rules(unique=("seq_no",), positive=()),
}


class ExpectationFailed(Terminal):
    """A dataset failed an expectation: the file (or dataset), the expectation and the offending rows (masked)."""

    def __init__(self, failures: list[dict]) -> None:
        self.failures = failures
        first = failures[0]
        self.file, self.expectation, self.offending = first["file"], first["expectation"], first["offending"]
        lines = [f"{f['file']}: expectation {f['expectation']} ({f['description']}) failed on {f['unexpected_count']} of "
                 f"{f['element_count']} rows: {f['offending']}" for f in failures]
        super().__init__("data quality: " + "; ".join(lines))


@dataclass(frozen=True)
class Check:
    """One expectation of a suite as data, with what it means in words (shown in the report and in errors)."""

    words: str
    type: str
    """GX's expectation type, as the `validation` table shows it: `expect_column_values_to_be_between`."""
    kwargs: dict[str, object]
    """The expectation's arguments, as GX takes them: `{"column": "amount_fen", "min_value": 1}`."""

    @property
    def columns(self) -> list[str]:
        """The columns the expectation reads."""
        return [self.kwargs[k] for k in ("column", "column_A", "column_B") if k in self.kwargs]

    def expectation(self):
        """The GX expectation (imports GX, seconds: only to judge rows found offending)."""
        import great_expectations.expectations  # noqa: F401  registers the expectation types
        from great_expectations.expectations.registry import get_expectation_impl
        return get_expectation_impl(self.type)(**self.kwargs)


@dataclass
class Suite:
    """Row expectations (on the readable records), key columns that must be unique, and control totals (on the
    readable and quarantined records)."""

    name: str
    rows: list[Check] = field(default_factory=list)
    unique: tuple[str, ...] = ()
    controls: list[tuple[str, str, str]] = field(default_factory=list)  # (words, declared name, computed SQL)


@dataclass(frozen=True)
class Part:
    """One dataset of a suite's run (a parsed file, the ledger extract, the results): a result row per check."""

    file: str
    """Its name in the `validation` table and in errors."""
    records: Path
    """The readable records (Parquet): the row checks run on these."""
    quarantine: Path | None = None
    """The records the parse could not read: counted with the readable ones in the keys and control totals."""
    declared: dict[str, int] = field(default_factory=dict)
    """The control totals the counterparty declared, by the name a control `equals` (a control without one is
    not checked)."""


# --- suites -----------------------------------------------------------------------------------------------


def layout_suite(layout: FileLayout, date: dt.date, rules: Rules | None = None) -> Suite:
    """The suite of a file of `layout` for business date `date`, derived from the declaration and `RULES`."""
    rules = rules or RULES.get(layout.name, Rules())
    lo, hi = (date + dt.timedelta(days=d) for d in rules.date_window)
    suite = Suite(layout.name, unique=rules.unique)
    for name in layout.key:
        suite.rows.append(Check(f"key {name} present", "expect_column_values_to_not_be_null", {"column": name}))
    for f in layout.detail.fields:
        t = f.type
        if isinstance(t, Code):
            allowed = sorted(t.table) + ([""] if t.blank else [])
            suite.rows.append(Check(f"{f.name} in its code table", "expect_column_values_to_be_in_set",
                                    {"column": f.name, "value_set": allowed}))
        elif isinstance(t, (Fen, Yuan)) or (isinstance(t, Int) and f.name.endswith("_fen")):
            least = 1 if (f.name in rules.positive or getattr(t, "positive", False)) else 0
            suite.rows.append(Check(f"{f.name} between {least} and {MAX_AMOUNT_FEN} fen",
                                    "expect_column_values_to_be_between",
                                    {"column": f.name, "min_value": least, "max_value": MAX_AMOUNT_FEN}))
        elif isinstance(t, (Date8, IsoDate)):
            suite.rows.append(Check(f"{f.name} between {lo} and {hi}", "expect_column_values_to_be_between",
                                    {"column": f.name, "min_value": lo, "max_value": hi}))
    return suite


def results_suite(date: dt.date) -> Suite:
    """`recon_result`: one row per item, each with a known outcome, money in range, and no card number in clear."""
    suite = Suite("recon_result", unique=("side", "record_ref"))
    in_set, between = "expect_column_values_to_be_in_set", "expect_column_values_to_be_between"
    suite.rows += [
        *(Check(f"{c} present", "expect_column_values_to_not_be_null", {"column": c})
          for c in ("channel", "business_date", "side", "record_ref", "outcome", "reason")),
        Check("side is counterparty or ledger", in_set, {"column": "side", "value_set": ["counterparty", "ledger"]}),
        Check("outcome is one of the eight", in_set, {"column": "outcome", "value_set": [o.value for o in Outcome]}),
        # The engine's normalised statuses: S moved, F failed, R reversed, P in process (CNAPS2 PR05, in transit).
        Check("status is S, F, R or P", in_set, {"column": "status", "value_set": ["S", "F", "R", "P"]}),
        Check(f"amount_fen between 0 and {MAX_AMOUNT_FEN} fen", between,
              {"column": "amount_fen", "min_value": 0, "max_value": MAX_AMOUNT_FEN}),
        Check(f"business_date is {date}", between, {"column": "business_date", "min_value": date, "max_value": date}),
        Check(f"origin_date between {date - dt.timedelta(days=31)} and {date}", between,
              {"column": "origin_date", "min_value": date - dt.timedelta(days=31), "max_value": date}),
        Check("account_masked holds no card number in clear", "expect_column_values_to_not_match_regex",
              {"column": "account_masked", "regex": r"^[0-9]{11,}$"}),
    ]
    return suite


def _control_sql(layout: FileLayout) -> list[tuple[str, str, str]]:
    """The layout's count and sum controls as (words, the declared value's name, computed SQL) over the view
    `detail` (the files' readable and quarantined detail records)."""
    out = []
    for c in layout.controls:
        if not isinstance(c, (Count, Sum)):
            continue
        conditions = []
        if c.where:
            conditions.append(f"{c.where[0]} = '{c.where[1]}'")
        if c.where_not:
            conditions.append(f"coalesce({c.where_not[0]} <> '{c.where_not[1]}', true)")
        if isinstance(c, Count) and c.readable:
            conditions.append(f"{c.readable} IS NOT NULL")
        where = " AND ".join(conditions) or "true"
        if isinstance(c, Count):
            words, computed = f"count of {c.record} records = {c.equals}", f"count(*) FILTER (WHERE {where})"
        else:
            col = c.of.partition(".")[2]
            words = f"sum of {c.of} = {c.equals}"
            computed = f"coalesce(CAST(sum({col}) FILTER (WHERE {where}) AS BIGINT), 0)"
        out.append((words, c.equals, computed))
    return out


def _declared_totals(layout: FileLayout, file_row: dict) -> dict[str, int]:
    """What the counterparty declared: the flag's record count, and header/trailer values the parse recorded."""
    declared: dict[str, int] = {"flag": int(file_row["flag_records"])}
    try:
        detail = json.loads(file_row.get("detail") or "{}")
    except ValueError:
        detail = {}
    for rec in layout.records:
        values = detail.get(rec.kind) if rec.kind in ("header", "trailer") else None
        for name, value in (values or {}).items():
            if str(value).lstrip("-").isdigit():
                declared[f"{rec.name}.{name}"] = int(value)
    return declared


# --- running a suite --------------------------------------------------------------------------------------


@functools.cache
def _batch_definition():
    """One ephemeral GX context per process (nothing written to disk), with one pandas dataframe asset."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)  # no "Calculating Metrics" bar per chunk in logs
    return ctx.data_sources.add_pandas("duizhang").add_dataframe_asset("frame").add_batch_definition_whole_dataframe(
        "whole")


def _run(frame, expectations: list) -> list:
    """The results of `expectations` on `frame`, in the order given (GX orders a suite's results its own way)."""
    import great_expectations as gx
    tagged = [e.copy(update={"meta": {"position": i}}) for i, e in enumerate(expectations)]
    suite = gx.ExpectationSuite(name="chunk", expectations=tagged)
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    results = batch.validate(suite, result_format="COMPLETE").results
    return sorted(results, key=lambda r: r.expectation_config.meta["position"])


def mask(value: object) -> str:
    """A card or account number as an analyst may see it: first 6 and last 4 (short values unchanged)."""
    text = "" if value is None else str(value)
    return text[:6] + "*" * (len(text) - 10) + text[-4:] if len(text) >= 11 else text


def _show_rows(rows: pa.Table, columns: list[str]) -> list[str]:
    """The offending `rows` in words. Rendered from the rows alone (through pandas, as GX saw them), so that both
    ways of running a suite show a row alike: an integer column shows 5, not 5.0 because of a null elsewhere."""
    frame = rows.slice(0, SHOW_ROWS).to_pandas()
    shown = []
    for _, row in frame.iterrows():
        where = f"line {row['_line']}: " if "_line" in frame.columns else ""
        parts = [f"{c}={mask(row[c]) if ACCOUNT_COLUMN.search(c) else row[c]}" for c in columns if c in frame.columns]
        shown.append(where + ", ".join(parts))
    return shown


class _Tally:
    """One check's outcome on one part: its rows, its offending rows, and the first of these in words."""

    def __init__(self, check: Check, columns: list[str]) -> None:
        self.check, self.columns = check, columns
        self.elements = self.unexpected = 0
        self.rows: list[str] = []

    def show(self, rows: pa.Table) -> None:
        if rows.num_rows and len(self.rows) < SHOW_ROWS:
            self.rows += _show_rows(rows.slice(0, SHOW_ROWS - len(self.rows)), self.columns)

    def row(self, dataset: str, file: str) -> dict:
        return {"dataset": dataset, "file": file, "description": self.check.words, "expectation": self.check.type,
                "column": (self.check.columns or [""])[0], "success": self.unexpected == 0,
                "element_count": self.elements, "unexpected_count": self.unexpected, "offending": "; ".join(self.rows)}


def _confirm(check: Check, offending: pa.Table, files: list[str], found_by: str) -> None:
    """One GX validation of `check` over the rows of many parts (column `_part`, an index into `files`) that DuckDB
    found offending by `found_by` (shown in the error): GX must find every one offending. A check where DuckDB and GX
    disagree stops the step rather than pass or fail a file on a translation. No offending row, no GX."""
    if not offending.num_rows:
        return
    result = _run(offending.drop_columns(["_part"]).to_pandas(), [check.expectation()])[0]
    agreed = np.zeros(offending.num_rows, dtype=bool)
    agreed[list(result.result.get("unexpected_index_list") or [])] = True
    if not agreed.all():
        passed = offending.filter(pa.array(~agreed))
        part = passed["_part"][0].as_py()
        mine = passed.filter(pc.equal(passed["_part"], part)).drop_columns(["_part"])
        raise RuntimeError(f"{files[part]}: DuckDB and GX disagree on {check.words} ({found_by}): {mine.to_pylist()}")


def _by_part(frame: pa.Table, parts: int) -> list[pa.Table]:
    """The rows of each part of `frame`, ordered by part (`_part`, 0 .. parts - 1)."""
    if not frame.num_rows:   # the usual night: no conversion to NumPy, for which pyarrow imports pandas
        return [frame] * parts
    bounds = np.searchsorted(frame["_part"].to_numpy(), np.arange(parts + 1))
    return [frame.slice(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _row_checks(con: duckdb.DuckDBPyConnection, checks: list[Check], parts: list[Part],
                key: tuple[str, ...]) -> list[list[_Tally]]:
    """Each part's tally of each row check, over its readable records. The parts with the same columns are scanned
    together: one query counts, per file, every check's offending rows (GX's semantics in SQL, `_unexpected_sql`;
    a check that the statistics of every file prove held is not counted); then, for each check failed somewhere,
    one query reads the first offending rows of each file that failed it, in file order, and one GX validation
    judges them as it would have (`_confirm`). An offending row is shown with its line, `key`, the
    checked column and the row's account and amount."""
    metadata = [pq.read_metadata(p.records) for p in parts]
    tallies = []
    for meta in metadata:
        names = meta.schema.names
        context = [*key, *(c for c in names if ACCOUNT_COLUMN.search(c) and c != "account_hash"),
                   *(c for c in ("amount_fen",) if c in names)]
        tallies.append([_Tally(c, list(dict.fromkeys([*key, *c.columns, *context]))) for c in checks])
    alike: dict[tuple[str, ...], list[int]] = {}
    for i, meta in enumerate(metadata):
        alike.setdefault(tuple(meta.schema.names), []).append(i)
    for names, members in alike.items():
        schema = metadata[members[0]].schema.to_arrow_schema()
        present = [j for j, c in enumerate(checks) if set(c.columns) <= set(names)]
        for i in members:
            for j in present:
                tallies[i][j].elements += metadata[i].num_rows
        scanned = [(j, _unexpected_sql(checks[j], schema)) for j in present
                   if not all(_held_by_statistics(checks[j], metadata[i], schema) for i in members)]
        if not scanned:
            continue
        counts = con.sql(f"SELECT file_index, {', '.join(f'count(*) FILTER (WHERE {c})' for _, c in scanned)} "
                         f"FROM {_read_parquet([parts[i].records for i in members])} GROUP BY file_index").fetchall()
        for index, *unexpected in counts:
            for (j, _), n in zip(scanned, unexpected):
                tallies[members[index]][j].unexpected += n
        for j, condition in scanned:
            failed = [i for i in members if tallies[i][j].unexpected]
            if not failed:
                continue
            shown = ", ".join(f'"{c}"' for c in dict.fromkeys(["_line", *tallies[failed[0]][j].columns]) if c in names)
            rows = con.sql(
                f"SELECT file_index AS _part, {shown} FROM {_read_parquet([parts[i].records for i in failed])} "
                f"WHERE {condition} QUALIFY row_number() OVER (PARTITION BY file_index ORDER BY file_row_number) "
                f"<= {SHOW_ROWS} ORDER BY file_index, file_row_number").to_arrow_table()
            _confirm(checks[j], rows, [parts[i].file for i in failed], condition)
            for i, mine in zip(failed, _by_part(rows, len(failed))):
                tallies[i][j].show(mine)
    return tallies


def _held_by_statistics(check: Check, metadata: pq.FileMetaData, schema: pa.Schema) -> bool:
    """Whether the file's Parquet statistics prove that no row offends `check`, so that it needs no scan:
    every row group's null count is 0 (not-null), or its min and max lie within the bounds (between, on integers and
    dates). Never on floats (a NaN, which GX counts as null, is in no statistic), nor without statistics."""
    kwargs = check.kwargs
    kind = schema.field(kwargs["column"]).type
    if check.type == "expect_column_values_to_not_be_null":
        if pa.types.is_floating(kind):
            return False
    elif check.type != "expect_column_values_to_be_between" or not (pa.types.is_integer(kind)
                                                                    or pa.types.is_date(kind)):
        return False
    index = metadata.schema.names.index(kwargs["column"])
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_null_count:
            return False
        if check.type == "expect_column_values_to_not_be_null":
            if stats.null_count:
                return False
        elif stats.null_count < metadata.row_group(group).num_rows:   # an all-null group has no min and max
            if not stats.has_min_max:
                return False
            if low is not None and not (stats.min > low if kwargs.get("strict_min") else stats.min >= low):
                return False
            if high is not None and not (stats.max < high if kwargs.get("strict_max") else stats.max <= high):
                return False
    return True


def _unexpected_sql(check: Check, schema: pa.Schema) -> str:
    """The SQL condition under which GX (pandas) counts a row offending `check`: a null (or NaN) offends only
    not-null; in-set, between and not-match-regex skip it. Only the types the suites build are known: another type,
    or an option not translated here (mostly, row_condition...), is refused."""
    kwargs = {k: v for k, v in check.kwargs.items() if v is not None}
    column = kwargs.pop("column")
    name = f'"{column}"'
    column_type = schema.field(column).type
    floating = pa.types.is_floating(column_type)
    present = f"({name} IS NOT NULL AND NOT isnan({name}))" if floating else f"{name} IS NOT NULL"
    if check.type == "expect_column_values_to_not_be_null":
        condition = f"NOT {present}"
    elif check.type == "expect_column_values_to_be_in_set":
        allowed = ", ".join(_sql_literal(v) for v in kwargs.pop("value_set"))
        condition = f"{present} AND {name} NOT IN ({allowed})" if allowed else present
    elif check.type == "expect_column_values_to_be_between":
        low = ">" if kwargs.pop("strict_min", False) else ">="
        high = "<" if kwargs.pop("strict_max", False) else "<="
        bounds = [f"{name} {op} {_sql_literal(kwargs.pop(k))}"
                  for op, k in ((low, "min_value"), (high, "max_value")) if k in kwargs] or ["true"]
        condition = f"{present} AND NOT ({' AND '.join(bounds)})"
    elif check.type == "expect_column_values_to_not_match_regex":
        if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):  # GX matches str(value)
            raise TypeError(f"{check.type} on {column}: only a string column is translated to SQL")
        condition = f"{present} AND regexp_matches({name}, {_sql_literal(_re2(kwargs.pop('regex')))})"
    else:
        raise NotImplementedError(f"{check.type} has no SQL translation: add one to quality._unexpected_sql")
    if kwargs:
        raise NotImplementedError(f"{check.type} on {column}: options {sorted(kwargs)} have no SQL translation")
    return condition


def _sql_literal(value: object) -> str:
    """A bound or a set member of an expectation as a typed SQL literal."""
    if isinstance(value, bool):
        raise TypeError(f"no SQL literal for a boolean bound {value!r}")
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (int, float)):
        return repr(value)   # GX compares an int column with a float bound in float, as DuckDB does
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    raise TypeError(f"no SQL literal for {value!r}")


def _re2(regex: str) -> str:
    """`regex` (Python's re, GX's `str.contains`) for DuckDB's RE2: a final `$` also matches before a final newline
    in Python, never in RE2. A `$` elsewhere, or a construct RE2 lacks, is refused (by DuckDB: lookarounds)."""
    body = regex[:-1] if regex.endswith("$") and not regex.endswith("\\$") else regex
    if re.search(r"(?<!\\)\$", body):
        raise NotImplementedError(f"regex {regex!r}: a '$' before its end has no RE2 translation here")
    return body + r"\n?$" if body != regex else regex


def _read_parquet(paths: list[Path]) -> str:
    """The files' own columns (by name: a quarantine has more; virtual: `file_index`, `file_row_number`). A
    warehouse path looks hive-partitioned (`business_date=.../`), and DuckDB would otherwise replace the file's
    `business_date` with the folder's, hiding a wrong date in the data."""
    files = ", ".join(f"'{p.as_posix()}'" for p in paths)
    return f"read_parquet([{files}], hive_partitioning = false, union_by_name = true)"


def _connect() -> duckdb.DuckDBPyConnection:
    """Both cores; DuckDB's memory capped (`MEMORY_LIMIT`, spilling beyond it); no progress bars in task logs."""
    con = duckdb.connect(config={"threads": 2, "memory_limit": MEMORY_LIMIT, "preserve_insertion_order": False,
                                 "temp_directory": str(Path(tempfile.gettempdir()) / "duizhang-quality-spill")})
    con.execute("SET enable_progress_bar = false")
    return con


def run_suite(suite: Suite, dataset: str, parts: list[Part], key: tuple[str, ...] = ()) -> list[list[dict]]:
    """Validate `parts`, datasets of one layout, with `suite`, together: for each part, one result row per check
    (row checks on its readable records, then its keys and control totals over readable + quarantined ones)."""
    con = _connect()
    try:
        tallies = _row_checks(con, suite.rows, parts, key) if suite.rows else [[] for _ in parts]
        rows = [[t.row(dataset, p.file) for t in mine if t.elements or t.unexpected]
                for p, mine in zip(parts, tallies)]
        files = [(i, path) for i, p in enumerate(parts) for path in (p.records, p.quarantine) if path is not None]
        # Each record tagged with its part; a constant for one part (the 10M file) costs nothing per record.
        owner = "0" if len(parts) == 1 else f"{[i for i, _ in files]}[CAST(file_index AS BIGINT) + 1]"
        con.execute(f"CREATE VIEW detail AS SELECT *, {owner} AS _part "
                    f"FROM {_read_parquet([path for _, path in files])}")
        if suite.unique:
            cols = ", ".join(suite.unique)
            check = Check(f"key ({cols}) unique", "expect_column_values_to_be_between",
                          {"column": "occurrences", "max_value": 1})
            totals = np.zeros(len(parts), dtype=np.int64)
            for i, n in con.sql("SELECT _part, count(*) FROM detail GROUP BY _part").fetchall():
                totals[i] = n
            repeated, dup = _repeated_keys(con, suite.unique, len(parts))
            _confirm(check, dup, [p.file for p in parts], "count(*) > 1 grouped by key")
            for i, offending in enumerate(_by_part(dup, len(parts))):
                tally = _Tally(check, [*suite.unique, "occurrences"])
                tally.elements, tally.unexpected = int(totals[i]), int(repeated[i])
                tally.show(offending)
                rows[i].append(tally.row(dataset, parts[i].file) | {"column": cols})
        if suite.controls:
            _control_totals(con, suite.controls, dataset, parts, rows)
    finally:
        con.close()
    return rows


def _control_totals(con: duckdb.DuckDBPyConnection, controls: list[tuple[str, str, str]], dataset: str,
                    parts: list[Part], rows: list[list[dict]]) -> None:
    """Append to each part's `rows` its control totals: computed in one query grouped by part; those off judged by
    one GX validation over all parts' (control, declared, computed) rows."""
    owners = [(i, j) for i, part in enumerate(parts) for j, (_, name, _) in enumerate(controls)
              if name in part.declared]
    if not owners:
        return
    computed = {part: values for part, *values in con.sql(
        f"SELECT _part, {', '.join(sql for *_, sql in controls)} FROM detail GROUP BY _part").fetchall()}
    frame = [{"_part": n, "control": controls[j][0], "declared": parts[i].declared[controls[j][1]],
              "computed": int(computed[i][j]) if i in computed else 0} for n, (i, j) in enumerate(owners)]
    equal, pair = "expect_column_pair_values_to_be_equal", {"column_A": "declared", "column_B": "computed"}
    checks = [Check(f"control total: {words}", equal, pair) for words, *_ in controls]
    off = [r["declared"] != r["computed"] for r in frame]
    if any(off):   # Arrow only then: pyarrow imports pandas (~0.9 CPU s) to convert Python values
        table = pa.Table.from_pylist(frame, schema=pa.schema([("_part", pa.int64()), ("control", pa.string()),
                                                             ("declared", pa.int64()), ("computed", pa.int64())]))
        _confirm(Check("control totals", equal, pair), table.filter(pa.array(off)),
                 [parts[i].file for i, _ in owners], "declared <> computed")
    for n, (i, j) in enumerate(owners):
        tally = _Tally(checks[j], ["control", "declared", "computed"])
        tally.elements, tally.unexpected = 1, int(off[n])
        if off[n]:
            tally.show(table.slice(n, 1))
        rows[i].append(tally.row(dataset, parts[i].file))


def _repeated_keys(con: duckdb.DuckDBPyConnection, key: tuple[str, ...], parts: int) -> tuple[np.ndarray, pa.Table]:
    """Over the view `detail`: per part, the keys seen more than once in it, and the first 1000 of them (most
    repeated first, with their first line and occurrences), in one frame ordered by part (`_part`).

    Exact and cheap on 20M rows: each row's (part, key) is hashed (64 bits) and the hashes sorted in numpy (1.5 s,
    where DuckDB's group-by of 20M distinct keys took 7 s); only the keys whose hash repeats are then grouped, so a
    hash collision costs a group-by of a few rows, never a wrong answer."""
    cols = ", ".join(key)
    hashes = con.sql(f"SELECT hash(_part, {cols}) AS h FROM detail").fetchnumpy()["h"]
    hashes.sort()
    clashing = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
    line = "min(_line) AS first_line, " if "_line" in con.sql("SELECT * FROM detail").columns else ""
    where = "false"
    if len(clashing):   # registered only then: pyarrow imports pandas (~0.9 CPU s) to convert the array
        con.register("clashing", pa.table({"h": clashing}))
        where = f"hash(_part, {cols}) IN (SELECT h FROM clashing)"
    con.execute(f"CREATE TEMP TABLE repeated AS SELECT _part, {cols}, {line}CAST(count(*) AS BIGINT) AS occurrences "
                f"FROM detail WHERE {where} GROUP BY ALL HAVING count(*) > 1")
    repeated = np.zeros(parts, dtype=np.int64)
    for part, n in con.sql("SELECT _part, count(*) FROM repeated GROUP BY _part").fetchall():
        repeated[part] = n
    dup = con.sql(f"SELECT * FROM repeated QUALIFY row_number() OVER (PARTITION BY _part ORDER BY occurrences DESC, "
                  f"{cols}) <= 1000 ORDER BY _part, occurrences DESC, {cols}").to_arrow_table()
    return repeated, dup


# --- the step ---------------------------------------------------------------------------------------------


def validate(channel: str, date: dt.date, wd: Workdir) -> dict:
    """Validate what the earlier steps of (channel, T) wrote: every parsed file of the manifest (the files of a
    kind together), the ledger extract when loaded (once per content, `_journal_rows`), the reconciliation results
    when matched. Publishes the `validation` table, then raises `ExpectationFailed` (Terminal) naming the file, the
    expectation and the offending rows if any check failed."""
    from duizhang.channels import CHANNEL_FILES
    from formats.registry import get as get_layout
    parsed = wd.parsed(channel, date)
    manifest_path = parsed / "manifest.json"
    if not manifest_path.exists():
        raise Terminal(f"{channel} {date}: {manifest_path} is missing: run the parse step before validate")
    manifest = json.loads(manifest_path.read_text())
    with wd.control() as db:
        registry = {(r["name"], r["version"]): dict(r) for r in db.execute(
            "SELECT * FROM files WHERE channel=? AND business_date=?", (channel, date.isoformat()))}
    of_kind: dict[object, list[tuple[int, Part]]] = {}
    for position, f in enumerate(manifest["files"]):
        kind, _ = CHANNEL_FILES[channel].kind_matching(f["name"], date)
        file_row = registry.get((f["name"], f["version"]))
        declared = _declared_totals(get_layout(kind.layout), file_row) if file_row else {}
        of_kind.setdefault(kind, []).append(
            (position, Part(f["name"], parsed / f["parquet"], parsed / f["quarantine"], declared)))
    per_file: list[list[dict]] = [[] for _ in manifest["files"]]
    for kind, members in of_kind.items():
        layout = get_layout(kind.layout)
        rules = RULES.get(layout.name, Rules())
        if kind.amount_field not in rules.positive and rules.positive:  # the amount reconciled must be > 0
            rules = dataclasses.replace(rules, positive=(*rules.positive, kind.amount_field))
        suite = layout_suite(layout, date, rules)
        suite.controls = _control_sql(layout)
        for (position, _), file_rows in zip(members, run_suite(suite, layout.name, [p for _, p in members],
                                                                layout.key)):
            per_file[position] = file_rows
    rows = [r for file_rows in per_file for r in file_rows]
    ledger = wd.ledger_extract(date)
    if ledger.exists():
        rows += _journal_rows(ledger, date)
    results = wd.table_path("recon_result", channel, date)
    if results.exists():
        rows += run_suite(results_suite(date), "recon_result", [Part(f"recon_result {channel} {date}", results)],
                          ("side", "record_ref"))[0]
    table = validation_table(rows, channel, date)
    wd.publish("validation", channel, date, table)
    failed = [r for r in rows if not r["success"]]
    for r in failed:
        log.error("%s %s: %s failed %s (%s) on %d rows: %s", channel, date, r["file"], r["expectation"], r["description"],
                  r["unexpected_count"], r["offending"])
    if failed:
        raise ExpectationFailed(failed)
    log.info("%s %s: %d expectations held on %d datasets", channel, date, len(rows), len({r["file"] for r in rows}))
    return {"channel": channel, "business_date": date.isoformat(), "checks": len(rows), "failed": 0,
            "datasets": sorted({r["file"] for r in rows})}


def _journal_rows(ledger: Path, date: dt.date) -> list[dict]:
    """The ledger extract's validation rows, computed once per content. Every channel of the date loads the same
    journal (rewriting the extract), so its rows are kept next to it (`<extract>.validation.json`) and reused while
    the extract's bytes, the suite and this module are the same; an extract replaced while it was validated is not
    remembered."""
    from formats.registry import get as get_layout
    journal = get_layout("ledger.journal")
    suite = layout_suite(journal, date)
    memo = ledger.with_name(f"{ledger.stem}.validation.json")
    before = ledger.stat()
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(json.dumps([[c.words, c.type, c.kwargs] for c in suite.rows] +
                             [list(suite.unique)], sort_keys=True, default=str).encode())
    with ledger.open("rb") as f:
        identity = hashlib.file_digest(f, lambda: digest).hexdigest()
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):   # none yet, or not ours: validate
        remembered = json.loads(memo.read_text())
        if remembered["identity"] == identity:
            return remembered["rows"]
    rows = run_suite(suite, "ledger.journal", [Part(ledger.name, ledger)], journal.key)[0]
    after = ledger.stat()
    if (before.st_ino, before.st_mtime_ns, before.st_size) == (after.st_ino, after.st_mtime_ns, after.st_size):
        _remove_orphans(memo.parent, f".{memo.name}.*.tmp")   # left by a process killed while writing it
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"identity": identity, "rows": rows}))
        os.replace(tmp, memo)
    return rows


def validation_table(rows: list[dict], channel: str, date: dt.date) -> pa.Table:
    """The `validation` table of (channel, date): one row per check of a dataset. Made by DuckDB from the rows'
    columns, because pyarrow imports pandas (~0.9 CPU s a process) to convert Python values."""
    sql_types = {pa.string(): "VARCHAR", pa.bool_(): "BOOLEAN", pa.int64(): "BIGINT"}
    fields = list(VALIDATION_SCHEMA)[2:]   # after channel and business_date, the same on every row
    columns = ", ".join(f'unnest(?::{sql_types[f.type]}[]) AS "{f.name}"' for f in fields)
    with duckdb.connect() as con:
        return con.sql(f"SELECT ?::VARCHAR AS channel, ?::DATE AS business_date, {columns}",
                       params=[channel, date, *([r[f.name] for r in rows] for f in fields)]
                       ).to_arrow_table().cast(VALIDATION_SCHEMA)
