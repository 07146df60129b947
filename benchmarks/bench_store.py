"""Benchmarks of the projection store (issue 4: tables).

Each figure is printed next to a baseline measured in the same run:

- batched insert of N rows (8-byte keys in random order, then in ascending
  order; 100-byte values; 1,000 rows per batch, every batch durable) against
  sqlite3 (WAL, synchronous=FULL, a WITHOUT ROWID table) inserting the same
  rows with one transaction per 1,000 rows;
- point get p50/p90/p99/p999 against a sqlite3 point SELECT, once with the
  default cache (the store is larger than it) and once with a cache that
  holds the whole store;
- range scans of 1,000 rows (rows/s) against a sqlite3 range SELECT;
- a get as of an old log position (behind 20 newer versions of each key)
  against a get of the latest version, same store, same keys;
- RSS growth of a process that scans and probes a store 10x larger than its
  cache, against the same process with a cache holding the whole store.

Run: `python benchmarks/bench_store.py [--quick] [--out DIR]`.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Result, new_histogram, percentiles_us, time_each, write_results

from verity.store import open_store

VALUE_BYTES = 100
BATCH_ROWS = 1000


def make_rows(count: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    ids = list(range(count))
    rng.shuffle(ids)
    return [(key_id.to_bytes(8, "big"), rng.randbytes(VALUE_BYTES)) for key_id in ids]


def sqlite_open(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE IF NOT EXISTS t (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
    return connection


def store_insert(folder: Path, rows: list[tuple[bytes, bytes]]) -> tuple[float, dict[str, float]]:
    """Rows/s and per-batch latency of durable batches of BATCH_ROWS rows."""
    latency = new_histogram()
    with open_store(folder) as store:
        start = time.perf_counter()
        for position, first in enumerate(range(0, len(rows), BATCH_ROWS), start=1):
            changes = [("t", key, value) for key, value in rows[first : first + BATCH_ROWS]]
            t0 = time.perf_counter_ns()
            store.write_batch(position, position.to_bytes(32, "big"), changes)
            latency.record_value(time.perf_counter_ns() - t0)
        rate = len(rows) / (time.perf_counter() - start)
    return rate, percentiles_us(latency)


def sqlite_insert(path: Path, rows: list[tuple[bytes, bytes]]) -> tuple[float, dict[str, float]]:
    latency = new_histogram()
    connection = sqlite_open(path)
    start = time.perf_counter()
    for first in range(0, len(rows), BATCH_ROWS):
        t0 = time.perf_counter_ns()
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO t VALUES (?, ?)", rows[first : first + BATCH_ROWS])
        connection.execute("COMMIT")
        latency.record_value(time.perf_counter_ns() - t0)
    rate = len(rows) / (time.perf_counter() - start)
    connection.close()
    return rate, percentiles_us(latency)


def bench_insert(work: Path, rows: list[tuple[bytes, bytes]], order: str) -> list[Result]:
    """Median of three interleaved runs; the first run's files stay for the read benchmarks."""
    ours: list[tuple[float, dict[str, float]]] = []
    theirs: list[tuple[float, dict[str, float]]] = []
    for run in range(3):
        theirs.append(sqlite_insert(work / f"insert-{order}-{run}.sqlite", rows))
        ours.append(store_insert(work / f"insert-{order}-{run}", rows))
    ours.sort(key=lambda item: item[0])
    theirs.sort(key=lambda item: item[0])
    return [
        Result(
            name=f"batched insert, {len(rows):,} rows x {VALUE_BYTES} B in {order} key order, "
            "1,000 per durable batch",
            unit="rows/s",
            value=ours[1][0],
            baseline_name="sqlite3 WAL synchronous=FULL, 1 transaction per 1,000 rows",
            baseline_value=theirs[1][0],
            latency_us=ours[1][1],
            baseline_latency_us=theirs[1][1],
            notes="latency per batch of 1,000 rows",
            samples=[rate for rate, _ in ours],
        )
    ]


