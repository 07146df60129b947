"""Kernel test vectors: drivers, scenarios, expected results computed by the spec.

The `kernel` machine (docs/conformance.md) runs commands through one tenant's
kernel and observes the effects, the streams, the remembered idempotency ids
and what replaying the recorded events rebuilds. `SpecKernelDriver` runs
`verity_spec.kernel`; `FastKernelDriver` runs `verity.kernel`. Both turn
what they see into the same JSON-compatible observations, which the lockstep
machine (`kernel_machine`) and the vector runner compare field for field.

Command fields are carried as *typed values* (`encode_value`), so a vector can
hold the wrong-typed input a client might send (a str where bytes belong, a
list where a tuple belongs) and pin down the rejection it must get.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import verity_spec.errors as spec_errors
import verity_spec.kernel as spec
from verity import kernel as fast
from verity.errors import CorruptionError, InvalidArgument
from verity.types import TenantId
from verity_conformance import _runner
from verity_conformance._runner import FORMAT, VectorResult
from verity_conformance.vectors import NOW_START, VECTORS_DIR

Observation = dict[str, Any]
Fields = dict[str, Any]
"""A command's fields as Python values (any type), named as in the command classes."""

CREATE_STREAM = "create_stream"
APPEND_BATCH = "append_batch"
COMMAND_FIELDS = {
    CREATE_STREAM: ("tenant", "name", "data_class", "timestamp"),
    APPEND_BATCH: (
        "tenant",
        "stream",
        "events",
        "idempotency_id",
        "expected_offset",
        "timestamp",
    ),
}


# ---------------------------------------------------------------- typed values


def encode_value(value: object) -> Any:
    """`value` as JSON: bytes, tuples and lists are tagged, other values are themselves."""
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, bytearray):
        return {"bytearray": value.hex()}  # bytes-like but not bytes: the kernel rejects it
    if isinstance(value, tuple) and all(isinstance(item, bytes) for item in value):
        return {"bytes_tuple": [item.hex() for item in value]}  # events, compactly
    if isinstance(value, tuple):
        return {"tuple": [encode_value(item) for item in value]}
    if isinstance(value, list):
        return {"list": [encode_value(item) for item in value]}
    assert value is None or isinstance(value, bool | int | float | str), value
    return value


def decode_value(data: Any) -> object:
    """The Python value `encode_value` wrote."""
    if isinstance(data, dict):
        [(tag, inner)] = data.items()
        if tag == "bytes":
            return bytes.fromhex(inner)
        if tag == "bytearray":
            return bytearray.fromhex(inner)
        if tag == "bytes_tuple":
            return tuple(bytes.fromhex(item) for item in inner)
        if tag == "tuple":
            return tuple(decode_value(item) for item in inner)
        if tag == "list":
            return [decode_value(item) for item in inner]
        raise ValueError(f"unknown value tag {tag!r}")
    return data


# ---------------------------------------------------------------- observations


def observe_events(stream: int, first_offset: int, events: tuple[bytes, ...]) -> Observation:
    return {
        "stream": int(stream),
        "first_offset": int(first_offset),
        "events": [event.hex() for event in events],
    }


def observe_outcome(outcome: spec.Outcome | fast.Outcome) -> Observation:
    if isinstance(outcome, spec.Rejected | fast.Rejected):
        return {"rejected": outcome.reason.value}
    return {
        "applied": {
            "stream": int(outcome.stream),
            "offset": int(outcome.offset),
            "duplicate": outcome.duplicate,
        }
    }


def observe_effects(effects: tuple[spec.Effect, ...] | tuple[fast.Effect, ...]) -> Observation:
    observed: list[Observation] = []
    for effect in effects:
        if isinstance(effect, spec.AppendRecord | fast.AppendRecord):
            observed.append({"append_record": effect.payload.hex()})
        else:
            observed.append({"reply": observe_outcome(effect.outcome)})
    return {"effects": observed}


def observe_stream(stream: int, name: str, data_class: int, next_offset: int) -> Observation:
    return {
        "stream": int(stream),
        "name": name,
        "data_class": int(data_class),
        "next_offset": int(next_offset),
    }


