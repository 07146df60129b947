"""Benchmarks of tables through the SDK's SQL, each against sqlite3 on the same data (issue 4).

- batched insert (multi-row INSERT statements of 500 rows; each statement one
  durable, hash-chained log record) against sqlite3 in WAL mode with
  synchronous=FULL, one transaction per 500 rows, each row carrying a SHA-256
  chain computed in Python (what an append-only audit table in sqlite needs);
- cached point lookup through SQL (`SELECT ... WHERE id = ?`), p50/p90/p99/p999,
  against sqlite3's point select;
- range scan rows/s (`WHERE id >= ? AND id < ?`, 1,000 rows) against sqlite3;
- `query_at` an old position against the same query now;
- memory: the projection store's page cache (pages held) for a table larger
  than the cache, and the process's peak RSS.

Run: `python benchmarks/bench_tables.py [--quick] [--out DIR]`.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Result, percentiles_us, time_each, write_results

import verity
from verity import TenantId

BATCH_ROWS = 500
TENANT = TenantId(1)


def rows(count: int) -> list[tuple[int, str, str, int]]:
    rng = random.Random(11)
    return [
        (i, f"patient-{i:08d}", rng.choice(["cardiology", "oncology", "icu", "er"]), i * 7)
        for i in range(count)
    ]


def insert_verity(folder: Path, data: list[tuple[int, str, str, int]]) -> tuple[float, object]:
    db = verity.open(folder, create=True)
    t = db.tenant(TENANT, create=True)
    t.execute(
        "CREATE TABLE patients (id BIGINT PRIMARY KEY, name TEXT NOT NULL, ward TEXT, "
        "admitted TIMESTAMP)"
    )
    placeholders = ", ".join(["(?, ?, ?, ?)"] * BATCH_ROWS)
    statement = f"INSERT INTO patients VALUES {placeholders}"
    started = time.perf_counter()
    for first in range(0, len(data), BATCH_ROWS):
        batch = data[first : first + BATCH_ROWS]
        assert len(batch) == BATCH_ROWS
        t.execute(statement, [value for row in batch for value in row])
    return len(data) / (time.perf_counter() - started), db


def insert_sqlite(path: Path, data: list[tuple[int, str, str, int]]) -> tuple[float, object]:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(
        "CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT NOT NULL, ward TEXT, "
        "admitted INTEGER, chain BLOB NOT NULL)"
    )
    connection.commit()
    prev = bytes(32)
    sha256 = hashlib.sha256
    started = time.perf_counter()
    for first in range(0, len(data), BATCH_ROWS):
        chained = []
        for row in data[first : first + BATCH_ROWS]:
            prev = sha256(prev + repr(row).encode()).digest()
            chained.append((*row, prev))
        connection.executemany("INSERT INTO patients VALUES (?, ?, ?, ?, ?)", chained)
        connection.commit()
    return len(data) / (time.perf_counter() - started), connection


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short slice, for CI")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    count = 20_000 if args.quick else 200_000
    lookups = 2_000 if args.quick else 20_000
    work = Path(tempfile.mkdtemp(prefix="verity-bench-tables-", dir=args.dir))
    results: list[Result] = []
    try:
        data = rows(count)
        sqlite_rate, sqlite_any = insert_sqlite(work / "peer.sqlite", data)
        verity_rate, db_any = insert_verity(work / "db", data)
        assert isinstance(db_any, verity.Verity) and isinstance(sqlite_any, sqlite3.Connection)
        db, connection = db_any, sqlite_any
        t = db.tenant(TENANT, create=True)
        results.append(
            Result(
                name=f"batched insert, {BATCH_ROWS} rows per statement, {count:,} rows",
                unit="rows/s",
                value=verity_rate,
                baseline_name="sqlite3 WAL synchronous=FULL + SHA-256 chain per row in Python",
                baseline_value=sqlite_rate,
                floor=">= 0.5 x sqlite3",
            )
        )
        rng = random.Random(5)
        keys = [rng.randrange(count) for _ in range(lookups)]
        point = "SELECT name, ward FROM patients WHERE id = ?"
        t.query(point, [0])  # parse and plan once: the rest hit the statement cache
        key_iter = iter(keys * 2)
        verity_hist = time_each(lambda: t.query(point, [next(key_iter)]), lookups)
        cursor = connection.cursor()
        key_iter = iter(keys * 2)
        sqlite_hist = time_each(
            lambda: cursor.execute(point, (next(key_iter),)).fetchall(), lookups
        )
        verity_p = percentiles_us(verity_hist)
        sqlite_p = percentiles_us(sqlite_hist)
        results.append(
            Result(
                name="cached point lookup through SQL (p50)",
                unit="us",
                value=verity_p["p50"],
                baseline_name="sqlite3 point select (p50)",
                baseline_value=sqlite_p["p50"],
                latency_us=verity_p,
                baseline_latency_us=sqlite_p,
                floor="p50 <= 50 us",
            )
        )
        scan = "SELECT id, name FROM patients WHERE id >= ? AND id < ?"
        span = 1_000
        starts = [rng.randrange(count - span) for _ in range(20)]
        began = time.perf_counter()
        scanned = sum(len(t.query(scan, [s, s + span]).rows) for s in starts)
        verity_scan = scanned / (time.perf_counter() - began)
        began = time.perf_counter()
        scanned = sum(len(cursor.execute(scan, (s, s + span)).fetchall()) for s in starts)
        sqlite_scan = scanned / (time.perf_counter() - began)
        results.append(
            Result(
                name=f"range scan, {span:,} rows per query",
                unit="rows/s",
                value=verity_scan,
                baseline_name="sqlite3 range select",
                baseline_value=sqlite_scan,
            )
        )
        old_position = 5  # after the first few INSERT statements
        key_iter = iter(keys * 2)
        at_hist = time_each(
            lambda: t.query_at(point, [next(key_iter) % 2_000], old_position), lookups
        )
        key_iter = iter(keys * 2)
        now_hist = time_each(lambda: t.query(point, [next(key_iter) % 2_000]), lookups)
        at_p, now_p = percentiles_us(at_hist), percentiles_us(now_hist)
        results.append(
            Result(
                name=f"query_at position {old_position} (point lookup, p50)",
                unit="us",
                value=at_p["p50"],
                baseline_name="the same query now (p50)",
                baseline_value=now_p["p50"],
                latency_us=at_p,
                baseline_latency_us=now_p,
            )
        )
        stats = t._store.stats()
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.append(
            Result(
                name=f"page cache for a {stats.pages_total:,}-page store",
                unit="pages held",
                value=stats.cache_pages,
                notes=f"peak RSS of the whole benchmark process {peak_rss_mb:.0f} MB",
                floor="<= page_cache_pages (1,024)",
            )
        )
        db.close()
        connection.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for result in results:
        print(result.line(), flush=True)
    path = write_results(args.out, "tables", results, args.quick)
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
