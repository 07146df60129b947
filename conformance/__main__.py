"""`python -m verity_conformance generate [--out DIR]` | `run [--vectors DIR] [--adapter M:F]`.

`generate` writes the vectors of every machine (`log-*.json`, `kernel-*.json`,
`tables-*.json`);
`run` checks each file with the runner of its `machine` and prints one combined
`N passed, N failed` line. `--adapter` chooses the log implementation,
`--kernel-adapter` the kernel implementation.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from verity_conformance import kernel_vectors, tables_vectors
from verity_conformance._runner import VectorResult
from verity_conformance.vectors import (
    VECTORS_DIR,
    DriverFactory,
    default_factory,
    generate,
    run_vector,
)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verity_conformance")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write vectors computed by the spec")
    gen.add_argument("--out", type=Path, default=VECTORS_DIR)
    check = commands.add_parser("run", help="check an implementation against the vectors")
    check.add_argument("--vectors", type=Path, default=VECTORS_DIR)
    check.add_argument("--adapter", default=None, help="MODULE:FACTORY (default: verity.storage)")
    check.add_argument(
        "--kernel-adapter", default=None, help="MODULE:FACTORY (default: verity.kernel)"
    )
    check.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "generate":
        paths = (
            generate(args.out)
            + kernel_vectors.generate(args.out)
            + tables_vectors.generate(args.out)
        )
        print(f"wrote {len(paths)} vector files to {args.out}")
        return 0
    paths = sorted(args.vectors.glob("*.json"))
    if not paths:
        raise SystemExit(f"no vectors (*.json) in {args.vectors}")
    factory = load_factory(args.adapter)
    kernel_factory = load_kernel_factory(args.kernel_adapter)
    results: list[VectorResult] = []
    for path in paths:
        machine = machine_of(path)
        if machine == "kernel":
            results.append(kernel_vectors.run_vector(path, kernel_factory))
        elif machine == "tables":
            results.append(tables_vectors.run_vector(path, tables_vectors.default_tables_factory))
        else:
            results.append(run_vector(path, factory))
    passed = [r for r in results if r.failure is None]
    failed = [r for r in results if r.failure is not None]
    for result in results:
        if result.failure is not None:
            print(f"FAIL {result.path.name}: {result.failure}")
        elif args.verbose:
            print(f"ok   {result.path.name} ({result.steps} steps)")
    steps = sum(r.steps for r in passed)
    print(f"checked {steps} steps in {len(passed)} passing vector files", file=sys.stderr)
    print(f"{len(passed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
