"""The lockstep state machine of the kernel.

Hypothesis drives the specification (`verity_spec.kernel.apply` on an
immutable state) and the fast kernel (`verity.kernel.Kernel`, through `apply`
or through `decide` then `commit`) with the same random commands:

- stream creation with good, empty, oversized (129+ UTF-8 bytes), unprintable,
  lone-surrogate, non-str and duplicate names, and data classes in and out of
  0..4 (and of other types);
- appends to known streams, unknown streams, streams of another tenant (other
  tenant bits) and ill-formed stream ids; with good and bad events (a str
  instead of bytes, a list instead of a tuple, an empty batch, too many events,
  too many bytes); stale, right, ahead, None and ill-typed expected offsets;
  fresh idempotency ids, retries of ids used before and ill-formed ids;
- commands for another tenant;
- timestamps that move forward a little or past retention, stand still, step
  backwards, or are not u64 at all; a short retention in some runs, so ids
  are forgotten often;
- rebuilding the fast kernel from the recorded payloads (`Kernel.replay`),
  rebuilding the spec state (`verity_spec.kernel.replay`), and replaying a
  damaged copy of the records in both (a flipped byte, a cut, an extra byte, a
  record dropped or repeated).

After every step the effects must be equal (outcome and payload bytes), and so
must the streams (id, name, data class, next offset), the log time, and
`committed()` of every idempotency id used so far.

What the machine does to the kernels is kept in `self.recording` as steps of
the `kernel` vector format, so a failing run becomes a reproduction vector:
commands (with `via_decide` when the fast kernel went through `decide` and
`commit`), `state`, `committed`, `replay`, `snapshot` and `restore`.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import verity_spec.kernel as spec
from verity.types import DataClass
from verity_conformance._runner import Recording
from verity_conformance.kernel_vectors import (
    APPEND_BATCH,
    CREATE_STREAM,
    FastKernelDriver,
    Observation,
    SpecKernelDriver,
    command_step,
    encode_value,
)

NOW_START = 1_767_225_600_000_000_000
TENANTS = (0, 1, 7, (5 << 32) | 7, 2**64 - 1)
RETENTIONS_NS = (1_000, 50_000, spec.RETENTION_NS_DEFAULT)

GOOD_NAMES = ("orders", "payments", "é" * 64, "n" * 128, "名前", " spaced ")
BAD_NAMES: tuple[object, ...] = (
    "",
    "n" * 129,
    "é" * 65,
    "line\n",
    "nul\x00",
    "\ud800",
    5,
    None,
    b"bytes",
)
GOOD_DATA_CLASSES: tuple[object, ...] = (0, 1, 2, 3, 4, DataClass.PII)
# Not 1.0 or Fraction(1): the spec accepts them (1.0 == 1) and then fails to encode
# them; the fast kernel rejects them (reported as a spec defect).
BAD_DATA_CLASSES: tuple[object, ...] = (5, -1, 255, True, False, "1", None)
BAD_TIMESTAMPS: tuple[object, ...] = (-1, 2**64, "5", True, 1.5, None)
BAD_STREAMS: tuple[object, ...] = (-1, 2**64, "1", None, True, 1.0)
BAD_KEYS: tuple[object, ...] = (b"short", bytes(17), "0" * 16, bytearray(16), 16)
ILL_TYPED_IDS: tuple[object, ...] = ("0" * 16, bytearray(16), None, 16, 1.5, [bytes(16)])
BAD_EXPECTED: tuple[object, ...] = (-1, 2**64, "0", True, 0.0)
# Shared, so that Hypothesis never has to build them: rejected before any copy.
DAMAGED_REPLAY_RECORDS_MAX = 200
TOO_MANY_EVENTS = (b"",) * (spec.BATCH_EVENTS_MAX + 1)
TOO_MANY_BYTES = (bytes(spec.BATCH_BYTES_MAX // 2), bytes(spec.BATCH_BYTES_MAX // 2 + 1))
BAD_EVENTS: tuple[object, ...] = (
    (),
    ("text",),
    (b"ok", "text"),
    [b"a list"],
    b"not a tuple",
    (bytearray(b"x"),),
    TOO_MANY_EVENTS,
    TOO_MANY_BYTES,
)

good_events = st.one_of(
    st.just((b"\x5a" * 32,)),
    st.lists(st.binary(max_size=40), min_size=1, max_size=5).map(tuple),
)


def pick(data: st.DataObject, label: str, **weights: int) -> str:
    """One of the names in `weights`, drawn with those relative weights."""
    choices = [name for name, weight in weights.items() for _ in range(weight)]
    return data.draw(st.sampled_from(choices), label=label)


def agree(what: str, expected: Observation, actual: Observation) -> None:
    assert actual == expected, f"{what}: spec gave {expected!r}, fast kernel gave {actual!r}"


class KernelLockstep(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = NOW_START
        self.spec: SpecKernelDriver
        self.impl: FastKernelDriver
        self.keys_used: list[bytes] = []
        self.fresh_key_number = 0
        self.bulk_steps = 0  # a bulk step per example: the other rules then meet a long log
        self.recording = Recording("kernel")

    @initialize(
        tenant=st.sampled_from(TENANTS),
        retention_ns=st.sampled_from(RETENTIONS_NS),
        data_class=st.sampled_from(GOOD_DATA_CLASSES),
    )
    def open_both(self, tenant: int, retention_ns: int, data_class: int) -> None:
        config = {"tenant": tenant, "retention_ns": retention_ns}
        self.recording.config = config
        self.spec = SpecKernelDriver(config)
        self.impl = FastKernelDriver(config)
        # One stream from the start, so that appends have somewhere to go.
        fields = {"tenant": tenant, "name": "first", "data_class": data_class, "timestamp": 0}
        self.run_both(CREATE_STREAM, fields, via_decide=False)

    # ------------------------------------------------------------ inputs
    # Each field is usually good and sometimes bad, so that most commands get far
    # enough through the checks to reach the interesting ones (retries, offsets).

    def draw_timestamp(self, data: st.DataObject) -> object:
        retention = self.spec.retention_ns
        kind = pick(
            data,
            "clock",
            forward=10,
            past_retention=2,
            almost_retention=1,
            still=3,
            back=3,
            bad=1,
        )
        if kind == "bad":
            return data.draw(st.sampled_from(BAD_TIMESTAMPS), label="timestamp")
        if kind == "forward":
            self.now += data.draw(st.integers(1, max(1, retention // 8)), label="step_ns")
        elif kind == "past_retention":
            self.now += retention + data.draw(st.integers(1, 3 * retention), label="step_ns")
        elif kind == "almost_retention":
            self.now += retention + data.draw(st.integers(-2, 2), label="step_ns")
        elif kind == "back":
            step_ns = data.draw(st.integers(1, 2 * retention), label="step_back_ns")
            self.now = max(0, self.now - step_ns)
        self.now = min(self.now, 2**64 - 1)
        return self.now

    def draw_tenant(self, data: st.DataObject) -> object:
        own = self.spec.tenant
        if pick(data, "tenant_choice", own=15, other=1) == "own":
            return own
        others: list[object] = [own + 1, own & 0xFFFF_FFFF, str(own), None, True, float(own)]
        return data.draw(st.sampled_from(others), label="tenant")

    def draw_stream(self, data: st.DataObject) -> object:
        bits = self.spec.tenant & 0xFFFF_FFFF
        known = [s.stream for s in self.spec.kernel_state.streams]
        kind = pick(data, "stream", known=16, unknown=1, other_tenant=1, bad=1)
        if kind == "known" and known:
            return data.draw(st.sampled_from(known), label="known_stream")
        if kind == "other_tenant":
            other_bits = data.draw(st.sampled_from([bits ^ 1, bits ^ (1 << 31), 0]))
            number = data.draw(st.integers(0, len(known) + 1), label="number")
            return (other_bits << 32) | number
        if kind == "bad":
            return data.draw(st.sampled_from(BAD_STREAMS), label="bad_stream")
        number = data.draw(st.sampled_from([0, len(known) + 1, len(known) + 2, 2**32 - 1]))
        return (bits << 32) | number

    def draw_key(self, data: st.DataObject) -> object:
        kind = pick(data, "key", none=6, fresh=6, retry=4, bad=1)
        if kind == "retry" and self.keys_used:
            return data.draw(st.sampled_from(self.keys_used), label="retried_key")
        if kind == "bad":
            return data.draw(st.sampled_from(BAD_KEYS), label="bad_key")
        if kind == "none":
            return None
        self.fresh_key_number += 1
        key = self.fresh_key_number.to_bytes(spec.IDEMPOTENCY_ID_BYTES, "big")
        self.keys_used.append(key)
        return key

    def draw_expected(self, data: st.DataObject, stream: object) -> object:
        found = next((s for s in self.spec.kernel_state.streams if s.stream == stream), None)
        right = 0 if found is None else found.next_offset
        kind = pick(data, "expected", none=6, right=5, stale=2, ahead=1, bad=1)
        if kind == "bad":
            return data.draw(st.sampled_from(BAD_EXPECTED), label="bad_expected")
        return {"none": None, "right": right, "stale": max(0, right - 1), "ahead": right + 1}[kind]

    def draw_name(self, data: st.DataObject) -> object:
        kind = pick(data, "name_choice", good=8, taken=2, bad=1, text=1)
        taken = [s.name for s in self.spec.kernel_state.streams]
        if kind == "taken" and taken:
            return data.draw(st.sampled_from(taken), label="taken_name")
        if kind == "bad":
            return data.draw(st.sampled_from(BAD_NAMES), label="bad_name")
        if kind == "text":
            return data.draw(st.text(min_size=1, max_size=12), label="text_name")
        return data.draw(st.sampled_from(GOOD_NAMES), label="name")

    # ------------------------------------------------------------ commands

    def run_both(self, kind: str, fields: dict[str, Any], via_decide: bool) -> None:
        # Built only for a reproduction: a batch over the byte bound is 16 MiB of JSON.
        self.recording.add_later(lambda: recorded_command(kind, fields, via_decide))
        expected = self.spec.apply(kind, fields)
        actual = self.impl.apply(kind, fields, via_decide=via_decide)
        agree(f"{kind}({fields!r:.300})", expected, actual)
        if via_decide:
            self.check_decision(kind, fields, expected)

    def check_decision(self, kind: str, fields: dict[str, Any], expected: Observation) -> None:
        """The decision describes the recorded event as the SDK needs it."""
        decision = self.impl.last_decision
        assert decision is not None
        if decision.payload is None:
            assert len(expected["effects"]) == 1
            return
        event = spec.decode_event(decision.payload)
        assert decision.stream == event.stream
        info = self.impl.kernel.stream(event.stream)
        assert info is not None and decision.data_class == info.data_class
        if isinstance(event, spec.StreamCreated):
            assert kind == CREATE_STREAM and (decision.first_offset, decision.count) == (0, 0)
        else:
            assert (decision.first_offset, decision.count) == (
                event.first_offset,
                len(event.events),
            )
            assert decision.count == len(fields["events"])

    @rule(data=st.data(), via_decide=st.booleans())
    def create_stream(self, data: st.DataObject, via_decide: bool) -> None:
        if pick(data, "data_class_choice", good=6, bad=1) == "good":
            data_class = data.draw(st.sampled_from(GOOD_DATA_CLASSES), label="data_class")
        else:
            data_class = data.draw(st.sampled_from(BAD_DATA_CLASSES), label="bad_data_class")
        fields = {
            "tenant": self.draw_tenant(data),
            "name": self.draw_name(data),
            "data_class": data_class,
            "timestamp": self.draw_timestamp(data),
        }
        self.run_both(CREATE_STREAM, fields, via_decide)

    @rule(data=st.data(), via_decide=st.booleans(), count=st.integers(1, 4))
    def append_batch(self, data: st.DataObject, via_decide: bool, count: int) -> None:
        # Several appends per step: appends are most of what a kernel sees.
        for _ in range(count):
            stream = self.draw_stream(data)
            if pick(data, "events_choice", good=12, bad=1) == "good":
                events: object = data.draw(good_events, label="events")
            else:
                events = data.draw(st.sampled_from(BAD_EVENTS), label="bad_events")
            fields = {
                "tenant": self.draw_tenant(data),
                "stream": stream,
                "events": events,
                "idempotency_id": self.draw_key(data),
                "expected_offset": self.draw_expected(data, stream),
                "timestamp": self.draw_timestamp(data),
            }
            self.run_both(APPEND_BATCH, fields, via_decide)

    @precondition(lambda self: hasattr(self, "impl") and self.bulk_steps < 1)
    @rule(
        data=st.data(),
        commands=st.integers(50, 1_000),
        big_every=st.sampled_from([0, 7, 50]),
        via_decide=st.booleans(),
    )
    def bulk_appends(
        self, data: st.DataObject, commands: int, big_every: int, via_decide: bool
    ) -> None:
        """Up to 1,000 good appends in one step, every `big_every`-th a batch of 129 to 300
        events: a log of a thousand records, batches over 128 events, streams with many
        thousands of offsets. Few idempotency ids (every 97th append has a fresh one)."""
        self.bulk_steps += 1
        tenant = self.spec.tenant
        for number in range(commands):
            known = [s.stream for s in self.spec.kernel_state.streams]
            if not known:
                return
            stream = known[number % len(known)]
            size = (
                129 + (number * 37) % 172
                if big_every and number % big_every == 0
                else 1 + number % 3
            )
            events = tuple(number.to_bytes(4, "big")[: 1 + i % 4] for i in range(size))
            key = None
            if number % 97 == 0:
                self.fresh_key_number += 1
                key = self.fresh_key_number.to_bytes(spec.IDEMPOTENCY_ID_BYTES, "big")
                self.keys_used.append(key)
            self.now = min(self.now + 1 + number % 5, 2**64 - 1)
            fields = {
                "tenant": tenant,
                "stream": stream,
                "events": events,
                "idempotency_id": key,
                "expected_offset": None if number % 2 else self.draw_expected_right(stream),
                "timestamp": self.now,
            }
            self.run_both(APPEND_BATCH, fields, via_decide and number % 2 == 0)

    def draw_expected_right(self, stream: int) -> int:
        found = next((s for s in self.spec.kernel_state.streams if s.stream == stream), None)
        return 0 if found is None else found.next_offset

    # ------------------------------------------------------------ replay

    @rule(which=st.sampled_from(["fast", "spec", "both"]))
    def rebuild(self, which: str) -> None:
        """Rebuild from the recorded payloads, as on open; nothing observable changes."""
        records = list(self.spec.records)
        if which in ("fast", "both"):
            # As a step the spec replays too: its state is the one the fast kernel must keep.
            self.recording.add({"op": "replay"})
            agree("replay (fast)", self.impl.state(), self.impl.replay(None))
        if which in ("spec", "both"):
            agree("replay (spec)", self.spec.state(), self.spec.replay(None))
        assert self.impl.records == records and self.spec.records == records

    @precondition(lambda self: len(self.spec.records) > 0)
    @rule(data=st.data())
    def replay_damaged(self, data: st.DataObject) -> None:
        # The spec replays a damaged log slowly (seconds per thousand records): past a bulk
        # step, the damage goes into the log's first DAMAGED_REPLAY_RECORDS_MAX records,
        # replayed alone (a prefix of a log is a log); `rebuild` replays the whole one.
        records = list(self.spec.records)[:DAMAGED_REPLAY_RECORDS_MAX]
        index = data.draw(st.integers(0, len(records) - 1), label="record")
        payload = records[index]
        damage = data.draw(st.sampled_from(["flip", "cut", "extend", "drop", "repeat"]))
        if damage == "flip":
            byte = data.draw(st.integers(0, len(payload) - 1), label="byte")
            bit = data.draw(st.integers(0, 7), label="bit")
            records[index] = (
                payload[:byte] + bytes([payload[byte] ^ (1 << bit)]) + payload[byte + 1 :]
            )
        elif damage == "cut":
            records[index] = payload[: data.draw(st.integers(0, len(payload) - 1), label="keep")]
        elif damage == "extend":
            records[index] = payload + data.draw(st.binary(min_size=1, max_size=3), label="tail")
        elif damage == "drop":
            del records[index]
        else:
            records.insert(index, payload)
        # Replaying into scratch drivers leaves the machine's kernels as they are.
        config = {"tenant": self.spec.tenant, "retention_ns": self.spec.retention_ns}
        expected = SpecKernelDriver(config).replay(records)
        self.record_scratch(
            {"op": "replay", "payloads": [p.hex() for p in records]},
            expected,
            {"op": "replay", "payloads": [p.hex() for p in self.spec.records]},
        )
        agree(
            f"replay of damaged records ({damage} at {index})",
            expected,
            FastKernelDriver(config).replay(records),
        )

    def record_scratch(
        self, step: dict[str, Any], expected: Observation, undo: dict[str, Any]
    ) -> None:
        """Record `step`, which the machine ran on scratch kernels, and `undo` when it succeeded.

        In a vector the step runs on the kernel itself, which it replaces when it
        succeeds; `undo` puts back the state the machine's kernels kept.
        """
        self.recording.add(step)
        if "error" not in expected:
            self.recording.add(undo)

    # ------------------------------------------------------------ snapshots

    @rule()
    def snapshot_and_restore(self) -> None:
        """Both encode the state to the same bytes and go on from what those decode to."""
        self.recording.add({"op": "snapshot"})
        agree("snapshot", self.spec.snapshot(), self.impl.snapshot())

    @rule(data=st.data())
    def restore_damaged_snapshot(self, data: st.DataObject) -> None:
        """A damaged snapshot is refused by both, or decodes to the same state in both."""
        snapshot = spec.encode_state(self.spec.kernel_state)
        damage = data.draw(st.sampled_from(["flip", "cut", "extend"]), label="damage")
        if damage == "flip":
            byte = data.draw(st.integers(0, len(snapshot) - 1), label="byte")
            bit = data.draw(st.integers(0, 7), label="bit")
            snapshot = snapshot[:byte] + bytes([snapshot[byte] ^ (1 << bit)]) + snapshot[byte + 1 :]
        elif damage == "cut":
            snapshot = snapshot[: data.draw(st.integers(0, len(snapshot) - 1), label="keep")]
        else:
            snapshot += data.draw(st.binary(min_size=1, max_size=3), label="tail")
        config = {"tenant": self.spec.tenant, "retention_ns": self.spec.retention_ns}
        expected = SpecKernelDriver(config).restore(snapshot)
        good = spec.encode_state(self.spec.kernel_state)
        self.record_scratch(
            {"op": "restore", "data": snapshot.hex()},
            expected,
            {"op": "restore", "data": good.hex()},
        )
        agree(
            f"restore of a damaged snapshot ({damage})",
            expected,
            FastKernelDriver(config).restore(snapshot),
        )

    @precondition(lambda self: len(self.spec.records) > 0)
    @rule(data=st.data())
    def read_events(self, data: st.DataObject) -> None:
        # A recorded payload read back as a reader of events decodes it.
        last = len(self.spec.records) - 1
        record = data.draw(st.integers(min_value=max(0, last - 20), max_value=last), label="record")
        self.recording.add({"op": "read_events", "record": record})
        agree(
            f"read_events({record})", self.spec.read_events(record), self.impl.read_events(record)
        )

    @rule(data=st.data())
    def committed_ill_typed(self, data: st.DataObject) -> None:
        # An id that is not bytes names no append: refused, never answered None.
        value = data.draw(st.sampled_from(ILL_TYPED_IDS), label="ill_typed_id")
        self.recording.add({"op": "committed", "idempotency_id_value": encode_value(value)})
        agree(f"committed({value!r})", self.spec.committed(value), self.impl.committed(value))

    # ------------------------------------------------------------ invariants

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "impl"):
            return
        self.recording.add({"op": "state"})
        agree("state", self.spec.state(), self.impl.state())
        for key in self.keys_used:
            self.recording.add({"op": "committed", "idempotency_id": key.hex()})
            agree(f"committed({key.hex()})", self.spec.committed(key), self.impl.committed(key))
        assert self.impl.records == self.spec.records


def recorded_command(kind: str, fields: dict[str, Any], via_decide: bool) -> dict[str, Any]:
    step = command_step(kind, **fields)
    if via_decide:
        step["via_decide"] = True
    return step
