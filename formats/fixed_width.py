"""The generic engine for fixed-width files: positions are bytes in the declared encoding.

Reading takes whole columns out of an (n, record_bytes) byte matrix, so the cost per record is a few numpy and
Arrow operations shared by all records of a batch, never a Python loop per record. Text is decoded after
slicing (a GBK character takes two bytes), and only for the rows of a column that hold non-ASCII bytes. A
record that cannot be read goes to quarantine with its line, field, what was expected and what was found; a
file whose structure, controls or encoding are wrong raises.
"""
from __future__ import annotations

import mmap
import os
import queue
import re
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from formats._rows import layout_tables, rows_of_files, value_bytes, write_rendered
from formats.errors import EncodingError, FieldOverflow, StructureError, UnwritableValue
from formats.flag import Flag
from formats.layout import SPACE, Code, Const, Date8, Digits, FileLayout, Int, Parsed, Record, SignedFen, Text
from formats.result import Batch, OutFile, ReadResult, Totals, quarantine_table

BATCH_RECORDS = 32_768        # records parsed at a time (one chunk of the file, one task of a parsing thread)
ROW_GROUP_ROWS = 262_144     # records per Parquet row group: fewer, larger groups than one per batch, small enough
                              # that encoding group k overlaps parsing group k+1
WORKERS = min(2, os.cpu_count() or 1)  # parsing threads: this machine has 2 cores
STATISTICS = ("_line",)       # columns with row-group min/max; statistics on every column cost a third of the write


def read(path: Path, layout: FileLayout, flag: Flag | None = None) -> ReadResult:
    """Read a whole file into Arrow. Record faults are quarantined; file faults raise `FileRejected`."""
    path = Path(path)
    batches, totals = [], Totals(layout)
    for batch in iter_batches(path, layout):
        totals.add(batch)
        batches.append(batch)
    return totals.finish(path.name, batches, flag)


