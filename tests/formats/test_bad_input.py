"""Bad input, for every reader: every input ends in a typed error (`formats.errors`) or a correct result, never a
crash (any other exception), a hang, or a silent wrong value.

Three parts: the committed corpus (`sample_files/bad/`, written by its `make_bad.py`, with what each file must
give in `expected.json`); the large cases generated here (bombs, fields of many MB); and a fuzzing run of every
reader with hypothesis, mutating each layout's valid sample. A result is judged "correct" by what can be
checked without knowing the right answer: every record is loaded or quarantined exactly once (conservation),
`_line` numbers are real lines, and what was read is a fixed point of the writer (writing it and reading that
back gives the same records, header and trailer), which a reader that shifted or defaulted a value would break.
The number of inputs tried is printed at the end of the run (`test_report_inputs_tried`).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import json
import signal
import time
import zipfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formats import errors, excel, registry
from formats.flag import parse_flag
from formats.registry import LAYOUTS

from sample_files.make_samples import edit_part

from .conftest import SAMPLES

BAD = SAMPLES / "bad"
EXPECTED = json.loads((BAD / "expected.json").read_text(encoding="utf-8"))
SECONDS_PER_INPUT = 20          # far above any real read here (ms); a hang fails, never blocks the suite
TRIED: Counter = Counter()      # outcome -> inputs, for the report


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (TimeoutError) if the block runs longer than `seconds`: a hang must not pass, nor block CI."""
    def expired(*_):
        raise TimeoutError(f"no answer after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _flag(path: Path):
    flag_path = path.with_name(path.name + ".ok")
    return parse_flag(flag_path.read_bytes(), flag_path.name) if flag_path.exists() else None


def read_judged(path: Path, layout_name: str, flag=None):
    """Read `path`; return the typed error or the result, after checking the result is a correct one.
    Any other exception, or a hang, fails the calling test."""
    with deadline(SECONDS_PER_INPUT):
        try:
            result = registry.read(path, layout_name, flag)
        except errors.FormatError as e:
            assert isinstance(e, errors.FileRejected), f"a reader raised a non-file error: {e!r}"
            assert path.name in str(e) or isinstance(e, errors.FlagMismatch), f"the message must name the file: {e}"
            TRIED["typed error"] += 1
            return e
        check_result(result, path, layout_name)
    TRIED["quarantined" if result.quarantined else "loaded clean"] += 1
    return result


def check_result(result, path: Path, layout_name: str) -> None:
    layout = LAYOUTS[layout_name]
    assert result.records.num_rows + result.quarantined == result.detail_count  # conservation
    lines = result.records["_line"].to_pylist() + result.quarantine["_line"].to_pylist()
    assert len(set(lines)) == len(lines), "a line is counted twice"
    assert all(1 <= n <= max(result.lines, 1) for n in lines), (lines, result.lines)
    if result.quarantined:
        return  # the totals count the quarantined records too: the good ones alone would not write a valid file
    # A fixed point of the writer: what was read, written and read again, is what was read.
    again = path.with_name(f"rewritten_{path.name}")
    options = {"excel": {"business_date": dt.date(2026, 11, 21)},
               "xml": {"encoding": result.extra.get("encoding")}}.get(layout.framing, {})
    records = result.records.drop_columns(["_line"])
    try:
        registry.write(again, layout_name, records, result.header, result.trailer, **options)
    except (errors.UnwritableValue, errors.FieldOverflow) as e:
        # The writer is stricter than the reader only where the reader quarantined or a control tolerates it.
        pytest.fail(f"{path.name}: the reader accepted what the writer refuses: {e}")
    back = registry.read(again, layout_name)
    assert back.records.drop_columns(["_line"]).equals(records), "the values read are not a fixed point"
    assert back.header == result.header and back.trailer == result.trailer


# --- the committed corpus -------------------------------------------------------------------------------------


def test_the_corpus_covers_every_layout_and_every_case_kind():
    layouts = {"/".join(k.split("/")[:2]).replace("/", ".", 1) for k in EXPECTED}
    assert layouts == set(LAYOUTS)
    names = {k.rsplit("/", 1)[1].rsplit(".", 1)[0] for k in EXPECTED}
    for kind in ("empty", "truncated_half", "garbage_bytes", "wrong_encoding", "line_one_byte_long", "huge_line",
                 "huge_field", "xml_billion_laughs", "xml_external_entity_file", "xml_deep_nesting",
                 "xlsx_formula_in_text_cell", "xlsx_merged_cells", "xlsx_hidden_data_sheet_and_decoy",
                 "xlsx_zip_bomb"):
        assert kind in names, kind
    on_disk = {str(p.relative_to(BAD)) for p in BAD.rglob("*") if p.is_file()
               and p.suffix not in (".ok", ".py", ".json")}
    assert on_disk == set(EXPECTED), "make_bad.py and the committed files disagree: rerun it"


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_file(case, tmp_path):
    family, kind, file_name = case.split("/")
    src = BAD / case
    path = tmp_path / file_name  # a copy: the fixed point check writes beside it
    path.write_bytes(src.read_bytes())
    outcome = read_judged(path, f"{family}.{kind}", _flag(src))
    expected = EXPECTED[case]
    if "raises" in expected:
        assert isinstance(outcome, getattr(errors, expected["raises"])), f"{case}: got {outcome!r}"
    elif expected.get("quarantined"):
        assert not isinstance(outcome, Exception), f"{case}: {outcome}"
        assert outcome.quarantined >= 1


# --- large inputs, generated here -----------------------------------------------------------------------------


def test_gzip_bomb_stops_at_the_limit_and_broken_gzip_is_rejected(tmp_path):
    """The decompression limit lives in the connector: a 200 MB gzip bomb, fetched with its flag, stops at a 1 MB
    limit having kept nothing, and a gzip file that is not gzip is a rejected file."""
    import hashlib
    from connectors.errors import FileTooLarge
    from connectors.sftp import LocalDirSource
    from formats.flag import Flag

    served = tmp_path / "served" / "outbox"
    served.mkdir(parents=True)

    def serve(name: str, data: bytes) -> None:
        (served / name).write_bytes(data)
        (served / f"{name}.ok").write_bytes(Flag(name, len(data), 1, hashlib.md5(data).hexdigest()).render())

    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as f:
        for _ in range(200):
            f.write(b"0" * (1 << 20))
    assert len(buffer.getvalue()) < 1 << 20
    serve("IND26112101ACOMN.gz", buffer.getvalue())
    serve("x.gz", b"\x1f\x8b\x08\x00" + b"not really gzip" * 10)
    source = LocalDirSource(tmp_path / "served", max_unpacked_bytes=1 << 20)
    out = tmp_path / "landing"
    out.mkdir()
    with deadline(SECONDS_PER_INPUT), pytest.raises(FileTooLarge, match="gzip bomb"):
        source.fetch("/outbox", "IND26112101ACOMN.gz", out)
    with pytest.raises(errors.FileRejected, match="not a valid gzip"):
        source.fetch("/outbox", "x.gz", out)
    assert not list(out.iterdir()), "nothing kept of a refused file"


def test_xlsx_that_inflates_to_hundreds_of_mb_is_refused_before_parsing(tmp_path):
    ok = (SAMPLES / "payroll" / "batch_xlsx" / "ok_20261121.xlsx").read_bytes()
    src = zipfile.ZipFile(io.BytesIO(ok))
    path = tmp_path / "DF_EMP0000001_20261121_01.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":  # 100 MB of whitespace inside the sheet element
                data = data.replace(b"</sheetData>", b"</sheetData>" + b" " * (100 << 20), 1)
            dst.writestr(info, data)
    assert path.stat().st_size < 1 << 20
    t0 = time.perf_counter()
    outcome = read_judged(path, "payroll.batch_xlsx")
    assert isinstance(outcome, errors.UnsafeXml) and "zip bomb" in str(outcome)
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("name", ["unionpay.acomn", "utility.dk"])
def test_a_20_mb_line_without_line_ends_is_refused_in_bounded_time(name, tmp_path):
    ok = next((SAMPLES / name.replace(".", "/", 1)).glob("ok_*.txt"))
    path = tmp_path / ok.name
    path.write_bytes(ok.read_bytes() + b"9" * (20 << 20))
    outcome = read_judged(path, name, _flag(ok))
    assert isinstance(outcome, errors.FileRejected) or outcome.quarantined == 1


def test_a_20_mb_field_in_delimited_and_xml_files(tmp_path):
    for name, sample, find, replace in (
            ("pboc.cnaps2_dzmx", "pboc/cnaps2_dzmx/ok_20261121.txt", "|".encode(), None),
            ("tips.3102", "tips/3102/ok_pack_gbk.xml", b"<HandOrgName>", b"<HandOrgName>" + b"A" * (20 << 20))):
        data = (SAMPLES / sample).read_bytes()
        if replace is None:  # a 20 MB payer name on the second detail line
            lines = data.split(b"\r\n")
            fields = lines[2].split(find)
            fields[7] = b"A" * (20 << 20)
            lines[2] = find.join(fields)
            data = b"\r\n".join(lines)
        else:
            data = data.replace(find, replace, 1)
        path = tmp_path / Path(sample).name
        path.write_bytes(data)
        outcome = read_judged(path, name)
        assert not isinstance(outcome, Exception), outcome
        assert outcome.quarantined == 1 and "at most" in outcome.quarantine["_expected"][0].as_py()


def test_excel_text_starting_with_equals_is_written_as_text_not_a_formula(tmp_path):
    layout = LAYOUTS["payroll.batch_xlsx"]
    base = registry.read(SAMPLES / "payroll" / "batch_xlsx" / "ok_20261121.xlsx", layout.name)
    rows = base.records.drop_columns(["_line"])
    evil = '=HYPERLINK("http://127.0.0.1/","张三")'
    rows = rows.set_column(rows.schema.get_field_index("account_name"), "account_name",
                           pa.array([evil] * rows.num_rows))
    path = tmp_path / "DF_EMP0000001_20261121_01.xlsx"
    excel.write(path, layout, rows, base.header, base.trailer)
    with zipfile.ZipFile(path) as z:
        assert b"<f>" not in z.read("xl/worksheets/sheet1.xml")
    assert registry.read(path, layout.name).records["account_name"].to_pylist() == [evil] * rows.num_rows


# --- fuzzing ---------------------------------------------------------------------------------------------------

INTERESTING = [b"\r", b"\n", b"\r\n", b"|", b",", b'"', b"\x00", b"\x7f", b"\x80", b"\xff", b"<", b"&", b"-",
               b"9", b"0", b" ", b".", b"\xb6", b"\xe6\x7c", b"$", b"@|$", b"]]>", b"<!DOCTYPE x>", b"&#0;"]


def _ok_sample(name: str) -> Path:
    folder = SAMPLES.joinpath(*name.split(".", 1))
    return sorted(p for p in folder.glob("ok_*") if not p.name.endswith((".json", ".ok")))[0]


@st.composite
def mutated(draw, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, max(len(out) - 1, 0)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate", "interesting"]))
        if op == "flip" and out:
            out[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del out[pos: pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del out[pos:]
        elif op == "duplicate":
            length = draw(st.integers(1, 600))
            out[pos:pos] = out[pos: pos + length]
        else:
            value = draw(st.sampled_from(INTERESTING))
            out[pos: pos + draw(st.integers(0, len(value)))] = value
    return bytes(out)


def _mutated_workbook(draw, ok: bytes) -> bytes:
    """Mutate the worksheet XML inside the zip (raw zip mutations only test the zip library)."""
    return edit_part(ok, "xl/worksheets/sheet1.xml", lambda part: draw(mutated(part)))


def _fuzz(name: str, examples: int, tmp_path_factory) -> None:
    ok_path = _ok_sample(name)
    ok, flag = ok_path.read_bytes(), _flag(ok_path)
    is_excel = LAYOUTS[name].framing == "excel"

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        raw = _mutated_workbook(data.draw, ok) if is_excel and data.draw(st.booleans()) else data.draw(mutated(ok))
        path = tmp_path_factory.mktemp("fuzz") / ok_path.name
        path.write_bytes(raw)
        read_judged(path, name, flag)
        TRIED["inputs"] += 1

    run()


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_fuzz_every_reader(name, tmp_path_factory):
    _fuzz(name, 30, tmp_path_factory)


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_fuzz_every_reader_long(name, tmp_path_factory):
    _fuzz(name, 600, tmp_path_factory)


def test_report_inputs_tried(capsys):
    """Print how many bad inputs this run tried and how they ended (run last: pytest keeps file order)."""
    with capsys.disabled():
        total = TRIED["typed error"] + TRIED["quarantined"] + TRIED["loaded clean"]
        print(f"\nbad input: {total} inputs read ({TRIED['inputs']} by fuzzing): {TRIED['typed error']} typed "
              f"errors, {TRIED['quarantined']} loaded with quarantine, {TRIED['loaded clean']} loaded clean; "
              "no crash, no hang, no unstable value")
