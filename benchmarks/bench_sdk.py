"""Benchmarks of the embedded SDK (issue: kernel and SDK).

Each figure is printed next to a baseline measured in the same run:

- `TenantHandle.append` of one 64-byte event per call, sync policy
  every_batch (one fsync per call), for a PUBLIC and a PHI (encrypted)
  stream, against `verity.storage.Log.append` of the same payload bytes:
  the SDK's cost over the log is the kernel, the event encoding and, for
  PHI, AES-GCM;
- `read_events` of the whole stream, events/s, against reading the same
  records with `Log.read`;
- opening a tenant (from its kernel snapshot; and replaying its whole log), against opening the
  bare log.

Run: `python benchmarks/bench_sdk.py [--quick] [--out DIR]`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Result, new_histogram, percentiles_us, write_results

import verity
from verity import DataClass, SyncPolicy, TenantId
from verity.storage import open_log

EVENT = b"e" * 64
TENANT = TenantId(1)


def timed_appends(append: object, count: int) -> tuple[float, dict[str, float]]:
    """Call `append()` `count` times; return calls/s and latency percentiles."""
    assert callable(append)
    histogram = new_histogram()
    clock = time.perf_counter_ns
    started = clock()
    for _ in range(count):
        before = clock()
        append()
        histogram.record_value(max(1, clock() - before))
    elapsed_s = (clock() - started) / 1e9
    return count / elapsed_s, percentiles_us(histogram)


def bench_append(work: Path, quick: bool) -> list[Result]:
    count = 300 if quick else 3_000
    results: list[Result] = []
    warm_up = count // 10  # the first fsyncs of a new file are slower: leave them out
    with open_log(work / "bare", sync_policy=SyncPolicy.every_batch()) as log:
        timed_appends(lambda: log.append(EVENT), warm_up)
        bare_rate, bare_latency = timed_appends(lambda: log.append(EVENT), count)
    for data_class in (DataClass.PUBLIC, DataClass.PHI):
        with verity.open(work / f"db-{data_class.name}", create=True) as db:
            t = db.tenant(TENANT, create=True)
            stream = t.create_stream("s", data_class)
            timed_appends(lambda: t.append(stream, [EVENT]), warm_up)  # noqa: B023
            rate, latency = timed_appends(lambda: t.append(stream, [EVENT]), count)  # noqa: B023
        results.append(
            Result(
                name=f"SDK append, 1 x 64 B event per call, {data_class.name}, every_batch",
                unit="appends/s",
                value=rate,
                baseline_name="Log.append of the same bytes, every_batch",
                baseline_value=bare_rate,
                latency_us=latency,
                baseline_latency_us=bare_latency,
            )
        )
    return results


def bench_read_and_open(work: Path, quick: bool) -> list[Result]:
    batches = 2_000 if quick else 20_000
    folder = work / "db-read"
    with verity.open(folder, sync_policy=SyncPolicy.every_batch(), create=True) as db:
        t = db.tenant(TENANT, create=True)
        stream = t.create_stream("s", DataClass.PHI)
        for _ in range(batches):
            t.append(stream, [EVENT] * 10)
    [log_dir] = [p for p in folder.rglob("log") if p.is_dir()]

    started = time.perf_counter()
    with verity.open(folder, create=True) as db:
        t = db.tenant(TENANT, create=True)
        open_s = time.perf_counter() - started
        started = time.perf_counter()
        events = t.read_events(stream, max_bytes=1 << 40)
        read_rate = len(events) / (time.perf_counter() - started)
    assert len(events) == batches * 10
    # The same open without the kernel snapshot: a replay of the whole log.
    [snapshot] = folder.rglob("kernel.vsnap")
    snapshot.unlink()
    started = time.perf_counter()
    with verity.open(folder, create=True) as db:
        db.tenant(TENANT, create=True)
        replay_open_s = time.perf_counter() - started
    started = time.perf_counter()
    with open_log(log_dir) as log:
        bare_open_s = time.perf_counter() - started
        started = time.perf_counter()
        for offset in range(log.size):
            log.read(offset)
        bare_read_rate = log.size * 10 / (time.perf_counter() - started)
    return [
        Result(
            name=f"read_events, whole PHI stream ({batches * 10:,} events in {batches:,} records)",
            unit="events/s",
            value=read_rate,
            baseline_name="Log.read of the same records (10 events each), no decryption",
            baseline_value=bare_read_rate,
        ),
        Result(
            name=f"open a tenant of {batches:,} records from its kernel snapshot",
            unit="ms",
            value=open_s * 1000,
            baseline_name="the same open with the snapshot deleted (replay of the whole log)",
            baseline_value=replay_open_s * 1000,
            notes="a clean close writes kernel.vsnap; open replays only later records",
        ),
        Result(
            name=f"open a tenant of {batches:,} records from its kernel snapshot, vs the bare log",
            unit="ms",
            value=open_s * 1000,
            baseline_name="open the bare log",
            baseline_value=bare_open_s * 1000,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short slice, for CI")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="verity-bench-sdk-", dir=args.dir))
    results: list[Result] = []
    try:
        for suite in (bench_append, bench_read_and_open):
            for result in suite(work, args.quick):
                print(result.line(), flush=True)
                results.append(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_results(args.out, "sdk", results, args.quick)
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
