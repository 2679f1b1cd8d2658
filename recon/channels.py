"""One MatchRule per channel: data only. The specs in shared/specs are the contract these rules follow."""
from recon.rules import MatchRule

# unionpay.md: key (stan, txn_time) = the journal's channel_ref; a 0420 reverses the approved record whose
# (stan, txn_time) equals its (orig_stan, orig_txn_time); declined records move no money; 23:00 cut-off (日切).
UNIONPAY_ACQ = MatchRule(
    channel="unionpay_acq",
    ledger_channel="UNIONPAY_ACQ",
    counterparty_items="""
        WITH reversed AS (
            SELECT DISTINCT orig_stan, orig_txn_time FROM cp_raw WHERE msg_type = '0420' AND resp_code = '00')
        SELECT c.stan || c.txn_time AS match_ref,
               c.amount_fen,
               CASE WHEN c.resp_code <> '00' THEN 'F'
                    WHEN c.msg_type <> '0420' AND r.orig_stan IS NOT NULL THEN 'R'
                    ELSE 'S' END AS status,
               -- a refund, or the reversal of a purchase, is money out for the bank's merchant side
               CASE WHEN (c.proc_code = '200000') <> (c.msg_type = '0420') THEN -1 ELSE 1 END AS sign,
               c.pan AS account,
               try_strptime(CAST(CASE WHEN substr(c.txn_time, 1, 4) > strftime(DATE '{business_date}', '%m%d')
                                      THEN year(DATE '{business_date}') - 1 ELSE year(DATE '{business_date}') END
                                 AS VARCHAR) || c.txn_time, '%Y%m%d%H%M%S') AS event_time,
               'msg ' || c.msg_type || ' proc ' || c.proc_code || ' resp ' || c.resp_code AS detail,
               c._file, c._line
        FROM cp_rows c
        LEFT JOIN reversed r ON r.orig_stan = c.stan AND r.orig_txn_time = c.txn_time
    """,
    ledger_pending_when="strftime(txn_time, '%H%M%S') >= '230000'",
    carry_forward_days=1,
    pending_note="posted after the 23:00 CUPS cut-off; expected in the next settlement day's file",
    clearing_account="CUPS-CLR",
)


# Batch instructions (TIPS 3102, housing fund, utilities, payroll) report no outcome of their own: the counterparty
# asks, the core executes. Their items carry status S (money asked to move) and a detail with exactly one journal
# row is MATCHED whatever that row's status (a failure goes back in the return file); none or several is a break.
ANY_LEDGER_STATUS = frozenset({("S", "S"), ("S", "F"), ("S", "R")})

# pboc.md: channel_ref = msg_type:instr_bank:msg_id; PR00 settled must meet a journal S of the same amount and
# direction; PR09 rejected agrees with no row or a row F/R; PR05 queued is PENDING until the next work date's file.
CNAPS2 = MatchRule(
    channel="cnaps2",
    ledger_channel="CNAPS",
    counterparty_items="""
        SELECT msg_type || ':' || instr_bank || ':' || msg_id AS match_ref, amount AS amount_fen,
               CASE status WHEN 'PR00' THEN 'S' WHEN 'PR09' THEN 'F' WHEN 'PR05' THEN 'P' END AS status,
               CASE dr_cr WHEN 'D' THEN 1 ELSE -1 END AS sign,
               CASE dr_cr WHEN 'D' THEN payer_acct ELSE payee_acct END AS account,
               process_time AS event_time,
               msg_type || ' ' || dr_cr || ' ' || status AS detail, _file, _line
        FROM cp_rows
    """,
    agreeing_statuses=frozenset({("S", "S"), ("F", "F"), ("F", "R")}),
    carry_forward_days=1,
    clearing_account="CNAPS-CLR",
)

_TIPS_PACK = "h_TaxOrgCode || strftime(CAST(h_EntrustDate AS DATE), '%Y%m%d') || h_PackNo"

# tips.md: batch_no = TaxOrgCode || EntrustDate || PackNo, channel_ref = batch_no || TraNo; a debit of PayAcct.
TIPS = MatchRule(
    channel="tips",
    ledger_channel="TIPS",
    counterparty_items=f"""
        SELECT {_TIPS_PACK} || TraNo AS match_ref, TraAmt AS amount_fen, 'S' AS status, 1 AS sign,
               PayAcct AS account, CAST(h_EntrustDate AS TIMESTAMP) AS event_time,
               'pack ' || h_PackNo || ' TraNo ' || TraNo || ' voucher ' || TaxVouNo AS detail, _file, _line
        FROM cp_rows
    """,
    agreeing_statuses=ANY_LEDGER_STATUS,
    needs_no_ledger_row=frozenset(),
    clearing_account="TIPS-CLR",
)

