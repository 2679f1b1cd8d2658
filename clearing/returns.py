"""Return files (回盘): the bank's answer to every batch it executed, in the counterparty's own format.

- utilities: `HP_{utility_code}_{YYYYMMDD}_{NN}.txt` for `DK_...` (specs/utilities.md, "Return file");
- housing fund: `BDC_RES_{batch_no}.DAT` for `BDC_BAT_...` (specs/housing_fund.md, "Batch result");
- TIPS: the 2102 for a 3102, including the whole-pack rejection (specs/tips.md, "2102");
- payroll: `DF_..._NN_RESULT.xlsx|.csv` in the batch's own format (specs/payroll.md, "Result file").

A return is built from the ledger's outcome for every inbound record, never guessed: each record of the batch
needs exactly one final outcome in `recon_result` (MATCHED with its one journal row, or QUARANTINED); otherwise
`BatchHeld` says which records hold the batch and nothing is written. What each record answers:
journal status `S` is a success; `F` a failure with the counterparty's code for the journal's reason code (an
unlisted reason is the spec's "other" code); `R` (succeeded, then reversed: nothing stays collected) a failure with
the "other" code; a quarantined record a failure with the "other" code and the reason in the message. Dates the
bank writes derive from the business date T (T+1 for processing, reply and work dates; the journal's accounting
date for the date of a debit), so a rerun writes the same bytes.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from formats import registry
from formats.errors import FileRejected, Terminal
from formats.flag import write_flag
from formats.result import OutFile, ReadResult, empty_quarantine
from formats.specs.housing_fund import bdc_res
from formats.specs.payroll import common as payroll
from formats.specs.tips import cfx
from formats.specs.utility import hp

FINAL = ("MATCHED", "QUARANTINED")
"""The outcomes a return can answer; any other outcome of a record (a break, PENDING) holds its batch."""
QUARANTINE_TEXT = "记录校验失败"
"""Opens the message of a record answered as quarantined ("record failed validation"), then the field."""


class BatchHeld(Terminal):
    """A batch whose records do not all have exactly one final outcome: its return is not written.

    `problems` lists (line, outcome, why) for every record that holds it, in line order."""

    def __init__(self, file: str, problems: list[tuple[int | None, str, str]], records: int) -> None:
        self.file, self.problems, self.records = file, problems, records
        shown = "; ".join(f"line {line} {outcome}: {why}" if line is not None else f"{outcome}: {why}"
                          for line, outcome, why in problems[:10])
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        super().__init__(f"{file}: return held, {len(problems)} of {records} record(s) have no single final "
                         f"outcome: {shown}{more}")


@dataclass(frozen=True)
class InboundBatch:
    """One inbound batch file as the format engine read it."""

    file: str                     # the inbound file's name: recon_result's `source_file`
    layout: str                   # the inbound layout (`utility.dk`, `tips.3102`, ...)
    header: dict | None
    records: pa.Table             # parsed detail records, with `_line`
    quarantine: pa.Table          # quarantined detail records, with `_line`, `_field`, `_expected`
    trailer: dict | None = None
    encoding: str | None = None   # XML: the encoding the request declared (the answer uses it)
    rejected: str | None = None   # the check that rejected the batch whole (TIPS 94999, payroll 批次校验失败)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_read(cls, result: ReadResult) -> InboundBatch:
        return cls(result.file, result.layout, result.header, result.records, result.quarantine, result.trailer,
                   result.extra.get("encoding"))

    @classmethod
    def from_parsed(cls, file: str, layout: str, header: dict[str, str], records: pa.Table, quarantine: pa.Table,
                    encoding: str | None = None) -> InboundBatch:
        """A batch as the parse step stored it: its Parquet records and quarantine (the columns the parse step adds
        for analysts dropped), and its header values as text (manifest.json: `str` of each value, None left
        out), typed again by the layout's fields (Arrow casts text back to integers, dates and timestamps)."""
        spec = registry.get(layout)
        typed = {k: _from_text(v, _header_types(layout).get(k, pa.string())) for k, v in header.items()}
        return cls(file, layout, typed, records, quarantine.select(empty_quarantine(spec).schema.names),
                   encoding=encoding)

    @classmethod
    def from_rejection(cls, err: FileRejected) -> InboundBatch:
        """A batch rejected whole: what was read before the rejection, and the failed check in words."""
        if err.partial is None:
            raise err
        check = err.problem + (f": expected {err.expected}, found {err.found}"
                               if err.expected is not None or err.found is not None else "")
        batch = cls.from_read(err.partial)
        return cls(batch.file, batch.layout, batch.header, batch.records, batch.quarantine, batch.trailer,
                   batch.encoding, rejected=check)


