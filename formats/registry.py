"""Every layout duizhang knows, by its dotted name (`family.kind`), and the entry points that dispatch on framing.

This is the one place that lists the layouts: a new counterparty file is one spec module and one line here.
The same name is used in `sample_files/<family>/<kind>/`, on the command line (`duizhang parse LAYOUT FILE`)
and in DAG tags.
"""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from formats import delimited, excel, fixed_width, xml
from formats.flag import Flag
from formats.layout import FileLayout
from formats.result import OutFile, ReadResult
from formats.specs.housing_fund import bdc_bat, bdc_res
from formats.specs.ledger import entries, journal
from formats.specs.payroll import batch_csv, batch_xlsx, result_csv, result_xlsx
from formats.specs.pboc import cnaps2_dzmx
from formats.specs.tips import t2102, t3102, t3111
from formats.specs.unionpay import acomn, errn, errr
from formats.specs.utility import dk, hp

LAYOUTS: dict[str, FileLayout] = {layout.name: layout for layout in (
    acomn.LAYOUT, errn.LAYOUT, errr.LAYOUT,
    cnaps2_dzmx.LAYOUT,
    t3102.LAYOUT, t2102.LAYOUT, t3111.LAYOUT,
    bdc_bat.LAYOUT, bdc_res.LAYOUT,
    dk.LAYOUT, hp.LAYOUT,
    batch_xlsx.LAYOUT, batch_csv.LAYOUT, result_xlsx.LAYOUT, result_csv.LAYOUT,
    journal.LAYOUT, entries.LAYOUT,
)}

ENGINES = {"fixed": fixed_width, "delimited": delimited, "xml": xml, "excel": excel}


def get(layout_name: str) -> FileLayout:
    """The layout of that name; an unknown name raises KeyError listing the known ones."""
    try:
        return LAYOUTS[layout_name]
    except KeyError:
        raise KeyError(f"unknown layout {layout_name!r}; known: {', '.join(sorted(LAYOUTS))}") from None


def read(path: Path, layout_name: str, flag: Flag | None = None) -> ReadResult:
    """Read `path` with the named layout's engine.

    Record faults are quarantined in the result; file faults raise a `formats.errors.FileRejected` subclass.
    With `flag`, its record count must equal the file's detail count (`FlagMismatch` otherwise); its name, size
    and MD5 are the connector's to check (`formats.flag.verify_file`)."""
    layout = get(layout_name)
    return ENGINES[layout.framing].read(Path(path), layout, flag)


def read_to_parquet(path: Path, layout_name: str, out: Path, flag: Flag | None = None) -> ReadResult:
    """Read `path` with the named layout and write its detail records (with `_line`) to the zstd Parquet file
    `out`, which appears (atomic rename) only once the file has been read and its controls hold.

    Fixed-width files stream in bounded memory; the other framings are read whole (their files are small),
    except RFC 4180 extracts, which stream too. The result is as `read`'s, with an empty `records` table."""
    layout = get(layout_name)
    out = Path(out)
    engine = ENGINES[layout.framing]
    if hasattr(engine, "read_to_parquet"):
        return engine.read_to_parquet(Path(path), layout, out, flag)
    result = engine.read(Path(path), layout, flag)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        pq.write_table(result.records, tmp, compression="zstd")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    result.records = result.records.schema.empty_table()  # not a slice: it would pin the records
    return result


def write(path: Path, layout_name: str, records: pa.Table, header: dict | None = None,
          trailer: dict | None = None, **options) -> int:
    """Write `records` (and the header / trailer values) with the named layout's engine, atomically; returns
    the detail count. `options` go to the engine: `encoding=` for XML (answer in the request's encoding),
    `business_date=` for Excel (the workbook's timestamps). A value that does not fit raises `FieldOverflow`
    or `UnwritableValue`; nothing is truncated."""
    layout = get(layout_name)
    return ENGINES[layout.framing].write(Path(path), layout, records, header, trailer, **options)



def write_files(layout_name: str, records: pa.Table, files: list[OutFile]) -> None:
    """Write many files of one layout (a night's returns: thousands of batches of a hundred rows) whose detail rows
    are consecutive slices of `records`, each as `write` would. The engine renders all the rows in one pass (per
    file the cost of a few Arrow calls is far above that of its rows)."""
    layout = get(layout_name)
    ENGINES[layout.framing].write_files(layout, records, files)