class KernelDriver(Protocol):
    """One operation per method; each returns the observation (docs/conformance.md)."""

    def apply(self, kind: str, fields: Fields) -> Observation: ...
    def state(self) -> Observation: ...
    def committed(self, idempotency_id: object) -> Observation: ...
    def replay(self, payloads: list[bytes] | None) -> Observation: ...
    def snapshot(self) -> Observation: ...
    def restore(self, data: bytes) -> Observation: ...
    def read_events(self, record: int) -> Observation: ...


def _check_kind(kind: str, fields: Fields) -> None:
    assert kind in COMMAND_FIELDS, kind
    assert set(fields) == set(COMMAND_FIELDS[kind]), sorted(fields)


# ---------------------------------------------------------------- the specification


class SpecKernelDriver:
    """Runs the executable specification; its observations are the expected ones."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.tenant = int(config["tenant"])
        # No retention_ns in the config: the spec's default, which the implementation's
        # own default must equal.
        self.retention_ns = int(config.get("retention_ns", spec.RETENTION_NS_DEFAULT))
        self.kernel_state = spec.initial_state(self.tenant, self.retention_ns)
        self.records: list[bytes] = []
        """The payload of every record appended so far, in order."""

    def apply(self, kind: str, fields: Fields) -> Observation:
        _check_kind(kind, fields)
        command: spec.Command
        if kind == CREATE_STREAM:
            command = spec.CreateStream(**fields)
        else:
            command = spec.AppendBatch(**fields)
        self.kernel_state, effects = spec.apply(self.kernel_state, command)
        self.records += [e.payload for e in effects if isinstance(e, spec.AppendRecord)]
        return observe_effects(effects)

    def state(self) -> Observation:
        return {
            "tenant": self.kernel_state.tenant,
            "log_time": self.kernel_state.log_time,
            "streams": [
                observe_stream(s.stream, s.name, s.data_class, s.next_offset)
                for s in self.kernel_state.streams
            ],
        }

    def committed(self, idempotency_id: object) -> Observation:
        try:
            return {"offset": spec.committed(self.kernel_state, idempotency_id)}  # type: ignore[arg-type]
        except spec_errors.InvalidArgumentError:
            return {"error": "invalid_argument"}

    def read_events(self, record: int) -> Observation:
        # A reader of events decodes an EventsAppended payload; any other is corruption.
        event = spec.decode_event(self.records[record])
        if not isinstance(event, spec.EventsAppended):
            return {"error": "corruption"}
        return observe_events(event.stream, event.first_offset, event.events)

    def replay(self, payloads: list[bytes] | None) -> Observation:
        chosen = list(self.records if payloads is None else payloads)
        try:
            rebuilt = spec.replay(self.tenant, tuple(chosen), self.retention_ns)
        except spec_errors.InvalidArgumentError:
            return {"error": "corruption", "position": self._failing_position(chosen)}
        self.kernel_state = rebuilt
        self.records = chosen
        return self.state()

    def snapshot(self) -> Observation:
        """The state's bytes; the driver goes on from the state they decode to."""
        data = spec.encode_state(self.kernel_state)
        self.kernel_state = spec.decode_state(data)
        return {"snapshot": data.hex()}

    def restore(self, data: bytes) -> Observation:
        """Decode `data` into this driver's state; the state re-encoded, or an error."""
        try:
            restored = spec.decode_state(data)
        except spec_errors.InvalidArgumentError:
            return {"error": "corruption"}
        self.kernel_state = restored
        self.tenant = restored.tenant
        self.retention_ns = restored.retention_ns
        return {"snapshot": spec.encode_state(restored).hex()}

    def _failing_position(self, payloads: list[bytes]) -> int:
        """The index of the first payload the spec's replay refuses."""
        for end in range(1, len(payloads) + 1):
            try:
                spec.replay(self.tenant, tuple(payloads[:end]), self.retention_ns)
            except spec_errors.InvalidArgumentError:
                return end - 1
        raise AssertionError("replay failed but every prefix replays")


# ---------------------------------------------------------------- the implementation


