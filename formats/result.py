"""What a reader returns, whatever the framing: records, quarantine, control checks, and file-level totals."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from formats.errors import ControlTotalMismatch, DuplicateKey, FileRejected, FlagMismatch, StructureError
from formats.flag import Flag, verify_count
from formats.layout import Balanced, Count, FileLayout, Sum, Unique

QUARANTINE_COLUMNS = [
    ("_line", pa.int64()),       # 1-based line (or row / element number) in the file
    ("_record", pa.string()),    # record type, "?" when it could not be told
    ("_field", pa.string()),     # the first field that failed
    ("_expected", pa.string()),
    ("_actual", pa.string()),    # what was found, as text (bytes shown with escapes)
    ("_raw", pa.binary()),       # the whole record as received
]


def empty_quarantine(layout: FileLayout) -> pa.Table:
    schema = pa.schema(QUARANTINE_COLUMNS + [(f.name, f.type.arrow_type) for f in layout.detail.fields])
    return schema.empty_table()


def _show(value: object) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii") if value.isascii() else repr(value)
        except UnicodeDecodeError:  # pragma: no cover
            return repr(value)
    return str(value)


def quarantine_table(layout: FileLayout, rows: list[tuple], typed: pa.Table | None = None) -> pa.Table:
    """Rows of (line, raw, record, field, expected, actual) -> the quarantine schema.

    `typed` holds the detail fields as far as they could be read (null where not), so that the quarantine can
    still be counted and summed (conservation)."""
    empty = empty_quarantine(layout)
    cols = {
        "_line": pa.array([r[0] for r in rows], pa.int64()),
        "_record": pa.array([r[2] for r in rows], pa.string()),
        "_field": pa.array([r[3] for r in rows], pa.string()),
        "_expected": pa.array([r[4] for r in rows], pa.string()),
        "_actual": pa.array([_show(r[5]) for r in rows], pa.string()),
        "_raw": pa.array([r[1] for r in rows], pa.binary()),
    }
    for f in layout.detail.fields:
        if typed is not None and f.name in typed.column_names:
            cols[f.name] = typed.column(f.name).combine_chunks().cast(f.type.arrow_type)
        else:
            cols[f.name] = pa.nulls(len(rows), f.type.arrow_type)
    return pa.table(cols, schema=empty.schema)


@dataclass(frozen=True)
class OutFile:
    """One file of a `registry.write_files` call: its detail rows are `records.slice(offset, length)` of the
    call's table, with its own header and trailer values and engine options (`encoding=`, `business_date=`)."""
    path: Path
    offset: int = 0
    length: int = 0
    header: dict | None = None
    trailer: dict | None = None
    options: dict = field(default_factory=dict)


@dataclass
class Batch:
    records: pa.Table                      # good detail records, with `_line`
    quarantine: pa.Table
    others: dict[str, pa.Table]            # header / trailer / summary records, with `_line`
    lines: int                             # physical lines (or elements / rows) consumed


@dataclass(frozen=True)
class ControlCheck:
    control: str
    declared: int
    computed: int

    @property
    def ok(self) -> bool:
        return self.declared == self.computed


@dataclass
class ReadResult:
    """The outcome of reading one file. Conservation: `detail_count == records.num_rows + quarantined`.

    `header` / `trailer` hold the values of the header (and trailer) records, merged into one dict when a layout
    has several (TIPS: `HEAD` and `BatchHead3102`); `extra` holds framing facts (the XML's declared encoding)."""

    file: str
    layout: str
    records: pa.Table
    quarantine: pa.Table
    header: dict | None
    trailer: dict | None
    controls: list[ControlCheck]
    detail_count: int                      # detail records in the file, good and quarantined
    lines: int
    extra: dict = field(default_factory=dict)

    @property
    def quarantined(self) -> int:
        return self.quarantine.num_rows

    def summary(self) -> dict:
        """What an operator reads after a parse: counts, the controls that held, and the first quarantine reasons."""
        out = {"file": self.file, "layout": self.layout, "records": self.detail_count,
               "loaded": self.detail_count - self.quarantined, "quarantined": self.quarantined,
               "controls": [f"{c.control}: {c.declared} = {c.computed}" for c in self.controls]}
        reasons = []
        if self.quarantined:
            q = self.quarantine.select(["_line", "_record", "_field", "_expected", "_actual"]).slice(0, 5)
            for r in q.to_pylist():
                reasons.append(f"line {r['_line']} {r['_record']}.{r['_field']}: expected {r['_expected']}, "
                               f"found {r['_actual']!r}")
        out["quarantine_reasons"] = reasons
        # Header and trailer values as text: the summary is stored as JSON by callers that pass no encoder.
        for part in ("header", "trailer"):
            values = getattr(self, part)
            if values:
                out[part] = {k: ("" if v is None else str(v)) for k, v in values.items()}
        out.update({k: v for k, v in self.extra.items() if isinstance(v, (str, int))})
        return out


