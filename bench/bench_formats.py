"""Benchmark of the fixed-width hot path: ACOMN file -> zstd Parquet, against pandas.read_fwf.

    python bench/bench_formats.py [--n 10000000] [--fwf-n 200000] [--dir /tmp/duizhang-bench] [--repeat 3]

Generates the files once (bench/gen_acomn.py; kept in --dir for later runs), then runs each measurement in a
fresh child process so that its peak RSS is its own: `fixed_width.read_to_parquet` on N records (the flag file
checked), and `pandas.read_fwf` (all columns as text, the same column positions) on a smaller file of --fwf-n
records, which read_fwf needs minutes for at N. The ratio compares records per second.

read_fwf counts characters, not bytes: on the GBK rows (one in 50) every field after the order_id is misread.
It is the naive baseline, not a correct reader.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_rss_mb() -> float:
    """This process's own peak RSS. (`ru_maxrss` would not do: Linux carries the parent's peak across exec.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm_up() -> None:
    """Pay the one-off import costs outside the measurement: the first pyarrow.compute call imports pandas
    (about 1.5 s here), once per process, whatever the file size."""
    import pyarrow as pa
    import pyarrow.compute as pc
    pc.utf8_rtrim(pa.array(["a "]), characters=" ")


def _child_engine(path: Path, out: Path) -> dict:
    from formats import fixed_width
    from formats.flag import parse_flag
    from formats.specs.unionpay.acomn import LAYOUT

    flag = parse_flag(path.with_name(path.name + ".ok").read_bytes())
    _warm_up()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    result = fixed_width.read_to_parquet(path, LAYOUT, out, flag)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return {"records": result.detail_count, "quarantined": result.quarantined, "wall_s": wall,
            "cpu_s": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, "peak_rss_mb": _peak_rss_mb(),
            "parquet_mb": out.stat().st_size / 1e6}


def _child_fwf(path: Path) -> dict:
    import pandas as pd

    from formats.specs.unionpay.acomn import LAYOUT

    _warm_up()
    fields = LAYOUT.detail.fields
    colspecs = [(f.start - 1, f.end) for f in fields]
    t0 = time.perf_counter()
    df = pd.read_fwf(path, colspecs=colspecs, names=[f.name for f in fields], dtype=str, encoding="gbk",
                     header=None)
    wall = time.perf_counter() - t0
    return {"records": len(df), "wall_s": wall, "peak_rss_mb": _peak_rss_mb()}


def _run_child(kind: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--fwf-n", type=int, default=200_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/duizhang-bench"))
    ap.add_argument("--repeat", type=int, default=3, help="runs of the engine; the best and the median are reported")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        result = _child_engine(Path(rest[0]), Path(rest[1])) if kind == "engine" else _child_fwf(Path(rest[0]))
        print(json.dumps(result))
        return

    from bench.gen_acomn import generate

    big = a.dir / f"n{a.n}"
    small = a.dir / f"n{a.fwf_n}"
    for folder, n in ((big, a.n), (small, a.fwf_n)):
        if not (folder / "IND26112101ACOMN.ok").exists():
            t0 = time.perf_counter()
            generate(n, folder)
            print(f"generated {n:,} records in {folder} ({time.perf_counter() - t0:.1f} s)")
    data = big / "IND26112101ACOMN"
    out = a.dir / "acomn.parquet"
    load_before = os.getloadavg()[0]
    runs = [_run_child("engine", str(data), str(out)) for _ in range(a.repeat)]
    best = min(runs, key=lambda r: r["wall_s"])
    typical = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
    fwf = _run_child("fwf", str(small / "IND26112101ACOMN"))
    small_engine = _run_child("engine", str(small / "IND26112101ACOMN"), str(a.dir / "small.parquet"))
    rate = best["records"] / best["wall_s"]
    all_runs = ", ".join(f"{r['wall_s']:.2f} s" for r in runs)
    fwf_rate = fwf["records"] / fwf["wall_s"]
    print(f"machine: {os.cpu_count()} cores; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
          "(other work on the machine slows every figure)")
    print(f"read_to_parquet  {best['records']:>11,} records  {best['wall_s']:6.2f} s  {rate:12,.0f} records/s  "
          f"cpu {best['cpu_s']:.2f} s  peak RSS {best['peak_rss_mb']:.0f} MB  parquet {best['parquet_mb']:.0f} MB"
          f"  (best of runs: {all_runs})")
    print(f"read_to_parquet  typical (median) run {typical['wall_s']:.2f} s, "
          f"{typical['records'] / typical['wall_s']:,.0f} records/s; "
          f"cpu per record {best['cpu_s'] / best['records'] * 1e9:.0f} ns (both cores together)")
    print(f"read_to_parquet  {small_engine['records']:>11,} records  {small_engine['wall_s']:6.2f} s  "
          f"{small_engine['records'] / small_engine['wall_s']:12,.0f} records/s  (the read_fwf file)")
    print(f"pandas.read_fwf  {fwf['records']:>11,} records  {fwf['wall_s']:6.2f} s  {fwf_rate:12,.0f} records/s  "
          f"peak RSS {fwf['peak_rss_mb']:.0f} MB  (text columns only, no Parquet, GBK rows misread)")
    print(f"ratio: read_to_parquet is {rate / fwf_rate:.1f}x read_fwf's records/s")


if __name__ == "__main__":
    main()
