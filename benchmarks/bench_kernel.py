"""Benchmarks of the kernel's fast path (`verity.kernel`) against the spec.

Each figure is measured on one core, in one process, next to the executable
specification (`verity_spec.kernel.apply`) run over the same kind of commands
in the same run:

- `Kernel.apply(AppendBatch)` with one 32-byte event and no idempotency id
  (the floor: >= 500,000 commands/s);
- the same with a fresh idempotency id on every command;
- batches of 10 events of 32 bytes (reported as events/s);
- the shell's path, `decide` then `commit`, one event, no id;
- `Kernel.replay` of the recorded payloads (what opening a tenant costs).

Commands are built before the clock starts, 1,000 at a time, and only applying
them is timed. Per-command latency is the time of a chunk of 1,000 commands
divided by 1,000 (a timer around one call would cost more than the call), so
the percentiles describe chunks, not single outliers.

Run: `python benchmarks/bench_kernel.py [--quick] [--out DIR]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Result, new_histogram, percentiles_us, write_results
from hdrh.histogram import HdrHistogram

import verity_spec.kernel as spec
from verity.kernel import AppendBatch, AppendRecord, CreateStream, Kernel
from verity.types import DataClass, TenantId

TENANT = TenantId(7)
EVENT_BYTES = 32
CHUNK = 1_000
NOW_START = 1_767_225_600_000_000_000
FLOOR_COMMANDS_PER_S = 500_000

Shape = tuple[int, bool]
"""(events per command, whether each command carries a fresh idempotency id)."""


def fresh_kernel() -> tuple[Kernel, int]:
    kernel = Kernel(TENANT)
    [record, _] = kernel.apply(CreateStream(TENANT, "bench", int(DataClass.INTERNAL), 1))
    assert isinstance(record, AppendRecord)
    stream = spec.stream_id_for(int(TENANT), 1)
    return kernel, stream


def chunk_of(stream: int, first_timestamp: int, shape: Shape) -> list[AppendBatch]:
    events_per_command, keyed = shape
    events = tuple(bytes([n]) * EVENT_BYTES for n in range(events_per_command))
    return [
        AppendBatch(
            TENANT,
            stream,
            events,
            os.urandom(16) if keyed else None,
            None,
            first_timestamp + n,
        )
        for n in range(CHUNK)
    ]


def run_fast(
    commands_total: int, shape: Shape, via_decide: bool = False
) -> tuple[float, HdrHistogram]:
    """Commands/s of one fresh kernel over `commands_total` commands, and per-command ns."""
    kernel, stream = fresh_kernel()
    histogram = new_histogram()
    clock = time.perf_counter_ns
    elapsed_ns = 0
    timestamp = NOW_START
    apply, decide, commit = kernel.apply, kernel.decide, kernel.commit
    for _ in range(commands_total // CHUNK):
        commands = chunk_of(stream, timestamp, shape)
        timestamp += CHUNK
        if via_decide:
            start = clock()
            for command in commands:
                commit(decide(command))
            took = clock() - start
        else:
            start = clock()
            for command in commands:
                apply(command)
            took = clock() - start
        elapsed_ns += took
        histogram.record_value(max(1, took // CHUNK), CHUNK)
    assert kernel.next_offset(stream) == commands_total * shape[0]
    return commands_total / (elapsed_ns / 1e9), histogram


def run_spec(commands_total: int, shape: Shape) -> tuple[float, HdrHistogram]:
    """The same commands through `verity_spec.kernel.apply` (contracts on, as shipped)."""
    state = spec.initial_state(int(TENANT))
    state, _ = spec.apply(state, spec.CreateStream(int(TENANT), "bench", 1, 1))
    stream = spec.stream_id_for(int(TENANT), 1)
    events_per_command, keyed = shape
    events = tuple(bytes([n]) * EVENT_BYTES for n in range(events_per_command))
    histogram = new_histogram()
    elapsed_ns = 0
    chunk = min(CHUNK, commands_total)
    for index in range(commands_total // chunk):
        commands = [
            spec.AppendBatch(
                int(TENANT),
                stream,
                events,
                os.urandom(16) if keyed else None,
                None,
                NOW_START + index * chunk + n,
            )
            for n in range(chunk)
        ]
        start = time.perf_counter_ns()
        for command in commands:
            state, _ = spec.apply(state, command)
        took = time.perf_counter_ns() - start
        elapsed_ns += took
        histogram.record_value(max(1, took // chunk), chunk)
    return commands_total / (elapsed_ns / 1e9), histogram


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    values = [measure() for _ in range(runs)]
    return statistics.median(values), values


def bench(quick: bool) -> list[Result]:
    commands_total = 100_000 if quick else 1_000_000
    spec_total = 1_000 if quick else 5_000
    runs = 3
    results: list[Result] = []
    cases: list[tuple[str, Shape, str, str]] = [
        (
            "apply AppendBatch, 1 x 32 B event, no idempotency id",
            (1, False),
            "commands/s",
            f">= {FLOOR_COMMANDS_PER_S:,} commands/s",
        ),
        ("apply AppendBatch, 1 x 32 B event, fresh idempotency id", (1, True), "commands/s", ""),
        ("apply AppendBatch, 10 x 32 B events, no idempotency id", (10, False), "events/s", ""),
    ]
    for name, shape, unit, floor in cases:
        histograms: list[HdrHistogram] = []

        def measure(shape: Shape = shape, histograms: list[HdrHistogram] = histograms) -> float:
            rate, histogram = run_fast(commands_total, shape)
            histograms.append(histogram)
            return rate

        rate, samples = median_of(runs, measure)
        histogram = new_histogram()
        for each in histograms:
            histogram.add(each)
        # The spec keeps every id in a tuple it copies per event: keep its run short.
        spec_rate, spec_histogram = run_spec(spec_total // (10 if shape[1] else 1), shape)
        scale = shape[0] if unit == "events/s" else 1
        results.append(
            Result(
                name=name,
                unit=unit,
                value=rate * scale,
                baseline_name=f"spec apply, same commands ({spec_total:,} or fewer)",
                baseline_value=spec_rate * scale,
                floor=floor,
                latency_us=percentiles_us(histogram),
                baseline_latency_us=percentiles_us(spec_histogram),
                samples=[sample * scale for sample in samples],
                notes=f"{commands_total:,} commands per run, median of {runs} runs; latency "
                f"per command = chunk of {CHUNK:,} / {CHUNK:,}",
            )
        )
        print(results[-1].line(), flush=True)

    decide_histograms: list[HdrHistogram] = []

    def measure_decide() -> float:
        rate, histogram = run_fast(commands_total, (1, False), via_decide=True)
        decide_histograms.append(histogram)
        return rate

    decide_rate, decide_samples = median_of(runs, measure_decide)
    results.append(
        Result(
            name="decide + commit AppendBatch, 1 x 32 B event (the shell's path)",
            unit="commands/s",
            value=decide_rate,
            baseline_name="apply, same commands (same run)",
            baseline_value=results[0].value,
            latency_us=percentiles_us(decide_histograms[-1]),
            samples=decide_samples,
        )
    )
    print(results[-1].line(), flush=True)

    # Replay: rebuild a kernel from the payloads of a keyed run (ids are the costly part).
    source, stream = fresh_kernel()
    payloads: list[bytes] = []
    timestamp = NOW_START
    for _ in range(commands_total // CHUNK):
        for command in chunk_of(stream, timestamp, (1, True)):
            record = source.apply(command)[0]
            assert isinstance(record, AppendRecord)
            payloads.append(record.payload)
        timestamp += CHUNK
    created = Kernel(TENANT).apply(CreateStream(TENANT, "bench", int(DataClass.INTERNAL), 1))[0]
    assert isinstance(created, AppendRecord)
    replay_rates = []
    for _ in range(runs):
        rebuilt = Kernel(TENANT)
        replay = rebuilt.replay
        start = time.perf_counter()
        replay(created.payload)
        for payload in payloads:
            replay(payload)
        replay_rates.append((len(payloads) + 1) / (time.perf_counter() - start))
        assert rebuilt.next_offset(stream) == source.next_offset(stream)
    replay_spec_count = spec_total // 10
    start = time.perf_counter()
    spec.replay(int(TENANT), (created.payload, *payloads[:replay_spec_count]), 10**15)
    spec_replay_rate = (replay_spec_count + 1) / (time.perf_counter() - start)
    results.append(
        Result(
            name="replay (1 x 32 B event, idempotency id per record)",
            unit="records/s",
            value=statistics.median(replay_rates),
            baseline_name=f"spec replay of the first {replay_spec_count:,}",
            baseline_value=spec_replay_rate,
            samples=replay_rates,
        )
    )
    print(results[-1].line(), flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short slice, for CI")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    print(f"floor: apply AppendBatch (1 x {EVENT_BYTES} B) >= {FLOOR_COMMANDS_PER_S:,} commands/s")
    results = bench(args.quick)
    floor_met = results[0].value >= FLOOR_COMMANDS_PER_S
    print(
        f"floor {'met' if floor_met else 'MISSED'}: {results[0].value:,.0f} commands/s "
        f"(>= {FLOOR_COMMANDS_PER_S:,})"
    )
    path = write_results(args.out, "kernel", results, args.quick)
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