def read_to_parquet(path: Path, layout: FileLayout, out: Path, flag: Flag | None = None,
                    row_group_rows: int = ROW_GROUP_ROWS) -> ReadResult:
    """Stream a file of any size into a zstd Parquet file of its detail records, memory bounded by a row group.

    The Parquet file appears (atomic rename) only when the whole file has been read and its controls hold; a
    rejected file leaves no Parquet file. The returned result holds the header, trailer, quarantine and counts,
    with an empty `records` table. Parsing and Parquet encoding overlap: a writer thread encodes row group k
    while the parsing threads (`iter_batches`) parse the batches of row group k+1 (all release the GIL in numpy,
    Arrow and the Parquet encoder). A file of one batch (a batch file of a few hundred records) is parsed and
    encoded in the calling thread: starting threads would cost more than its whole parse."""
    path, out = Path(path), Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    totals = Totals(layout)
    kept = []
    schema = layout_tables(layout).schema
    if path.stat().st_size < _chunk_bytes(layout):
        try:
            batches = list(iter_batches(path, layout))
            for batch in batches:
                totals.add(batch)
            result = totals.finish(path.name, [_without_records(b, layout) for b in batches], flag)
            _write_parquet(tmp, schema, (b.records for b in batches if b.records.num_rows), row_group_rows)
            os.replace(tmp, out)
            return result
        finally:
            tmp.unlink(missing_ok=True)
    tables: queue.Queue = queue.Queue(maxsize=max(2, row_group_rows // BATCH_RECORDS + 2))
    failed: list[BaseException] = []

    def encode() -> None:
        received = iter(tables.get, None)  # once the end marker is taken, it stays ended
        try:
            _write_parquet(tmp, schema, received, row_group_rows)
        except BaseException as e:  # handed to the caller's thread below; keep draining so it never blocks
            failed.append(e)
            for _ in received:
                pass

    writer_thread = threading.Thread(target=encode, name=f"parquet:{out.name}", daemon=True)
    writer_thread.start()
    try:
        try:
            for batch in iter_batches(path, layout):
                totals.add(batch)
                if batch.records.num_rows:
                    tables.put(batch.records)
                kept.append(_without_records(batch, layout))
                if failed:
                    break
        finally:
            tables.put(None)
            writer_thread.join()
        if failed:
            raise failed[0]
        result = totals.finish(path.name, kept, flag)
        os.replace(tmp, out)
        return result
    finally:
        tmp.unlink(missing_ok=True)


def _write_parquet(tmp: Path, schema: pa.Schema, tables: Iterator[pa.Table], row_group_rows: int) -> None:
    """The detail records, as they come, into a Parquet file of row groups of about `row_group_rows`."""
    first = next(tables, None)
    if first is None:
        pq.ParquetWriter(tmp, schema, compression="zstd").close()
        return
    with pq.ParquetWriter(tmp, schema, compression="zstd", write_statistics=list(STATISTICS),
                          use_dictionary=_dictionary_columns(first)) as writer:
        pending, rows = [first], first.num_rows
        for table in tables:
            pending.append(table)
            rows += table.num_rows
            if rows >= row_group_rows:
                writer.write_table(pa.concat_tables(pending), row_group_size=rows)
                pending, rows = [], 0
        if pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=rows)


def _without_records(batch: Batch, layout: FileLayout) -> Batch:
    """The batch as kept for the result once its records are in the Parquet file (no slice: it would pin them)."""
    return Batch(_empty(layout), batch.quarantine, batch.others, batch.lines)


def _dictionary_columns(sample: pa.Table) -> list[str]:
    """Columns worth dictionary-encoding, judged on the first batch: few distinct values (codes, institution
    ids, merchants). On a column of mostly distinct values (card numbers, amounts) the encoder would build a
    dictionary only to give it up, which costs more than it saves."""
    limit = max(64, sample.num_rows // 10)
    return [name for name in sample.column_names
            if name != "_line" and pc.count_distinct(sample.column(name)).as_py() <= limit]


def iter_batches(path: Path, layout: FileLayout, batch_records: int | None = None,
                 workers: int | None = None) -> Iterator[Batch]:
    """Yield the file as batches of parsed records, in file order, each batch ending on a line end.

    The file is mapped into memory (no copy out of the page cache); the calling thread cuts it into chunks of
    whole lines and `workers` threads parse them (numpy, Arrow and the codec release the GIL, so both cores
    work). Batches come out in file order whatever order they finish in. Every array a batch holds is its own
    copy, so once a chunk is parsed its pages are dropped from this process (they stay in the page cache):
    memory stays bounded by the chunks in flight, whatever the file's size."""
    workers = workers or WORKERS
    size = path.stat().st_size
    if not size:
        return
    chunk_bytes = _chunk_bytes(layout, batch_records)
    if size < chunk_bytes:  # one chunk (as `_chunks` would cut it): no mapping, no threads
        yield _parse_chunk(path.read_bytes(), layout, 0, path.name)
        return
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        mapped.madvise(mmap.MADV_SEQUENTIAL)

        def parse(start: int, stop: int, first_line: int) -> Batch:
            batch = _parse_chunk(memoryview(mapped)[start:stop], layout, first_line, path.name)
            first_page = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
            last_page = stop // mmap.PAGESIZE * mmap.PAGESIZE
            if last_page > first_page:  # whole pages of this chunk only: a page it shares with the next stays
                mapped.madvise(mmap.MADV_DONTNEED, first_page, last_page - first_page)
            return batch

        with ThreadPoolExecutor(workers, thread_name_prefix=f"parse:{path.name}") as pool:
            pending: deque = deque()
            try:
                line_no = 0
                for start, stop in _chunks(mapped, size, layout.line_end, chunk_bytes):
                    lines = _frame(memoryview(mapped)[start:stop], layout)[1]
                    pending.append(pool.submit(parse, start, stop, line_no))
                    line_no += lines
                    while len(pending) > workers:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                pool.shutdown(cancel_futures=True)
    finally:
        try:
            mapped.close()
        except BufferError:  # a traceback still views it: it is unmapped when that goes
            pass


def _chunk_bytes(layout: FileLayout, batch_records: int | None = None) -> int:
    """The bytes of a chunk of the file: `batch_records` records (`BATCH_RECORDS` by default) with their line ends."""
    return (batch_records or BATCH_RECORDS) * (layout.record_bytes + len(layout.line_end))


def _chunks(mapped: mmap.mmap, size: int, end: bytes, chunk_bytes: int) -> Iterator[tuple[int, int]]:
    """(start, stop) byte ranges of about `chunk_bytes`, each ending on a line end (the last one: where the file
    ends). A line longer than a chunk doubles the chunk size from there on."""
    start = 0
    while start < size:
        if size - start < chunk_bytes:  # the rest, whether or not it ends with a line end
            yield start, size
            return
        cut = mapped.rfind(end, start, start + chunk_bytes)
        if cut < 0:
            chunk_bytes *= 2
            continue
        yield start, cut + len(end)
        start = cut + len(end)


def _frame(data, layout: FileLayout) -> tuple[np.ndarray | None, int]:
    """A chunk as an (n, record_bytes) matrix when every line has the record's length (the fast path), else
    None; and the chunk's number of lines, counted as `_split_lines` counts them."""
    end, width = layout.line_end, layout.record_bytes
    n_full, tail = divmod(len(data), width + len(end))
    if tail in (0, width):
        n = n_full + (1 if tail else 0)
        padded = bytes(data) + end if tail else data
        mat = np.frombuffer(padded, dtype=np.uint8).reshape(n, width + len(end))
        # One column per line-end byte (a 2-D reduction over a 2-byte-wide slice is slow in numpy).
        if all((mat[:, width + k] == byte).all() for k, byte in enumerate(end)):
            return mat[:, :width], n
    raw = bytes(data)
    return None, raw.count(end) + (0 if raw.endswith(end) or not raw else 1)


def _parse_chunk(data, layout: FileLayout, first_line: int, file_name: str) -> Batch:
    width = layout.record_bytes
    mat, lines_total = _frame(data, layout)
    if mat is not None:
        line_numbers = np.arange(first_line + 1, first_line + lines_total + 1, dtype=np.int64)
        bad_lines: list[tuple[int, bytes, str]] = []
    else:
        mat, line_numbers, bad_lines = _split_lines(bytes(data), layout, first_line, file_name)

    parts: dict[str, list[pa.Table]] = {}
    quarantine = [quarantine_table(layout, [(ln, raw, "?", "record", f"a record of {width} bytes", why)
                                            for ln, raw, why in bad_lines])] if bad_lines else []
    if len(mat):
        rec_of_row = _record_types(mat, layout)
        for rec_index, rec in enumerate(layout.records):
            rows = np.flatnonzero(rec_of_row == rec_index)
            if not len(rows):
                continue
            every = len(rows) == len(mat)  # one record type: no copy of the matrix
            table, q = _parse_record(mat if every else mat[rows], line_numbers if every else line_numbers[rows],
                                     rec, layout, file_name)
            parts.setdefault(rec.name, []).append(table)
            if q is not None:
                quarantine.append(q)
        unknown = np.flatnonzero(rec_of_row < 0)
        if len(unknown):
            first = layout.records[0].fields[0]
            quarantine.append(quarantine_table(layout, [
                (int(line_numbers[i]), mat[i].tobytes(), "?", first.name,
                 "a record type " + " or ".join(repr(r.match) for r in layout.records), mat[i, :first.width].tobytes())
                for i in unknown]))
    detail = layout.detail.name
    records = pa.concat_tables(parts.pop(detail)) if detail in parts else _empty(layout)
    q = pa.concat_tables(quarantine) if quarantine else layout_tables(layout).quarantine
    return Batch(records, q, {k: pa.concat_tables(v) for k, v in parts.items()}, lines_total)


def _split_lines(data: bytes, layout: FileLayout, first_line: int, file_name: str):
    """The slow path: lines of differing lengths. Lines of the right length go on; the others are bad records."""
    end = layout.line_end
    lines = data.split(end)
    if lines and lines[-1] == b"":
        lines.pop()
    if end == b"\r\n" and len(lines) == 1 and b"\n" in lines[0]:
        raise StructureError(file_name, "line ends are LF, the layout requires CRLF", line=first_line + 1)
    good, numbers, bad = [], [], []
    for i, line in enumerate(lines, start=first_line + 1):
        if len(line) == layout.record_bytes:
            good.append(line)
            numbers.append(i)
        elif line.strip(b" ") == b"":
            continue  # an empty line is not a record (specs: "every non-empty line is a detail record")
        else:
            _refuse_other_encoding(line, layout, file_name, i)
            bad.append((i, line, f"{len(line)} bytes"))
    mat = np.frombuffer(b"".join(good), dtype=np.uint8).reshape(len(good), layout.record_bytes)
    return mat, np.array(numbers, dtype=np.int64), bad


def _refuse_other_encoding(line: bytes, layout: FileLayout, file_name: str, line_no: int) -> None:
    """A line that has the right length once re-encoded was written in another encoding: reject the file."""
    if line.isascii():
        return
    try:
        text = line.decode("utf-8")
        right = len(text.encode(layout.encoding)) == layout.record_bytes
    except (UnicodeDecodeError, UnicodeEncodeError):
        return
    if right:
        raise EncodingError(file_name, "the file is encoded in UTF-8", line=line_no, expected=layout.encoding,
                            found="UTF-8")


def _record_types(mat: np.ndarray, layout: FileLayout) -> np.ndarray:
    """Index into layout.records for each row (-1 when no record type matches)."""
    if len(layout.records) == 1 and layout.records[0].match is None:
        return np.zeros(len(mat), dtype=np.int64)
    out = np.full(len(mat), -1, dtype=np.int64)
    for i, rec in enumerate(layout.records):
        if rec.match is None:
            out[out < 0] = i
            continue
        code = np.frombuffer(rec.match.encode("ascii"), dtype=np.uint8)
        hit = (mat[:, : len(code)] == code).all(axis=1) & (out < 0)
        out[hit] = i
    return out


def _parse_record(mat: np.ndarray, lines: np.ndarray, rec: Record, layout: FileLayout, file_name: str):
    """Parse every row of one record type, a field at a time over all rows.

    Each field is copied out once (one fixed-size item per row) and checked as a whole: if all its bytes are
    digits (numbers) or printable ASCII (text), Arrow converts the column directly; only a field that is not
    clean in some row takes the row-by-row checks, and only rows holding non-ASCII bytes go through the GBK
    codec."""
    n = len(mat)
    first_bad_field = np.full(n, -1, dtype=np.int64)
    # Per byte position, the smallest and largest byte over all rows: one pass that tells which fields are clean.
    cmin, cmax = mat.min(axis=0), mat.max(axis=0)

    def mark(bad: np.ndarray, index: int) -> None:
        first_bad_field[(first_bad_field < 0) & bad] = index

    if layout.separator and rec.fields[:-1]:
        sep = np.frombuffer(layout.separator, dtype=np.uint8)
        at = np.concatenate([np.arange(f.end, f.end + len(sep)) for f in rec.fields[:-1]])
        want = np.tile(sep, len(rec.fields) - 1)
        if (cmin[at] != want).any() or (cmax[at] != want).any():
            for i, f in enumerate(rec.fields[:-1]):
                mark((mat[:, f.end: f.end + len(sep)] != sep).any(axis=1), len(rec.fields) + i)
    columns = {"_line": pa.array(lines, type=pa.int64())}
    for i, f in enumerate(rec.fields):
        a, b = f.start - 1, f.end
        parsed = _fast_field(mat, a, b, cmin[a:b], cmax[a:b], f.type)
        if parsed is None and f.type.numeric_wire:
            parsed = f.type.parse_matrix(mat[:, a:b])
        if parsed is None:
            text, undecodable = _decode_text(mat[:, a:b], layout.encoding, file_name, lines)
            parsed = f.type.parse(text)
            parsed_bad = parsed.bad | undecodable
        else:
            parsed_bad = parsed.bad
        if parsed_bad.any():
            mark(parsed_bad, i)
        columns[f.name] = parsed.values
    table = pa.table(columns)
    bad_rows = np.flatnonzero(first_bad_field >= 0)
    if not len(bad_rows):
        return table, None
    q_rows = []
    for r in bad_rows:
        idx = int(first_bad_field[r])
        if idx >= len(rec.fields):  # a separator byte
            f = rec.fields[idx - len(rec.fields)]
            q_rows.append((int(lines[r]), mat[r].tobytes(), rec.name, f"separator after {f.name}",
                           repr(layout.separator.decode()), mat[r, f.end: f.end + len(layout.separator)].tobytes()))
        else:
            f = rec.fields[idx]
            q_rows.append((int(lines[r]), mat[r].tobytes(), rec.name, f.name, f.type.expected,
                           mat[r, f.start - 1: f.end].tobytes()))
    good = np.ones(n, dtype=bool)
    good[bad_rows] = False
    q = quarantine_table(layout, q_rows, typed=table.take(pa.array(bad_rows)) if rec.kind == "detail" else None)
    return table.filter(pa.array(good)), q


_DIGIT0, _DIGIT9 = ord("0"), ord("9")


def _field_bytes(mat: np.ndarray, a: int, b: int) -> np.ndarray:
    """Bytes a..b of every row, contiguous (n * w bytes).

    Copied as one fixed-size item per row (numpy's per-item copy): far faster than copying a byte matrix, whose
    inner loop would run over only w bytes."""
    return mat[:, a:b].view(f"S{b - a}")[:, 0].copy().view(np.uint8)


def _strings(data: np.ndarray, n: int, w: int) -> pa.Array:
    """n values of w bytes each (contiguous, known to be ASCII) as an Arrow string array, zero-copy."""
    if w == 0 or n == 0:
        return pa.StringArray.from_buffers(n, pa.py_buffer(np.zeros(n + 1, dtype=np.int32)), pa.py_buffer(b""))
    if (n + 1) * w >= 2**31:
        offsets = np.arange(0, (n + 1) * w, w, dtype=np.int64)
        return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data)).cast(pa.string())
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _fast_field(mat: np.ndarray, a: int, b: int, fmin: np.ndarray, fmax: np.ndarray, ftype) -> Parsed | None:
    """The clean case of one field over all rows, decided from the per-position minimum and maximum byte over
    all rows (`fmin`, `fmax`); None when some row is not clean (the caller then checks row by row)."""
    n, w = len(mat), b - a
    ok = np.zeros(n, dtype=bool)
    if n > 1 and (fmin == fmax).all():
        # The same bytes in every row (a reserved field, a constant code): parse one row, repeat it.
        one = _fast_field(mat[:1], a, b, fmin, fmax, ftype)
        if one is None or one.bad.any():
            return None
        return Parsed(pa.repeat(one.values[0], n), ok)
    if isinstance(ftype, SignedFen):
        if fmin[0] < ord("C") or fmax[0] > ord("D") or fmin[1:].min() < _DIGIT0 or fmax[1:].max() > _DIGIT9:
            return None
        values = pc.cast(_strings(_field_bytes(mat, a + 1, b), n, w - 1), pa.int64()).to_numpy(zero_copy_only=False)
        if fmax[0] == ord("D"):
            values = np.where(mat[:, a] == ord("D"), -values, values)
        return Parsed(pa.array(values, pa.int64()), ok)
    if isinstance(ftype, (Int, Digits, Date8)):
        if fmin.min() < _DIGIT0 or fmax.max() > _DIGIT9:
            return None
        if isinstance(ftype, Digits):
            return Parsed(_strings(_field_bytes(mat, a, b), n, w), ok)
        if w > 18 or isinstance(ftype, Int) and ftype.positive:
            return None  # too wide for int64 digits, or a `> 0` check: the row-by-row path
        values = pc.cast(_strings(_field_bytes(mat, a, b), n, w), pa.int64())
        if isinstance(ftype, Date8):
            return ftype._from_int(values.to_numpy(zero_copy_only=False), ok)
        return Parsed(values, ok)
    if not isinstance(ftype, (Text, Const, Code)):
        return None
    if fmin.min() < SPACE or fmax.max() > 0x7E:
        return None  # control bytes or GBK somewhere in the column: the row-by-row path
    # Positions that are a space in every row, at the end of the field, hold nothing: they are not copied.
    blank = (fmin == SPACE) & (fmax == SPACE)
    used = 0 if blank.all() else w - int(np.argmin(blank[::-1]))
    text = _strings(_field_bytes(mat, a, a + used), n, used) if used else _strings(None, n, 0)
    if used and fmin[used - 1] == SPACE:  # some row ends in spaces within the used part
        text = pc.utf8_rtrim(text, characters=" ")
    return ftype.parse(text)


