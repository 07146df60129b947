"""Lockstep: verity.dbapi against verity_spec.tables (conformance/dbapi_machine.py)."""

from __future__ import annotations

import datetime

import pytest
from _campaign import campaign
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from verity import dbapi
from verity_conformance.dbapi_machine import DbapiLockstep

lockstep_settings = settings(
    max_examples=10,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

TestDbapiLockstep = DbapiLockstep.TestCase
TestDbapiLockstep.settings = lockstep_settings


@pytest.mark.slow
def test_dbapi_lockstep_long_campaign() -> None:
    run_state_machine_as_test(
        DbapiLockstep,
        settings=settings(lockstep_settings, max_examples=campaign(100), stateful_step_count=50),
    )


def test_a_cursor_that_skips_a_row_in_fetchmany_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = dbapi.Cursor.fetchmany

    def skipping(self: dbapi.Cursor, size: int | None = None) -> list[tuple[object, ...]]:
        rows = real(self, size)
        return rows[1:] if len(rows) > 1 else rows

    monkeypatch.setattr(dbapi.Cursor, "fetchmany", skipping)
    # The machine's own steps, in an order that meets the bug: five rows, then three fetched.
    machine = DbapiLockstep()
    try:
        machine.many_patients(count=5)
        machine.fetch(how="one", size=0, arraysize=1)  # fetchone is not the broken one
        with pytest.raises(AssertionError, match=r"^fetch many"):
            machine.fetch(how="many", size=3, arraysize=1)
    finally:
        machine.teardown()


def test_timestamp_from_ticks_is_exact_for_the_float_given() -> None:
    # 1167609600.25 s is exactly representable; ticks * 1e9 in floats is not.
    assert dbapi.TimestampFromTicks(1167609600.25) == 1_167_609_600_250_000_000
    assert dbapi.TimestampFromTicks(-0.5) == -500_000_000
    moment = datetime.datetime(2007, 1, 1, tzinfo=datetime.UTC)
    assert dbapi.Timestamp(2007, 1, 1) == int(moment.timestamp()) * 1_000_000_000
