"""The kernel: a tenant's pure, deterministic state machine.

    apply(state, command) -> (state, effects)

No IO, no clock, no randomness: time arrives inside the command. The kernel
*decides* whether a command is valid against the current state and, when it
is, records what happened as an *event*; `evolve(state, event)` is the only
way state changes. The shell appends the encoded event to the tenant's log
(one log record per event) before it tells the caller, and rebuilds the state
on open by evolving every event in the log, in order (`replay`). So the state
is a derived view of the log, exactly.

Rules (each one a contract below):

- A tenant's streams are numbered densely from 1; a stream id carries the low
  32 bits of its tenant id in its high 32 bits, so a stream id of another
  tenant is recognised as such.
- Each stream's event offsets are dense and increasing from 0. An append with
  an `expected_offset` is applied only when it equals the stream's next offset
  (optimistic concurrency).
- An idempotency id commits at most once: a command carrying an id that
  already committed is answered with the original result and changes nothing.
  An id is remembered until an applied event's timestamp is more than
  `retention_ns` (default 24 h) past the timestamp of the command that
  committed it. That command's timestamp may lag the log time (clocks step
  back), so the window is measured from it, not from the log time then
  (tla/Kernel.tla, `RetentionFromLogTime`, shows the difference).
  Expiry is driven by event timestamps, never by a wall clock.
- A rejected command changes nothing.

The encoded events are a byte contract (docs/formats.md §5), identical for
the spec and the implementation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import icontract

from verity_spec.errors import InvalidArgumentError

__all__ = [
    "BATCH_BYTES_MAX",
    "BATCH_EVENTS_MAX",
    "DATA_CLASSES",
    "IDEMPOTENCY_ID_BYTES",
    "RETENTION_NS_DEFAULT",
    "STREAM_NAME_BYTES_MAX",
    "AppendBatch",
    "AppendRecord",
    "Applied",
    "Command",
    "CreateStream",
    "Effect",
    "Event",
    "EventsAppended",
    "IdempotencyEntry",
    "KernelState",
    "Outcome",
    "RejectReason",
    "Rejected",
    "Reply",
    "Stream",
    "StreamCreated",
    "apply",
    "committed",
    "decide",
    "decode_event",
    "decode_state",
    "encode_event",
    "encode_state",
    "evolve",
    "initial_state",
    "replay",
    "stream_id_for",
    "tenant_bits_of",
]

STREAM_NAME_BYTES_MAX = 128
"""The longest stream name, in UTF-8 bytes."""

BATCH_EVENTS_MAX = 10_000
"""The most events one AppendBatch may carry."""

BATCH_BYTES_MAX = 16 * 1024 * 1024
"""The most event bytes (summed) one AppendBatch may carry."""

IDEMPOTENCY_ID_BYTES = 16

RETENTION_NS_DEFAULT = 24 * 60 * 60 * 1_000_000_000
"""How long, in log time, an idempotency id is remembered at least."""

DATA_CLASSES = (0, 1, 2, 3, 4)
"""PUBLIC, INTERNAL, CONFIDENTIAL, PII, PHI (`verity.types.DataClass`)."""

U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1
EVENT_FORMAT_VERSION = 1
TYPE_STREAM_CREATED = 1
TYPE_EVENTS_APPENDED = 2
FLAG_IDEMPOTENCY_ID = 1


class RejectReason(enum.Enum):
    """Why a command was rejected. A rejected command changes nothing."""

    WRONG_TENANT = "wrong_tenant"
    INVALID_TIMESTAMP = "invalid_timestamp"
    INVALID_NAME = "invalid_name"
    INVALID_DATA_CLASS = "invalid_data_class"
    DUPLICATE_NAME = "duplicate_name"
    TOO_MANY_STREAMS = "too_many_streams"
    INVALID_IDEMPOTENCY_ID = "invalid_idempotency_id"
    INVALID_EVENT = "invalid_event"
    EMPTY_BATCH = "empty_batch"
    BATCH_TOO_LARGE = "batch_too_large"
    INVALID_EXPECTED_OFFSET = "invalid_expected_offset"
    STREAM_OF_ANOTHER_TENANT = "stream_of_another_tenant"
    UNKNOWN_STREAM = "unknown_stream"
    OFFSET_MISMATCH = "offset_mismatch"


# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class CreateStream:
    """Create a named stream of one data class."""

    tenant: int
    name: str
    data_class: int
    timestamp: int
    """ns since the epoch, read by the shell once per command."""


@dataclass(frozen=True)
class AppendBatch:
    """Append events, in order, to one stream."""

    tenant: int
    stream: int
    events: tuple[bytes, ...]
    idempotency_id: bytes | None
    """16 bytes the client chose for this logical append, or None."""
    expected_offset: int | None
    """The stream's next offset as the client last saw it, or None to skip the check."""
    timestamp: int