_CJK = re.compile("[\u4e00-\u9fff]")


def _refuse_utf8(raws: list[bytes], rows: np.ndarray, encoding: str, file_name: str,
                 lines: np.ndarray | None) -> None:
    """Chinese text that is valid UTF-8 in a GBK file was written in UTF-8 (padded to the right byte count, so
    the line length does not show it): reject the file rather than load garbled names. Genuine GBK text is
    practically never valid UTF-8 holding CJK ideographs. `raws` are the non-ASCII rows (`rows` their indexes)."""
    if encoding.lower() not in ("gbk", "gb18030", "gb2312"):
        return
    # One lenient decode of all rows: a row that decodes strictly is one with no U+FFFD in its part (or, if it
    # has one, one whose own strict decode succeeds). The line feed between rows is never part of a bad sequence.
    as_utf8 = b"\n".join(raws).decode("utf-8", "replace")
    if not _CJK.search(as_utf8):
        return
    for k, part in enumerate(as_utf8.split("\n")):
        if not _CJK.search(part):
            continue
        if "\ufffd" in part:
            try:
                raws[k].decode("utf-8")
            except UnicodeDecodeError:
                continue
        raise EncodingError(file_name, "Chinese text is encoded in UTF-8",
                            line=None if lines is None else int(lines[rows[k]]), expected=encoding.upper(),
                            found="UTF-8")