def bench_reads(work: Path, rows: list[tuple[bytes, bytes]], quick: bool) -> list[Result]:
    results: list[Result] = []
    folder = work / "insert-random-0"
    connection = sqlite_open(work / "insert-random-0.sqlite")
    rng = random.Random(11)
    probes = [rng.choice(rows)[0] for _ in range(20_000 if quick else 100_000)]
    select = connection.execute

    def sqlite_get(key: bytes) -> object:
        return select("SELECT v FROM t WHERE k = ?", (key,)).fetchone()

    for probe in probes[:5000]:
        sqlite_get(probe)
    iterator = iter(probes)
    sqlite_latency = percentiles_us(time_each(lambda: sqlite_get(next(iterator)), len(probes)))

    for cache_pages, label in ((1024, "default 1,024-page cache"), (1 << 16, "cache holds all")):
        with open_store(folder, page_cache_pages=cache_pages) as store:
            for probe in probes[:5000]:
                store.get("t", probe)
            keys = iter(probes)
            get = store.get
            latency = percentiles_us(time_each(lambda: get("t", next(keys)), len(probes)))  # noqa: B023
            stats = store.stats()
        results.append(
            Result(
                name=f"point get, {len(rows):,} rows, {label}",
                unit="us p99",
                value=latency["p99"],
                baseline_name="sqlite3 SELECT v WHERE k = ?",
                baseline_value=sqlite_latency["p99"],
                latency_us=latency,
                baseline_latency_us=sqlite_latency,
                notes=f"store {stats.pages_total:,} pages; cache {stats.cache_pages:,} pages, "
                f"hits {stats.cache_hits:,}, misses {stats.cache_misses:,}",
            )
        )

    # Range scans of 1,000 rows from random starting keys, cache holding the store.
    starts = [rng.randrange(len(rows) - 1000) for _ in range(50 if quick else 200)]
    with open_store(folder, page_cache_pages=1 << 16) as store:
        list(store.scan("t"))
        begin = time.perf_counter()
        scanned = 0
        for start in starts:
            low = start.to_bytes(8, "big")
            high = (start + 1000).to_bytes(8, "big")
            scanned += sum(1 for _ in store.scan("t", low, high, high_inclusive=False))
        ours = scanned / (time.perf_counter() - begin)
        begin = time.perf_counter()
        full = sum(1 for _ in store.scan("t"))
        full_rate = full / (time.perf_counter() - begin)
    begin = time.perf_counter()
    sqlite_scanned = 0
    for start in starts:
        cursor = select(
            "SELECT k, v FROM t WHERE k >= ? AND k < ? ORDER BY k",
            (start.to_bytes(8, "big"), (start + 1000).to_bytes(8, "big")),
        )
        sqlite_scanned += sum(1 for _ in cursor)
    theirs = sqlite_scanned / (time.perf_counter() - begin)
    assert scanned == sqlite_scanned == 1000 * len(starts)
    results.append(
        Result(
            name="range scan, 1,000 rows from a random key",
            unit="rows/s",
            value=ours,
            baseline_name="sqlite3 SELECT k, v WHERE k >= ? AND k < ? ORDER BY k",
            baseline_value=theirs,
            notes=f"full scan of {full:,} rows: {full_rate:,.0f} rows/s",
        )
    )
    connection.close()
    return results


