"""Generate N valid UnionPay ACOMN records fast (vectorised), with their flag file.

    python bench/gen_acomn.py N OUT_DIR [--date 20261121] [--seed 1]

Writes `OUT_DIR/IND{YYMMDD}01ACOMN` and its `.ok` flag. Every record is valid per specs/unionpay.md: keys
(stan, txn_time) are unique, amounts are digits of fen, fees are C/D + 11 digits, and one record in 50 has a GBK
(Chinese) order_id so that the reader's GBK path is exercised. The same N, date and seed give the same bytes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from formats.flag import Flag  # noqa: E402
from formats.specs.unionpay.acomn import LAYOUT  # noqa: E402

WIDTH = LAYOUT.record_bytes
LINE = WIDTH + 2
CHUNK = 500_000
FIELDS = {f.name: f for f in LAYOUT.detail.fields}


def _template() -> np.ndarray:
    rec = bytearray(b" " * WIDTH)

    def put(name: str, value: str) -> None:
        f = FIELDS[name]
        raw = value.encode("gbk")
        assert len(raw) <= f.width, name
        rec[f.start - 1: f.start - 1 + len(raw)] = raw

    for name, value in {
        "acq_inst_id": "48020000", "fwd_inst_id": "00010344", "stan": "000000", "txn_time": "1121000000",
        "pan": "6222000000000000", "amount_fen": "0" * 12, "partial_amount_fen": "0" * 12,
        "cardholder_fee_fen": "0" * 12, "msg_type": "0200", "proc_code": "000000", "mcc": "5411",
        "terminal_id": "T0000001", "merchant_id": "898320154110001", "rrn": "000000000000", "pos_cond": "00",
        "rcv_inst_id": "48020000", "orig_stan": "000000", "resp_code": "00", "pos_entry": "051",
        "acq_fee_receivable": "C" + "0" * 11, "acq_fee_payable": "D" + "0" * 11, "switch_fee": "D" + "0" * 11,
        "single_dual_flag": "1", "card_seq_no": "001", "terminal_capability": "5", "ic_cond_code": "0",
        "orig_txn_time": "0" * 10, "issuer_inst_id": "01020000", "region_flag": "0", "terminal_type": "03",
        "eci": "07", "instalment_fee_fen": "0" * 12, "order_id": "", "pay_mode": "0000",
    }.items():
        put(name, value)
    return np.frombuffer(bytes(rec) + b"\r\n", dtype=np.uint8)


def _put_digits(mat: np.ndarray, name: str, values: np.ndarray, offset: int = 0) -> None:
    f = FIELDS[name]
    width = f.width - offset
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    mat[:, f.start - 1 + offset: f.end] = (values[:, None] // powers % 10 + 48).astype(np.uint8)


def _put_pool(mat: np.ndarray, name: str, values: list[str], rng: np.random.Generator) -> None:
    f = FIELDS[name]
    pool = np.frombuffer(b"".join(v.encode("gbk").ljust(f.width) for v in values), dtype=np.uint8)
    pool = pool.reshape(len(values), f.width)
    mat[:, f.start - 1: f.end] = pool[rng.integers(0, len(values), len(mat))]


def chunk(first: int, n: int, date: dt.date, rng: np.random.Generator) -> np.ndarray:
    """Records first .. first+n-1 as an (n, 502) byte matrix, CRLF included."""
    i = np.arange(first, first + n, dtype=np.int64)
    mat = np.tile(_template(), (n, 1))
    _put_digits(mat, "stan", i % 1_000_000)
    # txn_time MMDDhhmmss: one second per million records keeps (stan, txn_time) unique
    secs = i // 1_000_000
    _put_digits(mat, "txn_time", date.month * 10**8 + date.day * 10**6 + (secs // 3600 % 24) * 10**4
                + (secs // 60 % 60) * 100 + secs % 60)
    pan = FIELDS["pan"]  # 16 digits, left aligned in 19
    mat[:, pan.start - 1: pan.start - 1 + 16] = (
        (6222000000000000 + rng.integers(0, 10**12, n))[:, None] // 10 ** np.arange(15, -1, -1, dtype=np.int64)
        % 10 + 48).astype(np.uint8)
    _put_digits(mat, "amount_fen", rng.integers(1, 10**8, n))
    _put_digits(mat, "rrn", i)
    _put_digits(mat, "acq_fee_receivable", rng.integers(0, 10**4, n), offset=1)
    _put_digits(mat, "acq_fee_payable", rng.integers(0, 10**3, n), offset=1)
    _put_digits(mat, "switch_fee", rng.integers(0, 10**3, n), offset=1)
    # Realistic variety, so that the reader's constant-column shortcut does not flatter the benchmark.
    _put_pool(mat, "merchant_id", [f"8983201541{k:05d}" for k in range(2000)], rng)
    _put_pool(mat, "terminal_id", [f"T{k:07d}" for k in range(5000)], rng)
    _put_pool(mat, "mcc", ["5411", "5812", "5311", "4111", "5999", "7011", "5541", "5912"], rng)
    _put_pool(mat, "issuer_inst_id", [f"0{k:03d}0000" for k in range(100, 400)], rng)
    _put_pool(mat, "pos_entry", ["051", "071", "021", "911"], rng)
    _put_pool(mat, "card_seq_no", ["001", "000", "002", "   "], rng)
    _put_pool(mat, "resp_code", ["00"] * 32 + ["51", "55"], rng)
    _put_pool(mat, "proc_code", ["000000"] * 30 + ["200000", "200000", "010000"], rng)
    _put_digits(mat, "auth_code", rng.integers(0, 10**6, n))
    order = FIELDS["order_id"]
    mat[:, order.start - 1: order.start + 2] = np.frombuffer(b"ORD", dtype=np.uint8)
    mat[:, order.start + 2: order.start + 18] = (i[:, None] // 10 ** np.arange(15, -1, -1, dtype=np.int64) % 10
                                                 + 48).astype(np.uint8)
    gbk = np.flatnonzero(i % 50 == 7)
    chinese = "订单号支付宝扫码".encode("gbk")  # 16 bytes; a second byte 0x7C-free mix of GBK pairs
    mat[gbk, order.start - 1: order.start - 1 + len(chinese)] = np.frombuffer(chinese, dtype=np.uint8)
    return mat


def generate(n: int, out_dir: Path, date: dt.date = dt.date(2026, 11, 21), seed: int = 1) -> Path:
    """Write n records and the flag file; returns the data file's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"IND{date:%y%m%d}01ACOMN"
    rng = np.random.default_rng(seed)
    md5 = hashlib.md5()
    with open(path, "wb") as f:
        for first in range(0, n, CHUNK):
            block = chunk(first, min(CHUNK, n - first), date, rng).tobytes()
            md5.update(block)
            f.write(block)
    flag = Flag(path.name, path.stat().st_size, n, md5.hexdigest())
    path.with_name(path.name + ".ok").write_bytes(flag.render())
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--date", default="20261121")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    print(generate(a.n, a.out_dir, dt.datetime.strptime(a.date, "%Y%m%d").date(), a.seed))


if __name__ == "__main__":
    main()