def _decode_text(sub: np.ndarray, encoding: str, file_name: str,
                 lines: np.ndarray | None = None) -> tuple[pa.Array, np.ndarray]:
    """Bytes of one text field for every row -> right-trimmed strings, and rows that would not decode.

    Rows of printable ASCII go straight to Arrow; only rows holding bytes >= 0x80 go through the codec, all in
    one call (joined by a line feed, a byte no text row holds and no multi-byte character can absorb)."""
    n, w = sub.shape
    flat = _field_bytes(sub, 0, w)
    rows_of = flat.reshape(n, w)
    # Control bytes are never text. Checked over the whole field first (a contiguous pass); row by row only
    # when there is one to find (a reduction along short rows is several times slower).
    if n and (flat.min() < SPACE or (flat == 0x7F).any()):
        undecodable = ((rows_of < SPACE) | (rows_of == 0x7F)).any(axis=1)
    else:
        undecodable = np.zeros(n, dtype=bool)
    high = ~pc.string_is_ascii(_strings(flat, n, w)).to_numpy(zero_copy_only=False)
    special = high | undecodable
    ascii_rows = rows_of.copy() if special.any() else rows_of
    ascii_rows[special] = SPACE
    text = pc.utf8_rtrim(_strings(ascii_rows.reshape(-1), n, w), characters=" ")
    rows = np.flatnonzero(high & ~undecodable)
    if not len(rows):
        return text, undecodable
    raws = rows_of[rows].view(f"S{w}")[:, 0].tolist()  # no NUL bytes here, so the S type keeps every byte
    _refuse_utf8(raws, rows, encoding, file_name, lines)
    decoded = _decode_rows(raws, encoding)
    for k, value in enumerate(decoded):
        if value is None:
            decoded[k] = ""
            undecodable[rows[k]] = True
    if len(rows) == n > 1 and undecodable.all():
        raise EncodingError(file_name, f"no record's text decodes as {encoding}", expected=encoding,
                            found="undecodable bytes")
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(text, pa.array(mask), pa.array(decoded, pa.string())), undecodable