@functools.cache
def _header_types(layout: str) -> dict[str, pa.DataType]:
    spec = registry.get(layout)
    return {f.name: f.type.arrow_type for r in spec.records if r is not spec.detail for f in r.fields}


TEXT_TO_VALUE = {pa.string(): str, pa.int64(): int, pa.date32(): dt.date.fromisoformat,
                 pa.timestamp("s"): dt.datetime.fromisoformat}
"""The inverse of `str` for the field types' Arrow types (an Arrow cast of one value costs 25 us: 40,000 of
them in a night of 2,000 batches); another type is cast by Arrow."""


def _from_text(text: str, arrow_type: pa.DataType):
    if convert := TEXT_TO_VALUE.get(arrow_type):
        return convert(text)
    return pa.array([text], pa.string()).cast(arrow_type)[0].as_py()


def build_returns(batches: list[InboundBatch], results: pa.Table, journal: pa.Table, date: dt.date,
                  out_dir: Path) -> dict[str, Path | BatchHeld]:
    """Write the return of every batch and its flag into `out_dir`; per batch file name, the return's path, or the
    `BatchHeld` that holds it (nothing of it written) when a record has no single final outcome.

    `results`: recon_result rows (any channel and file; each batch's counterparty rows are selected by
    `source_file`); `journal`: the ledger extract rows (JOURNAL_SCHEMA) the results' `matched_with` point to (for a
    batch rejected whole: the channel's rows, which must show nothing posted); `date`: the business date T the
    batches were executed on. The batches of a layout are answered by one set of queries (a night has thousands
    of batches, and the queries of one batch cost about 30 ms); only the files are written one by one."""
    by_layout: dict[str, list[InboundBatch]] = {}
    for batch in batches:
        if batch.layout not in BUILDERS:
            raise KeyError(f"no return for layout {batch.layout!r}; known: {', '.join(sorted(BUILDERS))}")
        by_layout.setdefault(batch.layout, []).append(batch)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sent: dict[str, Path | BatchHeld] = {}
    for layout, group in by_layout.items():
        sent |= BUILDERS[layout](group, results, journal, date, out_dir)
    return {batch.file: sent[batch.file] for batch in batches}


def build_return(batch: InboundBatch, results: pa.Table, journal: pa.Table, date: dt.date, out_dir: Path) -> Path:
    """`build_returns` of one batch: the return's path; raises `BatchHeld` (nothing written)."""
    sent = build_returns([batch], results, journal, date, out_dir)[batch.file]
    if isinstance(sent, BatchHeld):
        raise sent
    return sent


