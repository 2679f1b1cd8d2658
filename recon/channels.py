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
        FROM cp_raw c
        LEFT JOIN reversed r ON r.orig_stan = c.stan AND r.orig_txn_time = c.txn_time
    """,
    ledger_pending_when="strftime(txn_time, '%H%M%S') >= '230000'",
    carry_forward_days=1,
    pending_note="posted after the 23:00 CUPS cut-off; expected in the next settlement day's file",
    clearing_account="CUPS-CLR",
)

CHANNELS = {rule.channel: rule for rule in (UNIONPAY_ACQ,)}