class FastKernelDriver:
    """Runs `verity.kernel`, through `apply` or through `decide` then `commit`.

    `via_decide` chooses the path for every command (`apply` can override it per call).
    """

    def __init__(self, config: dict[str, Any], *, via_decide: bool = False) -> None:
        self.via_decide = via_decide
        self.tenant = TenantId(int(config["tenant"]))
        if "retention_ns" in config:
            self.kernel = fast.Kernel(self.tenant, int(config["retention_ns"]))
        else:
            self.kernel = fast.Kernel(self.tenant)
        self.retention_ns = self.kernel.retention_ns
        self.records: list[bytes] = []
        self.last_decision: fast.Decision | None = None
        """The decision of the last command applied with `via_decide`."""

    def apply(self, kind: str, fields: Fields, via_decide: bool | None = None) -> Observation:
        _check_kind(kind, fields)
        if via_decide is None:
            via_decide = self.via_decide
        command: fast.Command
        if kind == CREATE_STREAM:
            command = fast.CreateStream(**fields)
        else:
            command = fast.AppendBatch(**fields)
        effects: tuple[fast.Effect, ...]
        if via_decide:
            decision = self.kernel.decide(command)
            self.last_decision = decision
            # verity.kernel.Decision: `count` is 0 when nothing is recorded.
            assert decision.payload is not None or decision.count == 0, (
                f"a decision that records nothing says count {decision.count}"
            )
            if decision.payload is None:
                effects = (fast.Reply(decision.outcome),)
            else:
                self.kernel.commit(decision)
                effects = (fast.AppendRecord(decision.payload), fast.Reply(decision.outcome))
        else:
            effects = self.kernel.apply(command)
        self.records += [e.payload for e in effects if isinstance(e, fast.AppendRecord)]
        return observe_effects(effects)

    def state(self) -> Observation:
        return {
            "tenant": int(self.kernel.tenant),
            "log_time": self.kernel.log_time,
            "streams": [
                observe_stream(
                    info.stream_id,
                    info.name,
                    info.data_class,
                    self.kernel.next_offset(info.stream_id),
                )
                for info in self.kernel.streams()
            ],
        }

    def committed(self, idempotency_id: object) -> Observation:
        try:
            offset = self.kernel.committed(idempotency_id)  # type: ignore[arg-type]
        except InvalidArgument:
            return {"error": "invalid_argument"}
        return {"offset": None if offset is None else int(offset)}

    def read_events(self, record: int) -> Observation:
        try:
            stream, first_offset, events = fast.decode_events(self.records[record])
        except CorruptionError:
            return {"error": "corruption"}
        return observe_events(stream, first_offset, events)

    def replay(self, payloads: list[bytes] | None) -> Observation:
        chosen = list(self.records if payloads is None else payloads)
        rebuilt = fast.Kernel(self.tenant, self.retention_ns)
        for position, payload in enumerate(chosen):
            try:
                rebuilt.replay(payload)
            except CorruptionError:
                return {"error": "corruption", "position": position}
        self.kernel = rebuilt
        self.records = chosen
        return self.state()

    def snapshot(self) -> Observation:
        """The state's bytes; the driver goes on from a kernel restored from them."""
        data = self.kernel.snapshot()
        self.kernel = fast.Kernel.restore(data)
        return {"snapshot": data.hex()}

    def restore(self, data: bytes) -> Observation:
        """Restore a kernel from `data`; its state re-encoded, or an error."""
        try:
            restored = fast.Kernel.restore(data)
        except CorruptionError:
            return {"error": "corruption"}
        self.kernel = restored
        self.tenant = restored.tenant
        self.retention_ns = restored.retention_ns
        return {"snapshot": restored.snapshot().hex()}


# ---------------------------------------------------------------- steps


Step = dict[str, Any]
KernelDriverFactory = Callable[[dict[str, Any]], KernelDriver]


def default_kernel_factory(config: dict[str, Any]) -> KernelDriver:
    return FastKernelDriver(config)