def answers(batches: list[InboundBatch], results: pa.Table,
            journal: pa.Table) -> tuple[duckdb.DuckDBPyConnection, dict[str, BatchHeld]]:
    """A DuckDB connection holding `answer`: every record (parsed or quarantined) of every batch whose records all
    have exactly one final outcome, in `_file`, `_line` order, with its detail fields and `quarantined`,
    `outcome`, `status`, `reason_code`, `journal_no`, `acct_date`, `quarantine_field`, `reason`; and the
    `BatchHeld` of every other batch, by file name."""
    con = _lines(batches)
    con.register("results", results)
    con.register("journal", journal)
    con.execute("""
        CREATE TEMP TABLE res AS
        SELECT source_file AS _file, source_line, count(*) AS n, min(outcome) AS outcome,
               max(outcome) AS other_outcome, min(reason) AS reason, min(matched_with) AS matched_with
        FROM results WHERE side = 'counterparty' AND source_file IN (SELECT _file FROM files)
        GROUP BY source_file, source_line""")
    con.execute("""
        CREATE TEMP TABLE answer AS
        SELECT l.*, coalesce(r.n, 0) AS n_outcomes, r.outcome, r.other_outcome, r.reason, r.matched_with,
               j.status, j.reason_code, j.journal_no, j.acct_date,
               count(*) OVER (PARTITION BY l._file, l._line) AS n_rows
        FROM lines l
        LEFT JOIN res r ON r._file = l._file AND r.source_line = l._line
        -- overlapping extracts may repeat a row: identical copies are one row, different ones hold the batch
        LEFT JOIN (SELECT DISTINCT journal_no, seq_no, status, reason_code, acct_date FROM journal) j
               ON r.outcome = 'MATCHED' AND j.journal_no || ':' || j.seq_no = r.matched_with
        ORDER BY l._file, l._line""")
    final = ", ".join(f"'{o}'" for o in FINAL)
    problems = con.sql(f"""
        SELECT DISTINCT _file, _line, coalesce(outcome, 'NO OUTCOME'),
               CASE WHEN n_rows > 1 THEN 'journal row ' || matched_with || ' is given twice with different contents'
                    WHEN n_outcomes = 0 THEN 'no reconciliation result for this record'
                    WHEN n_outcomes > 1 THEN n_outcomes || ' results (' || outcome || ', ' || other_outcome
                                             || '): a record needs exactly one'
                    WHEN outcome NOT IN ({final}) THEN reason
                    WHEN outcome = 'MATCHED' AND quarantined THEN 'matched, but the file quarantined this record'
                    WHEN outcome = 'MATCHED' AND status IS NULL THEN 'matched to journal row ' || matched_with
                                             || ', which is not in the journal given'
               END AS why
        FROM answer WHERE why IS NOT NULL
        UNION ALL
        SELECT _file, source_line, outcome, 'a result for line ' || source_line || ', which the file does not have'
        FROM res r WHERE NOT EXISTS (SELECT 1 FROM lines l WHERE l._file = r._file AND l._line = r.source_line)
        ORDER BY 1, 2, 3, 4""").fetchall()
    held: dict[str, list[tuple[int | None, str, str]]] = {}
    for file, line, outcome, why in problems:
        held.setdefault(file, []).append((line, outcome, why))
    if not held:
        return con, {}
    totals = dict(con.execute("SELECT _file, count(*) FROM lines GROUP BY _file").fetchall())
    con.execute("DELETE FROM answer WHERE _file IN (SELECT unnest(?))", [list(held)])
    return con, {file: BatchHeld(file, found, totals.get(file, 0)) for file, found in held.items()}


@functools.cache
def _database() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def _connect() -> duckdb.DuckDBPyConnection:
    """A connection of its own (its registrations and temporary tables are its own) to one in-memory database
    per process: a new database costs about 25 ms, and a night answers thousands of batches."""
    return _database().cursor()


def _lines(batches: list[InboundBatch]) -> duckdb.DuckDBPyConnection:
    """A connection holding `files` (each batch's `_file`) and `lines`: every record of the batches, parsed or
    quarantined, with `_file`, `quarantined` and `quarantine_field`."""
    def with_file(part: str) -> pa.Table:
        return pa.concat_tables([getattr(b, part).append_column("_file", pa.array([b.file] * getattr(b, part).num_rows,
                                                                                  pa.string())) for b in batches],
                                promote_options="permissive")
    con = _connect()
    con.register("files", pa.table({"_file": pa.array([b.file for b in batches], pa.string())}))
    con.register("records", with_file("records"))
    con.register("quarantine", with_file("quarantine"))
    con.execute("""
        CREATE TEMP TABLE lines AS
        SELECT * EXCLUDE (_record, _field, _expected, _actual, _raw), true AS quarantined,
               _field AS quarantine_field
        FROM quarantine
        UNION ALL BY NAME
        SELECT *, false AS quarantined, NULL::VARCHAR AS quarantine_field FROM records""")
    return con


