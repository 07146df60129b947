"""Shared benchmark plumbing: latency histograms, throughput, ratios, JSON results.

Every benchmark measures VerityDB and a baseline in the same process and run,
so a ratio survives a slow or noisy machine better than an absolute figure.
Latencies go into an HdrHistogram (ns, 3 significant figures) and are
reported as p50/p90/p99/p999. Nothing here asserts a speed: the figures are
printed and written as JSON, and `docs/benchmarks.md` records them.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
LATENCY_NS_MAX = 60 * 1_000_000_000


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, LATENCY_NS_MAX, 3)


def percentiles_us(histogram: HdrHistogram) -> dict[str, float]:
    """p50/p90/p99/p999 in microseconds."""
    names = ("p50", "p90", "p99", "p999")
    return {
        name: histogram.get_value_at_percentile(p) / 1000.0
        for name, p in zip(names, PERCENTILES, strict=True)
    }


def time_each(operation: Callable[[], object], count: int) -> HdrHistogram:
    """Run `operation` `count` times, recording each latency in ns."""
    histogram = new_histogram()
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        operation()
        histogram.record_value(max(1, clock() - start))
    return histogram


def best_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    """Median of `runs` measurements (each a rate), and all of them."""
    values = [measure() for _ in range(runs)]
    return statistics.median(values), values


@dataclass
class Result:
    """One benchmark's figures, as printed and written to JSON."""

    name: str
    unit: str
    value: float
    baseline_name: str = ""
    baseline_value: float = 0.0
    floor: str = ""
    latency_us: dict[str, float] = field(default_factory=dict)
    baseline_latency_us: dict[str, float] = field(default_factory=dict)
    notes: str = ""
    samples: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value:
            return None
        return self.value / self.baseline_value

    def line(self) -> str:
        text = f"{self.name}: {self.value:,.1f} {self.unit}"
        if self.latency_us:
            text += "  [" + " ".join(f"{k}={v:.1f}us" for k, v in self.latency_us.items()) + "]"
        if self.ratio is not None:
            text += (
                f"  | baseline {self.baseline_name}: {self.baseline_value:,.1f} {self.unit}"
                f"  ratio={self.ratio:.2f}"
            )
        if self.floor:
            text += f"  (floor: {self.floor})"
        return text


def machine_info() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_results(out_dir: Path, suite: str, results: list[Result], quick: bool) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{suite}{'-quick' if quick else ''}.json"
    document = {
        "suite": suite,
        "quick": quick,
        "machine": machine_info(),
        "results": [{**asdict(r), "ratio": r.ratio} for r in results],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path
