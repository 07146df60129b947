"""`python -m verity_conformance generate [--out DIR]` | `run [options]`.

`generate` writes the vectors of every machine (`log-*.json`, `kernel-*.json`,
`tables-*.json`).

`run` checks the installed implementation: first every vector file (each with
the runner of its `machine`; `--adapter` chooses the log implementation,
`--kernel-adapter` the kernel), the public API's boundary (`boundary`: every
out-of-domain argument refused by name; the `verity` package's own API, so
not with another adapter), then the lockstep state machines for the rest
of `--budget` seconds, in seeded rounds. It prints the seed, a line per vector
failure and per machine round, the files a failure was written to, and last a
summary; the exit status is 1 when anything failed (docs/conformance.md).
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from verity_conformance import (
    boundary,
    envelope_vectors,
    kernel_vectors,
    proof_vectors,
    tables_vectors,
)
from verity_conformance._runner import VectorResult, quiet_implementation_logs
from verity_conformance.vectors import (
    VECTORS_DIR,
    DriverFactory,
    default_factory,
    generate,
    run_vector,
)

MACHINE_NAMES = ("kernel", "log", "tables", "store", "sdk", "dbapi")
# Measured: the vectors take about 1 s and the rounds overrun their shares by a few
# seconds, so the default run ends well within CI's 2 minutes on 2 cores.
BUDGET_SECONDS_DEFAULT = 100.0
SHRINK_SECONDS_DEFAULT = 30.0
FAILURES_DIR_DEFAULT = Path("verity-conformance-failures")


def load_factory(spec: str | None) -> DriverFactory:
    if spec is None:
        return default_factory
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise SystemExit(f"--adapter must be MODULE:FACTORY, got {spec!r}")
    factory: DriverFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


def load_kernel_factory(spec: str | None) -> kernel_vectors.KernelDriverFactory:
    if spec is None:
        return kernel_vectors.default_kernel_factory
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise SystemExit(f"--kernel-adapter must be MODULE:FACTORY, got {spec!r}")
    factory: kernel_vectors.KernelDriverFactory = getattr(
        importlib.import_module(module_name), attribute
    )
    return factory


def machine_of(path: Path) -> str:
    try:
        vector = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "log"  # its runner fails the file, saying why it does not load
    machine = vector.get("machine", "log") if isinstance(vector, dict) else "log"
    return str(machine)


def machine_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(MACHINE_NAMES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"machines are a comma-separated list of {', '.join(MACHINE_NAMES)}; got {text!r}"
        )
    return list(dict.fromkeys(names))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m verity_conformance")
    commands = top.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write vectors computed by the spec")
    gen.add_argument("--out", type=Path, default=VECTORS_DIR)
    check = commands.add_parser(
        "run", help="check the installed implementation: the vectors, then the machines"
    )
    check.add_argument("--vectors", type=Path, default=VECTORS_DIR, help="a folder of *.json")
    check.add_argument("--adapter", default=None, help="MODULE:FACTORY (default: verity.storage)")
    check.add_argument(
        "--kernel-adapter", default=None, help="MODULE:FACTORY (default: verity.kernel)"
    )
    check.add_argument(
        "--budget",
        type=float,
        default=BUDGET_SECONDS_DEFAULT,
        metavar="SECONDS",
        help=f"time for the whole run, vectors first (default {BUDGET_SECONDS_DEFAULT:g})",
    )
    check.add_argument(
        "--seed", type=int, default=None, help="base seed of the rounds (default: fresh, printed)"
    )
    check.add_argument(
        "--machines",
        type=machine_list,
        default=list(MACHINE_NAMES),
        help=f"comma-separated, of {','.join(MACHINE_NAMES)} (default: all)",
    )
    only = check.add_mutually_exclusive_group()
    only.add_argument("--vectors-only", action="store_true", help="run no machine")
    only.add_argument("--machines-only", action="store_true", help="check no vector")
    check.add_argument(
        "--out-failures",
        type=Path,
        default=FAILURES_DIR_DEFAULT,
        metavar="DIR",
        help=f"where reproductions go, made on a failure (default ./{FAILURES_DIR_DEFAULT})",
    )
    check.add_argument(
        "--shrink-seconds",
        type=float,
        default=SHRINK_SECONDS_DEFAULT,
        help=f"time to shrink a failure (default {SHRINK_SECONDS_DEFAULT:g})",
    )
    check.add_argument("-v", "--verbose", action="store_true")
    return top


def check_vectors(args: argparse.Namespace) -> list[VectorResult]:
    paths = sorted(args.vectors.glob("*.json"))
    if not paths:
        raise SystemExit(f"no vectors (*.json) in {args.vectors}")
    factory = load_factory(args.adapter)
    kernel_factory = load_kernel_factory(args.kernel_adapter)
    results: list[VectorResult] = []
    with quiet_implementation_logs(args.verbose):
        for path in paths:
            machine = machine_of(path)
            if machine == "kernel":
                results.append(kernel_vectors.run_vector(path, kernel_factory))
            elif machine == "tables":
                results.append(
                    tables_vectors.run_vector(path, tables_vectors.default_tables_factory)
                )
            elif machine == "envelope":
                results.append(envelope_vectors.run_vector(path))
            elif machine == "proofs":
                results.append(proof_vectors.run_vector(path))
            else:
                results.append(run_vector(path, factory))
    for result in results:
        if result.failure is not None:
            print(f"FAIL {result.path.name}: {result.failure}", flush=True)
        elif args.verbose:
            print(f"ok   {result.path.name} ({result.steps} steps)", flush=True)
    return results


def check_boundary(show_line: bool, started: float) -> str:
    """Run the boundary cases; print each failure (and, if `show_line`, the line); the line.

    The printed line ends with the run's seconds so far (since `started`), as the
    vectors' line does: the machines' budget is what is left after it.
    """
    with (
        tempfile.TemporaryDirectory(prefix="verity-boundary-") as scratch,
        quiet_implementation_logs(False),
    ):
        checked, failures = boundary.run(Path(scratch))
    for failure in failures:
        print(f"FAIL boundary {failure}", flush=True)
    line = f"boundary: {checked - len(failures)} passed, {len(failures)} failed"
    if show_line:
        print(f"{line} ({time.monotonic() - started:.1f} s)", flush=True)
    return line


def machines_module() -> ModuleType:
    """`verity_conformance._machines`, or an exit saying the machines need Hypothesis."""
    try:
        from verity_conformance import _machines
    except ImportError as missing:  # hypothesis is a test dependency, not a runtime one
        raise SystemExit(
            f"the machines need Hypothesis ({missing}): pip install hypothesis, "
            "or check the vectors alone with --vectors-only"
        ) from missing
    return _machines


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    # Before any work: a run that cannot play the machines says so at once.
    machines = None if args.vectors_only else machines_module()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    if machines is not None:
        print(f"seed {seed} (repeat this run with --seed {seed})", flush=True)
    summary: list[str] = []
    failed = False
    if not args.machines_only:
        results = check_vectors(args)
        passed = [r for r in results if r.failure is None]
        failed = len(passed) < len(results)
        line = f"vectors: {len(passed)} passed, {len(results) - len(passed)} failed"
        steps = f"{sum(r.steps for r in passed)} steps"
        if machines is None:
            line = f"{line} ({steps})"
        else:
            print(f"{line} ({steps}, {time.monotonic() - started:.1f} s)", flush=True)
        summary.append(line)
        if args.adapter is None and args.kernel_adapter is None:
            summary.append(check_boundary(show_line=machines is not None, started=started))
            failed = failed or not summary[-1].endswith(" 0 failed")
    if machines is not None:
        remaining = max(0.0, args.budget - (time.monotonic() - started))
        rounds = machines.run_machines(
            args.machines,
            remaining,
            seed,
            args.out_failures,
            lambda text: print(text, flush=True),
            shrink_seconds=args.shrink_seconds,
            verbose=args.verbose,
        )
        summary.append(machines.describe(rounds))
        if any(r.failure is not None for r in rounds):
            failed = True
            print(
                f"replay the reproduction vectors: python -m verity_conformance run "
                f"--vectors-only --vectors {args.out_failures}",
                flush=True,
            )
    print(f"{'; '.join(summary)} ({time.monotonic() - started:.0f} s)", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "generate":
        paths = (
            generate(args.out)
            + kernel_vectors.generate(args.out)
            + tables_vectors.generate(args.out)
            + envelope_vectors.generate(args.out)
            + proof_vectors.generate(args.out)
        )
        print(f"wrote {len(paths)} vector files to {args.out}")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
