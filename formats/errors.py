"""Errors of the format engine, and the two markers every package shares.

`Terminal` means retrying cannot help (the input or the configuration must change); `Transient` means a retry
may (network, lock, a file not yet complete). `formats` is the leaf package, so the markers live here and the
other packages import them. The Airflow bridge (`dags/_tasks.py`) turns `Terminal` into a failure without
retries and lets `Transient` errors reach Airflow's retry policy.
"""
from __future__ import annotations


class Terminal(Exception):
    """Retrying cannot help: the input or the configuration must change."""


class Transient(Exception):
    """Retrying may help: network, lock, file not yet complete."""


class FormatError(Exception):
    """Base for everything `formats` raises."""


class LayoutError(FormatError, Terminal):
    """A layout declaration is inconsistent (raised when the spec module is imported)."""


class FileRejected(FormatError, Terminal):
    """A whole file is refused: its structure, control totals, encoding or flag file are wrong.

    The message names the file, where (line, when known), what was expected and what was found, in words an
    operator can act on. A rejected file loads nothing.
    """

    def __init__(self, file: str, problem: str, *, line: int | None = None,
                 expected: object = None, found: object = None) -> None:
        self.file, self.problem, self.line, self.expected, self.found = file, problem, line, expected, found
        self.partial = None
        """What was read before the file was refused (a `ReadResult`), when the reader got that far: a caller
        answering a rejected batch (TIPS 2102 `94999`, payroll result all `失败`) needs its header and rows."""
        where = f" line {line}" if line is not None else ""
        detail = ""
        if expected is not None or found is not None:
            detail = f": expected {expected}, found {found}"
        super().__init__(f"{file}{where}: {problem}{detail}")


class StructureError(FileRejected):
    """Records in the wrong order, a header or trailer missing, an unknown record type where none may be."""


class ControlTotalMismatch(FileRejected):
    """A declared count or amount total (header, trailer, summary line or flag file) differs from the records."""


class DuplicateKey(FileRejected):
    """A value the spec declares unique in the file (TIPS `TraNo`, payroll 序号) appears twice."""


class RecordRuleBroken(FileRejected):
    """A rule inside a record that the spec enforces on the whole file (TIPS: `TraAmt` = Σ `TaxTypeAmt`)."""


class UnsafeXml(FileRejected):
    """An XML file with a DTD, an entity declaration, or past the size or depth limits: never parsed."""


class EncodingError(FileRejected):
    """The file cannot be decoded in its declared encoding."""


class FlagMismatch(FileRejected):
    """The `.ok` flag file disagrees with its data file (name, size, record count or MD5)."""


class UnwritableValue(FormatError, Terminal):
    """A writer was given a value its layout cannot hold (a null where one is required, a separator inside an
    unquoted delimited field, a negative yuan amount); nothing is ever altered to make it fit."""

    def __init__(self, record: str, field: str, value: object, why: str, row: int | None = None) -> None:
        self.record, self.field, self.value, self.why, self.row = record, field, value, why, row
        at = f" (row {row})" if row is not None else ""
        super().__init__(f"{record}.{field}{at}: value {value!r} cannot be written: {why}")


class FieldOverflow(FormatError, Terminal):
    """A writer was given a value that does not fit its field; nothing is ever truncated."""

    def __init__(self, record: str, field: str, width: int, value: object, row: int | None = None) -> None:
        self.record, self.field, self.width, self.value, self.row = record, field, width, value, row
        at = f" (row {row})" if row is not None else ""
        super().__init__(f"{record}.{field}{at}: value {value!r} does not fit in {width} bytes")
