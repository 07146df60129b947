"""VerityDB against its peers: the same workloads, the same records, one run (issue 5).

Peers, each set up by this script on this machine:

- `sqlite-full`, `sqlite-normal`: sqlite3 (stdlib) in WAL mode with
  synchronous=FULL / NORMAL, an append-only table whose rows carry a SHA-256
  chain computed in Python;
- `eventsourcing`, `eventsourcing-aes`: the `eventsourcing` library with its
  SQLite persistence, plain and with its AES-GCM cipher;
- `postgres`: the real PostgreSQL server, in a throwaway cluster started on a
  loopback port and stopped at the end, used through `psycopg`; the same
  chained append-only table.

Workloads (records of 256 B): durable append, one record per transaction;
batched append, 1,000 per transaction; point read by position; range read of
1,000 records; the current value of a key and its value as of an older
position (each peer emulates it as well as it can; the output says how);
full integrity verification of 1,000,000 records (100,000 with `--quick`);
open and first read after a writer is killed mid-write; and what only
VerityDB can do (signed checkpoints, inclusion proofs).

Figures are medians over runs (3, or 1 with `--quick`); latencies come from
HdrHistogram over every run's samples. Each peer cell shows the figure and
the ratio VerityDB/peer. A peer that cannot do a workload says so ("cannot:
..."); a peer that cannot run here says why ("not available: ...").

Run: `python benchmarks/compare.py [--quick] [--only verity,sqlite-full,...] [--out DIR]
[--dir DIR]`. The markdown table goes to stdout and, with the JSON, to
`compare[-quick].md` / `.json` in `--out` (default `benchmarks/results/`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, final

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import machine_info, new_histogram, percentiles_us, time_each
from _peers_common import (
    BATCHED_APPEND,
    DURABLE_APPEND,
    INCLUSION_PROOF,
    KEY_AS_OF,
    KEY_CURRENT,
    POINT_READ,
    RANGE_READ,
    RECOVERY,
    SIGNED_CHECKPOINT,
    VERIFY,
    WORKLOADS,
    KeyedData,
    KeyedStore,
    LogStore,
    Peer,
    PeerUnavailable,
    make_records,
    record_chunks,
)
from _peers_sqlite import SqlitePeer
from _peers_verity import VerityPeer
from hdrh.histogram import HdrHistogram

from verity.errors import InvalidArgument

HERE = Path(__file__).resolve().parent
VERITY = "verity"
PEER_NAMES = (
    VERITY,
    "sqlite-full",
    "sqlite-normal",
    "eventsourcing",
    "eventsourcing-aes",
    "postgres",
)
READ_LABEL = "batched-0"  # the first batched-append log is the one every read workload uses
KEYED_LABEL = "keyed"
VERIFY_LABEL = "verify"
BATCH_RECORDS = 1000
RANGE_RECORDS = 1000
VERIFY_CHUNK_RECORDS = 10_000
CRASH_AFTER_APPENDS = 20  # durable appends the writer makes before it is killed
CRASH_WRITER_RECORDS = 10_000
CRASH_WRITER_TIMEOUT_S = 120.0
CORRECTNESS_SAMPLES = 50
DURABLE_ROUND_RECORDS = 50
POINT_READ_WARMUP = 200  # untimed reads first, so no peer pays for a cold statement cache
SEED_DURABLE, SEED_BATCHED, SEED_INITIAL, SEED_UPDATES, SEED_VERIFY, SEED_CRASH = range(1, 7)
LATENCY_STATISTICS = ("p50", "p99", "p999")


@final
@dataclass(frozen=True)
class Sizes:
    """How much of each workload a run does."""

    runs: int
    durable_records: int
    durable_warmup_records: int
    batched_records: int
    point_reads: int
    range_reads: int
    key_count: int
    updates_per_key: int
    key_queries: int
    verify_records: int
    checkpoints: int
    inclusion_proofs: int


QUICK = Sizes(
    runs=1,
    durable_records=500,
    durable_warmup_records=20,
    batched_records=20_000,
    point_reads=5_000,
    range_reads=200,
    key_count=100,
    updates_per_key=10,
    key_queries=2_000,
    verify_records=100_000,
    checkpoints=50,
    inclusion_proofs=1_000,
)
FULL = Sizes(
    runs=3,
    durable_records=2_000,
    durable_warmup_records=100,
    batched_records=200_000,
    point_reads=20_000,
    range_reads=500,
    key_count=1_000,
    updates_per_key=10,
    key_queries=5_000,
    verify_records=1_000_000,
    checkpoints=200,
    inclusion_proofs=5_000,
)


@final
@dataclass(frozen=True)
class Metric:
    """One row of the table: a statistic of a workload."""

    key: str
    workload: str
    statistic: str
    title: str
    unit: str
    higher_is_better: bool


@final
@dataclass
class Cell:
    """One peer's figure for one metric, or why there is none."""

    status: str  # "ok", "cannot" or "not available"
    value: float | None = None  # in the metric's unit; None unless "ok"
    samples: list[float] = field(default_factory=list)
    note: str = ""  # why not, for "cannot"/"not available"; a caveat on an "ok" figure


