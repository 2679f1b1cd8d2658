"""The vocabulary of a file layout: field types, fields, records, controls, and the checks run on declaration.

This is the only "meta" code of the format engine. A counterparty file is declared with these classes in its own
module under `formats/specs/` (data only); the engines (`fixed_width`, `delimited`, ...) read and write any
declared layout. Every field type converts a whole column at once (numpy / Arrow compute), never value by value,
and reports which rows it could not read instead of inventing a value.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from formats.errors import LayoutError

ZERO, NINE, SPACE = 0x30, 0x39, 0x20


@dataclass(frozen=True)
class Parsed:
    """A column read by a field type: the typed values (null where unreadable) and the rows that failed."""

    values: pa.Array
    bad: np.ndarray  # bool per row


def _digits_matrix_to_int(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ASCII digit bytes -> int64 values and a mask of rows holding anything but digits."""
    digits = mat.astype(np.int64) - ZERO
    bad = ((mat < ZERO) | (mat > NINE)).any(axis=1)
    powers = 10 ** np.arange(mat.shape[1] - 1, -1, -1, dtype=np.int64)
    return digits @ powers, bad


def _with_nulls(values: np.ndarray, bad: np.ndarray, type_: pa.DataType) -> pa.Array:
    return pa.array(values, type=type_, mask=bad if bad.any() else None)


def _is_all_digits(values: pa.Array) -> np.ndarray:
    ok = pc.fill_null(pc.and_(pc.utf8_is_digit(values), pc.equal(pc.utf8_length(values), pc.binary_length(values))),
                      False)
    return ~ok.to_numpy(zero_copy_only=False)


class FieldType:
    """Converts a column between its wire form (text, or bytes in a fixed-width file) and its typed form."""

    arrow_type: pa.DataType = pa.string()
    align: Literal["left", "right"] = "left"
    pad: bytes = b" "
    numeric_wire = False  # the wire form is ASCII digits: fixed-width reads may take the numpy fast path

    @property
    def expected(self) -> str:
        return type(self).__name__

    def parse(self, text: pa.Array) -> Parsed:
        """Strings (already trimmed of padding) -> typed values."""
        return Parsed(text, np.zeros(len(text), dtype=bool))

    def parse_matrix(self, mat: np.ndarray) -> Parsed | None:
        """Optional fast path for fixed-width numeric fields: an (n, width) uint8 matrix -> typed values."""
        return None

    def render(self, values: pa.Array) -> pa.Array:
        """Typed values -> strings in wire form, unpadded (the engine pads and checks widths)."""
        return pc.cast(values, pa.string())

    def fits(self, width: int) -> str | None:
        """Why this type cannot live in `width` bytes, or None."""
        return None


@dataclass(frozen=True)
class Text(FieldType):
    """Free text; left aligned, padded with ASCII spaces. `blank=False` makes an empty value an error."""

    blank: bool = True

    @property
    def expected(self) -> str:
        return "text" if self.blank else "non-blank text"

    def parse(self, text: pa.Array) -> Parsed:
        bad = np.zeros(len(text), dtype=bool)
        if not self.blank:
            bad = pc.fill_null(pc.equal(pc.utf8_length(text), 0), True).to_numpy(zero_copy_only=False)
        return Parsed(text, bad)


@dataclass(frozen=True)
class Const(FieldType):
    """A constant, such as a record type byte."""

    value: str

    @property
    def expected(self) -> str:
        return repr(self.value)

    def parse(self, text: pa.Array) -> Parsed:
        ok = pc.fill_null(pc.equal(text, self.value), False).to_numpy(zero_copy_only=False)
        return Parsed(text, ~ok)

    def fits(self, width: int) -> str | None:
        return None if len(self.value.encode()) <= width else f"constant {self.value!r} is longer than {width}"


@dataclass(frozen=True)
class Code(FieldType):
    """A value from a code table (status, message type, result code); the table maps code -> meaning."""

    table: Mapping[str, str]

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(sorted(self.table))

    def parse(self, text: pa.Array) -> Parsed:
        ok = pc.fill_null(pc.is_in(text, value_set=pa.array(list(self.table))), False)
        return Parsed(text, ~ok.to_numpy(zero_copy_only=False))


