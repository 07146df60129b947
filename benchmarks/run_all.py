"""Run every benchmark suite in turn: `python benchmarks/run_all.py [--quick] [--out DIR]`.

CI runs `--quick`, a short slice of each suite; the full run's figures go in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITES = [
    "bench_log.py",
    "bench_kernel.py",
    "bench_sdk.py",
    "bench_store.py",
    "bench_tables.py",
    "memory.py",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    failed = 0
    for suite in SUITES:
        command = [sys.executable, str(HERE / suite), "--out", str(args.out)]
        if args.quick:
            command.append("--quick")
        print(f"--- {suite}", flush=True)
        failed += subprocess.run(command, check=False).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