def _filter(t: pa.Table, where: tuple[str, str] | None, where_not: tuple[str, str] | None) -> pa.Table:
    if where:
        t = t.filter(pc.fill_null(pc.equal(t[where[0]], where[1]), False))
    if where_not:
        # An unreadable value is "not equal": a result line with no readable code is not a success.
        t = t.filter(pc.fill_null(pc.not_equal(t[where_not[0]], where_not[1]), True))
    return t


class Totals:
    """Accumulates what the control totals need while batches stream by, then checks the file as a whole."""

    def __init__(self, layout: FileLayout) -> None:
        self.layout = layout
        self.counts: dict[str, int] = {}
        self.control_counts: dict[Count, int] = {}
        self.sums: dict[Sum, int] = {}
        self.unreadable: dict[Sum, int] = {}  # first line whose summed amount could not be read
        self.uniques: dict[Unique, list[pa.Table]] = {}
        self.balances: dict[Balanced, dict[str, list[int]]] = {}  # group -> [debits, credits]
        self.others: dict[str, list[pa.Table]] = {}
        self.lines = 0

    def _tables(self, batch: Batch, rec: str) -> list[pa.Table]:
        if rec == self.layout.detail.name:
            return [batch.records, batch.quarantine]
        t = batch.others.get(rec)
        return [t] if t is not None else []

    def add(self, batch: Batch) -> None:
        layout = self.layout
        self.lines += batch.lines
        detail = layout.detail.name
        self.counts[detail] = self.counts.get(detail, 0) + batch.records.num_rows + batch.quarantine.num_rows
        for name, table in batch.others.items():
            self.counts[name] = self.counts.get(name, 0) + table.num_rows
            self.others.setdefault(name, []).append(table)
        for c in layout.controls:
            if isinstance(c, Count):
                if not (c.where or c.where_not or c.readable):
                    continue
                n = 0
                for t in self._tables(batch, c.record):
                    t = _filter(t, c.where, c.where_not)
                    n += t.num_rows - (t[c.readable].null_count if c.readable else 0)
                self.control_counts[c] = self.control_counts.get(c, 0) + n
            elif isinstance(c, Balanced):
                rec, _, fname = c.of.partition(".")
                groups = self.balances.setdefault(c, {})
                for t in self._tables(batch, rec):
                    if not t.num_rows:
                        continue
                    if t[fname].null_count and c not in self.unreadable:
                        self.unreadable[c] = t.filter(pc.is_null(t[fname]))["_line"][0].as_py()
                    keys = t[c.by].to_pylist() if c.by else [""] * t.num_rows
                    for key, side, amount in zip(keys, t[c.side].to_pylist(), t[fname].to_pylist()):
                        sums = groups.setdefault(key or "", [0, 0])
                        if side == c.debit:
                            sums[0] += amount or 0
                        elif side == c.credit:
                            sums[1] += amount or 0
            elif isinstance(c, Unique):
                rec, _, fname = c.of.partition(".")
                self.uniques.setdefault(c, []).extend(t.select(["_line", fname]) for t in self._tables(batch, rec)
                                                      if t.num_rows)
            else:
                rec, _, fname = c.of.partition(".")
                for t in self._tables(batch, rec):
                    if not t.num_rows:
                        continue
                    flt = (c.where or c.where_not or (None,))[0]
                    if flt and c.unreadable == "reject" and t[flt].null_count and c not in self.unreadable:
                        # Which total this record belongs to cannot be told: the control cannot be checked.
                        self.unreadable[c] = t.filter(pc.is_null(t[flt]))["_line"][0].as_py()
                    t = _filter(t, c.where, c.where_not)
                    col = t[fname]
                    if col.null_count and c not in self.unreadable and c.unreadable == "reject":
                        self.unreadable[c] = t.filter(pc.is_null(col))["_line"][0].as_py()
                    self.sums[c] = self.sums.get(c, 0) + (pc.sum(col).as_py() or 0)

    def finish(self, file_name: str, batches: list[Batch], flag: Flag | None, extra: dict | None = None) -> ReadResult:
        """Check structure, then controls; a failed control raises with `partial` set to what was read."""
        layout = self.layout
        header: dict | None = None
        trailer: dict | None = None
        for rec in layout.records:
            if rec.kind == "detail":
                continue
            count = self.counts.get(rec.name, 0)
            if count != 1:
                raise StructureError(file_name, f"the file must have exactly one {rec.name} record"
                                     + (" (missing)" if count == 0 else ""), expected=1, found=count)
            row = pa.concat_tables(self.others[rec.name]).to_pylist()[0]
            line = row.pop("_line")
            if layout.framing == "fixed":
                if rec.kind == "header" and line != 1:
                    raise StructureError(file_name, f"the {rec.name} must be the first line", line=line)
                if rec.kind == "trailer" and line != self.lines:
                    raise StructureError(file_name, f"the {rec.name} must be the last line", line=line)
            if rec.kind == "header":
                header = {**(header or {}), **row}
            elif rec.kind == "trailer":
                trailer = {**(trailer or {}), **row}
        records = pa.concat_tables([b.records for b in batches]) if batches else None
        quarantine = pa.concat_tables([b.quarantine for b in batches]) if batches else empty_quarantine(layout)
        quarantine = quarantine.sort_by("_line")
        detail_names = {r.name for r in layout.details}
        for rec in layout.records:
            if rec.name not in detail_names:
                bad = quarantine.filter(pc.equal(quarantine["_record"], rec.name))
                if bad.num_rows:
                    q = bad.to_pylist()[0]
                    raise StructureError(file_name, f"{rec.name}.{q['_field']} is unreadable", line=q["_line"],
                                         expected=q["_expected"], found=q["_actual"])
        if records is None:
            records = pa.schema([("_line", pa.int64()), *layout.arrow_schema()]).empty_table()
        detail_count = self.counts.get(layout.detail.name, 0)
        result = ReadResult(file_name, layout.name, records, quarantine, header, trailer, [], detail_count,
                            self.lines, dict(extra or {}))
        try:
            result.controls = check_controls(layout, file_name, self, {"header": header, "trailer": trailer}, flag)
            if flag is not None:
                verify_count(file_name, flag, detail_count)
        except FileRejected as e:
            e.partial = result
            raise
        return result


