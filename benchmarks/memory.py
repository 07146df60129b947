"""Memory of a tenant against the size of its log (issue 10, §6).

Appends N records of one 16-byte event each (every record its own append
call, to one PUBLIC stream, through the SDK) and reports, at every tenth of
N, the process's resident memory from /proc/self/status: VmRSS, its peak
VmHWM, and its anonymous part RssAnon (the Python heap and every other
private allocation) apart from RssFile (pages of files mapped in, which the
kernel can drop). Over a sample window in the middle it also traces Python
allocations (tracemalloc is slow, so only there) and attributes the growth
per record to source files. Then a fresh process reopens the database and
reports memory after the open and after reading every event back. The
figures that matter are the slopes in bytes per record, fitted over the
checkpoints: flat means resident memory does not grow with the log.

Each phase runs in its own child process, so one phase's freed-but-kept
heap does not count in the next one.

Run: `python benchmarks/memory.py [--quick] [--records N] [--sync POLICY] [--dir DIR] [--out DIR]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Result, write_results

import verity
from verity import DataClass, StreamId, SyncPolicy, TenantId

EVENT = b"x" * 16
TENANT = TenantId(1)
STREAM_NAME = "s"
CHECKPOINTS = 10  # memory is read at every tenth of N
SAMPLE_RECORDS_MAX = 100_000  # appends traced by tracemalloc (from the first on)
READ_BYTES_MAX = 1 << 20  # read_events' max_bytes while reading back
STATUS_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")
SYNC_POLICIES = {
    "every_batch": SyncPolicy.every_batch,
    "every_record": SyncPolicy.every_record,
    "group_commit": SyncPolicy.group_commit,
}


def memory_status_bytes() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile and RssShmem of this process, in bytes (Linux)."""
    found: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in STATUS_FIELDS:
                found[name] = int(value.split()[0]) * 1024  # the kernel says kB
    return found


def slope_bytes_per_record(points: list[tuple[int, int]]) -> float:
    """The least-squares slope of bytes against records."""
    if len(points) < 2:
        return 0.0
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


