"""The five batch channels' night at scale through the whole chain, stage by stage: time, records/s, peak memory.

    python bench/night_batch.py [--scale 1] [--channels cnaps2,tips,...] [--data DIR] [--workdir DIR]

Generates (once per scale, cached in `--data`/`batch_night_{scale}_v{NIGHT_VERSION}`) the night of T = 2026-11-21
of cnaps2, tips, housing_fund, utility and payroll, every file written by the format engine (`registry.write`,
the writers `sample_files/nights/make_nights.py` uses for the sample nights, with its banks, accounts and
headers), so each is byte-valid in its counterparty's format, and one core-journal extract
`CORE_JOURNAL_20261121.csv` (specs/ledger.md, written by the same engine) for all five channels. The realistic
night (scale 1; `--scale` multiplies the number of files, and CNAPS2's records):

| channel | files | records |
|---|---|---|
| cnaps2 | one reconciliation file (CNAPS2_DZMX) | 300,000 |
| tips | 1,000 3102 packs x 100 payments, and the day-end 3111 in parts of 10,000 | 100,000 + 99,000 |
| housing_fund | 300 BDC_BAT (BDC104) x 200 | 60,000 |
| utility | 2,000 DK batches x 100 (40 utilities, 50 batches each) | 200,000 |
| payroll | 1,000 batches x 200, half .xlsx, half .csv | 200,000 |

The journal posts every record (and per batch the control row: housing-fund centre, utility settlement,
payroll employer debit, equal to the batch's successful rows); one record in FAIL_EVERY fails (journal `F`,
CNAPS2 `PR09`), answered as a failure. Breaks, a few of each kind in each channel, in a few batches (those
batches are held, the others answered): an amount one fen off (AMOUNT_MISMATCH), a record never posted
(COUNTERPARTY_ONLY), a record posted twice (DUPLICATE), a journal row no file names (LEDGER_ONLY); CNAPS2 also
has a record whose status is spoiled in the file (quarantined), TIPS a pack whose AllAmt is off (rejected whole,
answered 94999, nothing posted).

Each channel's account is served by its own embedded SFTP server; the channels run one after another, each
through the chain of `duizhang run` (fetch, parse, load_ledger, match, validate, answer, clear, deliver,
report), each stage in its own process as an Airflow task would (parse is the CLI's one step for all files, not
one mapped task per file). Printed per channel and stage: seconds (in the stage, after its imports), records/s,
peak MB; then the total. Target (issue 9): the five channels in under a minute together.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "sample_files" / "nights"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

import make_nights as samples  # noqa: E402
import night  # noqa: E402
from formats import registry  # noqa: E402
from formats.flag import write_flag  # noqa: E402

T = night.T
NIGHT_VERSION = 1
CHANNELS = ("cnaps2", "tips", "housing_fund", "utility", "payroll")
FAIL_EVERY = 97
"""One record in so many fails in the core (journal F): answered as a failure, not a break."""
BREAK_BATCHES = {"amount": 1, "missing": 3, "duplicate": 5, "ledger_only": 7}
"""The batch (file index; for CNAPS2 the record index / 1000) holding each kind of break: those batches are held."""


@dataclass
class Batch:
    """One counterparty file to write."""
    name: str
    layout: str
    records: pa.Table
    header: dict | None = None
    trailer: dict | None = None
    options: dict = field(default_factory=dict)


@dataclass
class ChannelNight:
    files: list[Batch]
    items: pa.Table
    """One journal detail row per posted record: channel_ref, batch_no, account_no, dr_cr, amount_fen, status,
    and `batch` (the file index the breaks are placed by)."""
    ledger_channel: str
    control: bool
    """Whether each batch has a control row (the counter-entry of its successful rows)."""
    records: int


# --- vectorised helpers -----------------------------------------------------------------------------------------

def _digits(prefix: str, numbers, width: int) -> pa.Array:
    """`prefix` then each number zero-padded to `width` digits."""
    padded = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(pa.scalar(prefix), padded, "")


def _amounts(index: np.ndarray) -> np.ndarray:
    """Varied positive amounts in fen (1.00 to 9,999.99 yuan), the same for the same record every time."""
    return 100 + (index * 7919 + 13) % 999_900


def _table(layout: str, columns: dict, n: int) -> pa.Table:
    """The layout's detail table from arrays and constants (a constant is repeated n times; absent: null)."""
    schema = registry.get(layout).arrow_schema()
    arrays = []
    for f in schema:
        value = columns.get(f.name)
        if value is None:
            arrays.append(pa.nulls(n, f.type))
        elif isinstance(value, (pa.Array, pa.ChunkedArray, np.ndarray)):
            arrays.append(pa.array(value, f.type) if isinstance(value, np.ndarray) else value.cast(f.type))
        else:
            arrays.append(pa.repeat(pa.scalar(value, f.type), n))
    return pa.Table.from_arrays(arrays, schema=schema)