def _each_answered(batches: list[InboundBatch], results: pa.Table, journal: pa.Table, codes: tuple[dict, dict],
                   details_sql: str, split: tuple[str, str, str], plan, *, params: list | None = None,
                   tables: dict[str, pa.Table] | None = None) -> dict[str, Path | BatchHeld]:
    """The returns of `batches` (one layout, none rejected whole) from one set of queries: `answers` of them all;
    `details_sql` over `answer` (with `reason_map` and `code_text` made from `codes`, and `tables`) selects
    `_file` and the return's detail fields, ordered by `_file, _line`; then for each batch not held,
    `plan(batch, its split)` gives its return (layout and file), and the returns of a layout are written together. `split` = (code column, success code,
    amount column) makes the split: (success count, success amount, failure count, failure amount)."""
    if not batches:
        return {}
    con, held = answers(batches, results, journal)
    try:
        _codes(con, "reason_map", codes[0], "reason", "code")
        _codes(con, "code_text", codes[1], "code", "text")
        for name, table in (tables or {}).items():
            con.register(name, table)
        details = con.sql(details_sql, params=params).to_arrow_table()
    finally:
        con.close()
    splits = _splits(details, *split)
    at = runs(details["_file"])
    planned = {b.file: plan(b, splits.get(b.file, (0, 0, 0, 0))) for b in batches if b.file not in held}
    return held | _write_returns(details.drop_columns(["_file"]), {
        file: (layout, replace(out, offset=at.get(file, (0, 0))[0], length=at.get(file, (0, 0))[1]))
        for file, (layout, out) in planned.items()})


def _write_returns(details: pa.Table, planned: dict[str, tuple[str, OutFile]]) -> dict[str, Path]:
    """Per batch file, its return (layout, file: its rows a slice of `details`): the returns of each layout written
    in one `registry.write_files`, then each one's flag; per batch file, the return's path."""
    by_layout: dict[str, list[OutFile]] = {}
    for layout, out in planned.values():
        by_layout.setdefault(layout, []).append(out)
    for layout, files in by_layout.items():
        registry.write_files(layout, details, files)
    for _, out in planned.values():
        write_flag(out.path, out.length)
    return {file: out.path for file, (_, out) in planned.items()}


def runs(sorted_names: pa.ChunkedArray) -> dict[str, tuple[int, int]]:
    """(offset, length) of each value's run in a sorted column: a table sorted by file cut into its files' parts."""
    if not len(sorted_names):
        return {}
    runs = pc.run_end_encode(sorted_names.combine_chunks())
    ends = runs.run_ends.to_pylist()
    return {name: (start, end - start) for name, start, end in zip(runs.values.to_pylist(), [0, *ends[:-1]], ends)}


def _codes(con: duckdb.DuckDBPyConnection, name: str, mapping: dict[str, str], key: str, value: str) -> None:
    con.register(name, pa.table({key: list(mapping), value: list(mapping.values())}))


def _answer_code(success: str, other: str) -> str:
    """SQL over `answer` + the `reason_map` relation: the counterparty's code for each record."""
    return (f"CASE WHEN quarantined OR outcome = 'QUARANTINED' THEN '{other}' WHEN status = 'S' THEN '{success}' "
            f"WHEN status = 'F' THEN coalesce((SELECT code FROM reason_map m WHERE m.reason = reason_code), "
            f"'{other}') ELSE '{other}' END")


def _quarantine_text(width_bytes: int | None = None) -> str:
    """SQL: the message of a quarantined record. With a fixed width only the field is named (it must fit);
    otherwise the reconciliation's reason (account fields masked there) follows."""
    if width_bytes:
        return f"'{QUARANTINE_TEXT}: ' || coalesce(quarantine_field, '')"
    return f"'{QUARANTINE_TEXT}: ' || coalesce(reason, quarantine_field, '')"


def _answer_name(file: str, pattern: str, answer: str) -> str:
    """The return's name from the inbound file's name (the specs name one from the other)."""
    if not re.fullmatch(pattern, file):
        raise ValueError(f"{file}: not an inbound batch name the return can be named from (expected {pattern})")
    return re.sub(pattern, answer, file)


def _next_day(date: dt.date) -> dt.date:
    return date + dt.timedelta(days=1)


# --- utilities: HP_ ------------------------------------------------------------------------------------------