def perform(driver: KernelDriver, step: Step) -> Observation:
    """Run one step's operation on `driver` and return its observation."""
    op = step["op"]
    if op == "apply":
        command = step["command"]
        kind = command["type"]
        fields = {name: decode_value(command[name]) for name in COMMAND_FIELDS[kind]}
        if step.get("via_decide") and isinstance(driver, FastKernelDriver):
            # A hint for the reference kernel, which has two paths to the same outcome.
            return driver.apply(kind, fields, via_decide=True)
        return driver.apply(kind, fields)
    if op == "state":
        return driver.state()
    if op == "committed":
        if "idempotency_id_value" in step:  # a typed value: the ill-typed ids
            return driver.committed(decode_value(step["idempotency_id_value"]))
        return driver.committed(bytes.fromhex(step["idempotency_id"]))
    if op == "replay":
        payloads = step.get("payloads")
        return driver.replay(None if payloads is None else [bytes.fromhex(p) for p in payloads])
    if op == "read_events":
        return driver.read_events(step["record"])
    if op == "snapshot":
        return driver.snapshot()
    if op == "restore":
        return driver.restore(bytes.fromhex(step["data"]))
    raise ValueError(f"unknown op {op!r} in step {step!r}")


def command_step(kind: str, **fields: object) -> Step:
    """An `apply` step; `fields` are Python values, encoded as typed values."""
    assert set(fields) == set(COMMAND_FIELDS[kind]), sorted(fields)
    return {
        "op": "apply",
        "command": {"type": kind, **{name: encode_value(v) for name, v in fields.items()}},
    }


# ---------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    name: str
    description: str
    config: dict[str, Any]
    steps: list[Step]


TENANT = 7
OTHER_TENANT = 8
RETENTION_NS_SHORT = 1_000


def stream_id(tenant: int, number: int) -> int:
    return ((tenant & 0xFFFF_FFFF) << 32) | number


class _Commands:
    """Builds the steps of one scenario with a clock that moves as told."""

    def __init__(self, tenant: int) -> None:
        self.tenant = tenant
        self.now = NOW_START
        self.steps: list[Step] = []

    def tick(self, step_ns: int = 1_000) -> int:
        self.now += step_ns
        return self.now

    def create(self, name: object, data_class: object = 1, **overrides: object) -> None:
        fields: dict[str, object] = {
            "tenant": self.tenant,
            "name": name,
            "data_class": data_class,
            "timestamp": self.tick(),
        }
        fields.update(overrides)
        self.steps.append(command_step(CREATE_STREAM, **fields))

    def append(
        self,
        number: int,
        events: object = (b"event",),
        *,
        key: object = None,
        expected: object = None,
        step_ns: int = 1_000,
        **overrides: object,
    ) -> None:
        fields: dict[str, object] = {
            "tenant": self.tenant,
            "stream": stream_id(self.tenant, number),
            "events": events,
            "idempotency_id": key,
            "expected_offset": expected,
            "timestamp": self.tick(step_ns),
        }
        fields.update(overrides)
        self.steps.append(command_step(APPEND_BATCH, **fields))

    def state(self) -> None:
        self.steps.append({"op": "state"})

    def committed(self, key: bytes) -> None:
        self.steps.append({"op": "committed", "idempotency_id": key.hex()})

    def committed_ill_typed(self, value: object) -> None:
        self.steps.append({"op": "committed", "idempotency_id_value": encode_value(value)})


def _config(tenant: int = TENANT, retention_ns: int = spec.RETENTION_NS_DEFAULT) -> dict[str, Any]:
    return {"tenant": tenant, "retention_ns": retention_ns}


def _key(number: int) -> bytes:
    return number.to_bytes(spec.IDEMPOTENCY_ID_BYTES, "big")