def _decode_rows(raws: list[bytes], encoding: str) -> list[str | None]:
    """Each row decoded and right-trimmed of ASCII spaces; None for a row that does not decode."""
    try:
        decoded = b"\n".join(raws).decode(encoding).split("\n")
        if len(decoded) == len(raws):
            return [v.rstrip(" ") for v in decoded]
    except UnicodeDecodeError:
        pass
    out: list[str | None] = []
    for raw in raws:  # some row is undecodable: find which, one at a time
        try:
            out.append(raw.decode(encoding).rstrip(" "))
        except UnicodeDecodeError:
            out.append(None)
    return out


def _empty(layout: FileLayout) -> pa.Table:
    return layout_tables(layout).records


# --- writing --------------------------------------------------------------------------------------------------


def write(path: Path, layout: FileLayout, records: pa.Table, header: dict | None = None,
          trailer: dict | None = None) -> int:
    """Write a file in `layout`, atomically (tmp + rename). Returns the number of detail records.

    A value too long for its field raises `FieldOverflow`; nothing is truncated."""
    write_files(layout, records, [OutFile(Path(path), 0, records.num_rows, header, trailer)])
    return records.num_rows


def write_files(layout: FileLayout, records: pa.Table, files: list[OutFile]) -> None:
    """Write many files of `layout`, each atomically, file `k`'s details being its slice of `records`.

    Every record type is rendered once for all files (the details of all files in one table, the headers of
    all files in another: a few Arrow calls per field, whatever the number of files), then cut per file: a
    fixed-width line has a fixed length. A value that cannot be written raises `FieldOverflow` or
    `UnwritableValue` as a lone `write` of its file would, naming the file (`_rows.write_rendered`)."""
    write_rendered(_render_files, layout, records, files)


