"""Write the sample files of every layout and their expected results (run once; the bytes are committed).

    python sample_files/make_samples.py

Each case is `sample_files/<family>/<kind>/<case>.<ext>` with `<case>.expected.json` beside it (and `<case>.<ext>.ok`
where the case exercises the flag file). A case is named for what it exercises (`bad_amount_line3`,
`gbk_byte_7c_in_name`, `xml_doctype_entity`); `ok_*` cases are valid per spec, byte for byte. Valid files are
rendered with the engines' own writers; broken ones are valid files with one deliberate fault. The expected
results are written here by hand (they state what the spec requires), not taken from the reader.

`sample_files/nights/` belongs to the pipeline's end-to-end runs and is not touched.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from formats import delimited, excel, fixed_width, xml  # noqa: E402
from formats.flag import Flag, md5_of  # noqa: E402
from formats.registry import LAYOUTS  # noqa: E402

T = dt.date(2026, 11, 21)
DIRS = sorted({name.replace(".", "/", 1) for name in LAYOUTS})
# GBK characters whose second byte is 0x7C (`|`): 東 (E6 7C) and 億 (83 7C). A reader that splits raw bytes on
# `|` cuts names holding them in two.
EAST, YI = "東", "億"
assert EAST.encode("gbk")[1] == 0x7C and YI.encode("gbk")[1] == 0x7C


def case(layout: str, name: str, ext: str, data: bytes, expected: dict, flag_count: int | None = None) -> None:
    folder = ROOT / layout.replace(".", "/", 1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.{ext}"
    path.write_bytes(data)
    if flag_count is not None:
        flag = Flag(path.name, len(data), flag_count, md5_of(path))
        path.with_name(path.name + ".ok").write_bytes(flag.render())
    text = json.dumps(expected, ensure_ascii=False, indent=2) + "\n"
    (folder / f"{name}.expected.json").write_text(text, encoding="utf-8")


def table(layout, rows: list[dict], record=None) -> pa.Table:
    rec = record or LAYOUTS[layout].detail
    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], f.type.arrow_type) for f in rec.fields
                     if any(f.name in r for r in rows)})


def replace_line(data: bytes, line: int, new: bytes, end: bytes = b"\r\n") -> bytes:
    lines = data.split(end)
    lines[line - 1] = new
    return end.join(lines)


def patch(data: bytes, line: int, start: int, new: bytes, end: bytes = b"\r\n") -> bytes:
    """Overwrite bytes of one line (1-based line, 1-based byte position), keeping its length."""
    lines = data.split(end)
    raw = bytearray(lines[line - 1])
    raw[start - 1: start - 1 + len(new)] = new
    lines[line - 1] = bytes(raw)
    return end.join(lines)


# --- UnionPay ------------------------------------------------------------------------------------------------

def acomn_row(i: int, **kw) -> dict:
    row = {"acq_inst_id": "48020000", "fwd_inst_id": "00010344", "stan": f"{100001 + i:06d}",
           "txn_time": f"1121{8 + i:02d}1502", "pan": f"62220212345678{i:02d}", "amount_fen": 12800 + i * 100,
           "partial_amount_fen": 0, "cardholder_fee_fen": 0, "msg_type": "0200", "proc_code": "000000",
           "mcc": "5411", "terminal_id": f"T000000{i}", "merchant_id": "898320154110001", "rrn": f"0000001000{i:02d}",
           "pos_cond": "00", "auth_code": f"A0000{i}", "rcv_inst_id": "48020000", "orig_stan": "000000",
           "resp_code": "00", "pos_entry": "051", "acq_fee_receivable": 35 + i, "acq_fee_payable": -(10 + i),
           "switch_fee": -4, "single_dual_flag": "1", "card_seq_no": "001", "terminal_capability": "5",
           "ic_cond_code": "0", "orig_txn_time": "0000000000", "issuer_inst_id": "01020000", "region_flag": "0",
           "terminal_type": "03", "eci": "07", "instalment_fee_fen": 0, "other_info": "", "transfer_in_pan": "",
           "instalments": "", "order_id": f"ORD2026112100{i:02d}", "pay_mode": "0000", "reserved": ""}
    row.update(kw)
    return row


def unionpay() -> None:
    L = "unionpay.acomn"
    lay = LAYOUTS[L]
    rows = [acomn_row(i) for i in range(5)]
    rows[2]["order_id"] = f"订单{EAST}方超市0001"           # GBK, with a 0x7C trail byte
    rows[3].update(msg_type="0420", orig_stan="100001", orig_txn_time="1121081502")
    rows[4].update(proc_code="200000", resp_code="51")
    ok = fixed_width.render_records(table(L, rows), lay.detail, lay)
    case(L, "ok_20261121", "txt", ok, {"records": 5, "loaded": 5, "quarantine": [], "check": [
        {"line": 3, "order_id": f"订单{EAST}方超市0001", "pay_mode": "0000", "stan": "100003"},
        {"line": 2, "amount_fen": 12900, "acq_fee_receivable": 36, "acq_fee_payable": -11, "switch_fee": -4}]},
        flag_count=5)
    case(L, "flag_count_off", "txt", ok, {"raises": "FlagMismatch", "message_contains": "record count"},
         flag_count=6)
    case(L, "bad_amount_line3", "txt", patch(ok, 3, 63, b"0000X0012800"),
         {"records": 5, "loaded": 4, "quarantine": [{"line": 3, "field": "amount_fen"}]})
    case(L, "truncated_record_line2", "txt", replace_line(ok, 2, ok.split(b"\r\n")[1][:499]),
         {"records": 5, "loaded": 4, "quarantine": [{"line": 2, "field": "record"}]})
    case(L, "separator_not_space_line4", "txt", patch(ok, 4, 31, b"|"),
         {"records": 5, "loaded": 4, "quarantine": [{"line": 4, "field": "separator after stan"}]})
    case(L, "unknown_msg_type_line1", "txt", patch(ok, 1, 102, b"0100"),
         {"records": 5, "loaded": 4, "quarantine": [{"line": 1, "field": "msg_type"}]})
    case(L, "bad_fee_sign_line5", "txt", patch(ok, 5, 219, b"X"),
         {"records": 5, "loaded": 4, "quarantine": [{"line": 5, "field": "switch_fee"}]})
    # Written in UTF-8 by a program that padded by bytes: the line keeps its 500 bytes, the name is not GBK.
    utf8 = ok.replace(f"订单{EAST}方超市0001".encode("gbk") + b" " * 6, f"订单{EAST}方超市0001".encode("utf-8"))
    case(L, "utf8_instead_of_gbk", "txt", utf8, {"raises": "EncodingError", "message_contains": "UTF-8"})
    case(L, "lf_line_ends", "txt", ok.replace(b"\r\n", b"\n"), {"raises": "StructureError",
                                                                  "message_contains": "LF"})
    case(L, "no_line_end_after_last", "txt", ok[:-2], {"records": 5, "loaded": 5, "quarantine": []})
    case(L, "empty_line_between", "txt", ok.replace(b"\r\n", b"\r\n\r\n", 1),
         {"records": 5, "loaded": 5, "quarantine": []})

    L = "unionpay.errn"
    lay = LAYOUTS[L]
    base = {f.name: (0 if f.type.arrow_type == pa.int64() else "") for f in lay.detail.fields}

    def errn(i: int, **kw) -> dict:
        r = dict(base)
        r.update(err_type="CB1", acq_inst_id="48020000", fwd_inst_id="00010344", stan=f"{200001 + i:06d}",
                 txn_time=f"1122{10 + i:02d}0000", pan=f"62220212345678{i:02d}", amount_fen=12800 + i,
                 msg_type="0200", proc_code="000000", mcc="5411", terminal_id="T0000001", orig_rrn="000000100000",
                 pos_cond="00", rcv_inst_id="48020000", issuer_inst_id="01020000", orig_stan=f"{100001 + i:06d}",
                 resp_code="00", pos_entry="051", acq_fee_receivable=0, acq_fee_payable=0, fee_receivable=0,
                 fee_payable=-50, reason_code="4512", orig_txn_time=f"1121{8 + i:02d}1502", orig_settle_date="1121",
                 orig_amount_fen=12800 + i, merchant_id="898320154110001", merchant_name="上海市浦东新区某某超市",
                 special_fee_type="01", special_fee_level="2", card_product="CP01", orig_txn_code="S22",
                 initiator="1", acct_settle_type="00", orig_txn_type="PUR", merchant_fee="000000120",
                 merchant_settle_bank="03080000", merchant_settle_bank_fee="000000030")
        r.update(kw)
        return r

    rows = [errn(0), errn(1, err_type="RTR", merchant_name=f"香港{EAST}方百貨有限公司深圳分公司"),
            errn(2, err_type="CRA", reason_code="4531", merchant_name="ABC Store 123")]
    ok = fixed_width.render_records(table(L, rows), lay.detail, lay)
    case(L, "ok_chinese_merchant_name", "txt", ok, {"records": 3, "loaded": 3, "quarantine": [], "check": [
        {"line": 2, "merchant_name": f"香港{EAST}方百貨有限公司深圳分公司", "special_fee_type": "01",
         "special_fee_level": "2", "card_product": "CP01", "orig_txn_code": "S22",
         "merchant_settle_bank_fee": "000000030", "fee_payable": -50},
        {"line": 1, "merchant_name": "上海市浦东新区某某超市", "merchant_settle_bank": "03080000"}]},
        flag_count=3)
    case(L, "rpm_err_type_line2", "txt", patch(ok, 2, 1, b"RPM"),
         {"records": 3, "loaded": 2, "quarantine": [{"line": 2, "field": "err_type"}]})
    utf8 = ok.replace("上海市浦东新区某某超市".encode("gbk") + b" " * 18,
                      "上海市浦东新区某某超市".encode("utf-8") + b" " * 7)
    case(L, "utf8_merchant_name_instead_of_gbk", "txt", utf8, {"raises": "EncodingError"})
    case(L, "undecodable_merchant_name_line3", "txt", patch(ok, 3, 411, b"\xff\xfe"),
         {"records": 3, "loaded": 2, "quarantine": [{"line": 3, "field": "merchant_name"}]})

    L = "unionpay.errr"
    lay = LAYOUTS[L]
    hdr = {"acq_inst_id": "48020000", "business_date": dt.date(2026, 11, 22), "file_seq": "01"}
    det = [{"err_type": "CB1", "stan": "200001", "txn_time": "1122100000", "decision": "R",
            "decision_amount_fen": 0, "reason_code": "4512", "remark": "重复扣款已核实, 原交易仅一笔"},
           {"err_type": "CRA", "stan": "200003", "txn_time": "1122120000", "decision": "A",
            "decision_amount_fen": 12802, "reason_code": "", "remark": f"同意贷记调整({EAST})"},
           {"err_type": "RTR", "stan": "200002", "txn_time": "1122110000", "decision": "P",
            "decision_amount_fen": 0, "reason_code": "", "remark": ""}]
    trl = {"record_count": 3, "total_decision_amount_fen": 12802}
    ok = fixed_width.render_records(table(L, det), lay.detail, lay)
    ok = fixed_width.render_records(table(L, [hdr], lay.record("header")), lay.record("header"), lay) + ok + \
        fixed_width.render_records(table(L, [trl], lay.record("trailer")), lay.record("trailer"), lay)
    case(L, "ok_20261122", "txt", ok, {"records": 3, "loaded": 3, "quarantine": [],
                                       "header": {"acq_inst_id": "48020000", "business_date": "2026-11-22"},
                                       "trailer": {"record_count": 3, "total_decision_amount_fen": 12802},
                                       "check": [{"line": 3, "remark": f"同意贷记调整({EAST})", "reserved": ""}]})
    case(L, "control_total_off", "txt", patch(ok, 5, 12, b"0000000000012803"),
         {"raises": "ControlTotalMismatch", "message_contains": "total_decision_amount_fen"})
    case(L, "record_count_off", "txt", patch(ok, 5, 2, b"0000000004"),
         {"raises": "ControlTotalMismatch", "message_contains": "record_count"})
    case(L, "missing_trailer", "txt", b"\r\n".join(ok.split(b"\r\n")[:4]) + b"\r\n",
         {"raises": "StructureError", "message_contains": "trailer"})
    case(L, "bad_amount_line3", "txt", patch(ok, 3, 26, b"00000001280X"),
         {"raises": "ControlTotalMismatch", "line": 3, "message_contains": "unreadable"})
    case(L, "bad_decision_line2", "txt", patch(ok, 2, 25, b"X"),
         {"records": 3, "loaded": 2, "quarantine": [{"line": 2, "field": "decision"}]})
    case(L, "trailer_before_detail", "txt", b"\r\n".join([ok.split(b"\r\n")[i] for i in (0, 1, 4, 2, 3)]) + b"\r\n",
         {"raises": "StructureError", "message_contains": "last line"})


# --- PBOC ----------------------------------------------------------------------------------------------------

def pboc() -> None:
    L = "pboc.cnaps2_dzmx"
    lay = LAYOUTS[L]
    det = [
        {"msg_type": "beps.121", "msg_id": "20261121000000012345", "instr_bank": "313100000013",
         "entrust_date": T, "dr_cr": "D", "payer_bank": "313100000013", "payer_acct": "6222000011112222",
         "payer_name": "张三丰", "payee_bank": "102100099996", "payee_acct": "6217000033334444",
         "payee_name": f"{YI}達商貿有限公司", "amount": 123450, "status": "PR00",
         "process_time": dt.datetime(2026, 11, 21, 9, 30, 15)},
        {"msg_type": "hvps.111", "msg_id": "20261121000000000077", "instr_bank": "102100099996",
         "entrust_date": T, "dr_cr": "C", "payer_bank": "102100099996", "payer_acct": "11001234567890",
         "payer_name": f"香港{EAST}方國際貿易有限公司", "payee_bank": "313100000013",
         "payee_acct": "6222000011112222", "payee_name": "张三丰", "amount": 50000000, "status": "PR00",
         "process_time": dt.datetime(2026, 11, 21, 10, 15, 0)},
        {"msg_type": "beps.125", "msg_id": "20261121000000012400", "instr_bank": "313100000013",
         "entrust_date": T, "dr_cr": "D", "payer_bank": "313100000013", "payer_acct": "6222000055556666",
         "payer_name": "李四", "payee_bank": "105100000017", "payee_acct": "6227000077778888",
         "payee_name": "王五", "amount": 8800, "status": "PR09",
         "process_time": dt.datetime(2026, 11, 21, 14, 2, 9)},
        {"msg_type": "beps.121", "msg_id": "20261121000000012499", "instr_bank": "313100000013",
         "entrust_date": T, "dr_cr": "D", "payer_bank": "313100000013", "payer_acct": "6222000099990000",
         "payer_name": "赵六", "payee_bank": "103100000026", "payee_acct": "6228000012121212",
         "payee_name": "钱七", "amount": 100, "status": "PR05",
         "process_time": dt.datetime(2026, 11, 21, 16, 59, 59)},
    ]
    hdr = {"bank_code": "313100000013", "work_date": T, "file_seq": "01", "record_count": 4,
           "debit_total": 123450 + 8800 + 100, "credit_total": 50000000,
           "created_at": dt.datetime(2026, 11, 22, 1, 30, 0)}
    ok = delimited.render(lay, table(L, det), hdr)
    case(L, "ok_20261121", "txt", ok, {
        "records": 4, "loaded": 4, "quarantine": [],
        "header": {"record_count": 4, "debit_total": 132350, "credit_total": 50000000},
        "check": [{"line": 2, "payee_name": f"{YI}達商貿有限公司", "amount": 123450, "status": "PR00"},
                  {"line": 3, "payer_name": f"香港{EAST}方國際貿易有限公司", "payee_bank": "313100000013"}]})
    two = delimited.render(lay, table(L, det[:2]), {**hdr, "record_count": 2, "debit_total": 123450})
    case(L, "gbk_byte_7c_in_name", "txt", two, {"records": 2, "loaded": 2, "quarantine": [], "check": [
        {"line": 3, "payer_name": f"香港{EAST}方國際貿易有限公司", "payer_acct": "11001234567890",
         "payee_bank": "313100000013", "amount": 50000000}]})
    case(L, "debit_total_off", "txt", ok.replace(b"|1323.50|", b"|1323.40|"),
         {"raises": "ControlTotalMismatch", "message_contains": "debit_total"})
    case(L, "bad_amount_line3", "txt", replace_line(ok, 3, ok.split(b"\r\n")[2].replace(b"|500000.00|", b"|500000.0|")),
         {"raises": "ControlTotalMismatch", "line": 3, "message_contains": "unreadable"})
    case(L, "bad_status_line4", "txt", ok.replace(b"|88.00|PR09|", b"|88.00|PR99|"),
         {"records": 4, "loaded": 3, "quarantine": [{"line": 4, "field": "status"}]})
    lines = ok.split(b"\r\n")
    case(L, "wrong_field_count_line5", "txt", replace_line(ok, 5, lines[4].rsplit(b"|", 1)[0]),
         {"raises": "ControlTotalMismatch", "line": 5, "message_contains": "unreadable"})
    case(L, "bad_date_line2", "txt", ok.replace(b"|20261121|D|313100000013|6222000011112222|",
                                                b"|20261131|D|313100000013|6222000011112222|"),
         {"records": 4, "loaded": 3, "quarantine": [{"line": 2, "field": "entrust_date"}]})
    case(L, "missing_header", "txt", b"\r\n".join(lines[1:]), {"raises": "StructureError",
                                                               "message_contains": "header"})
    case(L, "utf8_instead_of_gbk", "txt", ok.decode("gbk").encode("utf-8"), {"raises": "EncodingError"})
    case(L, "lf_line_ends", "txt", ok.replace(b"\r\n", b"\n"), {"raises": "StructureError",
                                                               "message_contains": "LF"})
    case(L, "record_count_off", "txt", ok.replace(b"|01|4|", b"|01|5|"),
         {"raises": "ControlTotalMismatch", "message_contains": "record_count"})


# --- TIPS ----------------------------------------------------------------------------------------------------

def tips_head(msg_no: str, src: str, des: str, seq: int, ref: str | None = None) -> dict:
    msg_id = f"20261121{msg_no}{seq:08d}"
    return {"SRC": src, "DES": des, "MsgID": msg_id, "MsgRef": ref or msg_id, "WorkDate": T}


def tips() -> None:
    L = "tips.3102"
    lay = LAYOUTS[L]

    def payment(no: int, amt: list[int], name: str = "南京某某科技有限公司") -> dict:
        return {"TraNo": f"{no:08d}", "PayOpBkCode": "313301000019", "PayAcct": f"32001100000000{no:04d}",
                "HandOrgName": name, "TraAmt": sum(amt), "TaxVouNo": f"3201000000{no:04d}", "TaxPayName": name,
                "ProtocolNo": f"P320100{no:05d}", "TaxTypeNum": len(amt),
                "TaxTypeList3102": [{"ProjectId": str(k + 1), "TaxTypeName": ["增值税", "城市维护建设税",
                                                                               "教育费附加"][k],
                                     "TaxStartDate": "20261001", "TaxEndDate": "20261031", "TaxTypeAmt": a}
                                    for k, a in enumerate(amt)]}

    pays = [payment(1, [80000000, 2379809]), payment(2, [15000, 1050, 450], f"{EAST}方物流有限公司")]
    hdr = {**tips_head("3102", "100000000000", "313301000019", 1),
           "TaxOrgCode": "13201000000", "EntrustDate": T, "PackNo": "00000001", "AllNum": 2,
           "AllAmt": 82379809 + 16500, "ReturnTerm": 1, "HandleType": "1", "PayeeBankNo": "011301000007",
           "PayeeOrgCode": "1320100", "PayeeAcct": "270100000001", "PayeeName": "国家金库南京市中心支库",
           "PayBkCode": "313301000019"}
    ok = xml.render(lay, table(L, pays), hdr)
    case(L, "ok_pack_gbk", "xml", ok, {"records": 2, "loaded": 2, "quarantine": [],
                                       "header": {"PackNo": "00000001", "AllNum": 2, "AllAmt": 82396309,
                                                  "PayeeName": "国家金库南京市中心支库"},
                                       "check": [{"line": 57, "HandOrgName": f"{EAST}方物流有限公司",
                                                  "TraAmt": 16500, "TaxTypeNum": 3}]},
         flag_count=2)
    rare = "𠀾"  # outside the BMP: four bytes in GB18030, not encodable in GBK
    pays18030 = [dict(pays[0], TaxPayName=f"南京{rare}记餐饮有限公司", HandOrgName=f"南京{rare}记餐饮有限公司")]
    hdr18030 = {**hdr, "AllNum": 1, "AllAmt": 82379809}
    gb18030 = xml.render(lay, table(L, pays18030), hdr18030, encoding="GB18030")
    case(L, "ok_gb18030_four_byte_name", "xml", gb18030, {"records": 1, "loaded": 1, "quarantine": [], "check": [
        {"line": 30, "TaxPayName": f"南京{rare}记餐饮有限公司"}]})
    case(L, "gb18030_bytes_declared_gbk", "xml", gb18030.replace(b'encoding="GB18030"', b'encoding="GBK"'),
         {"raises": "EncodingError", "message_contains": "GBK"})
    case(L, "utf8_declared", "xml", ok.decode("gbk").replace('encoding="GBK"', 'encoding="UTF-8"').encode(),
         {"raises": "EncodingError", "message_contains": "UTF-8"})
    laughs = ('<?xml version="1.0" encoding="GBK"?>\r\n<!DOCTYPE CFX [\r\n <!ENTITY a "ha">\r\n'
              ' <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">\r\n <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">\r\n]>\r\n')
    case(L, "xml_doctype_entity", "xml", laughs.encode() + ok.split(b"\r\n", 1)[1].replace(
        b"<PayeeOrgCode>1320100</PayeeOrgCode>", b"<PayeeOrgCode>&c;</PayeeOrgCode>"),
        {"raises": "UnsafeXml", "message_contains": "DOCTYPE"})
    case(L, "xml_external_entity", "xml", ok.replace(b"?>\r\n", b'?>\r\n<!DOCTYPE CFX SYSTEM "file:///etc/passwd">\r\n',
                                                     1), {"raises": "UnsafeXml"})
    case(L, "allnum_off", "xml", ok.replace(b"<AllNum>2</AllNum>", b"<AllNum>3</AllNum>"),
         {"raises": "ControlTotalMismatch", "message_contains": "AllNum"})
    case(L, "allamt_off", "xml", ok.replace(b"<AllAmt>823963.09</AllAmt>", b"<AllAmt>823963.90</AllAmt>"),
         {"raises": "ControlTotalMismatch", "message_contains": "AllAmt"})
    case(L, "traamt_not_sum_of_tax_types", "xml", ok.replace(b"<TaxTypeAmt>4.50</TaxTypeAmt>",
                                                             b"<TaxTypeAmt>5.40</TaxTypeAmt>"),
         {"raises": "RecordRuleBroken", "message_contains": "TraAmt"})
    case(L, "taxtypenum_off", "xml", ok.replace(b"<TaxTypeNum>3</TaxTypeNum>", b"<TaxTypeNum>2</TaxTypeNum>"),
         {"raises": "RecordRuleBroken", "message_contains": "TaxTypeNum"})
    case(L, "duplicate_trano", "xml", ok.replace(b"<TraNo>00000002</TraNo>", b"<TraNo>00000001</TraNo>"),
         {"raises": "DuplicateKey", "message_contains": "TraNo"})
    case(L, "payacct_missing_in_payment2", "xml", ok.replace(b"      <PayAcct>320011000000000002</PayAcct>\r\n", b""),
         {"records": 2, "loaded": 1, "quarantine": [{"line": 57, "field": "PayAcct"}]})
    case(L, "not_well_formed", "xml", ok.replace(b"</BatchHead3102>", b"</BatchHead>"),
         {"raises": "StructureError", "message_contains": "well-formed"})
    case(L, "batch_head_missing", "xml", re.sub(rb"    <BatchHead3102>.*?</BatchHead3102>\r\n", b"", ok, flags=re.S),
         {"raises": "StructureError", "message_contains": "BatchHead3102"})

    L = "tips.2102"
    lay = LAYOUTS[L]
    rets = [{"OriTraNo": "00000001", "TraAmt": 82379809, "TaxVouNo": "32010000000001", "TaxDate": T,
             "Result": "90000", "AddWord": "扣款成功"},
            {"OriTraNo": "00000002", "TraAmt": 16500, "TaxVouNo": "32010000000002", "TaxDate": T,
             "Result": "24020", "AddWord": "余额不足"}]
    hdr = {**tips_head("2102", "313301000019", "100000000000", 1, ref="20261121310200000001"),
           "OriTaxOrgCode": "13201000000", "OriEntrustDate": T, "OriPackNo": "00000001", "AllNum": 2,
           "AllAmt": 82396309, "SuccNum": 1, "SuccAmt": 82379809, "Result": "90000", "AddWord": "处理完成"}
    ok = xml.render(lay, table(L, rets), hdr)
    case(L, "ok_pack_processed", "xml", ok, {"records": 2, "loaded": 2, "quarantine": [],
                                             "header": {"SuccNum": 1, "SuccAmt": 82379809, "MsgRef": "20261121310200000001"}})
    no_returns = lay.arrow_schema().empty_table()
    rejected = xml.render(lay, no_returns, {**hdr, "SuccNum": 0, "SuccAmt": 0, "Result": "94999",
                                            "AddWord": "批量包校验失败: TraNo 重复"})
    case(L, "ok_pack_rejected_whole", "xml", rejected, {"records": 0, "loaded": 0, "quarantine": [],
                                                        "header": {"Result": "94999", "AllNum": 2}})
    case(L, "succamt_off", "xml", ok.replace(b"<SuccAmt>823798.09</SuccAmt>", b"<SuccAmt>823963.09</SuccAmt>"),
         {"raises": "ControlTotalMismatch", "message_contains": "SuccAmt"})

    L = "tips.3111"
    lay = LAYOUTS[L]
    cmp_ = [{"PayOpBkCode": "313301000019", "PayAcct": "320011000000000001", "OriTaxOrgCode": "13201000000",
             "OriEntrustDate": T, "OriPackNo": "00000001", "OriTraNo": "00000001", "TraAmt": 82379809,
             "TaxVouNo": "32010000000001", "TaxPayName": "南京某某科技有限公司", "ProtocolNo": "P32010000001"}]
    hdr = {**tips_head("3111", "100000000000", "313301000019", 7),
           "PayBkCode": "313301000019", "ChkDate": T, "ChkAcctOrd": "0001", "PriorChkAcctOrd": "",
           "PayeeBankNo": "011301000007", "ChkAcctType": "1", "AllNum": 1, "AllAmt": 82379809, "ChildPackNum": 1,
           "CurPackNo": 1, "CurPackNum": 1, "CurPackAmt": 82379809}
    ok = xml.render(lay, table(L, cmp_), hdr)
    case(L, "ok_day_end", "xml", ok, {"records": 1, "loaded": 1, "quarantine": [],
                                      "header": {"ChkAcctType": "1", "CurPackNum": 1}})
    case(L, "cur_pack_amt_off", "xml", ok.replace(b"<CurPackAmt>823798.09</CurPackAmt>",
                                                  b"<CurPackAmt>823798.00</CurPackAmt>"),
         {"raises": "ControlTotalMismatch", "message_contains": "CurPackAmt"})


# --- housing fund --------------------------------------------------------------------------------------------

def housing_fund() -> None:
    L = "housing_fund.bdc_bat"
    lay = LAYOUTS[L]
    items103 = [{"seq_no": 1, "amount": 5000000, "acct_no": "6217000011110001", "acct_name": "张三",
                 "summary": "公积金提取", "fund_acct": "320100000001", "fund_txn_no": "TQ2026112100001",
                 "fund_txn_no2": "", "principal": 5000000, "interest": 0},
                {"seq_no": 2, "amount": 1234567, "acct_no": "6217000011110002", "acct_name": f"{EAST}方红",
                 "summary": "", "fund_acct": "320100000002", "fund_txn_no": "TQ2026112100002",
                 "fund_txn_no2": "X2", "principal": 1200000, "interest": 34567},
                {"seq_no": 3, "amount": 100, "acct_no": "6217000011110003", "acct_name": "李四",
                 "summary": "销户提取", "fund_acct": "320100000003", "fund_txn_no": "TQ2026112100003",
                 "fund_txn_no2": "", "principal": 99, "interest": 1}]
    hdr = {"tx_code": "BDC103", "batch_no": "32010000000000100000000000000000123",
           "center_acct": "32001881236052500001", "center_acct_name": "南京住房公积金管理中心", "entrust_date": T,
           "record_count": 3, "total_amount": 5000000 + 1234567 + 100, "bus_type": "11", "summary": "提取"}
    ok = delimited.render(lay, table(L, items103), hdr)
    case(L, "ok_bdc103", "dat", ok, {"records": 3, "loaded": 3, "quarantine": [],
                                     "header": {"tx_code": "BDC103", "total_amount": 6234667},
                                     "check": [{"line": 3, "acct_name": f"{EAST}方红", "fund_txn_no2": "X2",
                                                "principal": 1200000, "interest": 34567}]})
    items104 = [{k: v for k, v in r.items() if k not in ("fund_txn_no2", "principal", "interest")}
                for r in items103[:2]]
    hdr104 = {**hdr, "tx_code": "BDC104", "record_count": 2, "total_amount": 6234567, "bus_type": "01",
              "summary": "汇缴"}
    ok104 = delimited.render(lay, table(L, items104, lay.record("item_104")), hdr104)
    case(L, "ok_bdc104", "dat", ok104, {"records": 2, "loaded": 2, "quarantine": [], "check": [
        {"line": 3, "acct_name": f"{EAST}方红", "fund_txn_no": "TQ2026112100002", "fund_txn_no2": None,
         "principal": None}]})
    case(L, "principal_plus_interest_off_line3", "dat", ok.replace(b"@|$12000.00@|$", b"@|$12000.01@|$"),
         {"records": 3, "loaded": 2, "quarantine": [{"line": 3, "field": "amount"}]})
    case(L, "total_amount_off", "dat", ok.replace(b"@|$62346.67@|$", b"@|$62346.76@|$"),
         {"raises": "ControlTotalMismatch", "message_contains": "total_amount"})
    lines = ok.split(b"\n")
    case(L, "missing_trailing_separator_line4", "dat", replace_line(ok, 4, lines[3][:-3], b"\n"),
         {"raises": "ControlTotalMismatch", "line": 4})
    case(L, "bdc104_item_with_10_fields_line2", "dat",
         replace_line(ok104, 2, ok104.split(b"\n")[1] + b"@|$0.00@|$0.00@|$", b"\n"),
         {"raises": "ControlTotalMismatch", "line": 2})
    case(L, "crlf_line_ends", "dat", ok.replace(b"\n", b"\r\n"), {"raises": "StructureError",
                                                                 "message_contains": "CRLF"})
    case(L, "unknown_tx_code", "dat", ok.replace(b"H@|$BDC103@|$", b"H@|$BDC105@|$"),
         {"raises": "StructureError", "message_contains": "tx_code"})
    case(L, "duplicate_seq_no", "dat", ok.replace(b"\n3@|$1.00@|$", b"\n2@|$1.00@|$"),
         {"raises": "DuplicateKey", "message_contains": "seq_no"})
    case(L, "zero_amount_line4", "dat", ok.replace(b"\n3@|$1.00@|$", b"\n3@|$0.00@|$").replace(
        b"@|$0.99@|$0.01@|$", b"@|$0.00@|$0.00@|$").replace(b"@|$62346.67@|$", b"@|$62345.67@|$"),
        {"records": 3, "loaded": 2, "quarantine": [{"line": 4, "field": "amount"}]})

    L = "housing_fund.bdc_res"
    lay = LAYOUTS[L]
    res = [{"seq_no": 1, "amount": 5000000, "payer_acct": "32001881236052500001",
            "payer_name": "南京住房公积金管理中心", "payee_acct": "6217000011110001", "payee_name": "张三",
            "resp_code": "0000", "resp_msg": "成功", "host_date": dt.date(2026, 11, 22),
            "host_journal_no": "20261122000000000101", "receipt_no": "TQ2026112100001"},
           {"seq_no": 2, "amount": 1234567, "payer_acct": "32001881236052500001",
            "payer_name": "南京住房公积金管理中心", "payee_acct": "6217000011110002", "payee_name": f"{EAST}方红",
            "resp_code": "3003", "resp_msg": "户名不符", "host_date": None, "host_journal_no": "",
            "receipt_no": "TQ2026112100002"},
           {"seq_no": 3, "amount": 100, "payer_acct": "32001881236052500001",
            "payer_name": "南京住房公积金管理中心", "payee_acct": "6217000011110003", "payee_name": "李四",
            "resp_code": "0000", "resp_msg": "成功", "host_date": dt.date(2026, 11, 22),
            "host_journal_no": "20261122000000000102", "receipt_no": "TQ2026112100003"}]
    summ = {"date": dt.date(2026, 11, 22), "unit_no": "320100000000001",
            "batch_no": "32010000000000100000000000000000123", "tx_code": "BDC103", "bus_type": "11",
            "total_count": 3, "total_amount": 6234667, "succ_count": 2, "succ_amount": 5000100, "fail_count": 1,
            "fail_amount": 1234567, "summary": "提取"}
    ok = delimited.render(lay, table(L, res), summ)
    case(L, "ok_result", "dat", ok, {"records": 3, "loaded": 3, "quarantine": [],
                                     "header": {"succ_count": 2, "fail_amount": 1234567},
                                     "check": [{"line": 3, "payee_name": f"{EAST}方红", "host_date": None,
                                                "resp_code": "3003"}]})
    case(L, "succ_count_off", "dat", ok.replace(b"|6234667.00|2|", b"|6234667.00|3|").replace(b"|62346.67|2|", b"|62346.67|3|"),
         {"raises": "ControlTotalMismatch", "message_contains": "succ_count"})
    case(L, "missing_summary", "dat", b"\n".join(ok.split(b"\n")[1:]),
         {"raises": "StructureError", "message_contains": "summary"})


# --- utilities -----------------------------------------------------------------------------------------------

def utility() -> None:
    L = "utility.dk"
    lay = LAYOUTS[L]
    det = [{"serial_no": f"{i:08d}", "contract_no": f"WA{i:010d}", "account_no": f"62170000222200{i:02d}",
            "account_name": name, "amount_fen": amt, "billing_period": "202610", "remark": remark}
           for i, (name, amt, remark) in enumerate([("张三", 4560, "10月水费"), (f"{EAST}方明", 12800, ""),
                                                    ("欧阳娜娜", 99, "滞纳金含"), ("李四", 30000, "")], start=1)]
    hdr = {"utility_code": "WATER001", "biz_type": "01", "batch_no": "WB2026112101", "batch_date": T,
           "record_count": 4, "total_amount_fen": 4560 + 12800 + 99 + 30000, "settle_account": "32001881236052500099"}
    ok = fixed_width.render_records(table(L, [hdr], lay.record("header")), lay.record("header"), lay) + \
        fixed_width.render_records(table(L, det), lay.detail, lay)
    case(L, "ok_20261121", "txt", ok, {"records": 4, "loaded": 4, "quarantine": [],
                                       "header": {"batch_no": "WB2026112101", "total_amount_fen": 47459},
                                       "check": [{"line": 3, "account_name": f"{EAST}方明", "amount_fen": 12800,
                                                  "billing_period": "202610", "remark": ""}]}, flag_count=4)
    case(L, "control_total_off", "txt", patch(ok, 1, 40, b"000000000047458"),
         {"raises": "ControlTotalMismatch", "message_contains": "total_amount_fen"})
    case(L, "bad_amount_line3", "txt", patch(ok, 3, 102, b"00000000001280O"),
         {"raises": "ControlTotalMismatch", "line": 3, "message_contains": "unreadable"})
    case(L, "zero_amount_line4", "txt", patch(patch(ok, 4, 102, b"000000000000000"), 1, 40, b"000000000047360"),
         {"records": 4, "loaded": 3, "quarantine": [{"line": 4, "field": "amount_fen"}]})
    case(L, "blank_account_line5", "txt", patch(ok, 5, 30, b" " * 32),
         {"records": 4, "loaded": 3, "quarantine": [{"line": 5, "field": "account_no"}]})
    case(L, "missing_header", "txt", b"\r\n".join(ok.split(b"\r\n")[1:]),
         {"raises": "StructureError", "message_contains": "header"})
    case(L, "truncated_record_line3", "txt", replace_line(ok, 3, ok.split(b"\r\n")[2][:150]),
         {"raises": "ControlTotalMismatch", "line": 3})
    case(L, "unknown_record_type_line2", "txt", patch(ok, 2, 1, b"X"),
         {"raises": "ControlTotalMismatch", "line": 2})
    utf8 = ok.replace(f"{EAST}方明".encode("gbk") + b"      ", f"{EAST}方明".encode("utf-8") + b"   ")
    case(L, "utf8_instead_of_gbk", "txt", utf8, {"raises": "EncodingError"})
    case(L, "record_count_off", "txt", patch(ok, 1, 32, b"00000005"),
         {"raises": "ControlTotalMismatch", "message_contains": "record_count"})

    L = "utility.hp"
    lay = LAYOUTS[L]
    res = [dict(det[0], deducted_fen=4560, result_code="0000", result_msg="扣款成功",
                journal_no="20261122000000000201"),
           dict(det[1], deducted_fen=0, result_code="1001", result_msg="余额不足", journal_no=""),
           dict(det[2], deducted_fen=99, result_code="0000", result_msg="扣款成功", journal_no="20261122000000000202"),
           dict(det[3], deducted_fen=0, result_code="1003", result_msg="户名不符", journal_no="")]
    for r in res:
        r.pop("billing_period")
        r.pop("remark")
    hdr = {"utility_code": "WATER001", "biz_type": "01", "batch_no": "WB2026112101", "batch_date": T,
           "record_count": 4, "total_amount_fen": 47459, "success_count": 2, "success_amount_fen": 4659,
           "fail_count": 2, "fail_amount_fen": 42800, "process_date": dt.date(2026, 11, 22)}
    ok = fixed_width.render_records(table(L, [hdr], lay.record("header")), lay.record("header"), lay) + \
        fixed_width.render_records(table(L, res), lay.detail, lay)
    case(L, "ok_20261121", "txt", ok, {"records": 4, "loaded": 4, "quarantine": [],
                                       "header": {"success_count": 2, "fail_amount_fen": 42800},
                                       "check": [{"line": 3, "result_msg": "余额不足", "journal_no": ""}]})
    case(L, "success_count_off", "txt", patch(ok, 1, 55, b"00000003"),
         {"raises": "ControlTotalMismatch", "message_contains": "success_count"})
    case(L, "unknown_result_code_line5", "txt", patch(ok, 5, 132, b"8888"),
         {"records": 4, "loaded": 3, "quarantine": [{"line": 5, "field": "result_code"}]})


# --- payroll -------------------------------------------------------------------------------------------------

PAYROLL_ROWS = [
    {"seq_no": 1, "account_no": "6222021234560001", "account_name": "张三", "amount_fen": 1234550, "remark": "11月工资"},
    {"seq_no": 2, "account_no": "0062170000333", "account_name": "李四, 王", "amount_fen": 800000, "remark": ""},
    {"seq_no": 3, "account_no": "6222021234560003", "account_name": f"{EAST}方红", "amount_fen": 5, "remark": "补发"},
]
PAYROLL_HEADER = {"title": "XX科技有限公司2026年11月工资", "payer_acct": "32001881236052500777",
                  "payer_name": "XX科技有限公司", "purpose": "工资"}


def _workbook(rows: list[list], sheet: str = "代发明细", text_cols=(), formula_cells: dict | None = None) -> bytes:
    """A workbook built cell by cell (for broken cases the writer would refuse to produce)."""
    from openpyxl import Workbook
    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    for r, values in enumerate(rows, start=1):
        for c, v in enumerate(values, start=1):
            if v is not None:
                ws.cell(row=r, column=c, value=v)
    for ref, formula in (formula_cells or {}).items():
        ws[ref] = formula
    return workbook_bytes(wb)


def workbook_bytes(wb, stamp: dt.datetime = dt.datetime(2026, 11, 21)) -> bytes:
    """An openpyxl workbook's bytes, dated `stamp` throughout (openpyxl's own save dates it with the clock)."""
    from openpyxl.writer.excel import ExcelWriter
    wb.properties.created = wb.properties.modified = stamp
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(wb, archive).write_data()
    return excel._fix_zip(buf.getvalue(), stamp)


def edit_part(xlsx: bytes, part: str, edit) -> bytes:
    """The workbook with one zip part replaced by `edit(its bytes)` (the other parts as they are)."""
    src = zipfile.ZipFile(io.BytesIO(xlsx))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info, edit(data) if info.filename == part else data)
    return out.getvalue()


def _cached(xlsx: bytes, ref: str, value: str) -> bytes:
    """Give a formula cell a cached value, as Excel itself would have saved it."""
    return edit_part(xlsx, "xl/worksheets/sheet1.xml", lambda data: re.sub(
        rf'(<c r="{ref}"[^>]*>)<f>([^<]*)</f>(<v\s*/>|<v></v>)?'.encode(),
        rb"\1<f>\2</f><v>" + value.encode() + b"</v>", data))


def payroll() -> None:
    L = "payroll.batch_xlsx"
    lay = LAYOUTS[L]
    trl = {"record_count": 3, "total_amount_fen": 1234550 + 800000 + 5}
    ok = excel.render(lay, table(L, PAYROLL_ROWS), PAYROLL_HEADER, trl, T)
    case(L, "ok_20261121", "xlsx", ok, {"records": 3, "loaded": 3, "quarantine": [],
                                        "header": {"payer_acct": "32001881236052500777", "purpose": "工资"},
                                        "trailer": {"record_count": 3, "total_amount_fen": 2034555},
                                        "check": [{"line": 7, "account_no": "0062170000333",
                                                   "account_name": "李四, 王", "amount_fen": 800000}]})
    top = [["XX科技有限公司2026年11月工资"], ["付款账号", "32001881236052500777"], ["付款户名", "XX科技有限公司"],
           ["用途", "工资"], ["序号", "收款账号", "收款户名", "金额", "备注"]]
    data = [[1, "6222021234560001", "张三", 12345.5, "11月工资"], [2, "0062170000333", "李四, 王", 8000, None],
            [3, "6222021234560003", f"{EAST}方红", 0.05, "补发"]]

    def book(rows, total=("合计", 3, None, 20345.55), **kw) -> bytes:
        return _workbook(top + rows + ([list(total)] if total else []), **kw)

    case(L, "ok_numbers_as_entered", "xlsx", book(data), {"records": 3, "loaded": 3, "quarantine": [], "check": [
        {"line": 6, "amount_fen": 1234550}, {"line": 8, "amount_fen": 5}]})
    case(L, "excel_account_as_number_row7", "xlsx",
         book([data[0], [2, 62170000333, "李四, 王", 8000, None], data[2]]),
         {"records": 3, "loaded": 2, "quarantine": [{"line": 7, "field": "account_no"}]})
    case(L, "amount_three_decimals_row8", "xlsx",
         book([data[0], data[1], [3, "6222021234560003", f"{EAST}方红", 0.055, "补发"]], total=("合计", 2, None, 20345.5)),
         {"records": 3, "loaded": 2, "quarantine": [{"line": 8, "field": "amount_fen"}]})
    case(L, "formula_without_cached_value_row7", "xlsx",
         book([data[0], [2, "0062170000333", "李四, 王", None, None], data[2]], total=("合计", 2, None, 12345.55),
              formula_cells={"D7": "=4000*2"}),
         {"records": 3, "loaded": 2, "quarantine": [{"line": 7, "field": "amount_fen"}]})
    case(L, "formula_with_cached_value", "xlsx",
         _cached(book([data[0], [2, "0062170000333", "李四, 王", None, None], data[2]],
                      formula_cells={"D7": "=4000*2"}), "D7", "8000"),
         {"records": 3, "loaded": 3, "quarantine": [], "check": [{"line": 7, "amount_fen": 800000}]})
    case(L, "empty_rows_between", "xlsx", book([data[0], [], [None, None, None, None, None], data[1], data[2]]),
         {"records": 3, "loaded": 3, "quarantine": [], "check": [{"line": 9, "account_no": "0062170000333"}]})
    case(L, "total_off", "xlsx", book(data, total=("合计", 3, None, 20345.56)),
         {"raises": "ControlTotalMismatch", "message_contains": "total_amount_fen"})
    case(L, "missing_total_row", "xlsx", book(data, total=None),
         {"raises": "StructureError", "message_contains": "合计"})
    case(L, "wrong_sheet_name", "xlsx", book(data, sheet="Sheet1"),
         {"raises": "StructureError", "message_contains": "代发明细"})
    case(L, "duplicate_seq_no", "xlsx", book([data[0], [1] + data[1][1:], data[2]]),
         {"raises": "DuplicateKey", "message_contains": "seq_no"})
    case(L, "payer_account_as_number", "xlsx", _workbook(
        [top[0], ["付款账号", 32001881236052500777], *top[2:]] + data + [["合计", 3, None, 20345.55]]),
        {"raises": "StructureError", "message_contains": "B2"})

    L = "payroll.result_xlsx"
    lay = LAYOUTS[L]
    res = [dict(PAYROLL_ROWS[0], result="成功", fail_reason=""),
           dict(PAYROLL_ROWS[1], result="失败", fail_reason="户名不符"),
           dict(PAYROLL_ROWS[2], result="成功", fail_reason="")]
    trl = {"success_count": 2, "success_amount_fen": 1234555, "fail_count": 1, "fail_amount_fen": 800000}
    ok = excel.render(lay, table(L, res), PAYROLL_HEADER, trl, dt.date(2026, 11, 22))
    case(L, "ok_20261121_RESULT", "xlsx", ok, {"records": 3, "loaded": 3, "quarantine": [],
                                               "trailer": {"success_count": 2, "fail_amount_fen": 800000},
                                               "check": [{"line": 7, "result": "失败", "fail_reason": "户名不符"}]})
    case(L, "success_total_off", "xlsx",
         excel.render(lay, table(L, res), PAYROLL_HEADER, {**trl, "success_amount_fen": 1234550}, dt.date(2026, 11, 22)),
         {"raises": "ControlTotalMismatch", "message_contains": "success_amount_fen"})

    L = "payroll.batch_csv"
    lay = LAYOUTS[L]
    hdr = {"payer_acct": "32001881236052500777", "payer_name": "XX科技有限公司", "purpose": "工资",
           "record_count": 3, "total_amount_fen": 2034555}
    ok = delimited.render(lay, table(L, PAYROLL_ROWS), hdr)
    case(L, "ok_20261121", "csv", ok, {"records": 3, "loaded": 3, "quarantine": [],
                                       "header": {"record_count": 3, "total_amount_fen": 2034555},
                                       "check": [{"line": 5, "account_name": "李四, 王", "account_no": "0062170000333"},
                                                 {"line": 6, "account_name": f"{EAST}方红", "amount_fen": 5}]})
    case(L, "amount_three_decimals_line6", "csv",
         ok.replace(b",0.05,", b",0.055,").replace(b",3,20345.55", b",2,20345.50"),
         {"records": 3, "loaded": 2, "quarantine": [{"line": 6, "field": "amount_fen"}]})
    case(L, "total_off", "csv", ok.replace(b",3,20345.55", b",3,20345.56"),
         {"raises": "ControlTotalMismatch", "message_contains": "total_amount_fen"})
    case(L, "duplicate_seq_no", "csv", ok.replace(b"\r\n3,", b"\r\n2,"),
         {"raises": "DuplicateKey", "message_contains": "seq_no"})
    case(L, "missing_titles_line", "csv", b"\r\n".join(ok.split(b"\r\n")[1:]),
         {"raises": "StructureError"})
    case(L, "utf8_instead_of_gbk", "csv", ok.decode("gbk").encode("utf-8"), {"raises": "EncodingError"})
    case(L, "unbalanced_quote_line5", "csv", ok.replace(b'"\xc0\xee\xcb\xc4, \xcd\xf5"', b'"\xc0\xee\xcb\xc4, \xcd\xf5'),
         {"raises": "ControlTotalMismatch"})

    L = "payroll.result_csv"
    lay = LAYOUTS[L]
    ok = delimited.render(lay, table(L, res), hdr, trl)
    case(L, "ok_20261121_RESULT", "csv", ok, {"records": 3, "loaded": 3, "quarantine": [],
                                              "trailer": {"success_count": 2, "success_amount_fen": 1234555},
                                              "check": [{"line": 5, "result": "失败", "fail_reason": "户名不符"}]})
    case(L, "missing_total_line", "csv", b"\r\n".join(ok.split(b"\r\n")[:-2]) + b"\r\n",
         {"raises": "StructureError", "message_contains": "trailer"})


# --- ledger --------------------------------------------------------------------------------------------------

def ledger() -> None:
    L = "ledger.journal"
    lay = LAYOUTS[L]
    rows = [
        {"acct_date": T, "journal_no": "20261121000000000001", "seq_no": 1, "channel": "UNIONPAY_ACQ",
         "channel_ref": "1000011121081502", "batch_no": None, "txn_time": dt.datetime(2026, 11, 21, 8, 15, 2),
         "account_no": "6222021234567800", "account_name": "张三", "dr_cr": "D", "amount_fen": 12800,
         "currency": "CNY", "status": "S", "reason_code": None, "reversal_of": None, "memo": "POS 消费"},
        {"acct_date": T, "journal_no": "20261121000000000002", "seq_no": 1, "channel": "UTILITY",
         "channel_ref": "WB202611210100000002", "batch_no": "WB2026112101",
         "txn_time": dt.datetime(2026, 11, 21, 23, 5, 0), "account_no": "6217000022220002",
         "account_name": f"{EAST}方明", "dr_cr": "D", "amount_fen": 12800, "currency": "CNY", "status": "F",
         "reason_code": "E001", "reversal_of": None, "memo": "代扣水费, 余额不足"},
        {"acct_date": T, "journal_no": "20261121000000000003", "seq_no": 2, "channel": "CNAPS",
         "channel_ref": "beps.121:313100000013:20261121000000012345", "batch_no": None,
         "txn_time": dt.datetime(2026, 11, 21, 9, 30, 16), "account_no": "6222000011112222",
         "account_name": "张三丰", "dr_cr": "D", "amount_fen": 123450, "currency": "CNY", "status": "S",
         "reason_code": None, "reversal_of": None, "memo": 'he said "ok"'},
    ]
    ok = delimited.render(lay, table(L, rows))
    case(L, "ok_20261121", "csv", ok, {"records": 3, "loaded": 3, "quarantine": [], "check": [
        {"line": 3, "batch_no": "WB2026112101", "memo": "代扣水费, 余额不足", "reason_code": "E001",
         "txn_time": "2026-11-21 23:05:00"},
        {"line": 2, "batch_no": None, "reversal_of": None, "acct_date": "2026-11-21"},
        {"line": 4, "memo": 'he said "ok"'}]}, flag_count=3)
    case(L, "bad_amount_line3", "csv", ok.replace(b",D,12800,CNY,F,", b",D,128.00,CNY,F,"),
         {"records": 3, "loaded": 2, "quarantine": [{"line": 3, "field": "amount_fen"}]})
    case(L, "wrong_heading", "csv", ok.replace(b"amount_fen,currency", b"amount,currency", 1),
         {"raises": "StructureError", "message_contains": "amount_fen"})
    case(L, "wrong_field_count_line4", "csv", ok.replace(b',"he said ""ok"""', b""),
         {"records": 3, "loaded": 2, "quarantine": [{"line": 4, "field": "record"}]})
    case(L, "crlf_line_ends", "csv", ok.replace(b"\n", b"\r\n"),
         {"raises": "StructureError", "message_contains": "CRLF"})
    case(L, "gbk_instead_of_utf8", "csv", ok.decode("utf-8").encode("gbk"), {"raises": "EncodingError"})
    case(L, "bad_timestamp_line2", "csv", ok.replace(b"2026-11-21 08:15:02", b"2026-11-21T08:15:02"),
         {"records": 3, "loaded": 2, "quarantine": [{"line": 2, "field": "txn_time"}]})

    L = "ledger.entries"
    lay = LAYOUTS[L]
    ents = [{"voucher_no": "UNIONPAY_ACQ-20261121-CLR-0001", "line_no": 1, "acct_date": T, "account_no": "CUPS-CLR",
             "dr_cr": "D", "amount_fen": 64000, "currency": "CNY", "memo": "银联清算, 交易净额",
             "source_ref": "IND26112101ACOMN"},
            {"voucher_no": "UNIONPAY_ACQ-20261121-CLR-0001", "line_no": 2, "acct_date": T,
             "account_no": "MERCH-STL", "dr_cr": "C", "amount_fen": 64000, "currency": "CNY",
             "memo": "银联清算, 交易净额", "source_ref": "IND26112101ACOMN"}]
    ok = delimited.render(lay, table(L, ents))
    case(L, "ok_unionpay_acq_20261121", "csv", ok, {"records": 2, "loaded": 2, "quarantine": [], "check": [
        {"line": 3, "account_no": "MERCH-STL", "memo": "银联清算, 交易净额"}]})
    case(L, "bad_acct_date_line2", "csv", ok.replace(b",1,2026-11-21,", b",1,2026-11-31,"),
         {"records": 2, "loaded": 1, "quarantine": [{"line": 2, "field": "acct_date"}]})
    case(L, "voucher_unbalanced", "csv", ok.replace(b",MERCH-STL,C,64000,", b",MERCH-STL,C,64001,"),
         {"raises": "ControlTotalMismatch", "message_contains": "UNIONPAY_ACQ-20261121-CLR-0001 does not balance"})


