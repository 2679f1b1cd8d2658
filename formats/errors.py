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
        where = f" line {line}" if line is not None else ""
        detail = ""
        if expected is not None or found is not None:
            detail = f": expected {expected}, found {found}"
        super().__init__(f"{file}{where}: {problem}{detail}")


class StructureError(FileRejected):
    """Records in the wrong order, a header or trailer missing, an unknown record type where none may be."""


class ControlTotalMismatch(FileRejected):
    """A declared count or amount total (header, trailer, summary line or flag file) differs from the records."""


class EncodingError(FileRejected):
    """The file cannot be decoded in its declared encoding."""


class FlagMismatch(FileRejected):
    """The `.ok` flag file disagrees with its data file (name, size, record count or MD5)."""


class FieldOverflow(FormatError, Terminal):
    """A writer was given a value that does not fit its field; nothing is ever truncated."""

    def __init__(self, record: str, field: str, width: int, value: object, row: int | None = None) -> None:
        self.record, self.field, self.width, self.value, self.row = record, field, width, value, row
        at = f" (row {row})" if row is not None else ""
        super().__init__(f"{record}.{field}{at}: value {value!r} does not fit in {width} bytes")
