"""The CFX envelope shared by every TIPS message (specs/tips.md, "The envelope"), and the TIPS code tables.

`<CFX><HEAD>...</HEAD><MSG>...</MSG></CFX>`; one message per file; the encoding is the one the prolog declares
(GBK or GB18030), and the bank answers in the encoding of the request.
"""
from formats.layout import Column, Const, Date8, Digits, Record

TIPS_NODE = "100000000000"
ENCODINGS = ("GBK", "GB18030")       # what a prolog may declare; anything else is refused

# 2102 results: Result -> AddWord (the text is written exactly as here). Core reason code -> Result below.
RESULTS = {
    "90000": "扣款成功",
    "24020": "余额不足",
    "24004": "账户不存在",
    "24005": "户名不符",
    "24011": "账户冻结",
    "24009": "未签订三方协议",
    "94999": "其他错误",
}
REASON_TO_RESULT = {"E001": "24020", "E002": "24004", "E003": "24005", "E004": "24011", "E005": "24009"}
PACK_PROCESSED, PACK_REJECTED = "90000", "94999"


def head(msg_no: str) -> Record:
    """The `HEAD` of a message numbered `msg_no`; its fields join the file's header dict."""
    return Record("head", kind="header", at="HEAD", fields=(
        Column("VER",      Const("1.0")),
        Column("SRC",      Digits(length=12)),   # sender node (TIPS is 100000000000); a reply swaps SRC and DES
        Column("DES",      Digits(length=12)),
        Column("APP",      Const("TIPS")),
        Column("MsgNo",    Const(msg_no)),
        Column("MsgID",    Digits(length=20)),   # date, message number, sequence
        Column("MsgRef",   Digits(length=20)),   # a reply: the MsgID it answers; otherwise equal to MsgID
        Column("WorkDate", Date8()),
    ))
