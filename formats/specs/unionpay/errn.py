"""UnionPay CUPS dispute file ERRN (差错交易流水), `IND{YYMMDD}{NN}ERRN`: specs/unionpay.md, "ERRN".

Fixed-width GBK, 581 bytes a record, one ASCII space between fields, CRLF, no header and no trailer. The control
is the flag file's record count. `merchant_name` (411-450) is GBK text in the middle of the record: positions
after it count its bytes, not its characters.
"""
from formats.layout import Code, Count, Digits, Fen, Field, FileLayout, Record, SignedFen, Text

# The project's reference set (specs/unionpay.md); CUPS's own documents hold the real codes. `RPM` is only ever
# sent by the bank, so an ERRN record carrying it is quarantined (not in this table).
ERR_TYPES = {
    "RTR": "调单 retrieval request",
    "CB1": "第一次退单 first chargeback",
    "CB2": "第二次退单 second chargeback",
    "CRA": "贷记调整 credit adjustment",
    "DBA": "借记调整 debit adjustment",
}
REASON_CODES = {
    "4507": "amount differs from the receipt",
    "4512": "duplicate processing",
    "4514": "cardholder did not receive goods or services",
    "4522": "transaction not authorised",
    "4531": "credit not processed (refund missing)",
    "4562": "counterfeit or fraudulent transaction",
    "4570": "cardholder disputes the transaction",
}

DETAIL = Record("detail", fields=(
    Field("err_type",                   1,   3, Code(ERR_TYPES)),
    Field("acq_inst_id",                5,  15, Text()),
    Field("fwd_inst_id",               17,  27, Text()),
    Field("stan",                      29,  34, Digits()),       # the dispute's own trace number; key part
    Field("txn_time",                  36,  45, Digits()),       # MMDDhhmmss of the dispute; key part
    Field("pan",                       47,  65, Text(blank=False)),
    Field("amount_fen",                67,  78, Fen()),          # the disputed amount
    Field("msg_type",                  80,  83, Text()),
    Field("proc_code",                 85,  90, Text()),
    Field("mcc",                       92,  95, Text()),
    Field("terminal_id",               97, 104, Text()),
    Field("orig_rrn",                 106, 117, Text()),
    Field("pos_cond",                 119, 120, Text()),
    Field("auth_code",                122, 127, Text()),
    Field("rcv_inst_id",              129, 139, Text()),
    Field("issuer_inst_id",           141, 151, Text()),
    Field("orig_stan",                153, 158, Digits()),       # the original ACOMN transaction's stan
    Field("resp_code",                160, 161, Text()),
    Field("pos_entry",                163, 165, Text()),
    Field("acq_fee_receivable",       167, 178, SignedFen()),    # sign byte C/D, then 11 digits of fen
    Field("acq_fee_payable",          180, 191, SignedFen()),
    Field("instalment_fee_fen",       193, 204, Fen()),
    Field("cardholder_fee_fen",       206, 217, Fen()),
    Field("fee_receivable",           219, 230, SignedFen()),
    Field("fee_payable",              232, 243, SignedFen()),
    Field("reason_code",              245, 248, Code(REASON_CODES)),
    Field("out_inst_id",              250, 260, Text()),
    Field("out_acct",                 262, 280, Text()),
    Field("in_inst_id",               282, 292, Text()),
    Field("in_acct",                  294, 312, Text()),
    Field("orig_txn_time",            314, 323, Digits()),       # the original transaction's txn_time
    Field("card_seq_no",              325, 327, Text()),
    Field("terminal_capability",      329, 329, Text()),
    Field("ic_cond_code",             331, 331, Text()),
    Field("orig_settle_date",         333, 336, Digits()),       # MMDD
    Field("orig_amount_fen",          338, 349, Fen()),
    Field("region_flag",              351, 351, Text()),
    Field("eci",                      353, 354, Text()),
    Field("merchant_id",              356, 370, Text()),
    Field("send_clr_inst",            372, 382, Text()),
    Field("out_clr_inst",             384, 394, Text()),
    Field("in_clr_inst",              396, 406, Text()),
    Field("orig_terminal_type",       408, 409, Text()),
    Field("merchant_name",            411, 450, Text()),         # GBK: up to 20 Chinese characters
    Field("special_fee_type",         452, 453, Text()),
    Field("special_fee_level",        455, 455, Text()),
    Field("reserved1",                457, 464, Text()),
    Field("card_product",             466, 489, Text()),
    Field("orig_txn_code",            491, 493, Text()),
    Field("initiator",                495, 495, Text()),
    Field("acct_settle_type",         497, 498, Text()),
    Field("reserved2",                500, 545, Text()),
    Field("orig_txn_type",            547, 549, Text()),
    Field("merchant_fee",             551, 559, Text()),
    Field("merchant_settle_bank",     561, 571, Text()),
    Field("merchant_settle_bank_fee", 573, 581, Text()),
))

LAYOUT = FileLayout(
    name="unionpay.errn",
    framing="fixed", encoding="gbk", record_bytes=581, separator=b" ",
    records=(DETAIL,),
    controls=(Count("detail", equals="flag"),),
    key=("err_type", "stan", "txn_time"),
)