def workload_titles(sizes: Sizes, quick: bool) -> dict[str, str]:
    """What each workload is called in the table, with this run's sizes."""
    verify_title = f"full integrity verification, {sizes.verify_records:,} records"
    if quick:
        verify_title += " (--quick; the full run checks 1,000,000)"
    keys = f"{sizes.key_count:,} keys x {sizes.updates_per_key} updates"
    return {
        DURABLE_APPEND: "durable append, 1 record per transaction",
        BATCHED_APPEND: f"batched append, {BATCH_RECORDS:,} records per transaction",
        POINT_READ: f"point read of a random record by position (of {sizes.batched_records:,})",
        RANGE_READ: f"range read, {RANGE_RECORDS:,} consecutive records",
        KEY_CURRENT: f"current value of a key ({keys})",
        KEY_AS_OF: "value of a key as of an older position",
        VERIFY: verify_title,
        RECOVERY: "open + first read after a writer is killed mid-write",
        SIGNED_CHECKPOINT: "signed checkpoint",
        INCLUSION_PROOF: f"inclusion proof ({sizes.verify_records:,} leaves)",
    }


def metrics_for(titles: dict[str, str]) -> list[Metric]:
    """The rows of the table: each workload's rate, latency percentiles or time."""
    rows: list[Metric] = []

    def rate(workload: str) -> None:
        rows.append(
            Metric(f"{workload}.rate", workload, "rate", titles[workload], "records/s", True)
        )

    def latencies(workload: str, chosen: Sequence[str] = LATENCY_STATISTICS) -> None:
        for statistic in chosen:
            title = f"{titles[workload]}, {statistic}"
            rows.append(Metric(f"{workload}.{statistic}", workload, statistic, title, "µs", False))

    rate(DURABLE_APPEND)
    latencies(DURABLE_APPEND)
    rate(BATCHED_APPEND)
    latencies(POINT_READ)
    rate(RANGE_READ)
    latencies(KEY_CURRENT)
    latencies(KEY_AS_OF)
    rate(VERIFY)
    rows.append(Metric(f"{RECOVERY}.ms", RECOVERY, "ms", titles[RECOVERY], "ms", False))
    latencies(SIGNED_CHECKPOINT, ("p50", "p99"))
    latencies(INCLUSION_PROOF, ("p50", "p99"))
    return rows


def make_peer(name: str) -> Peer:
    """The peer called `name` (one of `PEER_NAMES`); `PeerUnavailable` if its library is missing."""
    if name == VERITY:
        return VerityPeer()
    if name == "sqlite-full":
        return SqlitePeer("FULL")
    if name == "sqlite-normal":
        return SqlitePeer("NORMAL")
    if name in ("eventsourcing", "eventsourcing-aes"):
        try:
            from _peers_eventsourcing import EventsourcingPeer
        except ImportError as missing:
            raise PeerUnavailable(
                f"the eventsourcing library is not installed: {missing}"
            ) from None
        return EventsourcingPeer(cipher=name.endswith("-aes"))
    if name == "postgres":
        try:
            from _peers_postgres import PostgresPeer
        except ImportError as missing:
            raise PeerUnavailable(f"psycopg is not installed: {missing}") from None
        return PostgresPeer()
    raise InvalidArgument("peer", name, f"must be one of {', '.join(PEER_NAMES)}")