# tips.md: the day-end 3111 (ChkAcctType 1), once all its ChildPackNum files have arrived, item by item against
# the journal's successful rows of ChkDate.
TIPS_3111 = MatchRule(
    channel="tips_3111",
    ledger_channel="TIPS",
    counterparty_items="""
        SELECT OriTaxOrgCode || strftime(OriEntrustDate, '%Y%m%d') || OriPackNo || OriTraNo AS match_ref,
               TraAmt AS amount_fen, 'S' AS status, 1 AS sign, PayAcct AS account,
               CAST(OriEntrustDate AS TIMESTAMP) AS event_time,
               'ChkAcctOrd ' || h_ChkAcctOrd || ' pack ' || OriPackNo || ' TraNo ' || OriTraNo AS detail, _file, _line
        FROM cp_rows
    """,
    ledger_where="status = 'S'",
    needs_no_ledger_row=frozenset(),
    file_header_where={"ChkAcctType": "1"},
    complete_when=("ChkAcctOrd", "ChildPackNum"),
    clearing_account="TIPS-CLR",
)

# housing_fund.md: channel_ref = batch_no:seq_no; BDC103 credits the member, BDC104 debits; the centre's account has
# one row per batch (channel_ref = batch_no) for the successful items' sum.
HOUSING_FUND = MatchRule(
    channel="housing_fund",
    ledger_channel="HOUSING_FUND",
    counterparty_items="""
        SELECT h_batch_no || ':' || seq_no AS match_ref, amount AS amount_fen, 'S' AS status,
               CASE h_tx_code WHEN 'BDC103' THEN -1 ELSE 1 END AS sign, acct_no AS account,
               CAST(h_entrust_date AS TIMESTAMP) AS event_time,
               h_tx_code || ' item ' || seq_no || ' ' || fund_txn_no AS detail, _file, _line
        FROM cp_rows
    """,
    agreeing_statuses=ANY_LEDGER_STATUS,
    needs_no_ledger_row=frozenset(),
    batch_control_when="channel_ref = batch_no",
    control_note="centre account row",
    clearing_account="GJJ-CLR",
)

# utilities.md: channel_ref = batch_no || serial_no (8 digits), a debit of the customer; the utility's settlement
# account receives one credit per batch (channel_ref = batch_no) for the sum of the successful debits.
UTILITY = MatchRule(
    channel="utility",
    ledger_channel="UTILITY",
    counterparty_items="""
        SELECT h_batch_no || serial_no AS match_ref, amount_fen, 'S' AS status, 1 AS sign, account_no AS account,
               CAST(h_batch_date AS TIMESTAMP) AS event_time,
               h_utility_code || ' contract ' || trim(contract_no) || ' period ' || billing_period AS detail,
               _file, _line
        FROM cp_rows
    """,
    agreeing_statuses=ANY_LEDGER_STATUS,
    needs_no_ledger_row=frozenset(),
    batch_control_when="channel_ref = batch_no",
    control_note="settlement credit",
    clearing_account="UTIL-CLR",
)

# payroll.md: batch_no = employer_code || YYYYMMDD || NN (from the file name DF_{employer}_{date}_{NN}); each
# employee credit channel_ref = batch_no:seq_no; the employer's debit (batch_no) less its refund
# (batch_no:REFUND) must equal the successful credits.
_PAYROLL_BATCH = "regexp_replace(_file, '^DF_(.{10})_(\\d{8})_(\\d\\d).*$', '\\1\\2\\3')"
PAYROLL = MatchRule(
    channel="payroll",
    ledger_channel="PAYROLL",
    counterparty_items=f"""
        SELECT {_PAYROLL_BATCH} || ':' || seq_no AS match_ref, amount_fen, 'S' AS status, -1 AS sign,
               account_no AS account, strptime(regexp_extract(_file, '_(\\d{{8}})_\\d\\d', 1), '%Y%m%d') AS event_time,
               'employee row ' || seq_no || coalesce(' ' || nullif(remark, ''), '') AS detail, _file, _line
        FROM cp_rows
    """,
    agreeing_statuses=ANY_LEDGER_STATUS,
    needs_no_ledger_row=frozenset(),
    batch_control_when="channel_ref IN (batch_no, batch_no || ':REFUND')",
    control_note="employer debit and refund",
    clearing_account="PAY-CLR",
)

CHANNELS = {rule.channel: rule for rule in (UNIONPAY_ACQ, CNAPS2, TIPS, TIPS_3111, HOUSING_FUND, UTILITY, PAYROLL)}
