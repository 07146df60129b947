"""What every vector runner shares: write vector files, load them, drive an implementation.

A vector is a JSON object: `format`, the `machine` it is for, a `config` and
`steps`, each step holding the observation the specification made (`expect`).
The machine modules (`vectors`, `kernel_vectors`, `tables_vectors`) own what
a step means; this module owns the loop. Each step is performed on the
implementation and its observation compared with `expect`; the first
difference fails the vector, naming the step, what was expected and what came
back. A vector that does not load, an implementation that fails to start, to
perform a step or to close is a failed vector too, never a crash of the runner.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "FORMAT",
    "Recording",
    "VectorResult",
    "drive",
    "load",
    "quiet_implementation_logs",
    "run_all",
    "run_vector",
    "step_fields",
    "vector_file",
    "write_vectors",
]

FORMAT = "verity-conformance-vectors/1"

Step = dict[str, Any]
Driver = TypeVar("Driver")


@dataclass
class VectorResult:
    """How one vector went: steps that agreed, and the first failure (None: passed)."""

    path: Path
    steps: int
    failure: str | None


@dataclass
class Recording:
    """What a lockstep machine did on the spec side, as vector steps without `expect`.

    A machine adds each operation it performs in the step format of its vector
    runner; when a run of the machine fails, its recording becomes a
    reproduction vector (`verity_conformance._machines`), the expectations
    computed by the spec as `generate` computes them. `add_later` defers
    building a step until a reproduction needs it, for steps whose JSON is
    costly (a 16 MiB batch the kernel must reject).
    """

    machine: str
    config: dict[str, Any] = field(default_factory=dict)
    _steps: list[Step | Callable[[], Step]] = field(default_factory=list)

    def add(self, step: Step) -> Step:
        self._steps.append(step)
        return step

    def add_later(self, make: Callable[[], Step]) -> None:
        self._steps.append(make)

    def steps(self) -> list[Step]:
        return [step if isinstance(step, dict) else step() for step in self._steps]

    def __len__(self) -> int:
        return len(self._steps)


# ------------------------------------------------------------------ writing


def vector_file(out_dir: Path, machine: str, name: str) -> Path:
    return out_dir / f"{machine}-{name}.json"


def write_vectors(out_dir: Path, vectors: Iterable[dict[str, Any]]) -> list[Path]:
    """Write each vector to `<machine>-<name>.json` in `out_dir`; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for vector in vectors:
        path = vector_file(out_dir, vector["machine"], vector["name"])
        # sort_keys and a fixed indent keep regeneration byte-for-byte reproducible (CI diffs it).
        text = json.dumps(vector, indent=1, sort_keys=True) + "\n"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


# ------------------------------------------------------------------ running


def load(path: Path, machine: str) -> dict[str, Any] | str:
    """The vector in `path`, or why it is not a vector of `machine`.

    A file without `machine` is a log vector, as `python -m verity_conformance
    run` dispatches it.
    """
    try:
        vector = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as failure:
        return f"not a vector: {type(failure).__name__}: {failure}"
    if not isinstance(vector, dict):
        return f"not a vector: the file holds a JSON {type(vector).__name__}, not an object"
    found = (vector.get("format"), vector.get("machine", "log"))
    if found != (FORMAT, machine):
        return f"not a {machine} vector: format {found[0]!r}, machine {found[1]!r}"
    if not isinstance(vector.get("config"), dict) or not isinstance(vector.get("steps"), list):
        return "not a vector: it needs a `config` object and a `steps` list"
    for number, step in enumerate(vector["steps"]):
        if not isinstance(step, dict) or "expect" not in step:
            return f"not a vector: step {number} is not an object with `expect`: {step!r:.200}"
    return vector


def step_fields(step: Step) -> str:
    """A step without its expectation, as JSON (cut to 200 characters)."""
    return json.dumps({key: value for key, value in step.items() if key != "expect"})[:200]


def drive(
    path: Path,
    driver: Driver,
    steps: Sequence[Step],
    perform: Callable[[Driver, Step], object],
    shown: Callable[[Step], str],
) -> VectorResult:
    """Perform `steps` on `driver` until one differs; `shown(step)` names a step in a failure."""
    for number, step in enumerate(steps):
        expected = step["expect"]
        try:
            actual = perform(driver, step)
        except Exception as failure:  # a crash of the implementation is a failed vector
            return VectorResult(
                path, number, f"step {number} {shown(step)}: raised {_described(failure)}"
            )
        if actual != expected:
            return VectorResult(
                path,
                number,
                f"step {number} {shown(step)}: "
                f"expected {json.dumps(expected)[:300]}, got {json.dumps(actual)[:300]}",
            )
    return VectorResult(path, len(steps), None)


def run_vector(
    path: Path,
    machine: str,
    start: Callable[[dict[str, Any], Path], Driver],
    perform: Callable[[Driver, Step], object],
    shown: Callable[[Step], str] = step_fields,
    close: Callable[[Driver], None] | None = None,
) -> VectorResult:
    """Check the `machine` vector in `path` against the driver `start(config, scratch)` makes.

    `scratch` is an empty directory for the implementation's files, removed
    afterwards; `close(driver)`, when given, runs after the steps.
    """
    vector = load(path, machine)
    if isinstance(vector, str):
        return VectorResult(path, 0, vector)
    with tempfile.TemporaryDirectory(
        prefix=f"verity-{machine}-vector-", ignore_cleanup_errors=True
    ) as scratch:
        try:
            driver = start(vector["config"], Path(scratch))
        except Exception as failure:  # the implementation failed to start: a failed vector
            return VectorResult(path, 0, f"the driver factory raised {_described(failure)}")
        result = drive(path, driver, vector["steps"], perform, shown)
        if close is not None:
            try:
                close(driver)
            except Exception as failure:  # a failed close fails a vector that had not failed
                if result.failure is None:
                    result.failure = f"closing the driver raised {_described(failure)}"
        return result


def run_all(
    vectors_dir: Path, machine: str, check: Callable[[Path], VectorResult]
) -> list[VectorResult]:
    """`check` every `<machine>-*.json` in `vectors_dir`, in name order."""
    paths = sorted(vectors_dir.glob(f"{machine}-*.json"))
    if not paths:
        raise FileNotFoundError(f"no {machine} vectors ({machine}-*.json) in {vectors_dir}")
    return [check(path) for path in paths]


def _described(failure: Exception) -> str:
    return f"{type(failure).__name__}: {failure}"


@contextlib.contextmanager
def quiet_implementation_logs(verbose: bool) -> Iterator[None]:
    """Hold back the implementation's warnings unless `verbose`.

    Vectors and machines tear writes and damage files on purpose; the
    implementation logs a warning for each, which would bury the run's lines.
    """
    verity_logger = logging.getLogger("verity")
    saved = verity_logger.level
    if not verbose:
        verity_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        verity_logger.setLevel(saved)
