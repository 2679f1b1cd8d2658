"""The XML reader's two ways of gathering records agree: a document in the layout's plain form is matched whole by
regular expressions (`xml._gather_plain`); any other is read by expat's handlers (`xml._gather`), which also say
what is wrong with a bad one. On every sample, bad-input file and an edit of each kind, the plain way either
declines (None) or gives what expat gives: lines, field texts, list items and each record's quarantined bytes."""
from __future__ import annotations

import pytest

from formats import registry, xml
from formats.errors import FormatError

from .conftest import SAMPLES

XML_FILES = sorted((p, f"tips.{p.parent.name}") for p in (SAMPLES / "tips").rglob("*.xml")) + \
    sorted((p, f"tips.{p.parent.name}") for p in (SAMPLES / "bad" / "tips").rglob("*.xml"))
OK_PACK = SAMPLES / "tips" / "3102" / "ok_pack_gbk.xml"


def gathered_both_ways(data: bytes, layout_name: str):
    """(plain, streamed): the plain way's result or None, and expat's result or the error it raises."""
    layout = registry.get(layout_name)
    text, _ = xml._decode(data, "f.xml", layout.options["encodings"])
    plain = xml._gather_plain(text, layout)
    try:
        streamed = xml._gather(text.encode("utf-8"), "f.xml", layout)
    except FormatError as e:
        streamed = e
    return plain, streamed


def assert_same(plain, streamed) -> None:
    assert not isinstance(streamed, FormatError), f"the plain way read a document expat refuses: {streamed}"
    assert plain[0] == streamed[0]
    for a, b in zip(plain[1], streamed[1], strict=True):
        assert a.lines == b.lines
        assert [list(c) for c in a.columns] == [list(c) for c in b.columns]
        assert [a.raw_of(i) for i in range(len(a.lines))] == [b.raw_of(i) for i in range(len(b.lines))]


@pytest.mark.parametrize("path,layout_name", XML_FILES, ids=[str(p.relative_to(SAMPLES)) for p, _ in XML_FILES])
def test_the_plain_way_agrees_with_expat_on_every_sample(path, layout_name):
    try:
        plain, streamed = gathered_both_ways(path.read_bytes(), layout_name)
    except FormatError:
        return  # refused before any gathering (size, encoding)
    if plain is not None:
        assert_same(plain, streamed)


def test_the_night_s_files_take_the_plain_way():
    for name in ("tips/3102/ok_pack_gbk.xml", "tips/3111/ok_day_end.xml", "tips/2102/ok_pack_processed.xml"):
        plain, streamed = gathered_both_ways((SAMPLES / name).read_bytes(), "tips." + name.split("/")[1])
        assert plain is not None, name
        assert_same(plain, streamed)


