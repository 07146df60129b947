"""The vector runner a certifier points at an implementation: every failure is a report.

A vector that does not load, a driver that fails to start, to perform a step
or to close, must each come back as a failed vector that names the cause,
never as a crash of the runner or a pass.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from verity_conformance import kernel_vectors, vectors
from verity_conformance.vectors import VECTORS_DIR, default_factory, run_vector

LOG_VECTOR = sorted(VECTORS_DIR.glob("log-*.json"))[0]


def copy_with(tmp_path: Path, change: Any) -> Path:
    vector = json.loads(LOG_VECTOR.read_text(encoding="utf-8"))
    change(vector)
    path = tmp_path / LOG_VECTOR.name
    path.write_text(json.dumps(vector), encoding="utf-8")
    return path


def test_an_unchanged_vector_passes() -> None:
    result = run_vector(LOG_VECTOR, default_factory)
    assert result.failure is None and result.steps > 0


def test_a_wrong_expectation_names_the_step_and_both_answers(tmp_path: Path) -> None:
    def change(vector: dict[str, Any]) -> None:
        vector["steps"][-1]["expect"] = {"not": "what the spec said"}

    result = run_vector(copy_with(tmp_path, change), default_factory)
    assert result.failure is not None
    assert result.failure.startswith(f"step {result.steps} ")
    assert 'expected {"not": "what the spec said"}, got ' in result.failure


def test_files_that_are_not_vectors_fail_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "log-broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert "not a vector: JSONDecodeError" in str(run_vector(broken, default_factory).failure)
    listed = tmp_path / "log-list.json"
    listed.write_text("[1, 2]", encoding="utf-8")
    assert "JSON list, not an object" in str(run_vector(listed, default_factory).failure)
    no_expect = copy_with(tmp_path, lambda v: v["steps"][0].pop("expect"))
    assert "step 0 is not an object with `expect`" in str(
        run_vector(no_expect, default_factory).failure
    )
    kernel = sorted(VECTORS_DIR.glob("kernel-*.json"))[0]
    assert "not a log vector" in str(run_vector(kernel, default_factory).failure)


def test_a_driver_that_raises_is_a_failed_vector_not_a_crash(tmp_path: Path) -> None:
    def refusing_factory(directory: Path, config: dict[str, Any]) -> vectors.LogDriver:
        raise RuntimeError("this implementation does not open")

    result = run_vector(LOG_VECTOR, refusing_factory)
    assert (
        result.failure
        == "the driver factory raised RuntimeError: this implementation does not open"
    )

    class Exploding:
        def __init__(self, inner: vectors.LogDriver) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            if name == "close":
                return self.inner.close
            raise OSError(f"{name} exploded")

    def exploding_factory(directory: Path, config: dict[str, Any]) -> vectors.LogDriver:
        return Exploding(default_factory(directory, config))  # type: ignore[return-value]

    result = run_vector(LOG_VECTOR, exploding_factory)
    assert result.failure is not None and result.failure.startswith("step 0 ")
    assert "raised OSError:" in result.failure and "exploded" in result.failure


def test_a_kernel_driver_factory_that_raises_is_reported(tmp_path: Path) -> None:
    vector = sorted(VECTORS_DIR.glob("kernel-*.json"))[0]
    shutil.copy(vector, tmp_path / vector.name)

    def refusing(config: dict[str, Any]) -> kernel_vectors.KernelDriver:
        raise ValueError("no kernel here")

    result = kernel_vectors.run_vector(tmp_path / vector.name, refusing)
    assert result.failure == "the driver factory raised ValueError: no kernel here"
