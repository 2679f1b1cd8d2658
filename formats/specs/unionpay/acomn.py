"""UnionPay CUPS acquirer transaction file ACOMN (一般交易流水), `IND{YYMMDD}{NN}ACOMN`: specs/unionpay.md.

Fixed-width GBK, 500 bytes a record, one ASCII space between fields, CRLF, no header and no trailer: every
non-empty line is a detail record. The control is the flag file's record count.
"""
from formats.layout import Code, Count, Digits, Fen, Field, FileLayout, Record, SignedFen, Text

MSG_TYPES = {"0200": "financial", "0220": "advice", "0420": "reversal (冲正)"}
PROC_CODES = {"000000": "purchase", "200000": "refund/void", "010000": "cash withdrawal"}

DETAIL = Record("detail", fields=(
    Field("acq_inst_id",           1,  11, Text()),
    Field("fwd_inst_id",          13,  23, Text()),
    Field("stan",                 25,  30, Digits()),         # key part
    Field("txn_time",             32,  41, Digits()),         # MMDDhhmmss, Beijing time; key part
    Field("pan",                  43,  61, Text(blank=False)),
    Field("amount_fen",           63,  74, Fen()),
    Field("partial_amount_fen",   76,  87, Fen()),
    Field("cardholder_fee_fen",   89, 100, Fen()),
    Field("msg_type",            102, 105, Code(MSG_TYPES)),
    Field("proc_code",           107, 112, Code(PROC_CODES)),
    Field("mcc",                 114, 117, Text()),
    Field("terminal_id",         119, 126, Text()),
    Field("merchant_id",         128, 142, Text()),
    Field("rrn",                 144, 155, Text()),
    Field("pos_cond",            157, 158, Text()),
    Field("auth_code",           160, 165, Text()),         # spaces when none
    Field("rcv_inst_id",         167, 177, Text()),
    Field("orig_stan",           179, 184, Digits()),         # zeros unless 0420 or refund
    Field("resp_code",           186, 187, Text(blank=False)),
    Field("pos_entry",           189, 191, Text()),
    Field("acq_fee_receivable",  193, 204, SignedFen()),      # sign byte C/D, then 11 digits of fen
    Field("acq_fee_payable",     206, 217, SignedFen()),
    Field("switch_fee",          219, 230, SignedFen()),
    Field("single_dual_flag",    232, 232, Text()),
    Field("card_seq_no",         234, 236, Text()),
    Field("terminal_capability", 238, 238, Text()),
    Field("ic_cond_code",        240, 240, Text()),
    Field("orig_txn_time",       242, 251, Digits()),         # MMDDhhmmss of the original; zeros otherwise
    Field("issuer_inst_id",      253, 263, Text()),
    Field("region_flag",         265, 265, Text()),
    Field("terminal_type",       267, 268, Text()),
    Field("eci",                 270, 271, Text()),
    Field("instalment_fee_fen",  273, 284, Fen()),
    Field("other_info",          286, 299, Text()),
    Field("transfer_in_pan",     301, 319, Text()),
    Field("instalments",         321, 322, Text()),
    Field("order_id",            324, 363, Text()),           # ASCII or GBK
    Field("pay_mode",            365, 368, Text()),
    Field("reserved",            370, 500, Text()),
))

LAYOUT = FileLayout(
    name="unionpay.acomn",
    framing="fixed", encoding="gbk", record_bytes=500, separator=b" ",
    records=(DETAIL,),
    controls=(Count("detail", equals="flag"),),
    key=("stan", "txn_time"),
)