EDITS = {   # what is changed in the first payment -> whether the plain way still reads it
    "an entity and a line break in a text": (("<HandOrgName>南京", "<HandOrgName> A &amp; B &lt;&gt;&quot;&apos;\r\n南京"),
                                             True),
    "blank lines and tabs between elements": (("<TraNo>", "\r\n\t\r\n <TraNo>"), True),
    "an empty text": (("<TaxVouNo>32010000000001</TaxVouNo>", "<TaxVouNo></TaxVouNo>"), True),
    "no tax type": (("<TaxTypeList3102>", "<TaxTypeList3102></TaxTypeList3102><X>"), False),
    "a character reference": (("<TraAmt>", "<TraAmt>&#49;"), False),
    "an undeclared entity": (("<TraAmt>", "<TraAmt>&nbsp;"), False),
    "a bare ampersand": (("<TraAmt>", "<TraAmt>&"), False),
    "a comment": (("<TraNo>", "<!-- x --><TraNo>"), False),
    "CDATA": (("<TraNo>", "<TraNo><![CDATA[1]]>"), False),
    "a DOCTYPE": (("<CFX>", "<!DOCTYPE CFX [<!ENTITY e 'x'>]><CFX>"), False),
    "an attribute": (("<Payment3102>", '<Payment3102 a="1">'), False),
    "a space in a tag": (("<TraNo>", "<TraNo >"), False),
    "an empty-element tag": (("<TaxVouNo>32010000000001</TaxVouNo>", "<TaxVouNo/>"), False),
    "fields out of order": (("<PayOpBkCode>313301000019</PayOpBkCode>", ""), False),
    "a field twice": (("<TraNo>", "<TraNo>1</TraNo><TraNo>"), False),
    "an unknown element": (("<TraNo>", "<Note>x</Note><TraNo>"), False),
    "a lone CR": (("<TraAmt>", "<TraAmt>\r"), False),
    "a control character": (("<TraAmt>", "<TraAmt>\x01"), False),
    "a CDATA end in text": (("<TraAmt>", "<TraAmt>]]>"), False),
    "a processing instruction": (("<TraNo>", "<?pi x?><TraNo>"), False),
    "a namespace": (("<CFX>", '<CFX xmlns="urn:x">'), False),
    "an element left open": (("</Payment3102>", ""), False),
    "text after the root": (("</CFX>", "</CFX>x"), False),
    "a space before the prolog": (('<?xml', ' <?xml'), False),
    "single quotes in the prolog": (('version="1.0"', "version='1.0'"), False),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_the_plain_way_reads_only_the_plain_form_and_agrees_with_expat(edit):
    (old, new), plain_form = EDITS[edit]
    text = OK_PACK.read_bytes().decode("gbk")
    assert old in text
    plain, streamed = gathered_both_ways(text.replace(old, new, 1).encode("gbk"), "tips.3102")
    assert (plain is not None) == plain_form
    if plain is not None:
        assert_same(plain, streamed)


def test_a_quarantined_record_of_a_plain_document_has_expat_s_line_and_bytes(tmp_path, monkeypatch):
    text = OK_PACK.read_bytes().decode("gbk")
    second = text.index("<Payment3102>", text.index("<Payment3102>") + 1)
    edited = text[:second] + text[second:].replace("<TraAmt>", "<TraAmt>1.234", 1)
    path = tmp_path / "p.xml"
    path.write_bytes(edited.encode("gbk"))
    assert xml._gather_plain(edited, registry.get("tips.3102")) is not None
    with pytest.raises(FormatError) as plain:
        registry.read(path, "tips.3102")
    monkeypatch.setattr(xml, "_gather_plain", lambda text, layout: None)
    with pytest.raises(FormatError) as streamed:
        registry.read(path, "tips.3102")
    assert str(plain.value) == str(streamed.value)
    q = plain.value.partial.quarantine
    assert q["_line"].to_pylist() == [edited[:second].count("\n") + 1]
    assert q.equals(streamed.value.partial.quarantine)


def test_header_values_remembered_across_files_type_as_when_first_met(tmp_path):
    """Header values are typed once per (field, text) in a process: a later file gets the same header, and a bad
    value the same error, as with nothing remembered."""
    text = OK_PACK.read_bytes().decode("gbk")
    variants = {"same": text, "other_id": text.replace("<MsgID>20261121", "<MsgID>20261122", 1),
                "bad_date": text.replace("<WorkDate>20261121", "<WorkDate>2026112x", 1),
                "bad_pack": text.replace("<PackNo>00000001", "<PackNo>0000000A", 1)}
    paths = []
    for name, variant in variants.items():
        paths.append(tmp_path / f"{name}.xml")
        paths[-1].write_bytes(variant.encode("gbk"))

    def outcomes():
        out = []
        for path in paths * 2:
            try:
                result = registry.read(path, "tips.3102")
                out.append((result.header, result.records.equals(result.records)))
            except FormatError as e:
                out.append(str(e))
        return out

    remembered = outcomes()
    xml._REMEMBERED.clear()
    first_met = []
    for path in paths:
        xml._REMEMBERED.clear()
        try:
            result = registry.read(path, "tips.3102")
            first_met.append((result.header, True))
        except FormatError as e:
            first_met.append(str(e))
    assert remembered == first_met * 2
    assert remembered[1][0]["MsgID"] == "20261122" + remembered[0][0]["MsgID"][8:]
    assert "WorkDate" in remembered[2] and "PackNo" in remembered[3]
