"""Data quality: Great Expectations suites per dataset, run on every parsed file, the ledger extract and the
reconciliation results of a channel and business date.

The suites are data. For a counterparty file most of it comes from the file's layout declaration (key fields
present, codes in their tables, amounts within range, dates inside the business-date window, the control totals
it declares); what the declaration cannot say (which keys must be unique, which amounts must be > 0, how wide the
date window is) sits in `RULES`, one line per layout. The reconciliation results have their own suite (`RESULTS`).

How it runs, so that time and memory stay bounded on a 10-million-record file:
- row expectations run in GX on chunks of `CHUNK_ROWS` rows, reading only the columns the suite needs (+ `_line`),
  for a dataset of up to `GX_ROWS_MAX` rows; above it, each row expectation becomes an aggregate in DuckDB (one
  scan per file counts every check's offending rows, with GX's null semantics), and GX judges the first offending
  rows of a failed check, read back in file order: the same counts and the same rows shown either way;
- uniqueness and control totals run on aggregates DuckDB computes over the Parquet (the keys seen more than
  once; one row per control with the declared and the recomputed value), validated by GX like any frame.
GX runs with an ephemeral context through its pandas data source (notes/airflow3.md §3: its SQL source does not
work on DuckDB 2.0), created once per process: importing GX costs seconds, a validation then ~50 ms a chunk.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from formats.errors import Terminal
from formats.layout import Code, Count, Date8, Fen, FileLayout, Int, IsoDate, Sum, Unique, Yuan
from recon.outcomes import Outcome
from duizhang.workdir import Workdir

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no network on a bank's batch host
logging.getLogger("great_expectations").setLevel(logging.WARNING)
log = logging.getLogger("duizhang.quality")

CHUNK_ROWS = 250_000
GX_ROWS_MAX = 1_000_000           # a dataset above this: row checks as DuckDB aggregates, GX judges the rows shown
MEMORY_LIMIT = "1536MB"           # DuckDB's own memory (a file whose keys all repeat spills its groups beyond it)
MAX_AMOUNT_FEN = 100_000_000_000  # 10亿元 in one record: above this a file is wrong, not large
SHOW_ROWS = 5                     # offending rows quoted in an error and in the results table
ACCOUNT_COLUMN = re.compile(r"pan|acct|account|card", re.IGNORECASE)  # columns masked when rows are shown

VALIDATION_COLUMNS = ("channel", "business_date", "dataset", "file", "description", "expectation", "column", "success",
                      "element_count", "unexpected_count", "offending")


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
    """One expectation of a suite, with what it means in words (shown in the report and in errors)."""

    words: str
    expectation: object  # a great_expectations.expectations.Expectation


@dataclass
class Suite:
    """Row expectations (run on chunks), key columns that must be unique, and control totals (aggregates)."""

    name: str
    rows: list[Check] = field(default_factory=list)
    unique: tuple[str, ...] = ()
    controls: list[tuple[str, str, str]] = field(default_factory=list)  # (words, declared SQL, computed SQL)

    @property
    def columns(self) -> set[str]:
        cols: set[str] = set()
        for c in self.rows:
            cols |= {v for k, v in c.expectation.configuration.kwargs.items() if k in ("column", "column_A",
                                                                                       "column_B")}
        return cols


# --- suites -----------------------------------------------------------------------------------------------


def layout_suite(layout: FileLayout, date: dt.date, rules: Rules | None = None) -> Suite:
    """The suite of a file of `layout` for business date `date`, derived from the declaration and `RULES`."""
    import great_expectations.expectations as gxe
    rules = rules or RULES.get(layout.name, Rules())
    lo, hi = (date + dt.timedelta(days=d) for d in rules.date_window)
    suite = Suite(layout.name, unique=rules.unique)
    for name in layout.key:
        suite.rows.append(Check(f"key {name} present", gxe.ExpectColumnValuesToNotBeNull(column=name)))
    for f in layout.detail.fields:
        t = f.type
        if isinstance(t, Code):
            allowed = sorted(t.table) + ([""] if t.blank else [])
            suite.rows.append(Check(f"{f.name} in its code table", gxe.ExpectColumnValuesToBeInSet(
                column=f.name, value_set=allowed)))
        elif isinstance(t, (Fen, Yuan)) or (isinstance(t, Int) and f.name.endswith("_fen")):
            least = 1 if (f.name in rules.positive or getattr(t, "positive", False)) else 0
            suite.rows.append(Check(f"{f.name} between {least} and {MAX_AMOUNT_FEN} fen",
                                    gxe.ExpectColumnValuesToBeBetween(column=f.name, min_value=least,
                                                                      max_value=MAX_AMOUNT_FEN)))
        elif isinstance(t, (Date8, IsoDate)):
            suite.rows.append(Check(f"{f.name} between {lo} and {hi}", gxe.ExpectColumnValuesToBeBetween(
                column=f.name, min_value=lo, max_value=hi)))
    return suite


def results_suite(date: dt.date) -> Suite:
    """`recon_result`: one row per item, each with a known outcome, money in range, and no card number in clear."""
    import great_expectations.expectations as gxe
    suite = Suite("recon_result", unique=("side", "record_ref"))
    suite.rows += [
        *(Check(f"{c} present", gxe.ExpectColumnValuesToNotBeNull(column=c))
          for c in ("channel", "business_date", "side", "record_ref", "outcome", "reason")),
        Check("side is counterparty or ledger", gxe.ExpectColumnValuesToBeInSet(
            column="side", value_set=["counterparty", "ledger"])),
        Check("outcome is one of the eight", gxe.ExpectColumnValuesToBeInSet(
            column="outcome", value_set=[o.value for o in Outcome])),
        # The engine's normalised statuses: S moved, F failed, R reversed, P in process (CNAPS2 PR05, in transit).
        Check("status is S, F, R or P", gxe.ExpectColumnValuesToBeInSet(column="status",
                                                                       value_set=["S", "F", "R", "P"])),
        Check(f"amount_fen between 0 and {MAX_AMOUNT_FEN} fen", gxe.ExpectColumnValuesToBeBetween(
            column="amount_fen", min_value=0, max_value=MAX_AMOUNT_FEN)),
        Check(f"business_date is {date}", gxe.ExpectColumnValuesToBeBetween(
            column="business_date", min_value=date, max_value=date)),
        Check(f"origin_date between {date - dt.timedelta(days=31)} and {date}", gxe.ExpectColumnValuesToBeBetween(
            column="origin_date", min_value=date - dt.timedelta(days=31), max_value=date)),
        Check("account_masked holds no card number in clear", gxe.ExpectColumnValuesToNotMatchRegex(
            column="account_masked", regex=r"^[0-9]{11,}$")),
    ]
    return suite


def _control_sql(layout: FileLayout, declared: dict[str, object]) -> list[tuple[str, str, str]]:
    """The layout's count and sum controls whose declared value is known, as (words, declared, computed SQL)
    over the view `detail` (the file's readable and quarantined detail records)."""
    out = []
    for c in layout.controls:
        if not isinstance(c, (Count, Sum)) or c.equals not in declared:
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
        out.append((words, str(int(declared[c.equals])), computed))
    return out


def _declared_totals(layout: FileLayout, file_row: dict) -> dict[str, object]:
    """What the counterparty declared: the flag's record count, and header/trailer values the parse recorded."""
    declared: dict[str, object] = {"flag": file_row["flag_records"]}
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
    """Accumulates one check's outcome over the parts (chunks or files) of a dataset."""

    def __init__(self, check: Check, columns: list[str]) -> None:
        self.check, self.columns = check, columns
        self.elements = self.unexpected = 0
        self.rows: list[str] = []

    def add(self, result, rows: pa.Table) -> None:
        """Count a GX `result` on `rows`, and show the first offending ones."""
        self.elements += int(result.result.get("element_count", rows.num_rows) or 0)
        self.unexpected += int(result.result.get("unexpected_count", 0 if result.success else 1) or 0)
        if not result.success and len(self.rows) < SHOW_ROWS:
            index = list(result.result.get("unexpected_index_list") or [])
            self.rows += _show_rows(rows.take(index[:SHOW_ROWS - len(self.rows)]), self.columns)

    def row(self, dataset: str, file: str) -> dict:
        cfg = self.check.expectation.configuration
        return {"dataset": dataset, "file": file, "description": self.check.words, "expectation": cfg.type,
                "column": cfg.kwargs.get("column") or cfg.kwargs.get("column_A") or "",
                "success": self.unexpected == 0, "element_count": self.elements,
                "unexpected_count": self.unexpected, "offending": "; ".join(self.rows)}


def _chunks(paths: list[Path], columns: list[str]) -> Iterator[pa.Table]:
    for path in paths:
        pf = pq.ParquetFile(path)
        have = [c for c in columns if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(batch_size=CHUNK_ROWS, columns=have):
            yield pa.Table.from_batches([batch])


def _row_checks_in_gx(tallies: list[_Tally], paths: list[Path], columns: list[str]) -> None:
    """GX on the rows themselves, chunk by chunk; a check runs on the chunks that have its columns."""
    for chunk in _chunks(paths, columns):
        present = [t for t in tallies if set(_kw_columns(t.check)) <= set(chunk.column_names)]
        for tally, result in zip(present, _run(chunk.to_pandas(), [t.check.expectation for t in present])):
            tally.add(result, chunk)


def _row_checks_in_duckdb(con: duckdb.DuckDBPyConnection, tallies: list[_Tally], paths: list[Path]) -> None:
    """The same checks as aggregates: per file, one scan counts the rows and each check's offending rows (GX's
    semantics in SQL, `_unexpected_sql`); then, for the checks that failed, the first offending rows in file order
    are read back and GX judges them as it would have (it must find every one offending: a check where DuckDB and
    GX disagree stops the step rather than pass or fail a file on a translation)."""
    for path in paths:
        metadata = pq.read_metadata(path)
        schema = metadata.schema.to_arrow_schema()
        present = [t for t in tallies if set(_kw_columns(t.check)) <= set(schema.names)]
        conditions = [_unexpected_sql(t.check.expectation, schema) for t in present]
        scanned = [(t, c) for t, c in zip(present, conditions)
                   if not _held_by_statistics(t.check.expectation, metadata, schema)]
        source = _read_parquet(path, "file_row_number = true")
        counts = con.sql(f"SELECT {', '.join(f'count(*) FILTER (WHERE {c})' for _, c in scanned)} "
                         f"FROM {source}").fetchall()[0] if scanned else ()
        for tally in present:
            tally.elements += metadata.num_rows
        for (tally, condition), unexpected in zip(scanned, counts):
            tally.unexpected += unexpected
            if not unexpected or len(tally.rows) >= SHOW_ROWS:
                continue
            shown = ", ".join(f'"{c}"' for c in dict.fromkeys(["_line", *tally.columns]) if c in schema.names)
            rows = con.sql(f"SELECT {shown} FROM {source} WHERE {condition} ORDER BY file_row_number "
                           f"LIMIT {SHOW_ROWS - len(tally.rows)}").to_arrow_table()
            result = _run(rows.to_pandas(), [tally.check.expectation])[0]
            if result.result.get("unexpected_count") != rows.num_rows:
                raise RuntimeError(f"{path.name}: DuckDB and GX disagree on {tally.check.words} "
                                   f"({condition}): {rows.to_pylist()}")
            tally.rows += _show_rows(rows, tally.columns)


def _held_by_statistics(expectation, metadata: pq.FileMetaData, schema: pa.Schema) -> bool:
    """Whether the file's Parquet statistics prove that no row offends `expectation`, so that it needs no scan:
    every row group's null count is 0 (not-null), or its min and max lie within the bounds (between, on integers and
    dates). Never on floats (a NaN, which GX counts as null, is in no statistic), nor without statistics."""
    cfg = expectation.configuration
    kwargs = cfg.kwargs
    kind = schema.field(kwargs["column"]).type
    if cfg.type == "expect_column_values_to_not_be_null":
        if pa.types.is_floating(kind):
            return False
    elif cfg.type != "expect_column_values_to_be_between" or not (pa.types.is_integer(kind) or pa.types.is_date(kind)):
        return False
    index = metadata.schema.names.index(kwargs["column"])
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_null_count:
            return False
        if cfg.type == "expect_column_values_to_not_be_null":
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


def _unexpected_sql(expectation, schema: pa.Schema) -> str:
    """The SQL condition under which GX (pandas) counts a row offending `expectation`: a null (or NaN) offends only
    not-null; in-set, between and not-match-regex skip it. Only the types the suites build are known: another type,
    or an option not translated here (mostly, row_condition...), is refused."""
    cfg = expectation.configuration
    kwargs = {k: v for k, v in cfg.kwargs.items() if v is not None}
    column = kwargs.pop("column")
    name = f'"{column}"'
    floating = pa.types.is_floating(schema.field(column).type)
    present = f"({name} IS NOT NULL AND NOT isnan({name}))" if floating else f"{name} IS NOT NULL"
    if cfg.type == "expect_column_values_to_not_be_null":
        condition = f"NOT {present}"
    elif cfg.type == "expect_column_values_to_be_in_set":
        allowed = ", ".join(_sql_literal(v) for v in kwargs.pop("value_set"))
        condition = f"{present} AND {name} NOT IN ({allowed})" if allowed else present
    elif cfg.type == "expect_column_values_to_be_between":
        low = ">" if kwargs.pop("strict_min", False) else ">="
        high = "<" if kwargs.pop("strict_max", False) else "<="
        integer = pa.types.is_integer(schema.field(column).type)
        bounds = [f"{name} {op} {_sql_literal(_integral(kwargs.pop(k)) if integer else kwargs.pop(k))}"
                  for op, k in ((low, "min_value"), (high, "max_value")) if k in kwargs] or ["true"]
        condition = f"{present} AND NOT ({' AND '.join(bounds)})"
    elif cfg.type == "expect_column_values_to_not_match_regex":
        kind = schema.field(column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):  # GX matches str(value): 5.0 for 5
            raise TypeError(f"{cfg.type} on {column}: only a string column is translated to SQL")
        condition = f"{present} AND regexp_matches({name}, {_sql_literal(_re2(kwargs.pop('regex')))})"
    else:
        raise NotImplementedError(f"{cfg.type} has no SQL translation: add one to quality._unexpected_sql")
    if kwargs:
        raise NotImplementedError(f"{cfg.type} on {column}: options {sorted(kwargs)} have no SQL translation")
    return condition


def _integral(bound: object) -> object:
    """A float bound with an integral value below 2**53 as an int: an int column compared with it in float (GX) or
    in integers gives the same verdict, and the integer comparison is cheaper (GX stores 1 as 1.0)."""
    return int(bound) if isinstance(bound, float) and bound.is_integer() and abs(bound) < 2 ** 53 else bound


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


def _read_parquet(path: Path, *options: str) -> str:
    """The file's own columns: a warehouse path looks hive-partitioned (`business_date=.../`), and DuckDB would
    otherwise replace the file's `business_date` with the folder's, hiding a wrong date in the data."""
    return f"read_parquet('{path.as_posix()}', {', '.join(['hive_partitioning = false', *options])})"


def _connect() -> duckdb.DuckDBPyConnection:
    """Both cores; DuckDB's memory capped (`MEMORY_LIMIT`, spilling beyond it); no progress bars in task logs."""
    con = duckdb.connect(config={"threads": 2, "memory_limit": MEMORY_LIMIT, "preserve_insertion_order": False,
                                 "temp_directory": str(Path(tempfile.gettempdir()) / "duizhang-quality-spill")})
    con.execute("SET enable_progress_bar = false")
    return con


def run_suite(suite: Suite, dataset: str, file: str, paths: list[Path], key: tuple[str, ...] = ()) -> list[dict]:
    """Validate the Parquet file(s) `paths` (read as one dataset) with `suite`; one result row per check.

    Row checks run in GX on the rows up to `GX_ROWS_MAX` rows, as DuckDB aggregates above (same counts, same rows
    shown). An offending row is shown with its line, `key`, the checked column and the row's account and amount."""
    import great_expectations.expectations as gxe
    names = pq.read_schema(paths[0]).names
    context = [*key, *(c for c in names if ACCOUNT_COLUMN.search(c) and c not in ("account_hash",)),
               *(c for c in ("amount_fen",) if c in names)]
    shown = list(dict.fromkeys(["_line", *context]))
    tallies = [_Tally(c, list(dict.fromkeys([*key, *_kw_columns(c), *context]))) for c in suite.rows]
    con = _connect()
    try:
        if tallies and sum(pq.ParquetFile(p).metadata.num_rows for p in paths) > GX_ROWS_MAX:
            _row_checks_in_duckdb(con, tallies, paths)
        elif tallies:
            _row_checks_in_gx(tallies, paths, sorted(suite.columns | set(shown)))
        rows = [t.row(dataset, file) for t in tallies if t.elements or t.unexpected]
        sources = " UNION ALL BY NAME ".join(f"SELECT * FROM {_read_parquet(p)}" for p in paths)
        con.execute(f"CREATE VIEW detail AS {sources}")
        if suite.unique:
            cols = ", ".join(suite.unique)
            total, repeated, dup = _repeated_keys(con, suite.unique)
            check = Check(f"key ({cols}) unique", gxe.ExpectColumnValuesToBeBetween(column="occurrences",
                                                                                   max_value=1))
            tally = _Tally(check, [*suite.unique, "occurrences"])
            tally.add(_run(dup.to_pandas(), [check.expectation])[0], dup)
            rows.append(tally.row(dataset, file) | {"element_count": total, "column": cols,
                                                    "unexpected_count": repeated})
        if suite.controls:
            computed = con.sql(f"SELECT {', '.join(c for _, _, c in suite.controls)} FROM detail").fetchall()[0]
            for (words, declared, _), value in zip(suite.controls, computed):
                check = Check(f"control total: {words}", gxe.ExpectColumnPairValuesToBeEqual(
                    column_A="declared", column_B="computed"))
                tally = _Tally(check, ["control", "declared", "computed"])
                one = pa.Table.from_pylist([{"control": words, "declared": int(declared), "computed": int(value)}])
                tally.add(_run(one.to_pandas(), [check.expectation])[0], one)
                rows.append(tally.row(dataset, file))
    finally:
        con.close()
    return rows


def _repeated_keys(con: duckdb.DuckDBPyConnection, key: tuple[str, ...]) -> tuple[int, int, pa.Table]:
    """Over the view `detail`: the rows, the keys seen more than once, and the first 1000 of them (most repeated
    first, with their first line and occurrences).

    Exact and cheap on 20M rows: each row's key is hashed (64 bits) and the hashes sorted in numpy (1.5 s, where
    DuckDB's group-by of 20M distinct keys took 7 s); only the keys whose hash repeats are then grouped, so a hash
    collision costs a group-by of a few rows, never a wrong answer."""
    cols = ", ".join(key)
    hashes = con.sql(f"SELECT hash({cols}) AS h FROM detail").fetchnumpy()["h"]
    hashes.sort()
    clashing = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
    con.register("clashing", pa.table({"h": clashing}))
    line = "min(_line) AS first_line, " if "_line" in con.sql("SELECT * FROM detail").columns else ""
    where = f"hash({cols}) IN (SELECT h FROM clashing)" if len(clashing) else "false"
    con.execute(f"CREATE TEMP TABLE repeated AS SELECT {cols}, {line}CAST(count(*) AS BIGINT) AS occurrences "
                f"FROM detail WHERE {where} GROUP BY ALL HAVING count(*) > 1")
    dup = con.sql(f"SELECT * FROM repeated ORDER BY occurrences DESC, {cols} LIMIT 1000").to_arrow_table()
    return len(hashes), con.sql("SELECT count(*) FROM repeated").fetchall()[0][0], dup


def _kw_columns(check: Check) -> list[str]:
    kw = check.expectation.configuration.kwargs
    return [kw[k] for k in ("column", "column_A", "column_B") if k in kw]


# --- the step ---------------------------------------------------------------------------------------------


def validate(channel: str, date: dt.date, wd: Workdir) -> dict:
    """Validate what the earlier steps of (channel, T) wrote: every parsed file of the manifest, the ledger extract
    when loaded, the reconciliation results when matched. Publishes the `validation` table, then raises
    `ExpectationFailed` (Terminal) naming the file, the expectation and the offending rows if any check failed."""
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
    rows: list[dict] = []
    for f in manifest["files"]:
        kind, _ = CHANNEL_FILES[channel].kind_matching(f["name"], date)
        layout = get_layout(kind.layout)
        rules = RULES.get(layout.name, Rules())
        if kind.amount_field not in rules.positive and rules.positive:  # the amount reconciled must be > 0
            rules = dataclasses.replace(rules, positive=(*rules.positive, kind.amount_field))
        suite = layout_suite(layout, date, rules)
        file_row = registry.get((f["name"], f["version"]))
        if file_row:
            suite.controls = _control_sql(layout, _declared_totals(layout, file_row))
        paths = [parsed / f["parquet"], parsed / f["quarantine"]]
        # Row checks on the readable records; keys and totals over readable + quarantined (the whole file).
        rows += run_suite(Suite(suite.name, suite.rows), layout.name, f["name"], paths[:1], layout.key)
        rows += run_suite(Suite(suite.name, unique=suite.unique, controls=suite.controls), layout.name, f["name"],
                          paths, layout.key)
    ledger = wd.ledger_extract(date)
    if ledger.exists():
        journal = get_layout("ledger.journal")
        rows += run_suite(layout_suite(journal, date), "ledger.journal", ledger.name, [ledger], journal.key)
    results = wd.table_path("recon_result", channel, date)
    if results.exists():
        rows += run_suite(results_suite(date), "recon_result", f"recon_result {channel} {date}", [results],
                          ("side", "record_ref"))
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


def validation_table(rows: list[dict], channel: str, date: dt.date) -> pa.Table:
    schema = pa.schema([("channel", pa.string()), ("business_date", pa.date32()), ("dataset", pa.string()),
                        ("file", pa.string()), ("description", pa.string()), ("expectation", pa.string()),
                        ("column", pa.string()), ("success", pa.bool_()), ("element_count", pa.int64()),
                        ("unexpected_count", pa.int64()), ("offending", pa.string())])
    return pa.Table.from_pylist([{"channel": channel, "business_date": date} | r for r in rows], schema=schema)