@dataclass(frozen=True)
class Digits(FieldType):
    """An identifier made of ASCII digits (trace numbers, dates kept verbatim); kept as text, zeros included.

    `length` (delimited files) requires an exact number of digits; fixed-width fields use their width.
    `blank=True` accepts an empty value (a field the counterparty may leave out)."""

    length: int | None = None
    blank: bool = False
    align = "right"
    pad = b"0"
    numeric_wire = True

    @property
    def expected(self) -> str:
        n = f"{self.length} " if self.length else ""
        return f"{n}digits" + (" or empty" if self.blank else "")

    def parse(self, text: pa.Array) -> Parsed:
        bad = _is_all_digits(text)
        lengths = pc.utf8_length(text).to_numpy(zero_copy_only=False)
        if self.length:
            bad |= lengths != self.length
        if self.blank:
            bad &= lengths != 0
        else:
            bad |= lengths == 0
        return Parsed(text, bad)


@dataclass(frozen=True)
class Int(FieldType):
    """A non-negative integer written as zero-padded digits (counts, sequence numbers)."""

    arrow_type = pa.int64()
    align = "right"
    pad = b"0"
    numeric_wire = True
    expected = "digits"

    def parse(self, text: pa.Array) -> Parsed:
        bad = _is_all_digits(text) | (pc.utf8_length(text).to_numpy(zero_copy_only=False) == 0)
        bad |= (pc.utf8_length(text).to_numpy(zero_copy_only=False) > 18)
        clean = pc.if_else(pa.array(bad), "0", text)
        return Parsed(_with_nulls(pc.cast(clean, pa.int64()).to_numpy(zero_copy_only=False), bad, pa.int64()), bad)

    def parse_matrix(self, mat: np.ndarray) -> Parsed:
        values, bad = _digits_matrix_to_int(mat)
        return Parsed(_with_nulls(values, bad, pa.int64()), bad)


@dataclass(frozen=True)
class Fen(Int):
    """An amount in fen (分): zero-padded digits, no sign, no decimal point; an int64 of fen."""

    expected = "amount in fen (digits)"


@dataclass(frozen=True)
class SignedFen(FieldType):
    """UnionPay's fee form: a sign byte (`C` in the bank's favour, `D` against it) and digits of fen."""

    arrow_type = pa.int64()
    numeric_wire = True
    expected = "C or D followed by digits of fen"

    def parse_matrix(self, mat: np.ndarray) -> Parsed:
        sign = mat[:, 0]
        values, bad = _digits_matrix_to_int(mat[:, 1:])
        bad |= (sign != ord("C")) & (sign != ord("D"))
        values = np.where(sign == ord("D"), -values, values)
        return Parsed(_with_nulls(values, bad, pa.int64()), bad)

    def parse(self, text: pa.Array) -> Parsed:
        raw = text.cast(pa.binary())
        width = max((len(v) for v in raw.to_pylist() if v is not None), default=1)
        mat = np.frombuffer(b"".join(v.ljust(width, b"?") for v in raw.to_pylist()), dtype=np.uint8)
        return self.parse_matrix(mat.reshape(len(text), width))

    def render_width(self, values: pa.Array, width: int) -> pa.Array:
        v = values.to_numpy(zero_copy_only=False)
        signs = np.where(v < 0, "D", "C")
        digits = pc.utf8_lpad(pc.cast(pa.array(np.abs(v)), pa.string()), width - 1, "0")
        return pc.binary_join_element_wise(pa.array(signs), digits, "")