def bench_as_of(work: Path, quick: bool) -> Result:
    """Gets as of the first position (behind 20 newer versions) against latest gets."""
    key_count = 2000 if quick else 10_000
    rng = random.Random(13)
    keys = [rng.randbytes(8) for _ in range(key_count)]
    with open_store(work / "versions", page_cache_pages=1 << 16) as store:
        for position in range(1, 22):
            value = bytes([position]) * VALUE_BYTES
            changes = [("t", key, value) for key in keys]
            for first in range(0, key_count, BATCH_ROWS):
                store.write_batch(
                    position * 1000 + first // BATCH_ROWS,
                    b"h",
                    changes[first : first + BATCH_ROWS],
                    sync=False,
                )
        store.sync()
        old_position = 1000 + key_count // BATCH_ROWS
        probes = [rng.choice(keys) for _ in range(20_000 if quick else 100_000)]
        assert store.get("t", probes[0], as_of=old_position) == bytes([1]) * VALUE_BYTES
        iterator = iter(probes)
        old = percentiles_us(
            time_each(lambda: store.get("t", next(iterator), as_of=old_position), len(probes))
        )
        iterator = iter(probes)
        latest = percentiles_us(time_each(lambda: store.get("t", next(iterator)), len(probes)))
    return Result(
        name=f"get as of an old position (21 versions per key, {key_count:,} keys)",
        unit="us p50",
        value=old["p50"],
        baseline_name="get of the latest version",
        baseline_value=latest["p50"],
        latency_us=old,
        baseline_latency_us=latest,
        floor="ratio near 1: history costs no extra page reads",
    )


_RSS_PROBE = """
import json, os, random, sys
from pathlib import Path
from verity.store import open_store

def rss_kib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

folder, cache_pages = Path(sys.argv[1]), int(sys.argv[2])
rng = random.Random(5)
keys = [rng.randrange(2**20).to_bytes(8, "big") for _ in range(20000)]
with open_store(folder, page_cache_pages=cache_pages) as store:
    opened_kib = rss_kib()
    scanned = sum(1 for _ in store.scan("t"))
    for key in keys:
        store.get("t", key)
    stats = store.stats()
    read_kib = rss_kib()
print(json.dumps({"growth_kib": read_kib - opened_kib, "rss_kib": read_kib,
                  "cache_pages": stats.cache_pages, "scanned": scanned}))
"""


def bench_memory(work: Path) -> Result:
    """Peak RSS reading a store 10x its cache, against a cache holding all of it."""
    folder = work / "insert-random-0"
    with open_store(folder) as store:
        pages_total = store.stats().pages_total
    small = max(16, pages_total // 10)
    figures = {}
    for cache_pages in (small, pages_total + 100):
        output = subprocess.run(
            [sys.executable, "-c", _RSS_PROBE, str(folder), str(cache_pages)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        figures[cache_pages] = json.loads(output)
    bounded = figures[small]
    unbounded = figures[pages_total + 100]
    assert bounded["cache_pages"] <= small
    return Result(
        name=f"RSS growth, full scan + 20,000 gets, store {pages_total:,} pages, cache {small:,}",
        unit="MiB",
        value=bounded["growth_kib"] / 1024,
        baseline_name=f"same with a cache of {pages_total + 100:,} pages (holds the store)",
        baseline_value=unbounded["growth_kib"] / 1024,
        notes=f"RSS after reading minus RSS after open; RSS {bounded['rss_kib'] / 1024:.0f} MiB "
        f"vs {unbounded['rss_kib'] / 1024:.0f} MiB; cache pages held at the end: "
        f"{bounded['cache_pages']:,} (bound {small:,}), {unbounded['cache_pages']:,}; "
        f"store file {pages_total * 4096 / 2**20:.1f} MiB",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short slice, for CI")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="verity-bench-store-", dir=args.dir))
    rows = make_rows(20_000 if args.quick else 100_000)
    results: list[Result] = []

    def report(more: list[Result]) -> None:
        for result in more:
            print(result.line(), flush=True)
        results.extend(more)

    try:
        report(bench_insert(work, rows, "random"))
        report(bench_insert(work, sorted(rows), "ascending"))
        report(bench_reads(work, rows, args.quick))
        report([bench_as_of(work, args.quick)])
        report([bench_memory(work)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_results(args.out, "store", results, args.quick)
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