Command = CreateStream | AppendBatch


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class StreamCreated:
    """A stream came into being."""

    stream: int
    name: str
    data_class: int
    timestamp: int


@dataclass(frozen=True)
class EventsAppended:
    """Events were appended to a stream, starting at `first_offset`."""

    stream: int
    first_offset: int
    events: tuple[bytes, ...]
    idempotency_id: bytes | None
    timestamp: int


Event = StreamCreated | EventsAppended


# ---------------------------------------------------------------- outcomes and effects


@dataclass(frozen=True)
class Applied:
    """The command took effect (or had already taken effect, when `duplicate`)."""

    stream: int
    offset: int
    """CreateStream: 0. AppendBatch: the stream offset of the first event."""
    duplicate: bool
    """True when the idempotency id had already committed: nothing was appended."""


@dataclass(frozen=True)
class Rejected:
    """The command was refused; nothing changed."""

    reason: RejectReason


Outcome = Applied | Rejected


@dataclass(frozen=True)
class AppendRecord:
    """Append one DATA record carrying `payload` (an encoded event) to the tenant's log."""

    payload: bytes


@dataclass(frozen=True)
class Reply:
    """Answer the caller with `outcome`, after every effect before it is durable."""

    outcome: Outcome


Effect = AppendRecord | Reply


# ---------------------------------------------------------------- state


@dataclass(frozen=True)
class Stream:
    """One stream of the tenant."""

    stream: int
    name: str
    data_class: int
    next_offset: int
    """How many events the stream holds: the offset the next event gets."""


@dataclass(frozen=True)
class IdempotencyEntry:
    """An idempotency id that committed, and the result it committed with."""

    idempotency_id: bytes
    stream: int
    offset: int
    committed_at: int
    """Timestamp of the event that committed it."""


@dataclass(frozen=True)
class KernelState:
    """Everything the kernel knows about one tenant."""

    tenant: int
    retention_ns: int
    streams: tuple[Stream, ...]
    """In creation order; stream i (from 0) has local number i + 1."""
    idempotency: tuple[IdempotencyEntry, ...]
    """Committed ids that are still remembered, oldest first."""
    log_time: int
    """The greatest event timestamp applied so far (0 before any)."""


def tenant_bits_of(stream: int) -> int:
    """The tenant bits a stream id carries: its high 32 bits."""
    return stream >> 32


def stream_id_for(tenant: int, local_number: int) -> int:
    """The id of a tenant's `local_number`-th stream (from 1)."""
    return ((tenant & U32_MAX) << 32) | local_number


def is_state(state: KernelState) -> bool:
    """`state` is one the operations below can reach."""
    ids = [entry.idempotency_id for entry in state.idempotency]
    names = [stream.name for stream in state.streams]
    return (
        0 <= state.tenant <= U64_MAX
        and all(
            stream.stream == stream_id_for(state.tenant, number)
            for number, stream in enumerate(state.streams, start=1)
        )
        and all(stream.next_offset >= 0 for stream in state.streams)
        and len(set(ids)) == len(ids)
        and len(set(names)) == len(names)
    )


@icontract.require(lambda tenant: 0 <= tenant <= U64_MAX)
@icontract.require(lambda retention_ns: 0 <= retention_ns <= U64_MAX)
@icontract.ensure(lambda result: is_state(result))
def initial_state(tenant: int, retention_ns: int = RETENTION_NS_DEFAULT) -> KernelState:
    """The state of a tenant with no events."""
    return KernelState(
        tenant=tenant, retention_ns=retention_ns, streams=(), idempotency=(), log_time=0
    )


def find_stream(state: KernelState, stream: int) -> Stream | None:
    for candidate in state.streams:
        if candidate.stream == stream:
            return candidate
    return None


def find_entry(state: KernelState, idempotency_id: bytes) -> IdempotencyEntry | None:
    for entry in state.idempotency:
        if entry.idempotency_id == idempotency_id:
            return entry
    return None


