"""Lockstep: the whole SDK on real files against a model built from the spec."""

from __future__ import annotations

import pytest
from _campaign import campaign
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

import verity_spec.kernel as spec_kernel
from verity import DataClass, StreamId, TenantId
from verity_conformance.sdk_machine import SdkLockstep

sdk_settings = settings(
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

TestSdkLockstep = SdkLockstep.TestCase
TestSdkLockstep.settings = sdk_settings


@pytest.mark.slow
def test_sdk_lockstep_long_campaign() -> None:
    run_state_machine_as_test(
        SdkLockstep,
        settings=settings(sdk_settings, max_examples=campaign(200), stateful_step_count=60),
    )


def append(machine: SdkLockstep, tenant: TenantId, name: str, events: list[bytes]) -> None:
    """An append of `events` to the stream named `name`, in the model and the SDK."""
    [stream] = [s.stream for s in machine.models[int(tenant)].kernel.streams if s.name == name]
    command = spec_kernel.AppendBatch(int(tenant), stream, tuple(events), None, None, machine.now)
    expected = machine.model_apply(int(tenant), command)
    assert expected == {"ok": int(machine.db.tenant(tenant).append(StreamId(stream), events))}


def test_each_kind_of_damage_between_sessions_runs_against_the_model() -> None:
    # One pass through every file the machine damages or puts back, in a fixed order,
    # so that each is known to run (the machine's random runs reach them by chance).
    t1 = TenantId(1)
    machine = SdkLockstep()
    try:
        machine.create_stream(t1, "audit", DataClass.PUBLIC, 1)
        machine.sql_write(
            t1, [("CREATE TABLE t1 (id BIGINT PRIMARY KEY, name TEXT, n BIGINT)", ())], 1
        )
        for row in range(4):
            append(machine, t1, "audit", [b"event %d" % row])
            machine.sql_write(t1, [("INSERT INTO t1 VALUES (?, ?, ?)", (row, "r", row))], 1)
        machine.store_set_aside(t1, [("DELETE FROM t1 WHERE n = ? OR name IS NULL", (1,))], True)
        machine.store_set_aside(t1, [], False)
        for page in range(3):
            machine.damage_store_pages(t1, page, 100)
        machine.older_log_under_newer_store(t1, "delete")
        machine.older_log_under_newer_store(t1, "older")
        for damage in ("flip", "cut", "cut_at_extent", "delete"):
            for byte in (0, 130, 200):
                machine.damage_stream_index(t1, damage, byte, 3, damage == "delete")
        for refusal in ("in_use", "master_key_missing", "layout_damaged"):
            machine.refused_open(refusal, 5, 1)
        machine.read_only_beside_writer()
        machine.crash(1)
        machine.verify()
        rows = machine.db.tenant(t1).query("SELECT id FROM t1").rows
        assert rows == [(0,), (2,), (3,)], rows
        assert len(list(machine.tenant_folder(t1).glob("store.stale-*"))) == 2
    finally:
        machine.teardown()