# --- more broken cases, derived from the valid samples written above ------------------------------------------

def line_of(data: bytes, needle: bytes, nth: int = 1) -> int:
    """The 1-based line of the nth occurrence of `needle` (where an XML record's start tag sits)."""
    at = -1
    for _ in range(nth):
        at = data.index(needle, at + 1)
    return data[:at].count(b"\n") + 1


def more_broken() -> None:
    """A few more broken cases for the layouts with the fewest, each a valid sample with one fault."""
    def ok(layout: str, name: str) -> bytes:
        return (ROOT / layout.replace(".", "/", 1) / name).read_bytes()

    L = "tips.2102"
    data = ok(L, "ok_pack_processed.xml")
    case(L, "succnum_off", "xml", data.replace(b"<SuccNum>1</SuccNum>", b"<SuccNum>2</SuccNum>"),
         {"raises": "ControlTotalMismatch", "message_contains": "SuccNum"})
    second = line_of(data, b"<BatchReturn2102>", 2)
    case(L, "bad_taxdate_return2", "xml", data.replace(b"<TaxDate>20261121</TaxDate>\r\n      <Result>24020",
                                                       b"<TaxDate>20261131</TaxDate>\r\n      <Result>24020"),
         {"records": 2, "loaded": 1, "quarantine": [{"line": second, "field": "TaxDate"}]})

    L = "tips.3111"
    data = ok(L, "ok_day_end.xml")
    case(L, "curpacknum_off", "xml", data.replace(b"<CurPackNum>1</CurPackNum>", b"<CurPackNum>2</CurPackNum>"),
         {"raises": "ControlTotalMismatch", "message_contains": "CurPackNum"})
    case(L, "oritrano_not_digits", "xml", data.replace(b"<OriTraNo>00000001</OriTraNo>",
                                                       b"<OriTraNo>0000000A</OriTraNo>"),
         {"records": 1, "loaded": 0, "quarantine": [{"line": line_of(data, b"<BankCompare3111>"),
                                                     "field": "OriTraNo"}]})
    case(L, "traamt_three_decimals", "xml", data.replace(b"<TraAmt>823798.09</TraAmt>",
                                                         b"<TraAmt>823798.091</TraAmt>"),
         {"raises": "ControlTotalMismatch", "message_contains": "unreadable"})

    L = "payroll.result_csv"
    data = ok(L, "ok_20261121_RESULT.csv")
    case(L, "success_count_off", "csv", data.replace("合计,2,".encode("gbk"), "合计,3,".encode("gbk")),
         {"raises": "ControlTotalMismatch", "message_contains": "success_count"})
    case(L, "utf8_instead_of_gbk", "csv", data.decode("gbk").encode("utf-8"), {"raises": "EncodingError"})

    L = "payroll.result_xlsx"
    from openpyxl import load_workbook
    data = ok(L, "ok_20261121_RESULT.xlsx")

    def edited(change) -> bytes:
        wb = load_workbook(io.BytesIO(data))
        change(wb.active)
        return workbook_bytes(wb, dt.datetime(2026, 11, 22))

    total_row = next(r for r in range(1, 20) if load_workbook(io.BytesIO(data)).active.cell(r, 1).value == "合计")
    case(L, "fail_count_off", "xlsx", edited(lambda ws: ws.cell(total_row, 4, 2)),
         {"raises": "ControlTotalMismatch", "message_contains": "fail_count"})
    case(L, "missing_total_row", "xlsx", edited(lambda ws: ws.delete_rows(total_row)),
         {"raises": "StructureError", "message_contains": "合计"})

    L = "ledger.entries"
    data = ok(L, "ok_unionpay_acq_20261121.csv")
    case(L, "wrong_heading", "csv", data.replace(b"voucher_no,", b"voucher,", 1),
         {"raises": "StructureError", "line": 1, "message_contains": "heading"})
    case(L, "lf_line_ends", "csv", data.replace(b"\r\n", b"\n"), {"raises": "StructureError",
                                                                   "message_contains": "LF"})

    L = "housing_fund.bdc_res"
    data = ok(L, "ok_result.dat")
    case(L, "unknown_resp_code_line3", "dat", data.replace(b"|3003|", b"|9999|"),
         {"records": 3, "loaded": 2, "quarantine": [{"line": 3, "field": "resp_code"}]})

    L = "utility.hp"
    data = ok(L, "ok_20261121.txt")
    f = LAYOUTS[L].record("header").field("success_amount_fen")
    case(L, "success_amount_off", "txt", patch(data, 1, f.start, b"1".rjust(f.width, b"0")),
         {"raises": "ControlTotalMismatch", "message_contains": "success_amount_fen"})


def main() -> None:
    for d in DIRS:
        folder = ROOT / d
        if folder.exists():
            shutil.rmtree(folder)
    unionpay()
    pboc()
    tips()
    housing_fund()
    utility()
    payroll()
    ledger()
    more_broken()
    print(f"wrote {sum(1 for _ in ROOT.rglob('*.expected.json')) - sum(1 for _ in (ROOT / 'nights').rglob('*.expected.json'))} cases")


if __name__ == "__main__":
    main()
