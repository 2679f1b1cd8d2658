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
    """Free text; left aligned, padded with ASCII spaces. `blank=False` makes an empty value an error.

    `max_bytes` (delimited, XML and Excel files, where no width bounds a value) is the longest value in bytes of
    the file's encoding ("GBK, up to 60 bytes"); engines check it when reading and refuse longer on writing."""

    blank: bool = True
    max_bytes: int = 0

    @property
    def expected(self) -> str:
        what = "text" if self.blank else "non-blank text"
        return what + (f" of at most {self.max_bytes} bytes" if self.max_bytes else "")

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
    """A value from a code table (status, message type, result code); the table maps code -> meaning.

    `blank=True` also accepts an empty value (a reason code that only failures carry)."""

    table: Mapping[str, str]
    blank: bool = False

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(sorted(self.table)) + (" or empty" if self.blank else "")

    def parse(self, text: pa.Array) -> Parsed:
        ok = pc.fill_null(pc.is_in(text, value_set=pa.array(list(self.table))), False).to_numpy(zero_copy_only=False)
        if self.blank:
            ok |= pc.fill_null(pc.equal(pc.utf8_length(text), 0), True).to_numpy(zero_copy_only=False)
        return Parsed(text, ~ok)


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
    """A non-negative integer written as zero-padded digits (counts, sequence numbers).

    `positive=True` makes 0 an error (amounts the spec says are `> 0`)."""

    positive: bool = False
    arrow_type = pa.int64()
    align = "right"
    pad = b"0"
    numeric_wire = True

    @property
    def expected(self) -> str:
        return "digits" + (", > 0" if self.positive else "")

    def parse(self, text: pa.Array) -> Parsed:
        lengths = pc.fill_null(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
        bad = _is_all_digits(text) | (lengths == 0) | (lengths > 18)
        clean = pc.if_else(pa.array(bad), "0", text)
        values = pc.cast(clean, pa.int64()).to_numpy(zero_copy_only=False)
        # A zero is readable (it still counts in a total) but breaks `> 0`: null only what cannot be read.
        return Parsed(_with_nulls(values, bad, pa.int64()), bad | (values <= 0) if self.positive else bad)

    def parse_matrix(self, mat: np.ndarray) -> Parsed:
        values, bad = _digits_matrix_to_int(mat)
        return Parsed(_with_nulls(values, bad, pa.int64()), bad | (values <= 0) if self.positive else bad)


@dataclass(frozen=True)
class Fen(Int):
    """An amount in fen (分): zero-padded digits, no sign, no decimal point; an int64 of fen."""

    @property
    def expected(self) -> str:
        return "amount in fen (digits" + (", > 0)" if self.positive else ")")


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

    `exact_decimals=True` requires exactly two decimals (PBOC, TIPS, housing fund); otherwise none, one or two are
    accepted (payroll), and the writer always writes two. More than two decimals, a sign, a thousands separator,
    or anything but digits and one point is an error. `positive=True` makes 0.00 an error ("> 0" in a spec).
    `blank=True` reads an empty value as null (a result file may echo a row whose amount was unreadable)."""

    exact_decimals: bool = True
    positive: bool = False
    blank: bool = False
    arrow_type = pa.int64()

    @property
    def expected(self) -> str:
        what = "yuan with exactly two decimals (1234.50)" if self.exact_decimals else "yuan with at most two decimals"
        return what + (", > 0" if self.positive else "")

    def parse(self, text: pa.Array) -> Parsed:
        pattern = r"^[0-9]{1,16}\.[0-9]{2}$" if self.exact_decimals else r"^[0-9]{1,16}(\.[0-9]{1,2})?$"
        ok = pc.fill_null(pc.match_substring_regex(text, pattern), False)
        bad = ~ok.to_numpy(zero_copy_only=False)
        clean = pc.if_else(ok, text, "0.00")
        # Normalise to exactly two decimals, then drop the point: the digits are the fen, no float involved.
        clean = pc.replace_substring_regex(clean, r"^([0-9]+)$", r"\1.00")
        clean = pc.replace_substring_regex(clean, r"^([0-9]+\.[0-9])$", r"\10")  # RE2: group 1, then "0"
        fen = pc.cast(pc.replace_substring(clean, ".", ""), pa.int64()).to_numpy(zero_copy_only=False)
        null = bad.copy()  # a zero is readable (it counts in a total) even where `> 0` makes it an error
        if self.positive:
            bad |= fen <= 0
        if self.blank:
            empty = pc.fill_null(pc.equal(pc.utf8_length(text), 0), True).to_numpy(zero_copy_only=False)
            bad &= ~empty
            null |= empty
        return Parsed(_with_nulls(fen, null, pa.int64()), bad)

    def render(self, values: pa.Array) -> pa.Array:
        v = values.to_numpy(zero_copy_only=False).astype(np.int64)
        if (v < 0).any():
            raise ValueError("a negative amount cannot be written in yuan (the wire form has no sign)")
        yuan = pc.cast(pa.array(v // 100), pa.string())
        fen = pc.utf8_lpad(pc.cast(pa.array(v % 100), pa.string()), 2, "0")
        return pc.binary_join_element_wise(yuan, fen, ".")


@dataclass(frozen=True)
class Date8(FieldType):
    """A calendar date written `YYYYMMDD`; read into date32, and a date that does not exist is an error.

    `blank=True` (delimited files) reads an empty value as null."""

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
        lengths = pc.fill_null(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
        bad = _is_all_digits(text) | (lengths != 8)
        clean = pc.if_else(pa.array(bad), "20000101", text)
        parsed = self._from_int(pc.cast(clean, pa.int64()).to_numpy(zero_copy_only=False), bad)
        if not self.blank:
            return parsed
        # `blank=True`: an empty value is a missing date (a result line that failed has no host date).
        empty = lengths == 0
        return Parsed(_with_nulls(parsed.values.to_numpy(zero_copy_only=False), parsed.bad | empty, pa.date32()),
                      parsed.bad & ~empty)

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


@dataclass(frozen=True)
class IsoDate(FieldType):
    """A calendar date written `YYYY-MM-DD` (the ledger's CSV extract); read into date32."""

    arrow_type = pa.date32()
    expected = "a date YYYY-MM-DD"

    def parse(self, text: pa.Array) -> Parsed:
        ok = pc.fill_null(pc.match_substring_regex(text, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), False)
        parsed = Date8().parse(pc.replace_substring(pc.if_else(ok, text, "2000-01-01"), "-", ""))
        bad = parsed.bad | ~ok.to_numpy(zero_copy_only=False)
        return Parsed(_with_nulls(parsed.values.to_numpy(zero_copy_only=False), bad, pa.date32()), bad)

    def render(self, values: pa.Array) -> pa.Array:
        return pc.strftime(pc.cast(values, pa.timestamp("s")), "%Y-%m-%d")


@dataclass(frozen=True)
class IsoTimestamp(FieldType):
    """A date and time written `YYYY-MM-DD hh:mm:ss` (Beijing time, naive); read into timestamp[s]."""

    arrow_type = pa.timestamp("s")
    expected = "a timestamp YYYY-MM-DD hh:mm:ss"

    def parse(self, text: pa.Array) -> Parsed:
        ok = pc.fill_null(
            pc.match_substring_regex(text, r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"), False)
        ts = pc.strptime(pc.if_else(ok, text, "2000-01-01 00:00:00"), "%Y-%m-%d %H:%M:%S", "s", error_is_null=True)
        bad = ~ok.to_numpy(zero_copy_only=False) | pc.is_null(ts).to_numpy(zero_copy_only=False)
        return Parsed(pc.if_else(pa.array(bad), pa.scalar(None, pa.timestamp("s")), ts), bad)

    def render(self, values: pa.Array) -> pa.Array:
        return pc.strftime(values, "%Y-%m-%d %H:%M:%S")


# --- fields, records, controls, layouts ---------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One field: its name, its 1-based byte positions (fixed-width files; both 0 elsewhere), its type.

    `at` places a field outside a fixed-width line: the cell of an Excel field that lives in a given cell
    (`"B2"`), or the XML element name when it differs from `name`. Empty means "by position" (delimited, Excel
    rows) or "the element named `name`" (XML)."""

    name: str
    start: int
    end: int
    type: FieldType
    at: str = ""

    @property
    def width(self) -> int:
        return self.end - self.start + 1

    @property
    def element(self) -> str:
        return self.at or self.name


def Column(name: str, type_: FieldType, at: str = "") -> Field:  # noqa: N802 - reads like a declaration
    """A field of a delimited, XML or Excel record: no byte positions, only an order (or an XML element)."""
    return Field(name, 0, 0, type_, at)


def Cell(name: str, ref: str, type_: FieldType) -> Field:  # noqa: N802 - reads like a declaration
    """A field of an Excel sheet held in one given cell (`"B2"`)."""
    return Field(name, 0, 0, type_, ref)


@dataclass(frozen=True)
class SumOf:
    """A rule within one record: field `total` equals the sum of `parts`.

    A part is a field of the record, or `"list.field"` for a field of the items of a `Repeated` field (TIPS:
    `TraAmt` = Σ `TaxTypeList3102.TaxTypeAmt`). A record that breaks the rule is quarantined, or, when
    `reject_file` is set (the counterparty's spec rejects the whole file), the file is rejected."""

    total: str
    parts: tuple[str, ...]
    reject_file: bool = False


@dataclass(frozen=True)
class CountOf:
    """A rule within one record: field `count` equals the number of items of the `Repeated` field `items`."""

    count: str
    items: str
    reject_file: bool = False


@dataclass(frozen=True)
class Record:
    """A record type: `match` is the value its first field must hold to be this record (None: every line).

    `kind`: a `header` comes before the details and a `trailer` after them, each exactly once; a `heading` is a
    line of column titles (all its fields `Const`), checked and then dropped; the `detail` record repeats.
    `at` is the XML element path of the record below the root (`"MSG/Payment3102"`). `prefix` is literal text
    that opens the line before its first field (the housing fund result's `$` summary line). `variant` names the
    value of the layout's `variant_by` field that selects this detail record (BDC103 vs BDC104 items).
    `checks` are rules between fields of one record (`SumOf`, `CountOf`)."""

    name: str
    fields: tuple[Field, ...]
    match: str | None = None
    kind: Literal["header", "heading", "detail", "trailer"] = "detail"
    at: str = ""
    prefix: str = ""
    variant: str | None = None
    checks: tuple[SumOf | CountOf, ...] = ()

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"record {self.name!r} has no field {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([(f.name, f.type.arrow_type) for f in self.fields])


def heading(name: str, titles: tuple[str, ...] | list[str], at_row: int | None = None) -> Record:
    """A heading line of fixed column titles (a CSV's header line, an Excel heading row), declared from the titles.

    With `at_row` (Excel) the titles sit in cells A<row>, B<row>, ...; otherwise they are the line's fields."""
    fields = []
    for i, t in enumerate(titles):
        ref = f"{chr(ord('A') + i)}{at_row}" if at_row else ""
        fields.append(Field(f"title_{i + 1}", 0, 0, Const(t), ref))
    return Record(name, tuple(fields), kind="heading")


@dataclass(frozen=True)
class Repeated(FieldType):
    """A field made of repeated items, each a small record (XML: `TaxTypeList3102` holding `TaxType3102`
    elements). Read into an Arrow list of structs; `item` is the element name of one item."""

    record: Record
    item: str

    @property
    def arrow_type(self) -> pa.DataType:  # type: ignore[override]
        return pa.list_(pa.struct([(f.name, f.type.arrow_type) for f in self.record.fields]))

    @property
    def expected(self) -> str:
        return f"a list of {self.item}"


@dataclass(frozen=True)
class Count:
    """The number of `record` records must equal the value of `equals` ("header.record_count") or the flag.

    `where` / `where_not` = (field, value) count only the records whose field equals / differs from the value
    (a result file's success and failure counts). `readable` counts only the records whose field could be read
    (payroll: a row whose amount is unreadable is left out of the batch's count)."""

    record: str
    equals: str  # "record.field" or "flag"
    where: tuple[str, str] | None = None
    where_not: tuple[str, str] | None = None
    readable: str = ""


@dataclass(frozen=True)
class Sum:
    """Σ `of` ("detail.amount_fen") over the records (optionally filtered as in `Count`) must equal `equals`.

    `unreadable="reject"` (the README rule) rejects the file when a summed amount cannot be read;
    `"skip"` leaves such records out of the sum (payroll's own rule)."""

    of: str
    equals: str
    where: tuple[str, str] | None = None
    where_not: tuple[str, str] | None = None
    unreadable: Literal["reject", "skip"] = "reject"


@dataclass(frozen=True)
class Unique:
    """The values of `of` ("payment.TraNo") are unique in the file; a repeat rejects the file (`DuplicateKey`)."""

    of: str


@dataclass(frozen=True)
class Balanced:
    """Debits equal credits: Σ `of` ("detail.amount_fen") over the records whose `side` field is `debit` equals
    the Σ over those whose side is `credit`, for the whole file and, with `by`, within each group (a voucher)."""

    of: str
    side: str
    debit: str = "D"
    credit: str = "C"
    by: str = ""


Control = Count | Sum | Unique | Balanced


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
    controls: tuple[Control, ...] = ()
    key: tuple[str, ...] = ()
    quoting: Literal["none", "rfc4180"] = "none"   # delimited: RFC 4180 double quotes (names may hold commas)
    empty_is_null: bool = False           # delimited: an empty field is NULL (the ledger extract), not ""
    variant_by: str = ""                  # "header.tx_code": the header field whose value selects the detail record
    options: Mapping[str, object] = field(default_factory=dict)
    """Framing details that are not fields: `sheet` (Excel worksheet name), `root` (XML root element),
    `encodings` (XML: the encodings a prolog may declare)."""

    def __post_init__(self) -> None:
        check_layout(self)

    def record(self, name: str) -> Record:
        for r in self.records:
            if r.name == name:
                return r
        raise KeyError(f"layout {self.name!r} has no record {name!r}")

    @property
    def detail(self) -> Record:
        """The detail record; with variants, the first one, whose fields include every variant's."""
        return next(r for r in self.records if r.kind == "detail")

    @property
    def details(self) -> tuple[Record, ...]:
        return tuple(r for r in self.records if r.kind == "detail")

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
    details = [r for r in layout.records if r.kind == "detail"]
    if not layout.variant_by and len(details) != 1:
        fail("exactly one record must be the detail record (or declare variant_by)")
    if layout.variant_by:
        rec_name, _, fname = layout.variant_by.partition(".")
        if rec_name not in names or fname not in layout.record(rec_name).names:
            fail(f"variant_by names unknown field {layout.variant_by!r}")
        variants = [d.variant for d in details]
        if None in variants or len(set(variants)) != len(variants):
            fail(f"every detail record needs its own variant value: {variants}")
        widest = {f.name: f.type for f in details[0].fields}
        for d in details[1:]:
            for f in d.fields:
                if widest.get(f.name) != f.type:
                    fail(f"{d.name}.{f.name} is not a field of {details[0].name} with the same type")
    kinds = [r.kind for r in layout.records]
    first_detail, last_detail = kinds.index("detail"), len(kinds) - 1 - kinds[::-1].index("detail")
    for i, rec in enumerate(layout.records):
        if rec.kind in ("header", "heading") and i > first_detail or rec.kind == "trailer" and i < last_detail:
            fail(f"record {rec.name} ({rec.kind}) is out of file order")
    header_names: list[str] = []
    for rec in layout.records:
        fnames = rec.names
        if len(set(fnames)) != len(fnames):
            fail(f"record {rec.name}: field names repeat")
        if rec.kind == "header":
            header_names += fnames
        if rec.kind == "heading" and not all(isinstance(f.type, Const) for f in rec.fields):
            fail(f"heading {rec.name} must hold only Const fields")
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
        elif any(f.start or f.end for f in rec.fields):
            fail(f"record {rec.name}: byte positions are only for fixed-width layouts (use Column)")
        if layout.framing == "xml" and not rec.at:
            fail(f"record {rec.name} needs its element path (`at`)")
        if layout.framing == "excel" and rec.kind in ("header", "heading"):
            for f in rec.fields:
                if not f.at or not f.at[0].isalpha() or not f.at.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ").isdigit():
                    fail(f"{rec.name}.{f.name} needs its cell (`at`, e.g. 'B2')")
        if rec.match is not None and not isinstance(rec.fields[0].type, Const):
            fail(f"record {rec.name} is matched by its first field, which must be a Const")
        for chk in rec.checks:
            refs = [chk.total, *chk.parts] if isinstance(chk, SumOf) else [chk.count, chk.items]
            for ref in refs:
                base, _, sub = ref.partition(".")
                if base not in fnames:
                    fail(f"check {chk} names unknown field {ref!r}")
                t = rec.field(base).type
                if sub and (not isinstance(t, Repeated) or sub not in t.record.names):
                    fail(f"check {chk}: {ref!r} is not a field of a Repeated field")
    if len(set(header_names)) != len(header_names):
        fail("field names repeat across header records (they are read into one header dict)")
    if layout.framing == "delimited":
        if not layout.delimiter:
            fail("a delimited layout needs its delimiter")
        if layout.quoting == "rfc4180" and len(layout.delimiter) != 1:
            fail("RFC 4180 quoting needs a one-character delimiter")
    detail = layout.detail
    for k in layout.key:
        if k not in detail.names:
            fail(f"key field {k!r} is not a field of {detail.name}")
    for c in layout.controls:
        if isinstance(c, Balanced):
            rec_name, _, fname = c.of.partition(".")
            if rec_name not in names or any(x and x not in layout.record(rec_name).names
                                             for x in (fname, c.side, c.by)):
                fail(f"control {c} names an unknown record or field")
            continue
        if isinstance(c, Unique):
            refs = [c.of]
        else:
            refs = [c.equals] if c.equals != "flag" else []
            refs.append(c.of if isinstance(c, Sum) else f"{c.record}.")
        for ref in refs:
            rec_name, _, fname = ref.partition(".")
            if rec_name not in names:
                fail(f"control {c} names unknown record {rec_name!r}")
            if fname and fname not in layout.record(rec_name).names:
                fail(f"control {c} names unknown field {ref!r}")
        if isinstance(c, Unique):
            continue
        rec_name = c.of.split(".")[0] if isinstance(c, Sum) else c.record
        for flt in (c.where, c.where_not):
            if flt and flt[0] not in layout.record(rec_name).names:
                fail(f"control {c} filters on unknown field {flt[0]!r}")
        if isinstance(c, Count) and c.readable and c.readable not in layout.record(rec_name).names:
            fail(f"control {c} names unknown field {c.readable!r}")


def beijing_date(value: str) -> dt.date:
    """`YYYY-MM-DD` or `YYYYMMDD` -> date (business dates on the command line and in DAG params)."""
    return dt.date.fromisoformat(value if "-" in value else f"{value[:4]}-{value[4:6]}-{value[6:]}")
