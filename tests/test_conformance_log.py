"""Lockstep: the storage log against the spec log, and the committed vectors."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from _campaign import campaign
from hypothesis import HealthCheck, settings

from verity_conformance.log_machine import LogLockstep
from verity_conformance.vectors import VECTORS_DIR, build_vector, default_factory, run, scenarios

lockstep_settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

TestLogLockstep = LogLockstep.TestCase
TestLogLockstep.settings = lockstep_settings


@pytest.mark.slow
def test_log_lockstep_long_campaign() -> None:
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        LogLockstep,
        settings=settings(lockstep_settings, max_examples=campaign(400), stateful_step_count=60),
    )


def test_committed_vectors_are_what_the_spec_generates() -> None:
    committed = sorted(VECTORS_DIR.glob("log-*.json"))
    assert len(committed) == len(scenarios())
    for scenario, path in zip(
        sorted(scenarios(), key=lambda s: f"log-{s.name}.json"), committed, strict=True
    ):
        assert path.name == f"log-{scenario.name}.json"
        assert json.loads(path.read_text()) == build_vector(scenario), path.name


def test_implementation_passes_every_vector() -> None:
    results = run(VECTORS_DIR, default_factory)
    failures = [f"{r.path.name}: {r.failure}" for r in results if r.failure is not None]
    assert not failures, "\n".join(failures)
    assert sum(r.steps for r in results) > 1000


def test_runner_reports_a_wrong_expectation() -> None:
    # A runner that cannot fail proves nothing: bend one expectation and watch it fail.
    source = VECTORS_DIR / "log-basic.json"
    vector = json.loads(source.read_text())
    for step in vector["steps"]:
        if step["op"] == "read" and "ok" in step["expect"]:
            step["expect"]["ok"]["chain_hash"] = "00" * 32
            break
    with tempfile.TemporaryDirectory() as scratch:
        bent = Path(scratch) / "log-basic.json"
        bent.write_text(json.dumps(vector))
        [result] = run(Path(scratch), default_factory)
    assert result.failure is not None and "chain_hash" in result.failure