def check_controls(layout: FileLayout, file_name: str, totals: Totals, single: dict, flag: Flag | None):
    """Compare every declared control with what was read; the first mismatch rejects the file."""
    values = {}
    for rec in layout.records:
        if rec.kind not in ("detail", "heading"):
            values[rec.name] = single.get(rec.kind) or {}
    checks = []
    for c in layout.controls:
        if isinstance(c, Unique):
            _check_unique(file_name, c, totals.uniques.get(c, []))
            continue
        if isinstance(c, Balanced):
            checks.append(_check_balanced(file_name, c, totals))
            continue
        if c.equals == "flag":
            if flag is None:
                continue
            declared = flag.record_count
        else:
            rec, _, fname = c.equals.partition(".")
            declared = values.get(rec, {}).get(fname)
        flt = ""
        if c.where:
            flt = f" where {c.where[0]}={c.where[1]}"
        if c.where_not:
            flt = f" where {c.where_not[0]}!={c.where_not[1]}"
        if isinstance(c, Count):
            if c in totals.control_counts or c.where or c.where_not or c.readable:
                computed = totals.control_counts.get(c, 0)
            else:
                computed = totals.counts.get(c.record, 0)
            readable = f" with a readable {c.readable}" if c.readable else ""
            name = f"count of {c.record}{flt}{readable} = {c.equals}"
        else:
            if c in totals.unreadable:
                raise ControlTotalMismatch(
                    file_name, f"an amount is unreadable, so the control total {c.equals} cannot be checked",
                    line=totals.unreadable[c])
            computed, name = totals.sums.get(c, 0), f"sum of {c.of}{flt} = {c.equals}"
        if declared != computed and c.equals == "flag":
            raise FlagMismatch(file_name, "record count differs from the flag file", expected=declared,
                               found=computed)
        if declared != computed:
            raise ControlTotalMismatch(file_name, f"control total {name} does not hold",
                                       expected=f"{declared} (declared)", found=f"{computed} (computed)")
        checks.append(ControlCheck(name, int(declared), int(computed)))
    return checks


def _check_balanced(file_name: str, c: Balanced, totals: Totals) -> ControlCheck:
    if c in totals.unreadable:
        raise ControlTotalMismatch(file_name, f"an amount is unreadable, so debits and credits cannot be checked",
                                   line=totals.unreadable[c])
    groups = totals.balances.get(c, {})
    for key, (debits, credits) in sorted(groups.items()):
        if debits != credits:
            what = f"{c.by} {key}" if c.by else "the file"
            raise ControlTotalMismatch(file_name, f"{what} does not balance", expected=f"credits = debits {debits}",
                                       found=f"credits {credits}")
    debits = sum(g[0] for g in groups.values())
    credits = sum(g[1] for g in groups.values())
    if debits != credits:  # pragma: no cover - implied by the per-group check
        raise ControlTotalMismatch(file_name, "the file does not balance", expected=debits, found=credits)
    by = f" per {c.by}" if c.by else ""
    return ControlCheck(f"{c.of} debits = credits{by}", debits, credits)


def _check_unique(file_name: str, c: Unique, tables: list[pa.Table]) -> None:
    if not tables:
        return
    fname = c.of.partition(".")[2]
    t = pa.concat_tables(tables).combine_chunks()
    t = t.filter(pc.is_valid(t[fname]))
    counts = pc.value_counts(t[fname])
    dup = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(dup):
        value = dup.field("values")[0]
        lines = t.filter(pc.equal(t[fname], value))["_line"].to_pylist()
        raise DuplicateKey(file_name, f"{c.of} must be unique; {value.as_py()!r} appears on lines "
                           + ", ".join(map(str, lines)), line=lines[1], expected="unique values",
                           found=f"{len(dup)} repeated value(s)")
