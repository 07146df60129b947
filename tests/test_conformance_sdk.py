"""Lockstep: the whole SDK on real files against a model built from the spec."""

from __future__ import annotations

import pytest
from _campaign import campaign
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

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