@icontract.require(lambda state: is_state(state))
def committed(state: KernelState, idempotency_id: bytes) -> int | None:
    """The first stream offset the append with `idempotency_id` got, or None.

    :raises InvalidArgumentError: `idempotency_id` is not bytes (a str, a
        bytearray, None...): no append could have used it.
    """
    if not isinstance(idempotency_id, bytes):
        raise InvalidArgumentError("idempotency_id", idempotency_id, "must be bytes")
    entry = find_entry(state, idempotency_id)
    return None if entry is None else entry.offset


# ---------------------------------------------------------------- decide


def is_u64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX


def name_problem(name: object) -> bool:
    """True when `name` cannot name a stream."""
    if not isinstance(name, str) or not name or not name.isprintable():
        return True
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return True
    return len(encoded) > STREAM_NAME_BYTES_MAX


def decide_create_stream(state: KernelState, command: CreateStream) -> Outcome:
    if command.tenant != state.tenant:
        return Rejected(RejectReason.WRONG_TENANT)
    if not is_u64(command.timestamp):
        return Rejected(RejectReason.INVALID_TIMESTAMP)
    if name_problem(command.name):
        return Rejected(RejectReason.INVALID_NAME)
    data_class = command.data_class
    if not isinstance(data_class, int) or isinstance(data_class, bool):
        return Rejected(RejectReason.INVALID_DATA_CLASS)
    if data_class not in DATA_CLASSES:
        return Rejected(RejectReason.INVALID_DATA_CLASS)
    if any(stream.name == command.name for stream in state.streams):
        return Rejected(RejectReason.DUPLICATE_NAME)
    if len(state.streams) >= U32_MAX:
        return Rejected(RejectReason.TOO_MANY_STREAMS)
    return Applied(
        stream=stream_id_for(state.tenant, len(state.streams) + 1), offset=0, duplicate=False
    )


def decide_append_batch(state: KernelState, command: AppendBatch) -> Outcome:
    if command.tenant != state.tenant:
        return Rejected(RejectReason.WRONG_TENANT)
    if not is_u64(command.timestamp):
        return Rejected(RejectReason.INVALID_TIMESTAMP)
    key = command.idempotency_id
    if key is not None and (not isinstance(key, bytes) or len(key) != IDEMPOTENCY_ID_BYTES):
        return Rejected(RejectReason.INVALID_IDEMPOTENCY_ID)
    if not isinstance(command.events, tuple) or not all(
        isinstance(event, bytes) for event in command.events
    ):
        return Rejected(RejectReason.INVALID_EVENT)
    if len(command.events) == 0:
        return Rejected(RejectReason.EMPTY_BATCH)
    too_many = len(command.events) > BATCH_EVENTS_MAX
    if too_many or sum(len(event) for event in command.events) > BATCH_BYTES_MAX:
        return Rejected(RejectReason.BATCH_TOO_LARGE)
    expected = command.expected_offset
    if expected is not None and not is_u64(expected):
        return Rejected(RejectReason.INVALID_EXPECTED_OFFSET)
    if key is not None:
        # Before the stream and offset checks: a retry must get the original answer
        # even though the original moved the stream past its expected offset.
        entry = find_entry(state, key)
        if entry is not None:
            return Applied(stream=entry.stream, offset=entry.offset, duplicate=True)
    if not is_u64(command.stream):
        return Rejected(RejectReason.UNKNOWN_STREAM)
    if tenant_bits_of(command.stream) != state.tenant & U32_MAX:
        return Rejected(RejectReason.STREAM_OF_ANOTHER_TENANT)
    stream = find_stream(state, command.stream)
    if stream is None:
        return Rejected(RejectReason.UNKNOWN_STREAM)
    if expected is not None and expected != stream.next_offset:
        return Rejected(RejectReason.OFFSET_MISMATCH)
    return Applied(stream=stream.stream, offset=stream.next_offset, duplicate=False)


@icontract.require(lambda state: is_state(state))
def decide(state: KernelState, command: Command) -> tuple[Outcome, Event | None]:
    """Judge `command` against `state`: the outcome, and the event to record (if any)."""
    if isinstance(command, CreateStream):
        outcome = decide_create_stream(state, command)
        if isinstance(outcome, Rejected):
            return outcome, None
        return outcome, StreamCreated(
            stream=outcome.stream,
            name=command.name,
            data_class=command.data_class,
            timestamp=command.timestamp,
        )
    outcome = decide_append_batch(state, command)
    if isinstance(outcome, Rejected) or outcome.duplicate:
        return outcome, None
    return outcome, EventsAppended(
        stream=outcome.stream,
        first_offset=outcome.offset,
        events=command.events,
        idempotency_id=command.idempotency_id,
        timestamp=command.timestamp,
    )


