"""`make bench`: every benchmark once, at the size given (default: the issues' targets, 10 million records).

    python bench/run.py [--size 10000000] [--only formats,ledger,recon,night]

Each benchmark prints its own figures (records per second, peak memory, the ratio against the obvious
alternative measured in the same run); this only runs them one after the other, so that they do not share the two
cores, and stops at the first failure.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def commands(size: int) -> dict[str, list[str]]:
    return {
        "formats": ["bench_formats.py", "--n", str(size), "--fwf-n", str(min(size, 200_000))],
        "ledger": ["bench_ledger.py", "--rows", str(min(size, 1_000_000))],   # PostgreSQL at 127.0.0.1:5432
        "recon": ["bench_recon.py", "--rows", str(size)],
        "night": ["night.py", "--records", str(size)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10_000_000)
    parser.add_argument("--only", default="formats,ledger,recon,night")
    args = parser.parse_args()
    plan = commands(args.size)
    for name in args.only.split(","):
        print(f"\n== bench {name}: {' '.join(plan[name])}", flush=True)
        if subprocess.run([sys.executable, str(BENCH / plan[name][0]), *plan[name][1:]]).returncode:
            print(f"bench {name} failed", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
