"""Every layout in the registry is a valid declaration, and `check_layout` refuses inconsistent ones.

Importing the registry is most of the test: `FileLayout.__post_init__` runs `check_layout` on every spec module.
"""
from __future__ import annotations

import pyarrow as pa
import pytest

from formats.errors import LayoutError
from formats.layout import (Code, Column, Const, Count, Digits, Fen, Field, FileLayout, Record, Sum, SumOf, Text,
                            Unique, heading)
from formats.registry import ENGINES, LAYOUTS, get

from .conftest import SAMPLES

EXPECTED = {
    "unionpay.acomn", "unionpay.errn", "unionpay.errr", "pboc.cnaps2_dzmx", "tips.3102", "tips.2102", "tips.3111",
    "housing_fund.bdc_bat", "housing_fund.bdc_res", "utility.dk", "utility.hp", "payroll.batch_xlsx",
    "payroll.batch_csv", "payroll.result_xlsx", "payroll.result_csv", "ledger.journal", "ledger.entries",
}


def test_every_layout_is_registered_under_its_name():
    assert set(LAYOUTS) == EXPECTED
    for name, layout in LAYOUTS.items():
        assert layout.name == name
        assert layout.framing in ENGINES


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_layout_has_an_ok_sample_and_several_broken_ones(name):
    folder = SAMPLES.joinpath(*name.split(".", 1))
    cases = [p.name[: -len(".expected.json")] for p in folder.glob("*.expected.json")]
    assert any(c.startswith("ok_") for c in cases), f"{name}: no ok_* sample"
    assert sum(not c.startswith("ok_") for c in cases) >= 3, f"{name}: fewer than three broken samples"


def test_fixed_width_records_add_up_to_the_record_length():
    for layout in LAYOUTS.values():
        if layout.framing != "fixed":
            continue
        for rec in layout.records:
            sep = len(layout.separator)
            assert sum(f.width for f in rec.fields) + sep * (len(rec.fields) - 1) == layout.record_bytes


def test_unknown_layout_names_the_known_ones():
    with pytest.raises(KeyError, match="unionpay.acomn"):
        get("unionpay.acom")


def test_ledger_journal_arrow_schema_is_the_contract():
    assert get("ledger.journal").arrow_schema() == pa.schema([
        ("acct_date", pa.date32()), ("journal_no", pa.string()), ("seq_no", pa.int64()), ("channel", pa.string()),
        ("channel_ref", pa.string()), ("batch_no", pa.string()), ("txn_time", pa.timestamp("s")),
        ("account_no", pa.string()), ("account_name", pa.string()), ("dr_cr", pa.string()),
        ("amount_fen", pa.int64()), ("currency", pa.string()), ("status", pa.string()),
        ("reason_code", pa.string()), ("reversal_of", pa.string()), ("memo", pa.string())])


def test_amounts_are_never_floats():
    for layout in LAYOUTS.values():
        for rec in layout.records:
            for f in rec.fields:
                assert not pa.types.is_floating(f.type.arrow_type), f"{layout.name} {rec.name}.{f.name}"


def _fixed(*fields, record_bytes=10, **kw):
    return FileLayout(name="t.fixed", framing="fixed", encoding="gbk", record_bytes=record_bytes,
                      records=(Record("detail", tuple(fields)),), **kw)


@pytest.mark.parametrize("build, why", [
    (lambda: _fixed(Field("a", 1, 4, Text()), Field("b", 6, 10, Text())), "gap or overlap"),
    (lambda: _fixed(Field("a", 1, 5, Text()), Field("b", 5, 10, Text())), "gap or overlap"),
    (lambda: _fixed(Field("a", 1, 5, Text()), Field("b", 6, 9, Text())), "the layout says 10"),
    (lambda: _fixed(Field("a", 1, 5, Text()), Field("a", 6, 10, Text())), "field names repeat"),
    (lambda: _fixed(Field("a", 1, 2, Const("ABC")), Field("b", 3, 10, Text())), "longer than 2"),
    (lambda: _fixed(Field("a", 1, 10, Fen()), controls=(Sum("detail.amount", equals="flag"),)), "unknown field"),
    (lambda: _fixed(Field("a", 1, 10, Fen()), controls=(Count("trailer", equals="flag"),)), "unknown record"),
    (lambda: _fixed(Field("a", 1, 10, Fen()), key=("stan",)), "key field"),
    (lambda: _fixed(Field("a", 1, 10, Fen()), controls=(Unique("detail.b"),)), "unknown field"),
    (lambda: FileLayout(name="t.d", framing="delimited", encoding="gbk", records=(
        Record("detail", (Column("a", Text()),)),)), "delimiter"),
    (lambda: FileLayout(name="t.d", framing="delimited", encoding="gbk", delimiter="@|$", quoting="rfc4180",
                        records=(Record("detail", (Column("a", Text()),)),)), "one-character"),
    (lambda: FileLayout(name="t.d", framing="delimited", encoding="gbk", delimiter="|", records=(
        Record("detail", (Column("a", Text()),)), Record("header", (Column("h", Text()),), kind="header"))),
     "out of file order"),
    (lambda: FileLayout(name="t.d", framing="delimited", encoding="gbk", delimiter="|", records=(
        Record("detail", (Column("a", Fen()), Column("b", Fen())), checks=(SumOf("a", ("c",)),)),)),
     "unknown field"),
    (lambda: FileLayout(name="t.x", framing="xml", encoding="gbk", records=(
        Record("detail", (Column("a", Text()),)),)), "element path"),
    (lambda: FileLayout(name="t.e", framing="excel", encoding="utf-8", records=(
        Record("h", (Column("a", Text()),), kind="header"), Record("detail", (Column("a", Text()),)))),
     "needs its cell"),
    (lambda: FileLayout(name="t.d", framing="delimited", encoding="gbk", delimiter="|", records=(
        Record("h", (Column("a", Text()),), kind="heading"), Record("detail", (Column("a", Text()),)))),
     "only Const"),
    (lambda: FileLayout(name="t.d", framing="delimited", encoding="gbk", delimiter="|", records=(
        Record("h", (Column("t", Code({"A": "a"})),), kind="header"),
        Record("d1", (Column("a", Text()),), variant="A"), Record("d2", (Column("b", Digits()),), variant="B")),
        variant_by="h.t"), "is not a field of d1"),
])
def test_check_layout_refuses(build, why):
    with pytest.raises(LayoutError, match=why):
        build()


def test_heading_declares_const_titles():
    rec = heading("titles", ("序号", "金额"), at_row=5)
    assert [f.at for f in rec.fields] == ["A5", "B5"]
    assert [f.type.value for f in rec.fields] == ["序号", "金额"]