# ---------------------------------------------------------------- evolve


def event_fits(state: KernelState, event: Event) -> bool:
    """`event` can follow `state`: encodable, next in its stream, its id and name unused.

    Replay accepts what is consistent with the state, which is slightly more
    than `decide` produces: `decide` never records an empty or oversized batch,
    but an EventsAppended with zero events (or more than the batch limits)
    still replays without ambiguity, so it is not treated as corruption.
    """
    if not is_encodable(event):
        return False
    if isinstance(event, StreamCreated):
        return event.stream == stream_id_for(state.tenant, len(state.streams) + 1) and all(
            stream.name != event.name for stream in state.streams
        )
    stream = find_stream(state, event.stream)
    key = event.idempotency_id
    return (
        stream is not None
        and stream.next_offset == event.first_offset
        and (key is None or find_entry(state, key) is None)
    )


@icontract.require(lambda state: is_state(state))
@icontract.require(lambda state, event: event_fits(state, event))
@icontract.ensure(lambda result: is_state(result))
@icontract.ensure(lambda state, result: result.log_time >= state.log_time)
@icontract.ensure(
    lambda state, event, result: (
        not isinstance(event, EventsAppended)
        or next_offset_of(result, event.stream)
        == next_offset_of(state, event.stream) + len(event.events)
    )
)
def evolve(state: KernelState, event: Event) -> KernelState:
    """The state after `event`: the one way state changes."""
    log_time = max(state.log_time, event.timestamp)
    # Remembered until events pass committed_at + retention_ns; never by a wall clock.
    remembered = tuple(
        entry for entry in state.idempotency if entry.committed_at + state.retention_ns >= log_time
    )
    if isinstance(event, StreamCreated):
        created = Stream(
            stream=event.stream, name=event.name, data_class=event.data_class, next_offset=0
        )
        return replace(
            state,
            streams=(*state.streams, created),
            idempotency=remembered,
            log_time=log_time,
        )
    streams = tuple(
        replace(stream, next_offset=stream.next_offset + len(event.events))
        if stream.stream == event.stream
        else stream
        for stream in state.streams
    )
    if event.idempotency_id is not None:
        entry = IdempotencyEntry(
            idempotency_id=event.idempotency_id,
            stream=event.stream,
            offset=event.first_offset,
            committed_at=event.timestamp,
        )
        remembered = (*remembered, entry)
    return replace(state, streams=streams, idempotency=remembered, log_time=log_time)


def next_offset_of(state: KernelState, stream: int) -> int:
    found = find_stream(state, stream)
    assert found is not None
    return found.next_offset


# ---------------------------------------------------------------- apply


@icontract.require(lambda state: is_state(state))
@icontract.ensure(lambda result: is_state(result[0]))
@icontract.ensure(lambda result: isinstance(result[1][-1], Reply))
@icontract.ensure(
    lambda state, result: result[0] == state or not isinstance(result[1][-1].outcome, Rejected)
)
@icontract.ensure(lambda state, result: result[0] == state or not result[1][-1].outcome.duplicate)
@icontract.ensure(
    lambda state, command, result: (
        not isinstance(command, AppendBatch)
        or command.idempotency_id is None
        or sum(1 for e in result[0].idempotency if e.idempotency_id == command.idempotency_id) <= 1
    )
)
def apply(state: KernelState, command: Command) -> tuple[KernelState, tuple[Effect, ...]]:
    """Decide `command`; when it records an event, evolve by it and ask the shell to append it.

    The effects come in order: the record to append (if any), then the reply.
    """
    outcome, event = decide(state, command)
    if event is None:
        return state, (Reply(outcome),)
    return evolve(state, event), (AppendRecord(encode_event(event)), Reply(outcome))


# ---------------------------------------------------------------- encoding (docs/formats.md §5)


