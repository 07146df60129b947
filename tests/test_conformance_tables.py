"""Lockstep: the SQL engine and projection store against the spec model of tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from _campaign import campaign
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from verity_conformance import tables_vectors
from verity_conformance.tables_machine import TablesLockstep

tables_settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

TestTablesLockstep = TablesLockstep.TestCase
TestTablesLockstep.settings = tables_settings


@pytest.mark.slow
def test_tables_lockstep_long_campaign() -> None:
    run_state_machine_as_test(
        TablesLockstep,
        settings=settings(tables_settings, max_examples=campaign(300), stateful_step_count=50),
    )


REPO_VECTORS = Path(__file__).resolve().parents[1] / "conformance" / "vectors"


@pytest.mark.parametrize(
    "path", sorted(REPO_VECTORS.glob("tables-*.json")), ids=lambda path: path.stem
)
def test_every_tables_vector_passes_on_the_engine_over_the_memory_store(path: Path) -> None:
    # The reproduction of a failing round replays on both implementation sides of the
    # machine; on the committed vectors the reference store in memory answers as the spec.
    result = tables_vectors.run_vector(path, tables_vectors.memory_tables_factory)
    assert result.failure is None, (path.name, result.failure)
    assert result.steps > 0