def filesystem_of(path: Path) -> str:
    """The type of the filesystem holding `path` (fsync costs nothing on tmpfs: say so)."""
    best_mount, best_type = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return best_type
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best_mount):
            best_mount, best_type = mount, fields[2]
    return best_type


def progress(started: float, text: str) -> None:
    print(f"[{time.perf_counter() - started:7.1f} s] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ the crash writer (a child process)


def crash_writer_main(spec_text: str) -> int:
    """Child process: append records to a peer's log one durable transaction at a time, forever.

    Prints one line per durable append; the parent kills it after a few.
    """
    spec = json.loads(spec_text)
    peer = make_peer(spec["peer"])
    peer.attach(Path(spec["work"]), spec["state"])
    records = make_records(CRASH_WRITER_RECORDS, SEED_CRASH)

    def report() -> None:
        sys.stdout.write("+\n")
        sys.stdout.flush()

    peer.write_until_killed(spec["label"], records, report)
    return 0


def crash_mid_write(peer: Peer, work: Path, label: str) -> None:
    """Start a child appending to `label`, let it make a few durable appends, then crash it."""
    spec = {"peer": peer.name, "work": str(work), "label": label, "state": peer.child_state()}
    errors_path = work / f"crash-writer-{peer.name}.err"
    with errors_path.open("wb") as errors:
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--crash-writer", json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
    assert child.stdout is not None
    appended = 0
    buffered = b""
    deadline = time.monotonic() + CRASH_WRITER_TIMEOUT_S
    try:
        while appended < CRASH_AFTER_APPENDS:
            remaining_s = deadline - time.monotonic()
            readable, _, _ = select.select([child.stdout], [], [], max(0.0, remaining_s))
            if not readable:
                raise TimeoutError(
                    f"{peer.name}: crash writer made {appended} appends in "
                    f"{CRASH_WRITER_TIMEOUT_S:.0f} s"
                )
            chunk = os.read(child.stdout.fileno(), 4096)
            if not chunk:
                child.wait()
                reason = errors_path.read_text(encoding="utf-8", errors="replace").strip()
                raise RuntimeError(
                    f"{peer.name}: crash writer exited ({child.returncode}) after {appended} "
                    f"appends: {reason[-2000:]}"
                )
            buffered += chunk
            appended = buffered.count(b"\n")
        peer.crash()
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


# ------------------------------------------------------------ the benchmark


@final
class Comparison:
    """Runs every workload against every started peer and collects the cells."""

    def __init__(self, sizes: Sizes, quick: bool, work: Path, peers: list[Peer]) -> None:
        assert peers and peers[0].name == VERITY
        self.sizes = sizes
        self.quick = quick
        self.work = work
        self.peers = peers
        self.titles = workload_titles(sizes, quick)
        self.metrics = metrics_for(self.titles)
        assert {metric.workload for metric in self.metrics} == set(WORKLOADS)
        self.cells: dict[tuple[str, str], Cell] = {}
        self.started = time.perf_counter()

    def _progress(self, text: str) -> None:
        progress(self.started, text)

    def _able(self, workload: str) -> list[Peer]:
        """The peers that can do `workload`; the others get a "cannot" cell for each metric."""
        able: list[Peer] = []
        for peer in self.peers:
            reason = peer.cannot.get(workload)
            if reason is None:
                able.append(peer)
                continue
            for metric in self.metrics:
                if metric.workload == workload:
                    self.cells[metric.key, peer.name] = Cell("cannot", note=reason)
        return able

    def _record(self, metric_key: str, peer: Peer, value: float, samples: list[float]) -> None:
        workload = metric_key.split(".")[0]
        caveat = peer.caveats.get(workload, "")
        self.cells[metric_key, peer.name] = Cell("ok", value, samples=samples, note=caveat)

    def _record_rates(self, workload: str, peer: Peer, rates: list[float]) -> None:
        self._record(f"{workload}.rate", peer, statistics.median(rates), rates)

    def _record_latencies(self, workload: str, peer: Peer, runs: list[HdrHistogram]) -> None:
        """Percentiles over every run's samples; each run's own figure kept as a sample."""
        merged = new_histogram()
        for histogram in runs:
            merged.add(histogram)
        overall = percentiles_us(merged)
        per_run = [percentiles_us(histogram) for histogram in runs]
        for metric in self.metrics:
            if metric.workload == workload and metric.statistic in LATENCY_STATISTICS:
                samples = [figures[metric.statistic] for figures in per_run]
                self._record(metric.key, peer, overall[metric.statistic], samples)

    # ------------------------------------------------------------ workloads

    def durable_append(self) -> None:
        """One record per transaction, in rounds of a few appends per peer in turn.

        fsync latency drifts with whatever else the machine does; taking turns
        every `DURABLE_ROUND_RECORDS` appends spreads that drift evenly over the peers.
        """
        sizes = self.sizes
        records = make_records(sizes.durable_warmup_records + sizes.durable_records, SEED_DURABLE)
        warmup = records[: sizes.durable_warmup_records]
        timed = records[sizes.durable_warmup_records :]
        rounds = [
            timed[i : i + DURABLE_ROUND_RECORDS]
            for i in range(0, len(timed), DURABLE_ROUND_RECORDS)
        ]
        peers = self._able(DURABLE_APPEND)
        rates: dict[str, list[float]] = {peer.name: [] for peer in peers}
        histograms: dict[str, list[HdrHistogram]] = {peer.name: [] for peer in peers}
        for run in range(sizes.runs):
            self._progress(f"durable append: run {run + 1}/{sizes.runs}, peers taking turns")
            logs: dict[str, LogStore] = {}
            try:
                for peer in peers:
                    logs[peer.name] = log = peer.create_log(f"durable-{run}")
                    # The first fsyncs of a new file are slower: leave them out for everyone.
                    for record in warmup:
                        log.append_one(record)
                elapsed_s = dict.fromkeys(logs, 0.0)
                histogram = {name: new_histogram() for name in logs}
                for records_of_round in rounds:
                    for name, log in logs.items():
                        started = time.perf_counter()
                        histogram[name].add(
                            time_each(_appender(log, records_of_round), len(records_of_round))
                        )
                        elapsed_s[name] += time.perf_counter() - started
                for name in logs:
                    rates[name].append(len(timed) / elapsed_s[name])
                    histograms[name].append(histogram[name])
            finally:
                for log in logs.values():
                    log.close()
        for peer in peers:
            self._record_rates(DURABLE_APPEND, peer, rates[peer.name])
            self._record_latencies(DURABLE_APPEND, peer, histograms[peer.name])

    def batched_append(self, records: list[bytes]) -> None:
        batches = [records[i : i + BATCH_RECORDS] for i in range(0, len(records), BATCH_RECORDS)]
        peers = self._able(BATCHED_APPEND)
        rates: dict[str, list[float]] = {peer.name: [] for peer in peers}
        for run in range(self.sizes.runs):
            for peer in peers:
                self._progress(f"batched append: {peer.name}, run {run + 1}/{self.sizes.runs}")
                log = peer.create_log(f"batched-{run}")
                try:
                    started = time.perf_counter()
                    for batch in batches:
                        log.append_batch(batch)
                    rates[peer.name].append(len(records) / (time.perf_counter() - started))
                finally:
                    log.close()
        for peer in peers:
            self._record_rates(BATCHED_APPEND, peer, rates[peer.name])

    def reads(self, records: list[bytes]) -> None:
        """Point and range reads on the first batched-append log, checked against `records`."""
        sizes = self.sizes
        count = len(records)
        point_peers = self._able(POINT_READ)
        range_peers = self._able(RANGE_READ)
        logs: dict[str, LogStore] = {}
        try:
            for peer in self.peers:
                if peer in point_peers or peer in range_peers:
                    logs[peer.name] = log = peer.open_log(READ_LABEL)
                    _check_reads(peer, log, records)
            point_runs: dict[str, list[HdrHistogram]] = {peer.name: [] for peer in point_peers}
            range_rates: dict[str, list[float]] = {peer.name: [] for peer in range_peers}
            for run in range(sizes.runs):
                rng = random.Random(100 + run)
                positions = [rng.randrange(count) for _ in range(sizes.point_reads)]
                starts = [rng.randrange(count - RANGE_RECORDS) for _ in range(sizes.range_reads)]
                for peer in point_peers:
                    self._progress(f"point read: {peer.name}, run {run + 1}/{sizes.runs}")
                    log = logs[peer.name]
                    warmup = positions[:POINT_READ_WARMUP]
                    time_each(_point_reader(log, warmup), len(warmup))
                    histogram = time_each(_point_reader(log, positions), len(positions))
                    point_runs[peer.name].append(histogram)
                for peer in range_peers:
                    self._progress(f"range read: {peer.name}, run {run + 1}/{sizes.runs}")
                    log = logs[peer.name]
                    started = time.perf_counter()
                    for first in starts:
                        log.read_range(first, RANGE_RECORDS)
                    elapsed_s = time.perf_counter() - started
                    range_rates[peer.name].append(len(starts) * RANGE_RECORDS / elapsed_s)
        finally:
            for log in logs.values():
                log.close()
        for peer in point_peers:
            self._record_latencies(POINT_READ, peer, point_runs[peer.name])
        for peer in range_peers:
            self._record_rates(RANGE_READ, peer, range_rates[peer.name])

    def recovery(self, records: list[bytes]) -> None:
        """Kill a writer of the read log mid-write; time open + reading its last batched record."""
        last = len(records) - 1
        peers = self._able(RECOVERY)
        times_ms: dict[str, list[float]] = {peer.name: [] for peer in peers}
        for run in range(self.sizes.runs):
            for peer in peers:
                self._progress(f"crash and recovery: {peer.name}, run {run + 1}/{self.sizes.runs}")
                crash_mid_write(peer, self.work, READ_LABEL)
                started = time.perf_counter()
                log = peer.recover_log(READ_LABEL)
                try:
                    record = log.read_one(last)
                    times_ms[peer.name].append((time.perf_counter() - started) * 1000)
                finally:
                    log.close()
                assert record == records[last], f"{peer.name}: record {last} differs after a crash"
        for peer in peers:
            samples = times_ms[peer.name]
            self._record(f"{RECOVERY}.ms", peer, statistics.median(samples), samples)

    def keyed(self) -> None:
        sizes = self.sizes
        data = KeyedData(
            initial=make_records(sizes.key_count, SEED_INITIAL),
            updates=make_records(sizes.key_count * sizes.updates_per_key, SEED_UPDATES),
        )
        current_peers = self._able(KEY_CURRENT)
        as_of_peers = self._able(KEY_AS_OF)
        stores: dict[str, KeyedStore] = {}
        try:
            for peer in self.peers:
                if peer in current_peers or peer in as_of_peers:
                    self._progress(f"keyed history: building in {peer.name} (not timed)")
                    stores[peer.name] = store = peer.build_keyed(KEYED_LABEL, data)
                    _check_keyed(peer, store, data)
            current_runs: dict[str, list[HdrHistogram]] = {peer.name: [] for peer in current_peers}
            as_of_runs: dict[str, list[HdrHistogram]] = {peer.name: [] for peer in as_of_peers}
            for run in range(sizes.runs):
                rng = random.Random(200 + run)
                queries = [
                    (rng.randrange(sizes.key_count), rng.randrange(len(data.updates)))
                    for _ in range(sizes.key_queries)
                ]
                for peer in current_peers:
                    self._progress(f"current value of a key: {peer.name}, run {run + 1}")
                    current = _current_reader(stores[peer.name], queries)
                    current_runs[peer.name].append(time_each(current, len(queries)))
                for peer in as_of_peers:
                    self._progress(f"value as of an older position: {peer.name}, run {run + 1}")
                    as_of = _as_of_reader(stores[peer.name], queries)
                    as_of_runs[peer.name].append(time_each(as_of, len(queries)))
        finally:
            for store in stores.values():
                store.close()
        for peer in current_peers:
            self._record_latencies(KEY_CURRENT, peer, current_runs[peer.name])
        for peer in as_of_peers:
            self._record_latencies(KEY_AS_OF, peer, as_of_runs[peer.name])

    def verification(self) -> None:
        count = self.sizes.verify_records
        peers = self._able(VERIFY)
        for peer in peers:
            self._progress(f"verification: building {count:,} records in {peer.name} (not timed)")
            peer.build_verification_log(
                VERIFY_LABEL, record_chunks(count, SEED_VERIFY, VERIFY_CHUNK_RECORDS)
            )
        rates: dict[str, list[float]] = {peer.name: [] for peer in peers}
        for run in range(self.sizes.runs):
            for peer in peers:
                self._progress(f"verification: {peer.name}, run {run + 1}/{self.sizes.runs}")
                started = time.perf_counter()
                checked = peer.verify(VERIFY_LABEL)
                elapsed_s = time.perf_counter() - started
                # VerityDB also checks its own checkpoint records (one per 1,000 records).
                assert checked >= count, f"{peer.name} checked {checked} of {count} records"
                rates[peer.name].append(count / elapsed_s)
        for peer in peers:
            self._record_rates(VERIFY, peer, rates[peer.name])

    def proofs(self, verity_peer: VerityPeer) -> None:
        """What only VerityDB can do; every other peer gets its "cannot" cell."""
        sizes = self.sizes
        checkpoint_runs: list[HdrHistogram] = []
        inclusion_runs: list[HdrHistogram] = []
        for run in range(sizes.runs):
            self._progress(f"signed checkpoints and inclusion proofs: run {run + 1}/{sizes.runs}")
            checkpoint_runs.append(verity_peer.measure_checkpoints(READ_LABEL, sizes.checkpoints))
            histogram, size = verity_peer.measure_inclusion_proofs(
                VERIFY_LABEL, sizes.inclusion_proofs, seed=300 + run
            )
            assert size >= sizes.verify_records
            inclusion_runs.append(histogram)
        for workload, runs in (
            (SIGNED_CHECKPOINT, checkpoint_runs),
            (INCLUSION_PROOF, inclusion_runs),
        ):
            able = self._able(workload)
            assert able[0] is verity_peer and len(able) == 1, [peer.name for peer in able]
            self._record_latencies(workload, verity_peer, runs)

    def run(self) -> None:
        verity_peer = self.peers[0]
        assert isinstance(verity_peer, VerityPeer)
        batched = make_records(self.sizes.batched_records, SEED_BATCHED)
        self.durable_append()
        self.batched_append(batched)
        self.reads(batched)
        self.recovery(batched)
        self.keyed()
        self.verification()
        self.proofs(verity_peer)


def _appender(log: LogStore, records: list[bytes]) -> Callable[[], None]:
    iterator = iter(records)
    return lambda: log.append_one(next(iterator))


def _point_reader(log: LogStore, positions: list[int]) -> Callable[[], bytes]:
    iterator = iter(positions)
    return lambda: log.read_one(next(iterator))


def _current_reader(store: KeyedStore, queries: list[tuple[int, int]]) -> Callable[[], bytes]:
    iterator = iter(queries)
    return lambda: store.current(next(iterator)[0])


def _as_of_reader(store: KeyedStore, queries: list[tuple[int, int]]) -> Callable[[], bytes]:
    iterator = iter(queries)

    def one() -> bytes:
        key, update_index = next(iterator)
        return store.as_of(key, update_index)

    return one


def _check_reads(peer: Peer, log: LogStore, records: list[bytes]) -> None:
    """Every peer must return the records it was given, or its figures mean nothing."""
    rng = random.Random(7)
    for position in [0, len(records) - 1, *rng.sample(range(len(records)), CORRECTNESS_SAMPLES)]:
        assert log.read_one(position) == records[position], f"{peer.name}: record {position}"
    first = len(records) // 2
    got = log.read_range(first, RANGE_RECORDS)
    assert got == records[first : first + RANGE_RECORDS], f"{peer.name}: range from {first}"


def _check_keyed(peer: Peer, store: KeyedStore, data: KeyedData) -> None:
    rng = random.Random(8)
    for _ in range(CORRECTNESS_SAMPLES):
        key = rng.randrange(data.key_count)
        update_index = rng.randrange(len(data.updates))
        assert store.current(key) == data.value_now(key), f"{peer.name}: key {key} now"
        expected = data.value_as_of(key, update_index)
        assert store.as_of(key, update_index) == expected, f"{peer.name}: {key} at {update_index}"


# ------------------------------------------------------------ output


def format_figure(value: float, unit: str) -> str:
    if unit == "records/s":
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio_of(cell: Cell | None, verity_cell: Cell | None) -> float | None:
    """VerityDB's figure over the peer's, when both have one."""
    if cell is None or verity_cell is None or cell.value is None or verity_cell.value is None:
        return None
    return verity_cell.value / cell.value if cell.value > 0 else None


def format_cell(cell: Cell | None, metric: Metric, verity_cell: Cell | None, own: bool) -> str:
    if cell is None:
        return "(not run)"
    if cell.value is None:
        return cell.note if cell.status == "cannot" else f"not available: {cell.note}"
    text = format_figure(cell.value, metric.unit)
    ratio = None if own else ratio_of(cell, verity_cell)
    if ratio is not None:
        text += f" ({ratio:.2f})"
    if cell.note:
        text += f" [{cell.note}]"
    return text


@final
@dataclass
class PeerEntry:
    """A requested peer: started, or not available (with the reason)."""

    name: str
    peer: Peer | None
    reason: str = ""

    @property
    def title(self) -> str:
        return self.peer.title if self.peer is not None else self.name


def render_markdown(
    comparison: Comparison, entries: list[PeerEntry], elapsed_s: float, filesystem: str
) -> str:
    sizes = comparison.sizes
    kind = "quick run (`--quick`)" if comparison.quick else "full run"
    lines = [
        f"## VerityDB and its peers: {kind}",
        "",
        "Same records (256 B), same machine, one run; figures are medians over "
        f"{sizes.runs} run(s), latencies HdrHistogram percentiles over all runs' samples. "
        "Each peer cell shows the figure and, in brackets, the ratio VerityDB/peer: for "
        "records/s (higher is better) a ratio above 1 means VerityDB is faster; for µs and "
        "ms (lower is better) a ratio below 1 means VerityDB is faster.",
        "",
        "| workload | unit | better | " + " | ".join(entry.name for entry in entries) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in entries) + " |",
    ]
    for metric in comparison.metrics:
        verity_cell = comparison.cells.get((metric.key, VERITY))
        cells = []
        for entry in entries:
            if entry.peer is None:
                cells.append(f"not available: {entry.reason}" if metric is comparison.metrics[0]
                             else "not available")  # fmt: skip
                continue
            cell = comparison.cells.get((metric.key, entry.name))
            cells.append(format_cell(cell, metric, verity_cell, own=entry.name == VERITY))
        better = "higher" if metric.higher_is_better else "lower"
        lines.append(f"| {metric.title} | {metric.unit} | {better} | " + " | ".join(cells) + " |")
    lines += ["", "### How each store does each workload", ""]
    for entry in entries:
        if entry.peer is None:
            lines.append(f"- **{entry.name}**: not available: {entry.reason}")
            continue
        peer = entry.peer
        lines.append(f"- **{entry.name}**: {peer.title}")
        for workload in WORKLOADS:
            said = [text for text in (peer.cannot.get(workload), peer.how.get(workload)) if text]
            if said:
                lines.append(f"  - {comparison.titles[workload]}: {'; '.join(said)}")
    machine = machine_info()
    lines += [
        "",
        "### Run",
        "",
        f"- {machine['time_utc']}, Python {machine['python']}, {machine['platform']}, "
        f"{machine['cpus']} CPUs; work folder on {filesystem}; took {elapsed_s:.0f} s.",
        f"- Sizes: {json.dumps(asdict(sizes))}.",
        "- Every peer's answers are checked against the records it was given before it is "
        "timed (reads, keyed values, the record read after a crash).",
        "",
    ]
    return "\n".join(lines)


