"""What a reader returns, whatever the framing: records, quarantine, control checks, and file-level totals."""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from formats.errors import ControlTotalMismatch, StructureError
from formats.flag import Flag, verify_count
from formats.layout import Count, FileLayout, Sum

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
    """The outcome of reading one file. Conservation: `detail_count == records.num_rows + quarantined`."""

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
        return {"file": self.file, "layout": self.layout, "records": self.detail_count,
                "loaded": self.detail_count - self.quarantined, "quarantined": self.quarantined,
                "controls": [f"{c.control}: {c.declared} = {c.computed}" for c in self.controls]}


class Totals:
    """Accumulates what the control totals need while batches stream by, then checks the file as a whole."""

    def __init__(self, layout: FileLayout) -> None:
        self.layout = layout
        self.counts: dict[str, int] = {}
        self.sums: dict[Sum, int] = {}
        self.unreadable: dict[Sum, int] = {}  # first line whose summed amount could not be read
        self.others: dict[str, list[pa.Table]] = {}
        self.lines = 0

    def add(self, batch: Batch) -> None:
        layout = self.layout
        self.lines += batch.lines
        detail = layout.detail.name
        self.counts[detail] = self.counts.get(detail, 0) + batch.records.num_rows + batch.quarantine.num_rows
        for name, table in batch.others.items():
            self.counts[name] = self.counts.get(name, 0) + table.num_rows
            self.others.setdefault(name, []).append(table)
        for c in layout.controls:
            if not isinstance(c, Sum):
                continue
            rec, _, fname = c.of.partition(".")
            tables = [batch.records, batch.quarantine] if rec == detail else [batch.others.get(rec)]
            for t in tables:
                if t is None or not t.num_rows:
                    continue
                if c.where:
                    t = t.filter(pc.equal(t[c.where[0]], c.where[1]))
                col = t[fname]
                if col.null_count and c not in self.unreadable:
                    nulls = pc.is_null(col)
                    self.unreadable[c] = t.filter(nulls)["_line"][0].as_py()
                self.sums[c] = self.sums.get(c, 0) + (pc.sum(col).as_py() or 0)

    def finish(self, file_name: str, batches: list[Batch], flag: Flag | None) -> ReadResult:
        layout = self.layout
        header = trailer = None
        for rec in layout.records:
            if rec.kind == "detail":
                continue
            count = self.counts.get(rec.name, 0)
            if count != 1:
                raise StructureError(file_name, f"the file must have exactly one {rec.name} record",
                                     expected=1, found=count)
            row = pa.concat_tables(self.others[rec.name]).to_pylist()[0]
            line = row.pop("_line")
            if rec.kind == "header" and line != 1:
                raise StructureError(file_name, f"the {rec.name} must be the first line", line=line)
            if rec.kind == "trailer" and line != self.lines:
                raise StructureError(file_name, f"the {rec.name} must be the last line", line=line)
            if rec.kind == "header":
                header = row
            else:
                trailer = row
        records = pa.concat_tables([b.records for b in batches]) if batches else None
        quarantine = pa.concat_tables([b.quarantine for b in batches]) if batches else empty_quarantine(layout)
        quarantine = quarantine.sort_by("_line")
        for rec in layout.records:
            if rec.kind != "detail":
                bad = quarantine.filter(pc.equal(quarantine["_record"], rec.name))
                if bad.num_rows:
                    q = bad.to_pylist()[0]
                    raise StructureError(file_name, f"{rec.name}.{q['_field']} is unreadable", line=q["_line"],
                                         expected=q["_expected"], found=q["_actual"])
        detail_count = self.counts.get(layout.detail.name, 0)
        checks = check_controls(layout, file_name, self, {"header": header, "trailer": trailer}, flag)
        if flag is not None:
            verify_count(file_name, flag, detail_count)
        if records is None:
            records = pa.schema([("_line", pa.int64()), *layout.arrow_schema()]).empty_table()
        return ReadResult(file_name, layout.name, records, quarantine, header, trailer, checks, detail_count,
                          self.lines)


def check_controls(layout: FileLayout, file_name: str, totals: Totals, single: dict, flag: Flag | None):
    """Compare every declared control with what was read; the first mismatch rejects the file."""
    values = {}
    for rec in layout.records:
        if rec.kind != "detail":
            values[rec.name] = single.get(rec.kind) or {}
    checks = []
    for c in layout.controls:
        if c.equals == "flag":
            if flag is None:
                continue
            declared = flag.record_count
        else:
            rec, _, fname = c.equals.partition(".")
            declared = values.get(rec, {}).get(fname)
        if isinstance(c, Count):
            computed, name = totals.counts.get(c.record, 0), f"count of {c.record} = {c.equals}"
        else:
            if c in totals.unreadable:
                raise ControlTotalMismatch(
                    file_name, f"an amount is unreadable, so the control total {c.equals} cannot be checked",
                    line=totals.unreadable[c])
            where = f" where {c.where[0]}={c.where[1]}" if c.where else ""
            computed, name = totals.sums.get(c, 0), f"sum of {c.of}{where} = {c.equals}"
        if declared != computed:
            raise ControlTotalMismatch(file_name, f"control total {name} does not hold",
                                       expected=f"{declared} (declared)", found=f"{computed} (computed)")
        checks.append(ControlCheck(name, int(declared), int(computed)))
    return checks
