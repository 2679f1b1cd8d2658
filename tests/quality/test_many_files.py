"""A night of many files of one kind is validated in a constant number of scans, and each file keeps its own row
per check, as if it had been validated alone; the ledger extract shared by the channels of a date is validated once
per content."""
from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from duizhang import quality
from duizhang.quality import ExpectationFailed
from tests.quality.night import CHANNEL, T1
from tests.quality.test_quality import parsed_file, set_row, validation

CLEAN, BAD_CODE, OUT_OF_RANGE, REPEATED_KEY, WRONG_TOTAL, ALSO_CLEAN = (f"IND261121{n:02d}ACOMN" for n in range(1, 7))


def night_of_six_files(wd, monkeypatch) -> list[str]:
    """The sample ACOMN cloned into six files of the kind, a different fault in four of them. UnionPay's keys may
    repeat by spec, so the night declares `stan` unique, as a batch layout does (the sample's one repeated stan,
    line 14, is made unique first)."""
    monkeypatch.setitem(quality.RULES, "unionpay.acomn", quality.Rules(unique=("stan",)))
    parsed = wd.parsed(CHANNEL, T1)
    set_row(parsed_file(wd), 14, stan="100014")
    manifest = json.loads((parsed / "manifest.json").read_text())
    entry = manifest["files"][0]
    with wd.control() as db:
        registered = dict(db.execute("SELECT * FROM files WHERE name = ?", (CLEAN,)).fetchone())
        for name in (BAD_CODE, OUT_OF_RANGE, REPEATED_KEY, WRONG_TOTAL, ALSO_CLEAN):
            clone = entry | {"name": name, "parquet": f"{name}.v1.parquet",
                             "quarantine": f"{name}.v1.quarantine.parquet"}
            shutil.copy(parsed / entry["parquet"], parsed / clone["parquet"])
            shutil.copy(parsed / entry["quarantine"], parsed / clone["quarantine"])
            manifest["files"].append(clone)
            row = registered | {"name": name, "md5": name, "flag_records": 19 if name == WRONG_TOTAL else 18}
            db.execute(f"INSERT INTO files ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       tuple(row.values()))
    (parsed / "manifest.json").write_text(json.dumps(manifest))
    set_row(parsed / f"{BAD_CODE}.v1.parquet", 4, msg_type="0999")
    set_row(parsed / f"{OUT_OF_RANGE}.v1.parquet", 5, amount_fen=0)
    set_row(parsed / f"{REPEATED_KEY}.v1.parquet", 6, stan="100005")
    return [f["name"] for f in manifest["files"]]


def acomn_rows(wd) -> list[dict]:
    return [r for r in validation(wd) if r["dataset"] == "unionpay.acomn"]


def test_each_file_of_a_kind_keeps_its_own_rows_and_faults(wd, monkeypatch):
    names = night_of_six_files(wd, monkeypatch)
    with pytest.raises(ExpectationFailed) as e:
        quality.validate(CHANNEL, T1, wd)
    together = acomn_rows(wd)

    failed = {(r["file"], r["description"]): (r["unexpected_count"], r["offending"]) for r in together
              if not r["success"]}
    assert failed == {
        (BAD_CODE, "msg_type in its code table"): (1, "line 4: stan=100004, txn_time=1121112233, msg_type=0999, "
                                                      "pan=622202*********0123, cardholder_fee_fen=0, card_seq_no=001, "
                                                      "transfer_in_pan=, amount_fen=880"),
        (OUT_OF_RANGE, "amount_fen between 1 and 100000000000 fen"): (
            1, "line 5: stan=100005, txn_time=1121120001, amount_fen=0, pan=621700*********4567, "
               "cardholder_fee_fen=0, card_seq_no=001, transfer_in_pan="),
        (REPEATED_KEY, "key (stan) unique"): (1, "stan=100005, occurrences=2"),
        (WRONG_TOTAL, "control total: count of detail records = flag"): (
            1, "control=count of detail records = flag, declared=19, computed=18"),
    }
    assert [f["file"] for f in e.value.failures] == [BAD_CODE, OUT_OF_RANGE, REPEATED_KEY, WRONG_TOTAL]
    # One row per file per check, in the manifest's order, each counted on its own file alone.
    checks = [r["description"] for r in together if r["file"] == CLEAN]
    assert [r["file"] for r in together] == [n for n in names for _ in checks]
    assert [r["description"] for r in together] == checks * len(names)
    for r in together:
        whole = r["description"].startswith(("key (", "control total"))
        assert r["element_count"] == (18 if r["description"] == "key (stan) unique" else 1 if whole else 17)

    # Each file validated alone (a manifest of that file only) gives the rows it has in the night.
    manifest_path = wd.parsed(CHANNEL, T1) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"]:
        manifest_path.write_text(json.dumps(manifest | {"files": [entry]}))
        try:
            quality.validate(CHANNEL, T1, wd)
        except ExpectationFailed:
            pass
        assert acomn_rows(wd) == [r for r in together if r["file"] == entry["name"]], entry["name"]


def test_a_kind_takes_a_constant_number_of_gx_validations(wd, monkeypatch):
    night_of_six_files(wd, monkeypatch)
    one = validations_of_acomn(wd, monkeypatch)
    parsed = wd.parsed(CHANNEL, T1)
    manifest = json.loads((parsed / "manifest.json").read_text())
    for n in range(7, 17):   # ten more clean files
        name = f"IND261121{n:02d}ACOMN"
        clone = manifest["files"][0] | {"name": name, "parquet": f"{name}.v1.parquet",
                                        "quarantine": f"{name}.v1.quarantine.parquet"}
        shutil.copy(parsed / manifest["files"][0]["parquet"], parsed / clone["parquet"])
        shutil.copy(parsed / manifest["files"][0]["quarantine"], parsed / clone["quarantine"])
        manifest["files"].append(clone)
    (parsed / "manifest.json").write_text(json.dumps(manifest))
    assert validations_of_acomn(wd, monkeypatch) == one   # 16 files: as many as 6


def validations_of_acomn(wd, monkeypatch) -> int:
    calls = []
    run = quality._run
    monkeypatch.setattr(quality, "_run", lambda frame, expectations: calls.append(frame) or run(frame, expectations))
    with pytest.raises(ExpectationFailed):
        quality.validate(CHANNEL, T1, wd)
    monkeypatch.setattr(quality, "_run", run)
    return len(calls)


def test_the_ledger_extract_is_validated_once_per_content_for_every_channel(wd, monkeypatch):
    runs = []
    run_suite = quality.run_suite
    monkeypatch.setattr(quality, "run_suite", lambda suite, dataset, parts, key=(): runs.append(dataset) or
                        run_suite(suite, dataset, parts, key))
    other = wd.parsed("cnaps2", T1)   # a second channel of the date, with no file of its own tonight
    (other / "manifest.json").write_text(json.dumps({"business_date": T1.isoformat(), "channel": "cnaps2",
                                                     "files": []}))
    extract = wd.ledger_extract(T1)
    extract.with_name(f"{extract.stem}.validation.json").unlink(missing_ok=True)

    quality.validate(CHANNEL, T1, wd)
    journal = [r for r in validation(wd) if r["dataset"] == "ledger.journal"]
    quality.validate("cnaps2", T1, wd)
    assert runs.count("ledger.journal") == 1
    assert [r for r in wd.read_table("validation", "cnaps2", T1).to_pylist() if r["dataset"] == "ledger.journal"] == [
        r | {"channel": "cnaps2"} for r in journal]

    # The next channel's load rewrites the extract with the same bytes: still validated once.
    data = extract.read_bytes()
    extract.unlink()
    extract.write_bytes(data)
    quality.validate(CHANNEL, T1, wd)
    assert runs.count("ledger.journal") == 1

    # A rewritten extract with other content is validated again, and its fault is every channel's.
    t = pq.read_table(extract)
    pq.write_table(pa.concat_tables([t, t.slice(2, 1)]), extract)
    for channel in ("cnaps2", CHANNEL):
        with pytest.raises(ExpectationFailed, match=r"key \(journal_no, seq_no\) unique"):
            quality.validate(channel, T1, wd)
    assert runs.count("ledger.journal") == 2