def results_document(
    comparison: Comparison, entries: list[PeerEntry], elapsed_s: float, filesystem: str
) -> dict[str, Any]:
    cells = []
    for metric in comparison.metrics:
        verity_cell = comparison.cells.get((metric.key, VERITY))
        for entry in entries:
            cell = comparison.cells.get((metric.key, entry.name))
            if entry.peer is None:
                cell = Cell("not available", note=entry.reason)
            if cell is None:
                continue
            ratio = None if entry.name == VERITY else ratio_of(cell, verity_cell)
            cells.append({"metric": metric.key, "peer": entry.name, **asdict(cell), "ratio": ratio})
    return {
        "suite": "compare",
        "quick": comparison.quick,
        "machine": {**machine_info(), "work_filesystem": filesystem},
        "elapsed_s": elapsed_s,
        "sizes": asdict(comparison.sizes),
        "ratio": "VerityDB / peer, of each cell's figure",
        "peers": [
            {
                "name": entry.name,
                "title": entry.title,
                "available": entry.peer is not None,
                "reason": entry.reason,
                "how": dict(entry.peer.how) if entry.peer else {},
                "cannot": dict(entry.peer.cannot) if entry.peer else {},
            }
            for entry in entries
        ],
        "metrics": [asdict(metric) for metric in comparison.metrics],
        "cells": cells,
    }