def scenario_streams() -> Scenario:
    c = _Commands(TENANT)
    c.state()
    c.create("orders", 0)
    c.create("payments", 4)
    c.create("orders", 1)  # taken
    c.create("n" * 128, 2)  # exactly the limit
    c.create("n" * 129, 2)
    c.create("é" * 64, 3)  # 128 UTF-8 bytes
    c.create("é" * 65, 3)  # 130 UTF-8 bytes
    c.create("名前", 1)
    c.create("", 1)
    c.create("tab\there", 1)
    c.create("nul\x00", 1)
    c.create("line\n", 1)
    c.create(" spaced name ", 1)
    c.create(5, 1)
    c.create(None, 1)
    c.create(b"bytes", 1)
    for data_class in (5, -1, 255, True, "1", None):
        c.create(f"class-{data_class!r}", data_class)
    c.create("orders", 9)  # an invalid data class is found before the taken name
    c.state()
    return Scenario(
        "streams",
        "stream creation: ids numbered from 1 with the tenant's bits; names checked for "
        "length in UTF-8 bytes, printability and uniqueness; data classes 0..4 only",
        _config(),
        c.steps,
    )


def scenario_appends() -> Scenario:
    c = _Commands(TENANT)
    c.create("orders", 1)
    c.create("audit", 0)
    c.append(1, (b"first",))
    c.append(1, (b"a", b"", b"c" * 100), expected=1)
    c.append(1, (b"stale",), expected=1)
    c.append(1, (b"ahead",), expected=9)
    c.append(1, (b"right",), expected=4)
    c.append(2, (b"other stream",), expected=0)
    c.append(2, (bytes(range(256)),))
    for expected in (-1, 2**64, "5", True, 5.0):
        c.append(1, (b"bad expected",), expected=expected)
    c.append(1, ())
    c.append(1, [b"a list"])
    c.append(1, ("text",))
    c.append(1, (b"ok", "text"))
    c.append(1, b"not a tuple")
    c.append(1, (b"",) * (spec.BATCH_EVENTS_MAX + 1))
    c.append(3, (b"no such stream",))
    c.append(0, (b"stream zero",))
    for stream in (-1, 2**64, "1", None, 1.0):
        c.append(1, (b"bad stream id",), stream=stream)
    c.state()
    # Every record read back as a reader of events does (the creations are none).
    for record in range(7):
        c.steps.append({"op": "read_events", "record": record})
    return Scenario(
        "appends",
        "appends: dense offsets per stream, optimistic concurrency with expected offsets, "
        "bad batches and stream ids rejected without effect",
        _config(),
        c.steps,
    )


def scenario_idempotency() -> Scenario:
    c = _Commands(TENANT)
    c.create("orders", 1)
    c.create("audit", 0)
    c.append(1, (b"one",), key=_key(1))
    c.append(1, (b"two", b"three"), key=_key(2), expected=1)
    # Retries get the original answer, whatever else changed, and append nothing.
    c.append(1, (b"two", b"three"), key=_key(2), expected=1)
    c.append(2, (b"elsewhere",), key=_key(1), expected=7)
    c.append(99, (b"unknown stream",), key=_key(1))
    c.committed(_key(1))
    c.committed(_key(2))
    c.committed(_key(3))
    # An id that is not bytes names no append: refused, not answered None.
    for ill_typed in (_key(1).hex(), bytearray(_key(1)), None, 16, [_key(1)]):
        c.committed_ill_typed(ill_typed)
    # An invalid id is refused before anything else is looked at.
    for key in (b"short", bytes(17), "0" * 16, 16):
        c.append(1, (b"x",), key=key)
    # ...but the batch is checked before a retry is recognised.
    c.append(1, (), key=_key(1))
    c.state()
    return Scenario(
        "idempotency",
        "an idempotency id commits once; retries return the original stream and offset "
        "and append nothing; bad ids are rejected",
        _config(),
        c.steps,
    )


def scenario_expiry() -> Scenario:
    return Scenario(
        "expiry",
        "idempotency ids are forgotten once an event is more than retention_ns later in "
        "log time (the greatest event timestamp), also when timestamps step backwards",
        _config(retention_ns=RETENTION_NS_SHORT),
        _expiry_steps(RETENTION_NS_SHORT),
    )


def scenario_expiry_default_retention() -> Scenario:
    return Scenario(
        "expiry-default-retention",
        "as expiry, with no retention configured: the default retention (24 hours of log "
        "time) is the spec's, to the nanosecond",
        {"tenant": TENANT},
        _expiry_steps(spec.RETENTION_NS_DEFAULT),
    )