def _render_files(layout: FileLayout, records: pa.Table, files: list[OutFile]) -> list[bytes]:
    """The bytes of each file: its header, detail and trailer lines, in the layout's order of records."""
    line = layout.record_bytes + len(layout.line_end)
    parts: list[list[bytes]] = [[] for _ in files]
    for rec in layout.records:
        if rec.kind == "detail":
            details = rows_of_files(records, files)
            if not details.num_rows:
                continue
            data = render_records(details, rec, layout)
            at = 0
            for part, f in zip(parts, files):
                if f.length:
                    part.append(data[at * line: (at + f.length) * line])
                at += f.length
            continue
        given = [(k, f.header if rec.kind == "header" else f.trailer) for k, f in enumerate(files)]
        given = [(k, values) for k, values in given if values is not None]
        if not given:
            continue
        table = pa.table({f.name: pa.array([values[f.name] for _, values in given], type=f.type.arrow_type)
                          for f in rec.fields})
        data = render_records(table, rec, layout)
        for i, (k, _) in enumerate(given):
            parts[k].append(data[i * line: (i + 1) * line])
    return [b"".join(part) for part in parts]


def render_records(table: pa.Table, rec: Record, layout: FileLayout) -> bytes:
    """Render every row of `table` as records of type `rec`, each followed by the line end."""
    cols = [_render_field(table, f, rec, layout) for f in rec.fields]
    if layout.separator:
        cols = [pc.binary_join_element_wise(*cols, layout.separator)]
    return _concat(pc.binary_join_element_wise(*cols, pa.scalar(layout.line_end, pa.binary()), b""))