def u8(value: int) -> bytes:
    return value.to_bytes(1, "big")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def is_encodable(event: Event) -> bool:
    """Every field of `event` fits its width in the encoding."""
    if not is_u64(event.timestamp) or not is_u64(event.stream):
        return False
    if isinstance(event, StreamCreated):
        return not name_problem(event.name) and event.data_class in DATA_CLASSES
    key = event.idempotency_id
    return (
        is_u64(event.first_offset)
        and (key is None or len(key) == IDEMPOTENCY_ID_BYTES)
        and len(event.events) <= U32_MAX
        and all(len(body) <= U32_MAX for body in event.events)
    )


@icontract.require(lambda event: is_encodable(event))
@icontract.ensure(lambda event, result: decode_event(result) == event)
def encode_event(event: Event) -> bytes:
    """The payload of the log record that carries `event`.

    version u8 (1) ‖ type u8 ‖ timestamp u64, then
    StreamCreated (type 1): stream u64 ‖ data_class u8 ‖ name_len u16 ‖ name (UTF-8)
    EventsAppended (type 2): stream u64 ‖ first_offset u64 ‖ flags u8 (bit 0: an
    idempotency id follows) ‖ [idempotency id, 16 bytes] ‖ count u32 ‖
    count times (length u32 ‖ event bytes)
    """
    if isinstance(event, StreamCreated):
        name = event.name.encode("utf-8")
        return (
            u8(EVENT_FORMAT_VERSION)
            + u8(TYPE_STREAM_CREATED)
            + u64(event.timestamp)
            + u64(event.stream)
            + u8(event.data_class)
            + u16(len(name))
            + name
        )
    flags = FLAG_IDEMPOTENCY_ID if event.idempotency_id is not None else 0
    encoded = (
        u8(EVENT_FORMAT_VERSION)
        + u8(TYPE_EVENTS_APPENDED)
        + u64(event.timestamp)
        + u64(event.stream)
        + u64(event.first_offset)
        + u8(flags)
        + (event.idempotency_id or b"")
        + u32(len(event.events))
    )
    for body in event.events:
        encoded += u32(len(body)) + body
    return encoded