def scenario_expiry_via_decide() -> Scenario:
    return Scenario(
        "expiry-via-decide",
        "as expiry, each command through decide then commit (a hint the reference kernel "
        "takes; another kernel applies them as usual): the same ids are forgotten at the "
        "same nanosecond",
        _config(retention_ns=RETENTION_NS_SHORT),
        [
            {**step, "via_decide": True} if step["op"] == "apply" else step
            for step in _expiry_steps(RETENTION_NS_SHORT)
        ],
    )


def _expiry_steps(retention: int) -> list[dict[str, Any]]:
    c = _Commands(TENANT)
    c.create("orders", 1)
    c.append(1, key=_key(1), step_ns=10)
    c.append(1, key=_key(2), step_ns=retention)  # log time = t1 + retention: 1 still kept
    c.committed(_key(1))
    c.append(1, step_ns=1)  # one ns later: 1 is forgotten
    c.committed(_key(1))
    c.committed(_key(2))
    c.append(1, key=_key(1), step_ns=1)  # the id commits again, as new
    c.committed(_key(1))
    # A command that does not record an event forgets nothing, however late.
    c.append(1, (), step_ns=10 * retention)
    c.append(1, key=_key(1), step_ns=0)
    c.committed(_key(2))
    # Timestamps that step backwards: log time stays at its maximum, T.
    late = c.tick(10 * retention)
    c.append(1, key=_key(10), timestamp=late)
    c.append(1, key=_key(11), timestamp=late - retention // 2)  # kept: T - r/2 + r >= T
    c.append(1, key=_key(12), timestamp=late - 10 * retention)  # already past retention...
    c.committed(_key(12))  # ...yet remembered until the next event
    c.committed(_key(11))
    c.append(1, timestamp=late + retention // 2 + 1)
    # 11 committed after 10 but earlier in log time: 11 is forgotten, 10 is kept.
    c.committed(_key(10))
    c.committed(_key(11))
    c.committed(_key(12))
    c.append(1, key=_key(11), timestamp=late + retention // 2 + 1)
    c.append(1, key=_key(10), timestamp=late + retention // 2 + 1)
    c.state()
    return c.steps


def scenario_isolation() -> Scenario:
    tenant = (5 << 32) | 3  # high bits set: stream ids carry only the low 32 bits (3)
    c = _Commands(tenant)
    c.create("mine", 2)
    c.append(1, (b"x",))
    c.create("theirs", 2, tenant=3)
    c.create("theirs", 2, tenant=tenant + 1)
    c.append(1, (b"x",), tenant=3)
    c.append(1, (b"x",), stream=stream_id(OTHER_TENANT, 1))
    c.append(1, (b"x",), stream=stream_id(tenant, 2))
    c.append(1, (b"x",), stream=1)  # tenant bits 0
    c.append(1, (b"x",), tenant="3")
    c.state()
    return Scenario(
        "isolation",
        "commands for another tenant and stream ids of another tenant are rejected; a "
        "stream id carries the low 32 bits of its tenant id",
        _config(tenant=tenant),
        c.steps,
    )


def scenario_bad_inputs() -> Scenario:
    c = _Commands(TENANT)
    c.create("orders", 1)
    for timestamp in (-1, 2**64, "5", True, 1.5, None):
        c.create("late", 1, timestamp=timestamp)
        c.append(1, timestamp=timestamp)
    c.create("edge", 1, timestamp=0)
    c.append(1, timestamp=2**64 - 1)
    # Several problems at once: the first in the spec's order of checks is reported.
    c.create("", 9, tenant=OTHER_TENANT)
    c.create("", 9, timestamp=-1)
    c.create("", 9)
    c.append(9, (), key=b"short", expected=-1, tenant=OTHER_TENANT)
    c.append(9, (), key=b"short", expected=-1, timestamp="now")
    c.append(9, (), key=b"short", expected=-1)
    c.append(9, ("text",), expected=-1)
    c.append(9, (), expected=-1)
    c.append(9, (b"x",), expected=-1)
    c.append(9, (b"x",), expected=3, stream=stream_id(OTHER_TENANT, 9))
    c.append(9, (b"x",), expected=3)
    c.state()
    return Scenario(
        "bad-inputs",
        "every field of every command with a wrong type or an out-of-range value; with "
        "several problems, the first in the spec's order of checks wins",
        _config(),
        c.steps,
    )


def _flip(payload: bytes, index: int) -> bytes:
    return payload[:index] + bytes([payload[index] ^ 0x01]) + payload[index + 1 :]


def scenario_replay() -> Scenario:
    c = _Commands(TENANT)
    c.create("orders", 1)
    c.create("audit", 4)
    c.append(1, (b"a", b"b"), key=_key(1))
    c.append(2, (b"c",))
    c.append(1, (b"d",), key=_key(2), step_ns=-500)
    c.state()
    c.steps.append({"op": "replay"})
    c.committed(_key(1))
    c.committed(_key(2))
    c.append(1, (b"after replay",), key=_key(1))
    c.steps.append({"op": "replay"})
    # Build the payloads of a good log with the spec, then damage them.
    driver = SpecKernelDriver(_config())
    for step in c.steps:
        if step["op"] == "apply":
            perform(driver, step)
    good = list(driver.records)
    created, _audit, appended = good[0], good[1], good[2]
    damaged: list[list[bytes]] = [
        [],
        good + good[2:3],  # the same id commits twice
        good[:2] + good[3:],  # a gap in stream offsets
        good[1:],  # a stream number skipped
        [created, created],  # a name taken
        [created[:-1]],  # cut short
        [created + b"\x00"],  # a byte left over
        [appended],  # no such stream
        [b"\x02" + created[1:]],  # format version 2
        [created[:1] + b"\x03" + created[2:]],  # event type 3
        [created[:18] + b"\x05" + created[19:]],  # data class 5
        [created[:19] + b"\x00\x00"],  # empty name
        [created[:-1] + b"\n"],  # unprintable name
        [created[:-1] + b"\xff"],  # not UTF-8
        [good[0], appended[:26] + b"\x03" + appended[27:]],  # unknown flag bits
        [good[0], good[1], appended[:-1]],
        [_flip(created, 17)],  # another stream id
        [b""],
        [b"\x01"],
    ]
    # An empty batch is one decide never makes, yet it fits (spec `event_fits`).
    empty = spec.encode_event(
        spec.EventsAppended(
            stream=stream_id(TENANT, 1),
            first_offset=0,
            events=(),
            idempotency_id=None,
            timestamp=NOW_START,
        )
    )
    damaged.append([created, empty])
    # An append with an id and events of 0, 1 and 300 bytes, cut at every byte: each
    # cut ends inside a field (a length, an event, the id), and each is corruption.
    full = spec.encode_event(
        spec.EventsAppended(
            stream=stream_id(TENANT, 1),
            first_offset=0,
            events=(b"", b"x", bytes(range(256)) + bytes(44)),
            idempotency_id=_key(9),
            timestamp=NOW_START,
        )
    )
    damaged += [[created, full[:cut]] for cut in range(len(full))]
    damaged.append([created, full + b"\x00"])
    for payloads in damaged:
        c.steps.append({"op": "replay", "payloads": [p.hex() for p in payloads]})
        c.state()
    c.steps.append({"op": "replay", "payloads": [p.hex() for p in good]})
    c.committed(_key(1))
    return Scenario(
        "replay",
        "replaying the recorded events rebuilds the same streams, offsets, ids and log "
        "time; a payload that does not decode or does not follow is corruption at its "
        "position and leaves the kernel as it was",
        _config(),
        c.steps,
    )


def scenario_random(seed: int) -> Scenario:
    """A random walk over every operation; the spec decides what each should give."""
    rng = random.Random(2000 + seed)
    tenant = rng.choice([0, 1, TENANT, (1 << 32) | TENANT, 2**64 - 1])
    retention = rng.choice([RETENTION_NS_SHORT, 20_000, spec.RETENTION_NS_DEFAULT])
    c = _Commands(tenant)
    keys: list[bytes] = []
    for _ in range(60):
        choice = rng.random()
        if choice < 0.8:
            step_ns = rng.choice(
                [rng.randrange(1, 500), 0, -rng.randrange(1, 2 * retention), 2 * retention]
            )
            c.now = max(0, c.now + step_ns)
        if choice < 0.15:
            name = rng.choice(["a", "b", "c", "d", "", "x" * 129, "bad\n"])
            c.create(name, rng.choice([0, 1, 2, 3, 4, 4, 7]), timestamp=c.now)
        elif choice < 0.75:
            key: bytes | None
            if keys and rng.random() < 0.3:
                key = rng.choice(keys)
            elif rng.random() < 0.4:
                key = rng.randbytes(16)
                keys.append(key)
            else:
                key = rng.choice([None, None, b"short"])
            events = tuple(rng.randbytes(rng.randrange(0, 40)) for _ in range(rng.randrange(4)))
            c.steps.append(
                {
                    "op": "append_random",
                    "number": rng.randrange(0, 5),
                    "events": [e.hex() for e in events],
                    "key": None if key is None else key.hex(),
                    "expected": rng.choice(["none", "right", "stale", "ahead"]),
                    "timestamp": c.now,
                    "tenant_bits": rng.choice([tenant, tenant, tenant, tenant + 1]),
                }
            )
        elif choice < 0.85 and keys:
            c.committed(rng.choice(keys))
        elif choice < 0.9:
            c.steps.append({"op": "replay"})
        else:
            c.state()
    c.state()
    return Scenario(
        f"random-{seed:02d}",
        f"random walk {seed}: tenant {tenant}, retention {retention} ns",
        _config(tenant=tenant, retention_ns=retention),
        c.steps,
    )


def scenarios() -> list[Scenario]:
    fixed = [
        scenario_streams(),
        scenario_appends(),
        scenario_idempotency(),
        scenario_expiry(),
        scenario_expiry_default_retention(),
        scenario_expiry_via_decide(),
        scenario_isolation(),
        scenario_bad_inputs(),
        scenario_replay(),
    ]
    return fixed + [scenario_random(seed) for seed in range(8)]


def _resolve(step: Step, driver: SpecKernelDriver) -> Step:
    """Turn a random placeholder step into a concrete one, using the spec's state."""
    if step["op"] != "append_random":
        return step
    tenant = driver.tenant
    number = step["number"]
    stream = stream_id(step["tenant_bits"], number)
    found = next((s for s in driver.kernel_state.streams if s.stream == stream), None)
    next_offset = 0 if found is None else found.next_offset
    expected = {
        "none": None,
        "right": next_offset,
        "stale": max(0, next_offset - 1),
        "ahead": next_offset + 1,
    }[step["expected"]]
    return command_step(
        APPEND_BATCH,
        tenant=tenant,
        stream=stream,
        events=tuple(bytes.fromhex(e) for e in step["events"]),
        idempotency_id=None if step["key"] is None else bytes.fromhex(step["key"]),
        expected_offset=expected,
        timestamp=step["timestamp"],
    )


def build_vector(scenario: Scenario) -> dict[str, Any]:
    driver = SpecKernelDriver(scenario.config)
    steps: list[Step] = []
    for raw in scenario.steps:
        step = _resolve(raw, driver)
        steps.append({**step, "expect": perform(driver, step)})
    return {
        "format": FORMAT,
        "machine": "kernel",
        "name": scenario.name,
        "description": scenario.description,
        "config": scenario.config,
        "steps": steps,
    }


def vector_path(out_dir: Path, scenario: Scenario) -> Path:
    return _runner.vector_file(out_dir, "kernel", scenario.name)


def generate(out_dir: Path = VECTORS_DIR) -> list[Path]:
    return _runner.write_vectors(out_dir, (build_vector(scenario) for scenario in scenarios()))


KernelVectorResult = VectorResult


def run_vector(path: Path, factory: KernelDriverFactory) -> VectorResult:
    # A kernel keeps its state in memory: the scratch directory goes unused.
    return _runner.run_vector(path, "kernel", lambda config, _scratch: factory(config), perform)


def run(vectors_dir: Path, factory: KernelDriverFactory) -> list[VectorResult]:
    return _runner.run_all(vectors_dir, "kernel", lambda path: run_vector(path, factory))
