"""Benchmarks of the hash-chained log (issue: foundation).

Each figure is printed next to a baseline measured in the same run:

- append, 256-byte payloads, per sync policy; every_batch (batches of 1,000)
  against the "limit" loop (SHA-256 chain + CRC + framing + buffered write +
  one fsync per batch, nothing else); every_record against a raw
  `os.write` + `os.fsync` loop over the same bytes;
- random read by offset with a warm index (p50/p90/p99/p999) against a raw
  `os.pread` of the same frames;
- full verification throughput against raw `hashlib.sha256` over the same bytes;
- open time of a large log at several sizes (flatness);
- inclusion and consistency proof latency at the largest size.

Run: `python benchmarks/bench_log.py [--quick] [--out DIR]`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import struct
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Result, new_histogram, percentiles_us, time_each, write_results

from verity.storage import open_log
from verity.types import CheckpointPolicy, SyncPolicy

PAYLOAD_BYTES = 256
CHAIN_DOMAIN = b"verity.chain.v1\x00"
HEADER = struct.Struct(">Q32sQIB")


def payloads(count: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(PAYLOAD_BYTES) for _ in range(count)]


def limit_loop(directory: Path, batches: list[list[bytes]]) -> float:
    """The least any hash-chained, framed, fsynced log must do; records/s."""
    path = directory / "limit.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sha256 = hashlib.sha256
    crc32 = zlib.crc32
    pack_header = HEADER.pack
    pack_frame = struct.Struct(">II").pack
    prev = bytes(32)
    offset = 0
    timestamp = time.time_ns()
    records = 0
    start = time.perf_counter()
    try:
        for batch in batches:
            buffer = bytearray()
            for payload in batch:
                record = pack_header(offset, prev, timestamp, len(payload), 0) + payload
                prev = sha256(CHAIN_DOMAIN + record).digest()
                buffer += pack_frame(len(record), crc32(record))
                buffer += record
                offset += 1
                timestamp += 1
            os.write(fd, buffer)
            os.fsync(fd)
            records += len(batch)
    finally:
        os.close(fd)
    return records / (time.perf_counter() - start)


def raw_write_fsync_loop(directory: Path, frames: list[bytes]) -> tuple[float, dict[str, float]]:
    """os.write + os.fsync per frame; records/s and latency percentiles."""
    fd = os.open(directory / "raw.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    iterator = iter(frames)

    def one() -> None:
        os.write(fd, next(iterator))
        os.fsync(fd)

    start = time.perf_counter()
    histogram = time_each(one, len(frames))
    elapsed = time.perf_counter() - start
    os.close(fd)
    return len(frames) / elapsed, percentiles_us(histogram)


def bench_append(work: Path, quick: bool) -> list[Result]:
    results: list[Result] = []
    batch_size = 1000
    batch_count = 20 if quick else 100
    data = payloads(batch_size * batch_count)
    batches = [data[i : i + batch_size] for i in range(0, len(data), batch_size)]
    policy = CheckpointPolicy(explicit_only=True)

    # Interleave runs of ours and the limit loop so both see the same machine state.
    ours_rates: list[float] = []
    limit_rates: list[float] = []
    latency = new_histogram()
    for run in range(3):
        limit_dir = work / f"limit-{run}"
        limit_dir.mkdir()
        limit_rates.append(limit_loop(limit_dir, batches))
        with open_log(
            work / f"batch-{run}", sync_policy=SyncPolicy.every_batch(), checkpoint_policy=policy
        ) as log:
            start = time.perf_counter()
            for batch in batches:
                t0 = time.perf_counter_ns()
                log.append_batch(batch)
                latency.record_value(time.perf_counter_ns() - t0)
            ours_rates.append(len(data) / (time.perf_counter() - start))
    results.append(
        Result(
            name="append every_batch (1,000 x 256 B per batch)",
            unit="records/s",
            value=sorted(ours_rates)[1],
            baseline_name="limit loop (chain+CRC+framing+write+fsync per batch)",
            baseline_value=sorted(limit_rates)[1],
            floor=">= 150,000 records/s; ratio to limit aim >= 0.8",
            latency_us=percentiles_us(latency),
            samples=ours_rates,
        )
    )

    # every_record: one fsync per record, against a raw write+fsync loop.
    count = 300 if quick else 2000
    small = payloads(count, seed=11)
    with open_log(
        work / "record", sync_policy=SyncPolicy.every_record(), checkpoint_policy=policy
    ) as log:
        iterator = iter(small)
        start = time.perf_counter()
        histogram = time_each(lambda: log.append(next(iterator)), count)
        ours = count / (time.perf_counter() - start)
        frames = [log.read(i).record_bytes() for i in range(count)]
    raw_rate, raw_latency = raw_write_fsync_loop(work, [b"\0" * 8 + f for f in frames])
    results.append(
        Result(
            name="append every_record (256 B)",
            unit="records/s",
            value=ours,
            baseline_name="raw os.write+os.fsync per record, same bytes",
            baseline_value=raw_rate,
            floor="ratio >= 0.8",
            latency_us=percentiles_us(histogram),
            baseline_latency_us=raw_latency,
        )
    )

    # group commit: several writer threads share fsyncs.
    threads = 8
    per_thread = 100 if quick else 500
    with open_log(
        work / "group",
        sync_policy=SyncPolicy.group_commit(max_delay_ms=2, max_batch=256),
        checkpoint_policy=policy,
    ) as log:
        group_latency = new_histogram()
        lock = threading.Lock()

        def writer(seed: int) -> None:
            mine = payloads(per_thread, seed=seed)
            local = new_histogram()
            for payload in mine:
                t0 = time.perf_counter_ns()
                log.append(payload)
                local.record_value(time.perf_counter_ns() - t0)
            with lock:
                group_latency.add(local)

        workers = [threading.Thread(target=writer, args=(100 + i,)) for i in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        group_rate = threads * per_thread / (time.perf_counter() - start)
    results.append(
        Result(
            name=f"append group_commit (2 ms, {threads} threads, single appends)",
            unit="records/s",
            value=group_rate,
            baseline_name="every_record (same run)",
            baseline_value=ours,
            latency_us=percentiles_us(group_latency),
        )
    )
    return results


def build_log(path: Path, records: int) -> None:
    data = payloads(1000, seed=3)
    with open_log(path, sync_policy=SyncPolicy.every_batch()) as log:
        written = 0
        while written < records:
            take = min(1000, records - written)
            log.append_batch(data[:take])
            written += take


def bench_read_verify_open_proofs(work: Path, quick: bool) -> list[Result]:
    results: list[Result] = []
    sizes = [50_000, 100_000, 200_000] if quick else [250_000, 500_000, 1_000_000]
    largest = work / "large"
    built = 0
    open_times: dict[int, float] = {}
    for size in sizes:
        # Grow the same log to each size, then time a cold-ish reopen.
        data = payloads(1000, seed=5)
        with open_log(largest, sync_policy=SyncPolicy.every_batch()) as log:
            while log.size < size:
                log.append_batch(data[: min(1000, size - log.size)])
        built = size
        timings = []
        for _ in range(5):
            start = time.perf_counter()
            log = open_log(largest)
            timings.append(time.perf_counter() - start)
            log.abandon()
        open_times[size] = sorted(timings)[2]
    results.append(
        Result(
            name=f"open a clean {sizes[-1]:,}-record log",
            unit="ms",
            value=open_times[sizes[-1]] * 1000,
            baseline_name=f"open at {sizes[0]:,} records (flatness)",
            baseline_value=open_times[sizes[0]] * 1000,
            floor="< 1,000 ms and flat as the log grows (ratio near 1)",
            notes=", ".join(f"{n:,}: {t * 1000:.1f} ms" for n, t in open_times.items()),
        )
    )

    with open_log(largest) as log:
        size = log.size
        rng = random.Random(1)
        offsets = [rng.randrange(size) for _ in range(20_000 if quick else 100_000)]
        for offset in offsets[:2000]:
            log.read(offset)  # warm the index cache
        iterator = iter(offsets)
        read_hist = time_each(lambda: log.read(next(iterator)), len(offsets))
        # Baseline: the same frames read with a bare os.pread (no index, no CRC, no decode).
        segments = log.segments()
        fd = os.open(segments[-1].path, os.O_RDONLY)
        frame_bytes = 8 + 53 + PAYLOAD_BYTES
        frames_in_segment = segments[-1].byte_size // frame_bytes
        pread_offsets = [rng.randrange(max(1, frames_in_segment)) for _ in range(len(offsets))]
        pread_iter = iter(pread_offsets)
        raw_hist = time_each(
            lambda: os.pread(fd, frame_bytes, next(pread_iter) * frame_bytes), len(offsets)
        )
        os.close(fd)
        read_p = percentiles_us(read_hist)
        raw_p = percentiles_us(raw_hist)
        results.append(
            Result(
                name=f"random read by offset, warm index ({size:,} records)",
                unit="us p99",
                value=read_p["p99"],
                baseline_name="raw os.pread of one frame",
                baseline_value=raw_p["p99"],
                floor="p99 < 100 us",
                latency_us=read_p,
                baseline_latency_us=raw_p,
            )
        )

        proof_rng = random.Random(2)
        leaf_indexes = [proof_rng.randrange(size) for _ in range(2000)]
        leaf_iter = iter(leaf_indexes)
        inclusion_hist = time_each(lambda: log.inclusion_proof(next(leaf_iter), size), 2000)
        old_sizes = [proof_rng.randrange(1, size) for _ in range(2000)]
        old_iter = iter(old_sizes)
        consistency_hist = time_each(lambda: log.consistency_proof(next(old_iter), size), 2000)
        inclusion_p = percentiles_us(inclusion_hist)
        results.append(
            Result(
                name=f"inclusion proof at {size:,} records",
                unit="us p99",
                value=inclusion_p["p99"],
                floor="< 1,000 us",
                latency_us=inclusion_p,
            )
        )
        results.append(
            Result(
                name=f"consistency proof to {size:,} records",
                unit="us p99",
                value=percentiles_us(consistency_hist)["p99"],
                latency_us=percentiles_us(consistency_hist),
            )
        )

        total_bytes = sum(s.byte_size for s in log.segments())
        start = time.perf_counter()
        checked = log.verify()
        verify_seconds = time.perf_counter() - start
        assert checked == size
    # Baseline: hashlib SHA-256 over the same segment bytes, read the same way (whole files).
    start = time.perf_counter()
    for segment in sorted(largest.glob("*.vlog")):
        hasher = hashlib.sha256()
        with open(segment, "rb") as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
    hash_seconds = time.perf_counter() - start
    results.append(
        Result(
            name=f"full verification ({size:,} records, {total_bytes / 1e6:.0f} MB)",
            unit="MB/s",
            value=total_bytes / verify_seconds / 1e6,
            baseline_name="hashlib.sha256 over the same files",
            baseline_value=total_bytes / hash_seconds / 1e6,
            floor="ratio aim >= 0.7",
            notes=f"{size / verify_seconds:,.0f} records/s",
        )
    )
    del built
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short slice, for CI")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="verity-bench-", dir=args.dir))
    try:
        results = bench_append(work, args.quick)
        for result in results:
            print(result.line(), flush=True)
        more = bench_read_verify_open_proofs(work, args.quick)
        for result in more:
            print(result.line(), flush=True)
        results += more
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_results(args.out, "log", results, args.quick)
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