class Reader:
    """Reads big-endian fields from the front of `data`; every short read is an error."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def take(self, count: int) -> bytes:
        if self.position + count > len(self.data):
            raise InvalidArgumentError(
                "event", self.data[:32], f"ends before byte {self.position + count}"
            )
        chunk = self.data[self.position : self.position + count]
        self.position += count
        return chunk

    def number(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")

    def finish(self) -> None:
        if self.position != len(self.data):
            raise InvalidArgumentError(
                "event", self.data[:32], f"has {len(self.data) - self.position} bytes left over"
            )


def decode_event(data: bytes) -> Event:
    """The event a record payload encodes.

    :raises InvalidArgumentError: `data` is not an encoded event.
    """
    reader = Reader(data)
    version = reader.number(1)
    if version != EVENT_FORMAT_VERSION:
        raise InvalidArgumentError("event version", version, "must be 1")
    kind = reader.number(1)
    timestamp = reader.number(8)
    stream = reader.number(8)
    if kind == TYPE_STREAM_CREATED:
        data_class = reader.number(1)
        name_bytes = reader.take(reader.number(2))
        try:
            name = name_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError("stream name", name_bytes, "is not UTF-8") from None
        reader.finish()
        return StreamCreated(stream=stream, name=name, data_class=data_class, timestamp=timestamp)
    if kind != TYPE_EVENTS_APPENDED:
        raise InvalidArgumentError("event type", kind, "must be 1 or 2")
    first_offset = reader.number(8)
    flags = reader.number(1)
    if flags & ~FLAG_IDEMPOTENCY_ID:
        raise InvalidArgumentError("event flags", flags, "unknown bits set")
    key = reader.take(IDEMPOTENCY_ID_BYTES) if flags & FLAG_IDEMPOTENCY_ID else None
    count = reader.number(4)
    events = tuple(reader.take(reader.number(4)) for _ in range(count))
    reader.finish()
    return EventsAppended(
        stream=stream,
        first_offset=first_offset,
        events=events,
        idempotency_id=key,
        timestamp=timestamp,
    )


@icontract.require(lambda tenant: 0 <= tenant <= U64_MAX)
@icontract.require(lambda retention_ns: 0 <= retention_ns <= U64_MAX)
@icontract.ensure(lambda result: is_state(result))
def replay(tenant: int, payloads: tuple[bytes, ...], retention_ns: int) -> KernelState:
    """The state a tenant's log implies: every encoded event, evolved in order.

    :raises InvalidArgumentError: a payload is not an encoded event, or is one
        that could not have been recorded at that point.
    """
    state = initial_state(tenant, retention_ns)
    for position, payload in enumerate(payloads):
        event = decode_event(payload)
        if not event_fits(state, event):
            raise InvalidArgumentError(
                f"event {position}", event, "does not follow from the events before it"
            )
        state = evolve(state, event)
    return state


# ---------------------------------------------------------------- snapshots (docs/formats.md §5.4)

STATE_MAGIC = b"VKST"
STATE_VERSION = 1


@icontract.ensure(lambda result: is_state(result))
def decode_state(data: bytes) -> KernelState:
    """The state `encode_state` encoded as `data`.

    :raises InvalidArgumentError: `data` is not exactly one encoded state, or
        encodes one no sequence of events could reach.
    """
    reader = Reader(data)
    if reader.take(4) != STATE_MAGIC or reader.number(1) != STATE_VERSION:
        raise InvalidArgumentError("state", data[:5], "is not a version-1 kernel state")
    tenant = reader.number(8)
    retention_ns = reader.number(8)
    log_time = reader.number(8)
    streams = []
    for number in range(1, reader.number(4) + 1):
        data_class = reader.number(1)
        next_offset = reader.number(8)
        raw_name = reader.take(reader.number(1))
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError("stream name", raw_name, "is not UTF-8") from None
        if name_problem(name) or data_class not in DATA_CLASSES:
            raise InvalidArgumentError("stream", (name, data_class), "cannot have been created")
        streams.append(Stream(stream_id_for(tenant, number), name, data_class, next_offset))
    entries = []
    for _ in range(reader.number(4)):
        entries.append(
            IdempotencyEntry(
                idempotency_id=reader.take(IDEMPOTENCY_ID_BYTES),
                stream=reader.number(8),
                offset=reader.number(8),
                committed_at=reader.number(8),
            )
        )
    reader.finish()
    state = KernelState(tenant, retention_ns, tuple(streams), tuple(entries), log_time)
    if not is_state(state):
        raise InvalidArgumentError("state", data[:32], "is not one the kernel can reach")
    return state


def is_encodable_state(state: KernelState) -> bool:
    """`state` is reachable and every field fits its width in `encode_state`."""
    return (
        is_state(state)
        and all(is_u64(n) for n in (state.tenant, state.retention_ns, state.log_time))
        and all(
            not name_problem(stream.name)
            and stream.data_class in DATA_CLASSES
            and is_u64(stream.next_offset)
            for stream in state.streams
        )
        and all(
            len(entry.idempotency_id) == IDEMPOTENCY_ID_BYTES
            and all(is_u64(n) for n in (entry.stream, entry.offset, entry.committed_at))
            for entry in state.idempotency
        )
        and len(state.streams) <= U32_MAX
        and len(state.idempotency) <= U32_MAX
    )


@icontract.require(lambda state: is_encodable_state(state))
@icontract.ensure(lambda state, result: decode_state(result) == state)
def encode_state(state: KernelState) -> bytes:
    """The whole kernel state as bytes: what a snapshot stores.

    A shell may store it with the log position it reflects, and on open
    restore it and replay only the later records: `decode_state(encode_state(
    replay(t, p[:k], r)))` evolved by the events of `p[k:]` equals
    `replay(t, p, r)`, because a state is all `evolve` ever reads.
    Fields in order: magic "VKST", version 1, tenant, retention_ns, log_time;
    the streams in creation order (data_class, next_offset, name); the
    remembered idempotency entries oldest first (id, stream, offset,
    committed_at). Integers are big-endian; stream ids are not stored, they
    follow from the tenant and the creation order.
    """
    parts = [
        STATE_MAGIC,
        u8(STATE_VERSION),
        u64(state.tenant),
        u64(state.retention_ns),
        u64(state.log_time),
        u32(len(state.streams)),
    ]
    for stream in state.streams:
        name = stream.name.encode("utf-8")
        parts += [u8(stream.data_class), u64(stream.next_offset), u8(len(name)), name]
    parts.append(u32(len(state.idempotency)))
    for entry in state.idempotency:
        parts += [
            entry.idempotency_id,
            u64(entry.stream),
            u64(entry.offset),
            u64(entry.committed_at),
        ]
    return b"".join(parts)
