"""Returns from the real chain: the batch channels' sample nights run through the pipeline (parse, ledger,
reconciliation engine), then every inbound batch is answered from the warehouse's recon_result and the journal.
A batch is answered exactly when all its records ended MATCHED or QUARANTINED, and then every record is answered
once, in order, with totals equal to the batch's; otherwise BatchHeld names exactly the records that hold it."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from clearing.returns import BUILDERS, BatchHeld, InboundBatch, build_return, build_returns
from duizhang import pipeline
from duizhang.channels import CHANNEL_FILES
from duizhang.workdir import Workdir
from tests.accounts import account
from formats import registry
from formats.errors import FileRejected
from formats.flag import parse_flag, verify_file
from tests.clearing.conftest import SAMPLES

NIGHTS = SAMPLES / "nights"
DATES = (dt.date(2026, 11, 21), dt.date(2026, 11, 22))
RETURN_LAYOUT = {"utility.dk": "utility.hp", "housing_fund.bdc_bat": "housing_fund.bdc_res",
                 "tips.3102": "tips.2102", "payroll.batch_xlsx": "payroll.result_xlsx",
                 "payroll.batch_csv": "payroll.result_csv"}
AMOUNT = {"utility.hp": "amount_fen", "housing_fund.bdc_res": "amount", "tips.2102": "TraAmt",
          "payroll.result_xlsx": "amount_fen", "payroll.result_csv": "amount_fen"}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Workdir:
    wd = Workdir(tmp_path_factory.mktemp("returns") / "work")
    for channel in ("tips", "housing_fund", "utility", "payroll"):
        for date in DATES:
            pipeline.run(channel, date, str(account(channel, wd.root.parent)), str(NIGHTS / "ledger"), wd)
    return wd


def inbound(channel: str, date: dt.date) -> list[tuple[Path, str]]:
    files = CHANNEL_FILES[channel]
    out = []
    for path in sorted((NIGHTS / channel / "outbox" / f"{date:%Y%m%d}").iterdir()):
        if path.suffix != ".ok":
            kind, _ = files.kind_matching(path.name, date)
            if kind.layout in RETURN_LAYOUT:
                out.append((path, kind.layout))
    return out


CASES = [(channel, date) for channel in ("tips", "housing_fund", "utility", "payroll") for date in DATES]


@pytest.mark.integration
@pytest.mark.parametrize("channel, date", CASES)
def test_each_batch_is_answered_or_held_for_exactly_the_records_without_a_final_outcome(warehouse, tmp_path,
                                                                                         channel, date):
    results = warehouse.read_table("recon_result", channel, date)
    journal = registry.read(NIGHTS / "ledger" / f"CORE_JOURNAL_{date:%Y%m%d}.csv", "ledger.journal").records
    answered = held = 0
    for path, layout in inbound(channel, date):
        try:
            batch = InboundBatch.from_read(registry.read(path, layout))
        except FileRejected as err:
            batch = InboundBatch.from_rejection(err)
        mine = results.filter(pa.compute.equal(results["source_file"], path.name)).to_pylist()
        open_lines = sorted(r["source_line"] for r in mine if r["outcome"] not in ("MATCHED", "QUARANTINED"))
        try:
            out = build_return(batch, results, journal, date, tmp_path)
        except BatchHeld as e:
            assert open_lines and [p[0] for p in e.problems] == open_lines
            held += 1
            continue
        assert not open_lines or batch.rejected
        back_layout = RETURN_LAYOUT[layout]
        flag = parse_flag(out.with_name(out.name + ".ok").read_bytes())
        verify_file(out, flag)
        back = registry.read(out, back_layout, flag)
        assert all(c.ok for c in back.controls) and back.quarantined == 0
        records = batch.records.num_rows + batch.quarantine.num_rows
        assert back.records.num_rows == (0 if batch.rejected and layout == "tips.3102" else records)
        if not batch.rejected:
            amount = AMOUNT[back_layout]
            given = sum(v or 0 for v in batch.records[amount if amount in batch.records.column_names
                                                      else "amount_fen"].to_pylist())
            given += sum(v or 0 for v in batch.quarantine[amount if amount in batch.quarantine.column_names
                                                          else "amount_fen"].to_pylist())
            assert sum(v or 0 for v in back.records[amount].to_pylist()) == given
        answered += 1
    assert answered + held == len(inbound(channel, date)) > 0


def read_again(path: Path, layout: str) -> InboundBatch:
    try:
        return InboundBatch.from_read(registry.read(path, layout))
    except FileRejected as err:
        return InboundBatch.from_rejection(err)


@pytest.mark.integration
@pytest.mark.parametrize("channel, date", CASES)
def test_the_batches_the_parse_step_stored_are_the_batches_read_again(warehouse, channel, date):
    """The answer step takes each batch from the parse step's Parquet files and manifest (header values typed
    again from their text), not from reading the inbound file again: the same batch either way."""
    kinds = {k.kind: k.layout for k in CHANNEL_FILES[channel].kinds}
    files = [f for f in pipeline._read_json(warehouse.parsed(channel, date) / "manifest.json")["files"]
             if kinds[f["kind"]] in BUILDERS]
    stored = pipeline._inbound_batches(warehouse, channel, date, files)
    assert len(stored) == len(files) > 0
    for f, batch in zip(files, stored):
        again = read_again(NIGHTS / channel / "outbox" / f"{date:%Y%m%d}" / f["name"], kinds[f["kind"]])
        assert (batch.file, batch.layout, batch.header, batch.encoding, batch.rejected) == (
            again.file, again.layout, again.header, again.encoding, again.rejected)
        assert batch.records.to_pylist() == again.records.to_pylist()
        assert batch.quarantine.to_pylist() == again.quarantine.to_pylist()


@pytest.mark.integration
@pytest.mark.parametrize("channel, date", CASES)
def test_a_night_answered_at_once_is_each_batch_answered_alone(warehouse, tmp_path, channel, date):
    """One set of queries answers all the night's batches: each return has the bytes it has when its batch is
    answered alone, and a held batch holds itself only, for the same records."""
    results = warehouse.read_table("recon_result", channel, date)
    journal = registry.read(NIGHTS / "ledger" / f"CORE_JOURNAL_{date:%Y%m%d}.csv", "ledger.journal").records
    batches = [read_again(path, layout) for path, layout in inbound(channel, date)]
    together = build_returns(batches, results, journal, date, tmp_path / "together")
    assert list(together) == [b.file for b in batches]
    for batch in batches:
        try:
            alone = build_return(batch, results, journal, date, tmp_path / "alone")
        except BatchHeld as held:
            assert isinstance(together[batch.file], BatchHeld) and together[batch.file].problems == held.problems
            continue
        assert together[batch.file].name == alone.name
        for a, b in ((together[batch.file], alone), (together[batch.file].with_name(alone.name + ".ok"),
                                                      alone.with_name(alone.name + ".ok"))):
            assert a.read_bytes() == b.read_bytes()