def utility_hp(batches: list[InboundBatch], results: pa.Table, journal: pa.Table, date: dt.date,
               out_dir: Path) -> dict[str, Path | BatchHeld]:
    def plan(batch: InboundBatch, split: tuple[int, int, int, int]) -> tuple[str, OutFile]:
        h = batch.header
        header = {"record_type": "H", "utility_code": h["utility_code"], "biz_type": h["biz_type"],
                  "batch_no": h["batch_no"], "batch_date": h["batch_date"], "record_count": h["record_count"],
                  "total_amount_fen": h["total_amount_fen"], "success_count": split[0],
                  "success_amount_fen": split[1], "fail_count": split[2], "fail_amount_fen": split[3],
                  "process_date": _next_day(date), "filler": ""}
        name = _answer_name(batch.file, r"DK_(\w{8}_\d{8}_\d\d\.txt)", r"HP_\1")  # NN equals the DK file's
        return "utility.hp", OutFile(out_dir / name, header=header)

    return _each_answered(batches, results, journal, (hp.REASON_TO_RESULT, hp.RESULT_CODES), f"""
        WITH a AS (SELECT *, {_answer_code(hp.SUCCESS, '9999')} AS result_code FROM answer)
        SELECT _file, 'D' AS record_type, serial_no, coalesce(contract_no, '') AS contract_no,
               coalesce(account_no, '') AS account_no, coalesce(account_name, '') AS account_name, amount_fen,
               CASE WHEN result_code = '{hp.SUCCESS}' THEN amount_fen ELSE 0 END AS deducted_fen, result_code,
               CASE WHEN quarantined OR outcome = 'QUARANTINED' THEN {_quarantine_text(40)}
                    ELSE (SELECT text FROM code_text t WHERE t.code = result_code) END AS result_msg,
               CASE WHEN result_code = '{hp.SUCCESS}' THEN journal_no ELSE '' END AS journal_no
        FROM a ORDER BY _file, _line""", ("result_code", hp.SUCCESS, "amount_fen"), plan)


def _splits(details: pa.Table, code: str, success: str, amount: str) -> dict[str, tuple[int, int, int, int]]:
    """Per `_file`: (success count, success amount, failure count, failure amount); an unreadable amount counts
    as 0."""
    con = _connect()
    try:
        con.register("t", details)
        rows = con.execute(f"""
            SELECT _file, count(*) FILTER (WHERE {code} = '{success}'),
                   CAST(coalesce(sum({amount}) FILTER (WHERE {code} = '{success}'), 0) AS BIGINT),
                   count(*) FILTER (WHERE {code} <> '{success}'),
                   CAST(coalesce(sum({amount}) FILTER (WHERE {code} <> '{success}'), 0) AS BIGINT)
            FROM t GROUP BY _file""").fetchall()
    finally:
        con.close()
    return {file: tuple(int(v) for v in split) for file, *split in rows}


# --- housing fund: BDC_RES ------------------------------------------------------------------------------------

def housing_fund_res(batches: list[InboundBatch], results: pa.Table, journal: pa.Table, date: dt.date,
                     out_dir: Path) -> dict[str, Path | BatchHeld]:
    # BDC104 collects from the item's account into the centre's; BDC103 pays from the centre's.
    centres = pa.Table.from_pylist(
        [{"_file": b.file, "centre_acct": b.header["center_acct"], "centre_name": b.header["center_acct_name"],
          "item_pays": b.header["tx_code"] == "BDC104"} for b in batches],
        schema=pa.schema([("_file", pa.string()), ("centre_acct", pa.string()), ("centre_name", pa.string()),
                          ("item_pays", pa.bool_())]))

    def plan(batch: InboundBatch, split: tuple[int, int, int, int]) -> tuple[str, OutFile]:
        h = batch.header
        batch_no = h["batch_no"]
        summary = {"date": _next_day(date), "unit_no": batch_no[:15], "batch_no": batch_no, "tx_code": h["tx_code"],
                   "bus_type": h["bus_type"], "currency": "156", "cash_flag": "0", "total_count": h["record_count"],
                   "total_amount": h["total_amount"], "succ_count": split[0], "succ_amount": split[1],
                   "fail_count": split[2], "fail_amount": split[3], "summary": h.get("summary") or ""}
        name = _answer_name(batch.file, r"BDC_BAT_(\d+\.DAT)", r"BDC_RES_\1")
        return "housing_fund.bdc_res", OutFile(out_dir / name, header=summary)

    item = ("coalesce(acct_no, '')", "coalesce(acct_name, '')")
    return _each_answered(batches, results, journal, (bdc_res.REASON_TO_RESP, bdc_res.RESP_CODES), f"""
        WITH a AS (SELECT answer.*, c.centre_acct, c.centre_name, c.item_pays,
                          {_answer_code(bdc_res.SUCCESS, '3999')} AS resp_code
                   FROM answer JOIN centres c USING (_file))
        SELECT _file, seq_no, '156' AS currency, '0' AS cash_flag, amount,
               CASE WHEN item_pays THEN {item[0]} ELSE centre_acct END AS payer_acct,
               CASE WHEN item_pays THEN {item[1]} ELSE centre_name END AS payer_name, '' AS payer_balance,
               CASE WHEN item_pays THEN centre_acct ELSE {item[0]} END AS payee_acct,
               CASE WHEN item_pays THEN centre_name ELSE {item[1]} END AS payee_name, '' AS payee_balance, resp_code,
               CASE WHEN quarantined OR outcome = 'QUARANTINED' THEN {_quarantine_text()}
                    ELSE (SELECT text FROM code_text t WHERE t.code = resp_code) END AS resp_msg,
               CASE WHEN resp_code = '{bdc_res.SUCCESS}' THEN acct_date END AS host_date,
               CASE WHEN resp_code = '{bdc_res.SUCCESS}' THEN journal_no ELSE '' END AS host_journal_no,
               coalesce(fund_txn_no, '') AS receipt_no, '' AS bank_ext
        FROM a ORDER BY _file, _line""", ("resp_code", bdc_res.SUCCESS, "amount"), plan, tables={"centres": centres})