# ------------------------------------------------------------ command line


def parse_only(text: str | None) -> list[str]:
    """The peers to run, in table order; VerityDB always runs (it is every ratio's numerator)."""
    if text is None:
        return list(PEER_NAMES)
    wanted = [name.strip() for name in text.split(",") if name.strip()]
    for name in wanted:
        if name not in PEER_NAMES:
            raise InvalidArgument(
                "--only", name, f"is not a peer; choose from {', '.join(PEER_NAMES)}"
            )
    return [name for name in PEER_NAMES if name == VERITY or name in wanted]


def start_peer(name: str, work: Path, started: float) -> PeerEntry:
    """Make and start peer `name`; if it cannot run here, an entry saying why."""
    progress(started, f"starting {name}")
    try:
        peer = make_peer(name)
    except PeerUnavailable as unavailable:
        progress(started, f"{name} is not available: {unavailable.reason}")
        return PeerEntry(name, None, unavailable.reason)
    try:
        peer.start(work)
    except PeerUnavailable as unavailable:
        peer.stop()  # whatever it started before it gave up
        progress(started, f"{name} is not available: {unavailable.reason}")
        return PeerEntry(name, None, unavailable.reason)
    return PeerEntry(name, peer)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short slice (CI; under 3 minutes)")
    parser.add_argument(
        "--only",
        metavar="PEERS",
        help=f"comma-separated peers to run, from {', '.join(PEER_NAMES)} (verity always runs)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    parser.add_argument("--crash-writer", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.crash_writer is not None:
        return crash_writer_main(args.crash_writer)
    try:
        names = parse_only(args.only)
    except InvalidArgument as bad:
        parser.error(str(bad))
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="verity-compare-", dir=args.dir))
    filesystem = filesystem_of(work)
    entries: list[PeerEntry] = []
    try:
        for name in names:
            entries.append(start_peer(name, work, started))
        running = [entry.peer for entry in entries if entry.peer is not None]
        assert running and running[0].name == VERITY
        comparison = Comparison(sizes, args.quick, work, running)
        comparison.started = started
        comparison.run()
    finally:
        for entry in entries:
            if entry.peer is not None:
                entry.peer.stop()
        shutil.rmtree(work, ignore_errors=True)
    elapsed_s = time.perf_counter() - started
    markdown = render_markdown(comparison, entries, elapsed_s, filesystem)
    document = results_document(comparison, entries, elapsed_s, filesystem)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "compare-quick" if args.quick else "compare"
    (args.out / f"{stem}.md").write_text(markdown, encoding="utf-8")
    (args.out / f"{stem}.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(markdown)
    progress(started, f"results written to {args.out / stem}.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
