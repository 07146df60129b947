"""The loop every vector runner shares: drive one implementation through recorded steps.

A vector is JSON: a format number, the machine it is for, a config and
`steps`, each with the observation the specification made (`expect`). The
runner performs each step on the implementation and compares its
observation; the first difference fails the vector, naming the step, what
was expected and what came back. An exception from the implementation is a
failed vector too, never a crash of the runner.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["VectorResult", "drive", "load", "step_fields"]

Driver = TypeVar("Driver")


@dataclass
class VectorResult:
    """How one vector went: steps that agreed, and the first failure (None: passed)."""

    path: Path
    steps: int
    failure: str | None


def load(path: Path, form: str, machine: str | None) -> dict[str, Any] | str:
    """The vector in `path`, or why it is not one for this runner."""
    vector: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    found = (vector.get("format"), vector.get("machine"))
    if found[0] != form or (machine is not None and found[1] != machine):
        return f"not a {machine or 'log'} vector: format {found[0]!r}, machine {found[1]!r}"
    return vector


def drive(
    path: Path,
    driver: Driver,
    steps: Sequence[dict[str, Any]],
    perform: Callable[[Driver, dict[str, Any]], Any],
    shown: Callable[[dict[str, Any]], str],
) -> VectorResult:
    """Perform `steps` on `driver`; `shown(step)` describes a step in a failure message."""
    try:
        for number, step in enumerate(steps):
            expected = step["expect"]
            actual = perform(driver, step)
            if actual != expected:
                return VectorResult(
                    path,
                    number,
                    f"step {number} {shown(step)}: "
                    f"expected {json.dumps(expected)[:300]}, got {json.dumps(actual)[:300]}",
                )
        return VectorResult(path, len(steps), None)
    except Exception as failure:  # a crash of the implementation is a failed vector, not ours
        return VectorResult(path, 0, f"raised {type(failure).__name__}: {failure}")


def step_fields(step: dict[str, Any]) -> str:
    """A step without its expectation, as JSON (cut to 200 characters)."""
    return json.dumps({key: value for key, value in step.items() if key != "expect"})[:200]