@dataclass(frozen=True)
class Yuan(FieldType):
    """An amount in yuan with a decimal point (`1234.50`) read exactly into int64 fen (never through a float).

    `exact_decimals=True` requires exactly two decimals (PBOC, TIPS); otherwise up to two are accepted (payroll).
    More than two decimals, a sign, or anything but digits and one point is an error."""

    exact_decimals: bool = True
    arrow_type = pa.int64()

    @property
    def expected(self) -> str:
        return "yuan with exactly two decimals (1234.50)" if self.exact_decimals else "yuan with at most two decimals"

    def parse(self, text: pa.Array) -> Parsed:
        pattern = r"^[0-9]{1,16}\.[0-9]{2}$" if self.exact_decimals else r"^[0-9]{1,16}(\.[0-9]{1,2})?$"
        ok = pc.fill_null(pc.match_substring_regex(text, pattern), False)
        bad = ~ok.to_numpy(zero_copy_only=False)
        parts = pc.split_pattern(pc.if_else(ok, text, "0"), ".")
        whole = pc.cast(pc.list_element(parts, 0), pa.int64())
        has_frac = pc.greater(pc.list_value_length(parts), 1)
        frac = pc.if_else(has_frac, pc.utf8_rpad(pc.list_element(pc.if_else(has_frac, parts, pa.array([["0", "0"]] * len(parts))), 1), 2, "0"), "00")
        fen = pc.add(pc.multiply(whole, 100), pc.cast(frac, pa.int64()))
        return Parsed(_with_nulls(fen.to_numpy(zero_copy_only=False), bad, pa.int64()), bad)

    def render(self, values: pa.Array) -> pa.Array:
        v = values.to_numpy(zero_copy_only=False).astype(np.int64)
        yuan = pc.cast(pa.array(v // 100), pa.string())
        fen = pc.utf8_lpad(pc.cast(pa.array(v % 100), pa.string()), 2, "0")
        return pc.binary_join_element_wise(yuan, fen, ".")


@dataclass(frozen=True)
class Date8(FieldType):
    """A calendar date written `YYYYMMDD`; read into date32, and a date that does not exist is an error."""

    blank: bool = False
    arrow_type = pa.date32()
    numeric_wire = True
    expected = "a date YYYYMMDD"

    def _from_int(self, ymd: np.ndarray, bad: np.ndarray) -> Parsed:
        y, m, d = ymd // 10000, ymd // 100 % 100, ymd % 100
        bad = bad | (m < 1) | (m > 12) | (d < 1) | (d > 31) | (y < 1900) | (y > 2999)
        safe_y, safe_m, safe_d = (np.where(bad, 2000, y), np.where(bad, 1, m), np.where(bad, 1, d))
        months = (safe_y - 1970) * 12 + (safe_m - 1)
        first = months.astype("datetime64[M]").astype("datetime64[D]")
        days = first + (safe_d - 1).astype("timedelta64[D]")
        # A day past the month's end rolls into the next month: that is how an impossible date shows.
        bad |= days.astype("datetime64[M]") != first.astype("datetime64[M]")
        return Parsed(_with_nulls(days.astype("datetime64[D]"), bad, pa.date32()), bad)

    def parse_matrix(self, mat: np.ndarray) -> Parsed:
        values, bad = _digits_matrix_to_int(mat)
        return self._from_int(values, bad)

    def parse(self, text: pa.Array) -> Parsed:
        bad = _is_all_digits(text) | (pc.utf8_length(text).to_numpy(zero_copy_only=False) != 8)
        clean = pc.if_else(pa.array(bad), "20000101", text)
        return self._from_int(pc.cast(clean, pa.int64()).to_numpy(zero_copy_only=False), bad)

    def render(self, values: pa.Array) -> pa.Array:
        return pc.strftime(pc.cast(values, pa.timestamp("s")), "%Y%m%d")


@dataclass(frozen=True)
class Timestamp14(FieldType):
    """A date and time written `YYYYMMDDhhmmss` (Beijing time, naive)."""

    arrow_type = pa.timestamp("s")
    expected = "a timestamp YYYYMMDDhhmmss"

    def parse(self, text: pa.Array) -> Parsed:
        ok = pc.fill_null(pc.match_substring_regex(text, r"^[0-9]{14}$"), False)
        clean = pc.if_else(ok, text, "20000101000000")
        try:
            ts = pc.strptime(clean, "%Y%m%d%H%M%S", "s", error_is_null=True)
        except pa.ArrowInvalid:  # pragma: no cover - error_is_null makes this unreachable
            raise
        bad = ~ok.to_numpy(zero_copy_only=False) | pc.is_null(ts).to_numpy(zero_copy_only=False)
        return Parsed(pc.if_else(pa.array(bad), pa.scalar(None, pa.timestamp("s")), ts), bad)

    def render(self, values: pa.Array) -> pa.Array:
        return pc.strftime(values, "%Y%m%d%H%M%S")


# --- fields, records, controls, layouts ---------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One field: its name, its 1-based byte positions (fixed-width files; both 0 elsewhere), its type."""

    name: str
    start: int
    end: int
    type: FieldType

    @property
    def width(self) -> int:
        return self.end - self.start + 1


def Column(name: str, type_: FieldType) -> Field:  # noqa: N802 - reads like a declaration
    """A field of a delimited, XML or Excel record: no byte positions, only an order."""
    return Field(name, 0, 0, type_)


@dataclass(frozen=True)
class Record:
    """A record type: `match` is the value its first field must hold to be this record (None: every line)."""

    name: str
    fields: tuple[Field, ...]
    match: str | None = None
    kind: Literal["header", "detail", "trailer"] = "detail"

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"record {self.name!r} has no field {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class Count:
    """The number of `record` records must equal the value of `equals` ("header.record_count") or the flag."""

    record: str
    equals: str  # "record.field" or "flag"


@dataclass(frozen=True)
class Sum:
    """Σ `of` ("detail.amount_fen") over the records (optionally those whose `where` field equals a value)."""

    of: str
    equals: str
    where: tuple[str, str] | None = None


@dataclass(frozen=True)
class FileLayout:
    """A counterparty file: its framing, encoding, record types in file order, control totals and key."""

    name: str
    framing: Literal["fixed", "delimited", "xml", "excel"]
    encoding: str
    records: tuple[Record, ...]
    record_bytes: int = 0                 # fixed-width: bytes per record, line end excluded
    separator: bytes = b""                # fixed-width: bytes between two fields (UnionPay: one space)
    delimiter: str = ""                   # delimited: the field separator (`|`, `@|$`, `,`)
    trailing_delimiter: bool = False      # delimited: every line ends with the delimiter
    line_end: bytes = b"\r\n"
    controls: tuple[Count | Sum, ...] = ()
    key: tuple[str, ...] = ()
    options: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_layout(self)

    def record(self, name: str) -> Record:
        for r in self.records:
            if r.name == name:
                return r
        raise KeyError(f"layout {self.name!r} has no record {name!r}")

    @property
    def detail(self) -> Record:
        return next(r for r in self.records if r.kind == "detail")

    def arrow_schema(self, record: str | None = None) -> pa.Schema:
        rec = self.record(record) if record else self.detail
        return pa.schema([(f.name, f.type.arrow_type) for f in rec.fields])


def check_layout(layout: FileLayout) -> None:
    """Refuse an inconsistent declaration when its module is imported (positions, widths, names, references)."""

    def fail(why: str) -> None:
        raise LayoutError(f"layout {layout.name}: {why}")

    names = [r.name for r in layout.records]
    if len(set(names)) != len(names):
        fail(f"record names repeat: {names}")
    if sum(r.kind == "detail" for r in layout.records) != 1:
        fail("exactly one record must be the detail record")
    for rec in layout.records:
        fnames = rec.names
        if len(set(fnames)) != len(fnames):
            fail(f"record {rec.name}: field names repeat")
        if layout.framing == "fixed":
            sep = len(layout.separator)
            pos = 1
            for f in rec.fields:
                if f.start != pos:
                    fail(f"{rec.name}.{f.name} starts at {f.start}, expected {pos} (gap or overlap)")
                if f.end < f.start:
                    fail(f"{rec.name}.{f.name} ends before it starts")
                if why := f.type.fits(f.width):
                    fail(f"{rec.name}.{f.name}: {why}")
                pos = f.end + 1 + sep
            if pos - sep - 1 != layout.record_bytes:
                fail(f"record {rec.name} is {pos - sep - 1} bytes, the layout says {layout.record_bytes}")
        if rec.match is not None and not isinstance(rec.fields[0].type, Const):
            fail(f"record {rec.name} is matched by its first field, which must be a Const")
    detail = layout.detail
    for k in layout.key:
        if k not in detail.names:
            fail(f"key field {k!r} is not a field of {detail.name}")
    for c in layout.controls:
        refs = [c.equals] if c.equals != "flag" else []
        refs.append(c.of if isinstance(c, Sum) else f"{c.record}.")
        for ref in refs:
            rec_name, _, fname = ref.partition(".")
            if rec_name not in names:
                fail(f"control {c} names unknown record {rec_name!r}")
            if fname and fname not in layout.record(rec_name).names:
                fail(f"control {c} names unknown field {ref!r}")
        if isinstance(c, Sum) and c.where and c.where[0] not in layout.record(c.of.split(".")[0]).names:
            fail(f"control {c} filters on unknown field {c.where[0]!r}")


def beijing_date(value: str) -> dt.date:
    """`YYYY-MM-DD` or `YYYYMMDD` -> date (business dates on the command line and in DAG params)."""
    return dt.date.fromisoformat(value if "-" in value else f"{value[:4]}-{value[4:6]}-{value[6:]}")