class Progress:
    """A one-line text bar on stderr: redrawn in place on a terminal, a line per 10% otherwise."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = max(total, 1)
        self.started = time.perf_counter()
        self.shown_tenths = -1
        self.tty = sys.stderr.isatty()

    def update(self, done: int) -> None:
        tenths = done * 10 // self.total
        if not self.tty and tenths == self.shown_tenths:
            return
        self.shown_tenths = tenths
        elapsed_s = time.perf_counter() - self.started
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        filled = done * 30 // self.total
        bar = "#" * filled + "." * (30 - filled)
        line = f"{self.what} [{bar}] {done:,}/{self.total:,} ({rate:,.0f}/s, {elapsed_s:,.0f} s)"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr)
        sys.stderr.flush()

    def finish(self) -> None:
        self.update(self.total)
        if self.tty:
            print(file=sys.stderr)


# ------------------------------------------------------------ phases (child processes)


def traced_growth(before: tracemalloc.Snapshot, records: int) -> dict[str, Any]:
    """Heap growth per record since `before`, over `records` records: in total and per file."""
    by_file = tracemalloc.take_snapshot().compare_to(before, "filename")
    total = sum(stat.size_diff for stat in by_file)
    top = [
        {"file": stat.traceback[0].filename, "bytes_per_record": stat.size_diff / records}
        for stat in by_file[:6]
        if stat.size_diff > 0
    ]
    return {"records": records, "bytes_per_record": total / records, "top_files": top}


def phase_append(database: Path, records: int, sync: str) -> dict[str, Any]:
    """Append `records` single-event records; memory at every tenth, and traced over a prefix.

    tracemalloc runs from before the open to the end of the first tenth (at
    most SAMPLE_RECORDS_MAX records), so what it attributes includes the
    arrays and files the first records created; its slope is taken from a
    tenth of that prefix on.
    """
    checkpoints: list[dict[str, int]] = []
    step = max(records // CHECKPOINTS, 1)
    sample = min(SAMPLE_RECORDS_MAX, step)
    tracemalloc.start()
    db = verity.open(database, create=True, sync_policy=SYNC_POLICIES[sync]())
    tenant = db.tenant(TENANT, create=True)
    stream = tenant.create_stream(STREAM_NAME, DataClass.PUBLIC)
    checkpoints.append({"records": 0, **memory_status_bytes()})
    traced: dict[str, Any] = {}
    traced_from = tracemalloc.take_snapshot() if sample < 10 else None
    progress = Progress("append", records)
    started = time.perf_counter()
    for done in range(1, records + 1):
        tenant.append(stream, [EVENT])
        if done == sample // 10 and traced_from is None:
            traced_from = tracemalloc.take_snapshot()
        if done == sample and traced_from is not None:
            traced = traced_growth(traced_from, sample - sample // 10)
            traced_from = None
            tracemalloc.stop()
        if done % step == 0 or done == records:
            checkpoints.append({"records": done, **memory_status_bytes()})
            progress.update(done)
    elapsed_s = time.perf_counter() - started
    progress.finish()
    db.close()
    return {
        "records": records,
        "sync": sync,
        "appends_per_s": records / elapsed_s,
        "checkpoints": checkpoints,
        "traced": traced,
        "after_close": memory_status_bytes(),
    }


def phase_reopen(database: Path, records: int) -> dict[str, Any]:
    """Reopen (a fresh process), then read every event back: memory after each."""
    before = memory_status_bytes()
    started = time.perf_counter()
    db = verity.open(database)
    tenant = db.tenant(TENANT)
    open_s = time.perf_counter() - started
    after_open = memory_status_bytes()
    stream = StreamId(tenant.streams()[0].stream_id)
    progress = Progress("read back", records)
    offset = 0
    read_started = time.perf_counter()
    while events := tenant.read_events(stream, verity.Offset(offset), READ_BYTES_MAX):
        offset += len(events)
        progress.update(offset)
    read_s = time.perf_counter() - read_started
    progress.finish()
    after_read = memory_status_bytes()
    db.close()
    return {
        "before_open": before,
        "after_open": after_open,
        "open_s": open_s,
        "after_read": after_read,
        "events_read": offset,
        "read_events_per_s": offset / read_s if read_s else 0.0,
    }


def phase_empty() -> dict[str, Any]:
    """Memory of a process that imported verity and opened a tenant of one record."""
    with tempfile.TemporaryDirectory(prefix="verity-bench-memory-empty-") as work:
        db = verity.open(Path(work) / "db", create=True)
        tenant = db.tenant(TENANT, create=True)
        tenant.append(tenant.create_stream(STREAM_NAME, DataClass.PUBLIC), [EVENT])
        status = memory_status_bytes()
        db.close()
    return status


# ------------------------------------------------------------ the parent


def run_phase(arguments: list[str]) -> dict[str, Any]:
    """Run one phase in a child process; its result is the last line it prints."""
    command = [sys.executable, str(Path(__file__).resolve()), *arguments]
    finished = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    result: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return result


def mib(value: float) -> str:
    return f"{value / (1 << 20):,.1f} MiB"


def summarize(
    empty: dict[str, Any], appended: dict[str, Any], reopened: dict[str, Any]
) -> list[Result]:
    records = appended["records"]
    tail = [c for c in appended["checkpoints"] if c["records"] >= records // CHECKPOINTS]
    anon_slope = slope_bytes_per_record([(c["records"], c["RssAnon"]) for c in tail])
    rss_slope = slope_bytes_per_record([(c["records"], c["VmRSS"]) for c in tail])
    last = appended["checkpoints"][-1]
    traced = appended["traced"]
    top = ", ".join(
        f"{Path(t['file']).name} {t['bytes_per_record']:.1f}" for t in traced.get("top_files", [])
    )
    notes = f"{records:,} records, sync {appended['sync']}"
    return [
        Result("RssAnon slope while appending", "B/record", anon_slope, notes=notes),
        Result("VmRSS slope while appending", "B/record", rss_slope, notes=notes),
        Result(
            "traced Python heap growth while appending",
            "B/record",
            traced.get("bytes_per_record", 0.0),
            notes=f"tracemalloc over {traced.get('records', 0):,} early appends; by file: {top}",
        ),
        Result(
            f"peak RSS (VmHWM) appending {records:,} records",
            "MiB",
            last["VmHWM"] / (1 << 20),
            baseline_name="a process with one tenant of one record",
            baseline_value=empty["VmHWM"] / (1 << 20),
            notes=f"RssAnon at the end {mib(last['RssAnon'])}, RssFile {mib(last['RssFile'])}",
        ),
        Result(
            f"RSS after reopening {records:,} records",
            "MiB",
            reopened["after_open"]["VmRSS"] / (1 << 20),
            baseline_name="a process with one tenant of one record",
            baseline_value=empty["VmRSS"] / (1 << 20),
            notes=(
                f"open {reopened['open_s'] * 1000:.1f} ms, peak during it "
                f"{mib(reopened['after_open']['VmHWM'])}, RssAnon "
                f"{mib(reopened['after_open']['RssAnon'])}"
            ),
        ),
        Result(
            f"RSS after reading all {reopened['events_read']:,} events back",
            "MiB",
            reopened["after_read"]["VmRSS"] / (1 << 20),
            baseline_name="a process with one tenant of one record",
            baseline_value=empty["VmRSS"] / (1 << 20),
            notes=(
                f"peak {mib(reopened['after_read']['VmHWM'])}, RssAnon "
                f"{mib(reopened['after_read']['RssAnon'])}, RssFile "
                f"{mib(reopened['after_read']['RssFile'])}, "
                f"{reopened['read_events_per_s']:,.0f} events/s"
            ),
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short slice, for CI")
    parser.add_argument("--records", type=int, default=None, help="N (default 1,000,000)")
    parser.add_argument("--sync", choices=sorted(SYNC_POLICIES), default="every_batch")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    parser.add_argument("--phase", choices=("append", "reopen", "empty"), help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    records = args.records or (3_000 if args.quick else 1_000_000)
    if args.phase == "append":
        print(json.dumps(phase_append(args.db, records, args.sync)))
        return 0
    if args.phase == "reopen":
        print(json.dumps(phase_reopen(args.db, records)))
        return 0
    if args.phase == "empty":
        print(json.dumps(phase_empty()))
        return 0
    work = Path(tempfile.mkdtemp(prefix="verity-bench-memory-", dir=args.dir))
    try:
        database = work / "db"
        empty = run_phase(["--phase", "empty"])
        appended = run_phase(
            [
                "--phase",
                "append",
                "--db",
                str(database),
                "--records",
                str(records),
                "--sync",
                args.sync,
            ]
        )
        reopened = run_phase(
            ["--phase", "reopen", "--db", str(database), "--records", str(records)]
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for checkpoint in appended["checkpoints"]:
        print(
            f"{checkpoint['records']:>12,} records: VmRSS {mib(checkpoint['VmRSS'])}, "
            f"RssAnon {mib(checkpoint['RssAnon'])}, RssFile {mib(checkpoint['RssFile'])}, "
            f"RssShmem {mib(checkpoint.get('RssShmem', 0))}, VmHWM {mib(checkpoint['VmHWM'])}"
        )
    results = summarize(empty, appended, reopened)
    for result in results:
        print(result.line(), flush=True)
        if result.notes:
            print(f"    {result.notes}")
    raw = {"empty": empty, "append": appended, "reopen": reopened}
    path = write_results(args.out, "memory", results, args.quick)
    raw_path = path.with_name(path.stem + "-raw.json")
    raw_path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {path} and {raw_path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
