"""Lockstep: the SQL engine and projection store against the spec model of tables."""

from __future__ import annotations

import pytest
from _campaign import campaign
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

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
