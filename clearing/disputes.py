"""UnionPay dispute replies (ERRR, 差错回复) to the day's ERRN file: specs/unionpay.md, "How the bank decides".

Every ERRN record gets exactly one decision, or is quarantined (an `err_type` outside the spec's table, such as
`RPM`, which only the bank sends). The decision rules are data (`RULES`), applied first match wins, in the
spec's order, as one SQL CASE over facts gathered per dispute from the journal, the ACOMN records and the earlier
days' reconciliation results. Undecided disputes (`P`) are answered `P` in the reply and returned as a queue
for analysts; their decision goes into a later reply. An accepted `CRA` (rule 4) resolves the ledger-only break
it names: those breaks are returned so that their suspense (挂账) can be reversed (`clearing.entries`).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from formats import registry
from formats.flag import write_flag

DECIDABLE = ("RTR", "CB1", "CB2", "CRA", "DBA")   # the spec's table but RPM, which only the bank sends
LEDGER_CHANNEL = "UNIONPAY_ACQ"


@dataclass(frozen=True)
class Rule:
    number: int
    when: str             # SQL over the per-dispute facts (see `_FACTS`)
    decision: str         # A accept, R reject (represent), P still investigating
    reply_reason: str     # for R: why rejected; blank otherwise
    remark: str           # GBK, at most 60 bytes: what the reply tells CUPS


RULES = (
    Rule(1, "err_type IN ('CB1', 'CB2') AND reason_code = '4512' AND ledger_rows = 1", "R", "4512",
         "我方账务仅记一笔,非重复处理"),
    Rule(2, "err_type = 'CB1' AND reason_code = '4531' AND refund_key IS NOT NULL", "R", "4531",
         "已退款,退货交易参考号"),
    Rule(3, "err_type = 'CB1' AND ledger_rows > 0 AND ledger_succeeded = 0", "R", "4522",
         "原交易已冲正或被拒绝,未入账"),
    Rule(4, "err_type = 'CRA' AND ledger_only_since IS NOT NULL", "A", "",
         "我方单边账,同意贷记调整"),
    Rule(5, "true", "P", "", "调查中,结果另行回复"),
)

_FACTS = """
    -- per dispute: the journal rows of the disputed original, a successful refund of it, an earlier ledger-only
    -- break with its key
    CREATE TEMP TABLE facts AS
    WITH lg AS (SELECT DISTINCT journal_no, seq_no, channel_ref, status FROM journal WHERE channel = ?),
    refund AS (
        SELECT a.orig_stan, a.orig_txn_time, min(a.stan || a.txn_time) AS refund_key
        FROM acomn a JOIN lg ON lg.channel_ref = a.stan || a.txn_time AND lg.status = 'S'
        WHERE a.proc_code = '200000' AND a.resp_code = '00' AND a.msg_type IN ('0200', '0220')
        GROUP BY ALL),
    ledger_only AS (
        SELECT match_ref, min(business_date) AS since FROM breaks
        WHERE side = 'ledger' AND outcome = 'LEDGER_ONLY' AND business_date < ? GROUP BY match_ref)
    SELECT d.*, d.orig_stan || d.orig_txn_time AS orig_key,
           (SELECT count(*) FROM lg WHERE lg.channel_ref = d.orig_stan || d.orig_txn_time) AS ledger_rows,
           (SELECT count(*) FROM lg WHERE lg.channel_ref = d.orig_stan || d.orig_txn_time AND lg.status = 'S')
             AS ledger_succeeded,
           r.refund_key, o.since AS ledger_only_since
    FROM errn d
    LEFT JOIN refund r ON r.orig_stan = d.orig_stan AND r.orig_txn_time = d.orig_txn_time
    LEFT JOIN ledger_only o ON o.match_ref = d.orig_stan || d.orig_txn_time