# --- TIPS: 2102 -----------------------------------------------------------------------------------------------

PACK_DONE = "处理完成"
PACK_REJECTED_TEXT = "批量包校验失败: "


def tips_2102(batches: list[InboundBatch], results: pa.Table, journal: pa.Table, date: dt.date,
              out_dir: Path) -> dict[str, Path | BatchHeld]:
    def plan(batch: InboundBatch, split: tuple[int, int, int, int]) -> tuple[str, OutFile]:
        h = batch.header
        if batch.rejected:
            result, add_word = cfx.PACK_REJECTED, PACK_REJECTED_TEXT + batch.rejected
        else:
            result, add_word = cfx.PACK_PROCESSED, PACK_DONE
        reply_date = _next_day(date)
        header = {"VER": "1.0", "SRC": h["DES"], "DES": h["SRC"], "APP": "TIPS", "MsgNo": "2102",
                  # date, message number, and the request's own sequence: the reply's id derives from what it answers
                  "MsgID": f"{reply_date:%Y%m%d}2102{h['MsgID'][-8:]}", "MsgRef": h["MsgID"], "WorkDate": reply_date,
                  "OriTaxOrgCode": h["TaxOrgCode"], "OriEntrustDate": h["EntrustDate"], "OriPackNo": h["PackNo"],
                  "AllNum": h["AllNum"], "AllAmt": h["AllAmt"], "SuccNum": split[0], "SuccAmt": split[1],
                  "Result": result, "AddWord": add_word}
        name = f"TIPS_2102_{h['TaxOrgCode']}_{h['EntrustDate']:%Y%m%d}_{h['PackNo']}.xml"
        return "tips.2102", OutFile(out_dir / name, header=header, options={"encoding": batch.encoding})

    sent: dict[str, Path | BatchHeld] = {}
    for batch in (b for b in batches if b.rejected):
        h = batch.header
        try:
            _nothing_posted(batch.file, journal, "TIPS", f"{h['TaxOrgCode']}{h['EntrustDate']:%Y%m%d}{h['PackNo']}")
        except BatchHeld as e:
            sent[batch.file] = e
            continue
        sent |= _write_returns(_empty_returns(), {batch.file: plan(batch, (0, 0, 0, 0))})
    return sent | _each_answered([b for b in batches if not b.rejected], results, journal,
                                 (cfx.REASON_TO_RESULT, cfx.RESULTS), f"""
        WITH a AS (SELECT *, {_answer_code(cfx.PACK_PROCESSED, cfx.PACK_REJECTED)} AS result FROM answer)
        SELECT _file, TraNo AS OriTraNo, TraAmt, coalesce(TaxVouNo, '') AS TaxVouNo, coalesce(acct_date, ?) AS TaxDate,
               result AS Result, (SELECT text FROM code_text t WHERE t.code = result) AS AddWord
        FROM a ORDER BY _file, _line""", ("Result", cfx.PACK_PROCESSED, "TraAmt"), plan, params=[date])