def _failed(index: np.ndarray) -> np.ndarray:
    return index % FAIL_EVERY == FAIL_EVERY // 2


def _posted(channel_ref, batch_no, account, dr_cr: str, amount, index: np.ndarray, per: int) -> pa.Table:
    """A batch channel's journal detail rows, one per record, all `dr_cr`; the failed ones `F`; `batch` is the index
    of the record's file (`per` records a file)."""
    return pa.table({"channel_ref": channel_ref, "batch_no": batch_no, "account_no": account,
                     "dr_cr": pa.repeat(pa.scalar(dr_cr), len(index)), "amount_fen": amount,
                     "status": pa.array(np.where(_failed(index), "F", "S")), "batch": index // per})


# --- the channels -------------------------------------------------------------------------------------------------

def cnaps2(scale: float) -> ChannelNight:
    n = max(10_000, round(300_000 * scale))
    i = np.arange(n)
    credit = i % 3 == 2
    failed = _failed(i)
    acct = _digits("6222", i, 12)
    other = pa.repeat(pa.scalar("6228000012121212"), n)
    msg_id = _digits(f"{T:%Y%m%d}", i, 12)
    amount = _amounts(i)
    dr = pa.array(np.where(credit, "C", "D"))
    records = _table("pboc.cnaps2_dzmx", {
        "record_type": "D", "msg_type": "beps.121", "msg_id": msg_id, "instr_bank": samples.BANK, "entrust_date": T,
        "dr_cr": dr, "payer_bank": pa.array(np.where(credit, "102100099996", samples.BANK)),
        "payer_acct": pc.if_else(pa.array(credit), pa.repeat(pa.scalar("11001234567890"), n), acct),
        "payer_name": "付款人", "payee_bank": pa.array(np.where(credit, samples.BANK, "103100000026")),
        "payee_acct": pc.if_else(pa.array(credit), acct, other), "payee_name": "收款人", "amount": amount,
        "status": pa.array(np.where(failed, "PR09", "PR00")),
        "process_time": dt.datetime.combine(T, dt.time(9, 30))}, n)
    header = {"record_type": "H", "bank_code": samples.BANK, "work_date": T, "file_seq": "01", "record_count": n,
              "debit_total": int(amount[~credit].sum()), "credit_total": int(amount[credit].sum()),
              "created_at": dt.datetime.combine(T + dt.timedelta(days=1), dt.time(1, 30))}
    items = pa.table({"channel_ref": pc.binary_join_element_wise(f"beps.121:{samples.BANK}:", msg_id, ""),
                      "batch_no": pa.nulls(n, pa.string()), "account_no": acct, "dr_cr": dr, "amount_fen": amount,
                      "status": pa.array(np.where(failed, "F", "S")), "batch": i // 1000})
    return ChannelNight([Batch(f"CNAPS2_DZMX_{samples.BANK}_{T:%Y%m%d}_01.txt", "pboc.cnaps2_dzmx", records,
                               header)], items, "CNAPS", False, n)


CNAPS_QUARANTINED = 9 * 1000 + 21
"""The CNAPS2 record whose status the file spoils (PR00 -> PRX0): quarantined, and never posted."""

TIPS_REJECTED_PACK = 9
"""The 3102 pack whose AllAmt is one fen off: rejected whole (94999), nothing of it posted."""


def tips(scale: float) -> ChannelNight:
    packs, per = max(10, round(1000 * scale)), 100
    n = packs * per
    i = np.arange(n)
    pack_no = _digits("", i // per + 1, 8)
    tra_no = _digits("", i % per + 1, 8)
    amount = _amounts(i)
    pay_acct = _digits("320011", i, 12)
    tax_types = pa.ListArray.from_arrays(pa.array(np.arange(n + 1), pa.int32()), pa.StructArray.from_arrays(
        [pa.repeat(pa.scalar("1"), n), pa.repeat(pa.scalar("增值税"), n), pa.repeat(pa.scalar("20261001"), n),
         pa.repeat(pa.scalar("20261031"), n), pa.array(amount)],
        names=["ProjectId", "TaxTypeName", "TaxStartDate", "TaxEndDate", "TaxTypeAmt"]))
    payments = _table("tips.3102", {
        "TraNo": tra_no, "PayOpBkCode": samples.PAY_BK, "PayAcct": pay_acct, "HandOrgName": "南京某某科技有限公司",
        "TraAmt": amount, "TaxVouNo": _digits("32", i, 12), "TaxPayName": "南京某某科技有限公司",
        "ProtocolNo": _digits("P", i, 11), "TaxTypeNum": 1, "TaxTypeList3102": tax_types}, n)
    files = []
    for p in range(packs):
        rows = payments.slice(p * per, per)
        no = f"{p + 1:08d}"
        total = int(amount[p * per:(p + 1) * per].sum()) + (1 if p == TIPS_REJECTED_PACK else 0)
        header = {**samples.tips_head(T, "3102", p + 1), "TaxOrgCode": samples.TAX_ORG, "EntrustDate": T,
                  "PackNo": no, "AllNum": per, "AllAmt": total, "ReturnTerm": 1, "HandleType": "1",
                  "PayeeBankNo": "011301000007", "PayeeOrgCode": "1320100", "PayeeAcct": "270100000001",
                  "PayeeName": "国家金库南京市中心支库", "PayBkCode": samples.PAY_BK}
        files.append(Batch(f"TIPS_3102_{samples.TAX_ORG}_{T:%Y%m%d}_{no}.xml", "tips.3102", rows, header))
    batch_no = pc.binary_join_element_wise(f"{samples.TAX_ORG}{T:%Y%m%d}", pack_no, "")
    failed = _failed(i)
    posted = (i // per) != TIPS_REJECTED_PACK
    items = _posted(pc.binary_join_element_wise(batch_no, tra_no, ""), batch_no, pay_acct, "D", amount, i,
                    per).filter(posted)
    # the day-end 3111 (ChkAcctType 1): what TIPS saw deducted (every payment that did not fail), in parts
    deducted = pa.array(posted & ~failed)
    compare = _table("tips.3111", {
        "PayOpBkCode": samples.PAY_BK, "PayAcct": pay_acct, "OriTaxOrgCode": samples.TAX_ORG, "OriEntrustDate": T,
        "OriPackNo": pack_no, "OriTraNo": tra_no, "TraAmt": amount, "TaxVouNo": payments["TaxVouNo"],
        "TaxPayName": "南京某某科技有限公司", "ProtocolNo": payments["ProtocolNo"]}, n).filter(deducted)
    part_size = 10_000
    parts = -(-compare.num_rows // part_size)
    all_amt = pc.sum(compare["TraAmt"]).as_py()
    for k in range(parts):
        part = compare.slice(k * part_size, part_size)
        header = {**samples.tips_head(T, "3111", 10 + k + 1), "PayBkCode": samples.PAY_BK, "ChkDate": T,
                  "ChkAcctOrd": "0001", "PriorChkAcctOrd": "", "PayeeBankNo": "011301000007", "ChkAcctType": "1",
                  "AllNum": compare.num_rows, "AllAmt": all_amt, "ChildPackNum": parts, "CurPackNo": k + 1,
                  "CurPackNum": part.num_rows, "CurPackAmt": pc.sum(part["TraAmt"]).as_py()}
        files.append(Batch(f"TIPS_3111_{samples.PAY_BK}_{T:%Y%m%d}_0001_{k + 1}.xml", "tips.3111", part, header))
    return ChannelNight(files, items, "TIPS", False, n + compare.num_rows)


def housing_fund(scale: float) -> ChannelNight:
    batches, per = max(10, round(300 * scale)), 200
    n = batches * per
    i = np.arange(n)
    seq = i % per + 1
    amount = _amounts(i)
    acct = _digits("621700001111", i, 8)
    batch_no = _digits(f"{samples.UNIT_NO}{T:%Y%m%d}", i // per + 1, 6)
    records = _table("housing_fund.bdc_bat", {
        "seq_no": seq, "amount": amount, "acct_no": acct, "acct_name": "张三", "summary": "",
        "fund_acct": _digits("32010000", i, 10), "fund_txn_no": _digits(f"GJ{T:%Y%m%d}", i, 9)}, n)
    files = []
    for b in range(batches):
        no = batch_no[b * per].as_py()
        header = {"record_type": "H", "tx_code": "BDC104", "batch_no": no, "center_acct": samples.CENTRE_ACCT,
                  "center_acct_name": "南京住房公积金管理中心", "entrust_date": T, "record_count": per,
                  "total_amount": int(amount[b * per:(b + 1) * per].sum()), "bus_type": "01", "summary": ""}
        files.append(Batch(f"BDC_BAT_{no}.DAT", "housing_fund.bdc_bat", records.slice(b * per, per), header))
    items = _posted(pc.binary_join_element_wise(batch_no, pc.cast(pa.array(seq), pa.string()), ":"), batch_no, acct,
                    "D", amount, i, per)
    return ChannelNight(files, items, "HOUSING_FUND", True, n)


UTILITY_BATCHES_EACH = 50


def utility(scale: float) -> ChannelNight:
    batches, per = max(10, round(2000 * scale)), 100
    n = batches * per
    i = np.arange(n)
    b = i // per
    serial = _digits("", i % per + 1, 8)
    amount = _amounts(i)
    acct = _digits("621700002222", i, 8)
    # 12 characters, unique across utilities: utility, date, batch of the utility
    batch_no = pc.binary_join_element_wise(_digits("B", b // UTILITY_BATCHES_EACH, 3),
                                           _digits(f"{T:%y%m%d}", b % UTILITY_BATCHES_EACH + 1, 2), "")
    records = _table("utility.dk", {
        "record_type": "D", "serial_no": serial, "contract_no": _digits("WA", i, 10), "account_no": acct,
        "account_name": "张三", "amount_fen": amount, "billing_period": "202610", "remark": "", "filler": ""}, n)
    files = []
    for k in range(batches):
        code = f"UTIL{k // UTILITY_BATCHES_EACH:04d}"
        header = {"record_type": "H", "utility_code": code, "biz_type": "01", "batch_no": batch_no[k * per].as_py(),
                  "batch_date": T, "record_count": per, "total_amount_fen": int(amount[k * per:(k + 1) * per].sum()),
                  "settle_account": f"320018812360525{k // UTILITY_BATCHES_EACH:05d}", "filler": ""}
        name = f"DK_{code}_{T:%Y%m%d}_{k % UTILITY_BATCHES_EACH + 1:02d}.txt"
        files.append(Batch(name, "utility.dk", records.slice(k * per, per), header))
    items = _posted(pc.binary_join_element_wise(batch_no, serial, ""), batch_no, acct, "D", amount, i, per)
    return ChannelNight(files, items, "UTILITY", True, n)


def payroll(scale: float) -> ChannelNight:
    batches, per = max(10, round(1000 * scale)), 200
    n = batches * per
    i = np.arange(n)
    seq = i % per + 1
    amount = _amounts(i)
    acct = _digits("62220212", i, 10)
    employer = _digits("EMP", i // per + 1, 7)
    batch_no = pc.binary_join_element_wise(employer, pa.scalar(f"{T:%Y%m%d}01"), "")
    records = _table("payroll.batch_xlsx", {"seq_no": seq, "account_no": acct, "account_name": "张三",
                                            "amount_fen": amount, "remark": "工资"}, n)
    files = []
    for k in range(batches):
        rows, total = records.slice(k * per, per), int(amount[k * per:(k + 1) * per].sum())
        name = f"DF_{employer[k * per].as_py()}_{T:%Y%m%d}_01"
        payer = {"payer_acct": samples.EMPLOYER_ACCT, "payer_name": "XX科技有限公司", "purpose": "工资"}
        if k % 2:
            files.append(Batch(f"{name}.csv", "payroll.batch_csv", rows,
                               payer | {"record_count": per, "total_amount_fen": total}))
        else:
            files.append(Batch(f"{name}.xlsx", "payroll.batch_xlsx", rows,
                               payer | {"title": "XX科技有限公司2026年11月工资"},
                               {"record_count": per, "total_amount_fen": total}, {"business_date": T}))
    items = _posted(pc.binary_join_element_wise(batch_no, pc.cast(pa.array(seq), pa.string()), ":"), batch_no, acct,
                    "C", amount, i, per)
    return ChannelNight(files, items, "PAYROLL", True, n)


BUILD = {"cnaps2": cnaps2, "tips": tips, "housing_fund": housing_fund, "utility": utility, "payroll": payroll}


# --- the journal --------------------------------------------------------------------------------------------------

def journal(c: ChannelNight, digit: int) -> pa.Table:
    """The core's rows for one channel: every item posted, with the breaks placed, and the control rows."""
    items = c.items
    if c.ledger_channel == "CNAPS":
        items = items.filter(pc.not_equal(pc.cast(pa.array(np.arange(items.num_rows)), pa.int64()),
                                          CNAPS_QUARANTINED))
    position = pa.array(np.arange(items.num_rows))
    first = {kind: pc.index(items["batch"], batch).as_py() + 7 for kind, batch in BREAK_BATCHES.items()}
    amount = pc.if_else(pc.equal(position, first["amount"]), pc.add(items["amount_fen"], 1), items["amount_fen"])
    items = items.set_column(items.schema.get_field_index("amount_fen"), "amount_fen", amount)
    stray = items.slice(first["ledger_only"], 1)
    stray = stray.set_column(0, "channel_ref", pc.binary_join_element_wise(stray["channel_ref"], "X", ""))
    items = pa.concat_tables([items.filter(pc.not_equal(position, first["missing"])),
                              items.slice(first["duplicate"], 1), stray])
    if c.control:   # per batch the counter-entry of its successful rows (debit +, credit -)
        ok = items.filter(pc.equal(items["status"], "S"))
        signed = pc.if_else(pc.equal(ok["dr_cr"], "D"), ok["amount_fen"], pc.negate(ok["amount_fen"]))
        net = pa.table({"batch_no": ok["batch_no"], "net": signed}).group_by("batch_no").aggregate([("net", "sum")])
        net = net.sort_by("batch_no")
        controls = pa.table({"channel_ref": net["batch_no"], "batch_no": net["batch_no"],
                             "account_no": pa.repeat(pa.scalar(samples.CENTRE_ACCT), net.num_rows),
                             "dr_cr": pc.if_else(pc.greater(net["net_sum"], 0), "C", "D"),
                             "amount_fen": pc.abs(net["net_sum"]), "status": pa.repeat(pa.scalar("S"), net.num_rows),
                             "batch": pa.nulls(net.num_rows, pa.int64())})
        items = pa.concat_tables([items, controls.cast(items.schema)])
    n = items.num_rows
    failed = pc.equal(items["status"], "F")
    return _table("ledger.journal", {
        "acct_date": T, "journal_no": _digits(f"{T:%Y%m%d}{digit}", np.arange(1, n + 1), 11), "seq_no": 1,
        "channel": c.ledger_channel, "channel_ref": items["channel_ref"], "batch_no": items["batch_no"],
        "txn_time": dt.datetime.combine(T, dt.time(10)), "account_no": items["account_no"], "account_name": "张三",
        "dr_cr": items["dr_cr"], "amount_fen": items["amount_fen"], "currency": "CNY", "status": items["status"],
        "reason_code": pc.if_else(failed, "E001", pa.scalar(None, pa.string())), "reversal_of": None,
        "memo": c.ledger_channel.lower()}, n)


# --- generate and cache -------------------------------------------------------------------------------------------

def generate(scale: float, data: Path) -> Path:
    """The night's folder: `{channel}/outbox/YYYYMMDD/` per channel and `ledger/`, each file with its flag.
    Cached: a folder whose journal flag exists is complete (the journal is written last)."""
    root = data / f"batch_night_{scale:g}_v{NIGHT_VERSION}"
    journal_path = root / "ledger" / f"CORE_JOURNAL_{T:%Y%m%d}.csv"
    if journal_path.with_name(journal_path.name + ".ok").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rows = []
    for channel in CHANNELS:
        start = time.perf_counter()
        c = BUILD[channel](scale)
        outbox = root / channel / "outbox" / f"{T:%Y%m%d}"
        outbox.mkdir(parents=True)
        for f in c.files:
            registry.write(outbox / f.name, f.layout, f.records, f.header, f.trailer, **f.options)
            write_flag(outbox / f.name, f.records.num_rows)
        if channel == "cnaps2":
            _spoil_status(outbox / c.files[0].name, CNAPS_QUARANTINED, c.files[0].records.num_rows)
        rows.append(journal(c, samples.CHANNEL_DIGIT[c.ledger_channel]))
        print(f"generated {channel}: {len(c.files):,} files, {c.records:,} records, "
              f"{time.perf_counter() - start:.1f} s", flush=True)
    journal_path.parent.mkdir(parents=True)
    ledger = pa.concat_tables(rows)
    registry.write(journal_path, "ledger.journal", ledger)
    write_flag(journal_path, ledger.num_rows)
    return root


def _spoil_status(path: Path, index: int, records: int) -> None:
    """Record `index`'s status PR00 -> PRX0 (the reader quarantines it with its line); the flag is rewritten."""
    lines = path.read_bytes().split(b"\n")
    line = lines[index + 1]   # after the header line
    assert line.count(b"|PR00|") == 1, line
    lines[index + 1] = line.replace(b"|PR00|", b"|PRX0|")
    path.write_bytes(b"\n".join(lines))
    write_flag(path, records)


# --- run ------------------------------------------------------------------------------------------------------------

def run_channel(channel: str, account: Path, ledger: Path, workdir: Path, records: int) -> tuple[float, int]:
    """The chain of one channel, a process per stage, served over SFTP; prints a line per stage."""
    from connectors.sftp_server import EmbeddedSftpServer
    from duizhang import pipeline
    from duizhang.quality import validate
    from duizhang.workdir import Workdir

    shutil.rmtree(account / "inbox", ignore_errors=True)   # what the last run delivered
    wd = Workdir(workdir)
    server = EmbeddedSftpServer(account)
    server.start()
    source = server.endpoint()
    stages = [("fetch", pipeline.fetch, (channel, T, source, wd)),
              ("parse", pipeline.parse, (channel, T, wd)),
              ("load_ledger", pipeline.load_ledger, (T, str(ledger), wd)),
              ("match", pipeline.match, (channel, T, wd)),
              ("validate", validate, (channel, T, wd)),
              ("answer", pipeline.answer, (channel, T, wd)),
              ("clear", pipeline.clear, (channel, T, wd)),
              ("deliver", pipeline.deliver, (channel, T, source, wd)),
              ("report", pipeline.report, (channel, T, wd))]
    try:
        total, peak, failed = night.run_stages(stages, records, prefix=f"{channel:<13}")
    finally:
        server.stop()
    if failed:
        raise SystemExit(f"{channel}: a stage failed")
    print(f"{channel:<13}{'(channel)':<12}{total:>9.2f}{records / total:>14,.0f}{'':>9}{peak / 2**20:>10,.0f}",
          flush=True)
    return total, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--channels", default=",".join(CHANNELS))
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--workdir", type=Path, help="default: a fresh folder under --data")
    args = parser.parse_args()
    root = generate(args.scale, args.data)
    workdir = args.workdir or args.data / f"work_batch_{args.scale:g}"
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nbatch channels' night, scale {args.scale:g}, workdir {workdir}")
    print(f"{'channel':<13}{'stage':<12}{'seconds':>9}{'records/s':>14}{'CPU s':>9}{'peak MB':>10}  result")
    wall = time.perf_counter()
    total, peak, records = 0.0, 0, 0
    for channel in args.channels.split(","):
        n = _records(root / channel)
        seconds, rss = run_channel(channel, root / channel, root / "ledger", workdir, n)
        total, peak, records = total + seconds, max(peak, rss), records + n
    print(f"{'total':<25}{total:>9.2f}{records / total:>14,.0f}{'':>9}{peak / 2**20:>10,.0f}  "
          f"({records:,} records; {time.perf_counter() - wall:.1f} s wall with process starts; target 60 s)")
    return 0


def _records(account: Path) -> int:
    """The channel's records, from its files' flags."""
    from formats.flag import parse_flag
    return sum(parse_flag(p.read_bytes(), p.name).record_count
               for p in (account / "outbox" / f"{T:%Y%m%d}").glob("*.ok"))


if __name__ == "__main__":
    sys.exit(main())