"""


@dataclass(frozen=True)
class DisputeReply:
    path: Path             # the ERRR file written (its flag beside it)
    decisions: pa.Table    # one row per ERRN record; `decision` null for a quarantined one
    queue: pa.Table        # the `P` rows: what analysts must decide (PAN masked)
    resolved: pa.Table     # recon_result rows of the breaks an accepted CRA resolved, with `resolved_on`


def reply_disputes(errn_file: str, errn: pa.Table, errn_quarantine: pa.Table, acomn: pa.Table, journal: pa.Table,
                   breaks: pa.Table, date: dt.date, out_dir: Path) -> DisputeReply:
    """Decide every dispute of the ERRN file `errn_file` (parsed records `errn` and quarantined ones, each with
    `_line`) for settlement date T = `date`, write `IND{YYMMDD}{NN}ERRR` and its flag into `out_dir`.

    `acomn`: ACOMN records of every date a dispute may point to (refunds, rule 2); `journal`: the journal rows of
    those dates (any channel; UNIONPAY_ACQ is used); `breaks`: recon_result rows of earlier dates (rule 4 looks
    for a ledger-only break whose key the CRA names)."""
    m = re.fullmatch(r"IND(\d{6})(\d\d)ERRN", errn_file.removesuffix(".gz"))
    if not m:
        raise ValueError(f"{errn_file}: not an ERRN file name (expected IND{{YYMMDD}}{{NN}}ERRN)")
    con = duckdb.connect()
    try:
        for name, table in (("errn", errn), ("errn_q", errn_quarantine), ("acomn", acomn), ("journal", journal),
                            ("breaks", breaks)):
            con.register(name, table)
        con.execute(_FACTS, [LEDGER_CHANNEL, date])
        decide = " ".join(f"WHEN {r.when} THEN {r.number}" for r in RULES)
        con.register("rules", pa.Table.from_pylist([{"rule": r.number, "decision": r.decision,
                                                     "reply_reason": r.reply_reason, "remark": r.remark}
                                                    for r in RULES]))
        known = ", ".join(f"'{t}'" for t in DECIDABLE)
        decisions = con.sql(f"""
            WITH decided AS (
                SELECT f.*, CASE WHEN err_type IN ({known}) THEN CASE {decide} END END AS rule FROM facts f)
            SELECT DATE '{date}' AS business_date, d.err_type, d.stan, d.txn_time, d.orig_stan, d.orig_txn_time,
                   {_masked('d.pan')} AS pan_masked, d.amount_fen, d.reason_code, r.decision,
                   CASE WHEN r.decision = 'A' THEN d.amount_fen ELSE 0 END AS decision_amount_fen,
                   r.reply_reason, d.rule,
                   CASE WHEN d.rule IS NULL THEN 'err_type ' || d.err_type || ' is not a dispute the bank receives'
                        WHEN d.rule = 2 THEN r.remark || ' ' || d.refund_key
                        ELSE r.remark END AS remark,
                   d.acq_inst_id, ? AS source_file, d._line AS source_line
            FROM decided d LEFT JOIN rules r USING (rule)
            UNION ALL BY NAME
            SELECT DATE '{date}' AS business_date, err_type, stan, txn_time, orig_stan, orig_txn_time,
                   {_masked('pan')} AS pan_masked, amount_fen, reason_code,
                   'field ' || _field || ': expected ' || _expected AS remark, acq_inst_id,
                   ? AS source_file, _line AS source_line
            FROM errn_q
            ORDER BY source_line""", params=[errn_file, errn_file]).to_arrow_table()
        con.register("decisions", decisions)
        queue = con.sql("SELECT * FROM decisions WHERE decision = 'P' ORDER BY source_line").to_arrow_table()
        resolved = con.sql(f"""
            SELECT b.*, DATE '{date}' AS resolved_on FROM breaks b
            JOIN (SELECT DISTINCT orig_stan || orig_txn_time AS key FROM decisions WHERE rule = 4) a
              ON a.key = b.match_ref
            WHERE b.business_date < DATE '{date}'
              AND b.outcome IN ('AMOUNT_MISMATCH', 'STATUS_MISMATCH', 'COUNTERPARTY_ONLY', 'LEDGER_ONLY', 'DUPLICATE')
            ORDER BY b.business_date, b.match_ref, b.record_ref""").to_arrow_table()
        details = con.sql("""
            SELECT 'D' AS record_type, err_type, stan, txn_time, '' AS case_ref, decision, decision_amount_fen,
                   reply_reason AS reason_code, remark, '' AS reserved
            FROM decisions WHERE decision IS NOT NULL ORDER BY source_line""").to_arrow_table()
        acq = con.execute("SELECT min(acq_inst_id) FROM decisions WHERE acq_inst_id <> ''").fetchone()[0]
    finally:
        con.close()
    if acq is None:
        raise ValueError(f"{errn_file}: no record names the acquirer (acq_inst_id) the reply is for")
    header = {"record_type": "H", "file_type": "ERRR", "acq_inst_id": acq,
              "business_date": date + dt.timedelta(days=1), "file_seq": m.group(2), "filler": ""}
    trailer = {"record_type": "T", "record_count": details.num_rows,
               "total_decision_amount_fen": pc.sum(details["decision_amount_fen"]).as_py() or 0, "filler": ""}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"IND{date:%y%m%d}{m.group(2)}ERRR"
    registry.write(path, "unionpay.errr", details, header, trailer)
    write_flag(path, details.num_rows)
    return DisputeReply(path, decisions.drop_columns(["acq_inst_id"]), queue.drop_columns(["acq_inst_id"]), resolved)


def _masked(col: str) -> str:
    """SQL: a card number as analysts may see it, first 6 and last 4 digits."""
    return f"CASE WHEN length({col}) >= 11 THEN left({col}, 6) || repeat('*', length({col}) - 10) || right({col}, 4) " \
           f"ELSE {col} END"