def _concat(arr: pa.Array) -> bytes:
    """The values of a binary array, one after the other (one copy)."""
    return value_bytes(arr).to_pybytes()


def _render_field(table: pa.Table, f, rec: Record, layout: FileLayout) -> pa.Array:
    if f.name in table.column_names:
        values = table.column(f.name).combine_chunks()
    elif isinstance(f.type, Const):
        values = pa.array([f.type.value] * table.num_rows, pa.string())
    elif isinstance(f.type, Text) and f.type.blank:
        values = pa.array([""] * table.num_rows, pa.string())
    else:
        raise UnwritableValue(rec.name, f.name, None, "no value given (missing column)")
    if values.null_count:
        if isinstance(f.type, Text) and f.type.blank:
            values = values.fill_null("")
        else:
            row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
            raise UnwritableValue(rec.name, f.name, None, f"the field is required ({f.type.expected})", row)
    if isinstance(f.type, SignedFen):
        text = f.type.render_width(values, f.width)
    else:
        text = f.type.render(values) if values.type != pa.string() or not isinstance(f.type, Text) else values
    _refuse_unreadable(text, f, rec)
    encoded, lengths = _encode(text, layout.encoding)
    too_long = np.flatnonzero(lengths > f.width)
    if len(too_long):
        r = int(too_long[0])
        raise FieldOverflow(rec.name, f.name, f.width, text[r].as_py(), r)
    pad = f.type.pad.decode("ascii")
    if f.type.align == "right":
        # Numbers: right aligned, zero padded. A negative number never reaches here (types refuse it).
        return _pad(encoded, lengths, f.width, pad, left=True)
    return _pad(encoded, lengths, f.width, pad, left=False)