def _empty_returns() -> pa.Table:
    layout = registry.get("tips.2102")
    return pa.schema([(f.name, f.type.arrow_type) for f in layout.detail.fields]).empty_table()


def _nothing_posted(file: str, journal: pa.Table, ledger_channel: str, batch_no: str) -> None:
    """A batch rejected whole must have moved no money: a successful journal row for it holds the answer."""
    con = _connect()
    try:
        con.register("journal", journal)
        rows = con.execute("""
            SELECT journal_no || ':' || seq_no, channel_ref FROM journal
            WHERE channel = ? AND batch_no = ? AND status = 'S' ORDER BY 1""", [ledger_channel, batch_no]).fetchall()
    finally:
        con.close()
    if rows:
        raise BatchHeld(file, [(None, "REJECTED", f"the batch was rejected whole, but journal row {ref} "
                                                  f"({channel_ref}) posted it") for ref, channel_ref in rows],
                        len(rows))


# --- payroll: DF_..._RESULT -------------------------------------------------------------------------------------

PAYROLL_FIELDS = "seq_no, account_no, account_name, amount_fen, coalesce(remark, '') AS remark"


def payroll_result(batches: list[InboundBatch], results: pa.Table, journal: pa.Table, date: dt.date,
                   out_dir: Path) -> dict[str, Path | BatchHeld]:
    def plan(batch: InboundBatch, split: tuple[int, int, int, int]) -> tuple[str, OutFile]:
        trailer = {"label": "合计", "success_count": split[0], "success_amount_fen": split[1],
                   "fail_count": split[2], "fail_amount_fen": split[3]}
        path = out_dir / _answer_name(batch.file, r"(DF_\w{10}_\d{8}_\d\d)\.(xlsx|csv)", r"\1_RESULT.\2")
        if batch.layout == "payroll.batch_xlsx":
            return "payroll.result_xlsx", OutFile(path, header=batch.header, trailer=trailer,
                                                  options={"business_date": date})
        return "payroll.result_csv", OutFile(path, header=batch.header, trailer=trailer)

    split = ("result", payroll.SUCCESS, "amount_fen")
    sent: dict[str, Path | BatchHeld] = {}
    for batch in (b for b in batches if b.rejected):
        m = re.match(r"DF_(\w{10})_(\d{8})_(\d\d)\.", batch.file)
        try:
            _nothing_posted(batch.file, journal, "PAYROLL", "".join(m.groups()) if m else batch.file)
        except BatchHeld as e:
            sent[batch.file] = e
            continue
        con = _lines([batch])
        try:
            details = con.sql(f"SELECT _file, {PAYROLL_FIELDS}, ? AS result, ? AS fail_reason FROM lines ORDER BY _line",
                              params=[payroll.FAILURE, payroll.BATCH_CHECK_FAILED + batch.rejected]).to_arrow_table()
        finally:
            con.close()
        layout, out = plan(batch, _splits(details, *split).get(batch.file, (0, 0, 0, 0)))
        sent |= _write_returns(details.drop_columns(["_file"]),
                               {batch.file: (layout, replace(out, length=details.num_rows))})
    codes = ({code: code for code in payroll.REASON_TEXTS}, payroll.REASON_TEXTS)
    return sent | _each_answered([b for b in batches if not b.rejected], results, journal, codes, f"""
        WITH a AS (SELECT *, {_answer_code('OK', 'E999')} AS code FROM answer)
        SELECT _file, {PAYROLL_FIELDS}, CASE WHEN code = 'OK' THEN ? ELSE ? END AS result,
               CASE WHEN code = 'OK' THEN ''
                    WHEN quarantined OR outcome = 'QUARANTINED' THEN {_quarantine_text()}
                    ELSE (SELECT text FROM code_text t WHERE t.code = a.code) END AS fail_reason
        FROM a ORDER BY _file, _line""", split, plan, params=[payroll.SUCCESS, payroll.FAILURE])


BUILDERS = {
    "utility.dk": utility_hp,
    "housing_fund.bdc_bat": housing_fund_res,
    "tips.3102": tips_2102,
    "payroll.batch_xlsx": payroll_result,
    "payroll.batch_csv": payroll_result,
}
"""The return of each inbound batch layout: a function of (batches of that layout, results, journal, T, out_dir)
giving per batch file name the return's path or the `BatchHeld` that holds it."""
