"""Lockstep: the fast kernel against the spec kernel, and the committed kernel vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _campaign import campaign
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from verity_conformance.kernel_machine import KernelLockstep
from verity_conformance.kernel_vectors import (
    FastKernelDriver,
    build_vector,
    default_kernel_factory,
    run,
    scenarios,
    vector_path,
)
from verity_conformance.vectors import VECTORS_DIR

lockstep_settings = settings(
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

TestKernelLockstep = KernelLockstep.TestCase
TestKernelLockstep.settings = lockstep_settings


@pytest.mark.slow
def test_kernel_lockstep_long_campaign() -> None:
    run_state_machine_as_test(
        KernelLockstep,
        settings=settings(lockstep_settings, max_examples=campaign(400), stateful_step_count=80),
    )


def test_committed_vectors_are_what_the_spec_generates() -> None:
    committed = sorted(VECTORS_DIR.glob("kernel-*.json"))
    expected = sorted(vector_path(VECTORS_DIR, scenario) for scenario in scenarios())
    assert committed == expected
    for scenario in scenarios():
        path = vector_path(VECTORS_DIR, scenario)
        assert json.loads(path.read_text()) == build_vector(scenario), path.name


def test_implementation_passes_every_kernel_vector() -> None:
    results = run(VECTORS_DIR, default_kernel_factory)
    failures = [f"{r.path.name}: {r.failure}" for r in results if r.failure is not None]
    assert not failures, "\n".join(failures)
    assert len(results) == len(scenarios())
    assert sum(r.steps for r in results) > 500


def test_implementation_through_decide_and_commit_passes_every_kernel_vector() -> None:
    results = run(VECTORS_DIR, lambda config: FastKernelDriver(config, via_decide=True))
    failures = [f"{r.path.name}: {r.failure}" for r in results if r.failure is not None]
    assert not failures, "\n".join(failures)
    assert sum(r.steps for r in results) > 500


def test_runner_reports_a_wrong_expectation(tmp_path: Path) -> None:
    # A runner that cannot fail proves nothing: bend one expectation and watch it fail.
    vector = json.loads((VECTORS_DIR / "kernel-expiry.json").read_text())
    bent = 0
    for step in vector["steps"]:
        if step["op"] == "committed" and step["expect"]["offset"] is None:
            step["expect"]["offset"] = 0
            bent += 1
            break
    assert bent == 1
    (tmp_path / "kernel-expiry.json").write_text(json.dumps(vector))
    [result] = run(tmp_path, default_kernel_factory)
    assert result.failure is not None and '"offset": 0' in result.failure