def _refuse_unreadable(text: pa.Array, f, rec: Record) -> None:
    """Strict both ways: a value whose wire form its own type would not read back (a negative amount, letters
    in a digits field, a code not in its table, a line break in a text) is refused, never written only to be
    quarantined at the other end."""
    bad = f.type.parse(text).bad
    why = f"is not {f.type.expected}"
    if isinstance(f.type, Text):
        if _has_control_bytes(text):  # rare: find the rows
            control = pc.fill_null(pc.match_substring_regex(text, r"[\x00-\x1f\x7f]"), False)
            bad = bad | control.to_numpy(zero_copy_only=False)
        why += " without control characters or line breaks"
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UnwritableValue(rec.name, f.name, text[row].as_py(), why, row)


def _has_control_bytes(text: pa.Array) -> bool:
    """Whether any value of a string array holds a control character (a byte below 0x20, or 0x7F: in UTF-8 these
    bytes are those characters and nothing else), judged over its data buffer in one numpy pass."""
    octets = np.frombuffer(value_bytes(text), dtype=np.uint8)
    return bool(len(octets)) and bool((octets < 0x20).any() or (octets == 0x7F).any())


# Encodings in which a line feed byte only ever stands for a line feed (no multi-byte character holds 0x0A):
# a column is encoded in one codec call, its values joined by line feeds.
_LINE_FEED_SAFE = ("gbk", "gb18030", "gb2312", "utf-8", "utf8")


def _encode(text: pa.Array, encoding: str) -> tuple[pa.Array, np.ndarray]:
    if pc.all(pc.string_is_ascii(text)).as_py() in (True, None):
        binary = text.cast(pa.binary())
    else:  # Chinese text: Python's codec
        binary = _encode_joined(text, encoding) if encoding.lower() in _LINE_FEED_SAFE else None
        if binary is None:  # one value at a time
            binary = pa.array([s.encode(encoding) for s in text.to_pylist()], pa.binary())
    return binary, pc.binary_length(binary).to_numpy(zero_copy_only=False)


def _encode_joined(text: pa.Array, encoding: str) -> pa.Array | None:
    """The values encoded in one codec call: each followed by a line feed, encoded, then cut at the line feeds.
    None when that cannot tell the values apart (a value holding a line feed) or one does not encode (the caller
    then encodes value by value, which raises the codec's error for that value)."""
    n = len(text)
    with_ends = pc.binary_join_element_wise(text, "", "\n")
    try:
        blob = _concat(with_ends.cast(pa.binary())).decode("utf-8").encode(encoding)
    except UnicodeEncodeError:
        return None
    ends = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == 0x0A)
    if len(ends) != n or len(blob) >= 2**31:
        return None
    offsets = np.zeros(n + 1, dtype=np.int32)
    offsets[1:] = ends - np.arange(n)  # each value's end, less the line feeds before it
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(blob.replace(b"\n", b""))])


def _pad(binary: pa.Array, lengths: np.ndarray, width: int, pad: str, left: bool) -> pa.Array:
    distinct = np.unique(lengths)
    fill = pa.array([pad * (width - int(n)) for n in distinct], pa.binary())
    pads = fill.take(pa.array(np.searchsorted(distinct, lengths)))
    parts = (pads, binary) if left else (binary, pads)
    return pc.binary_join_element_wise(*parts, b"")
