"""Lockstep: verity.store against verity_spec.store (conformance/store_machine.py)."""

from __future__ import annotations

import pytest
from _campaign import campaign
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

import verity_spec.store as spec_store
from verity_conformance.store_machine import StoreLockstep
from verity_spec.errors import InvalidArgumentError

lockstep_settings = settings(
    max_examples=15,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

TestStoreLockstep = StoreLockstep.TestCase
TestStoreLockstep.settings = lockstep_settings


@pytest.mark.slow
def test_store_lockstep_long_campaign() -> None:
    run_state_machine_as_test(
        StoreLockstep,
        settings=settings(lockstep_settings, max_examples=campaign(200), stateful_step_count=50),
    )


def test_the_spec_store_answers_as_of_every_position() -> None:
    store = spec_store.empty_store()
    store = spec_store.write_batch(store, 3, b"h3", [("t", b"a", b"1"), ("t", b"b", b"2")], True)
    store = spec_store.write_batch(store, 5, b"h5", [("t", b"a", None), ("t", b"a", b"3")], False)
    store = spec_store.write_batch(store, 9, b"h9", [("t", b"b", None)], False)
    assert spec_store.get(store, "t", b"a", 2) is None
    assert spec_store.get(store, "t", b"a", 4) == b"1"
    assert spec_store.get(store, "t", b"a") == b"3"  # the last change in a batch wins
    assert spec_store.scan(store, "t", as_of=5) == [(b"a", b"3"), (b"b", b"2")]
    assert spec_store.scan(store, "t") == [(b"a", b"3")]
    assert spec_store.scan(store, "t", b"a", b"b", 5, low_inclusive=False) == [(b"b", b"2")]
    assert spec_store.scan(store, "t", as_of=5, reverse=True) == [(b"b", b"2"), (b"a", b"3")]
    crashed = spec_store.crash(store)
    assert spec_store.applied(crashed) == (3, b"h3")
    assert spec_store.applied(spec_store.crash(spec_store.sync(store))) == (9, b"h9")


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ((3, b"", []), "position"),
        ((7, bytes(65), []), "log_hash"),
        ((7, b"", b"abc"), "changes"),
        ((7, b"", [("t", b"k", b"v"), ("t", b"k")]), "changes[1]"),
        ((7, b"", [("", b"k", b"v")]), "changes[0].tree"),
        ((7, b"", [("t", "k", b"v")]), "changes[0].key"),
        ((7, b"", [("t", b"k", "v")]), "changes[0].value"),
    ],
)
def test_the_spec_store_names_the_first_bad_argument(
    arguments: tuple[object, object, object], name: str
) -> None:
    store = spec_store.write_batch(spec_store.empty_store(), 3, b"", [], True)
    with pytest.raises(InvalidArgumentError) as refused:
        spec_store.write_batch(store, *arguments, True)  # type: ignore[arg-type]
    assert refused.value.name == name
