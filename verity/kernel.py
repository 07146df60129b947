"""The kernel, fast path: a tenant's deterministic state machine, proven equal to the spec.

`verity_spec.kernel` states the rules as pure functions over immutable values;
this module keeps the same rules over mutable state so that one command costs
a few dict lookups and one `struct.pack`. The shell drives it in one of two
ways:

- `Kernel.apply(command)` decides and, when the command records an event,
  evolves at once; it returns the spec's effects (`AppendRecord` first when an
  event was recorded, then `Reply`).
- `Kernel.decide(command)` judges without changing anything and returns a
  `Decision` carrying the encoded event; the shell appends it to the tenant's
  log, makes it durable, then calls `Kernel.commit(decision)`.

On open the shell rebuilds the kernel with `Kernel.replay(payload)` for every
record of the log, in order. No IO, no clock: time arrives in the command.

Rules (the spec is the authority; docs/conformance.md, machine `kernel`):
stream ids carry the tenant's low 32 bits in their high 32 bits and number a
tenant's streams densely from 1; stream offsets are dense from 0; an
idempotency id commits at most once and is remembered while
`committed_at + retention_ns >= log_time`, where `log_time` is the greatest
event timestamp so far; a rejected command changes nothing. Bad input in a
command is never an exception: it is `Rejected(reason)`.
"""

from __future__ import annotations

import enum
import heapq
import struct
from collections import deque
from dataclasses import dataclass
from typing import Final, final

from verity.errors import CorruptionError, InvalidArgument, NotFound
from verity.types import IDEMPOTENCY_ID_BYTES, U64_MAX, DataClass, Offset, StreamId, TenantId

__all__ = [
    "BATCH_BYTES_MAX",
    "BATCH_EVENTS_MAX",
    "IDEMPOTENCY_ID_BYTES",
    "RETENTION_NS_DEFAULT",
    "STREAM_NAME_BYTES_MAX",
    "AppendBatch",
    "AppendRecord",
    "Applied",
    "Command",
    "CreateStream",
    "Decision",
    "Effect",
    "Kernel",
    "Outcome",
    "RejectReason",
    "Rejected",
    "Reply",
    "StreamInfo",
    "decode_events",
]

STREAM_NAME_BYTES_MAX: Final = 128
"""The longest stream name, in UTF-8 bytes."""

BATCH_EVENTS_MAX: Final = 10_000
"""The most events one AppendBatch may carry."""

BATCH_BYTES_MAX: Final = 16 * 1024 * 1024
"""The most event bytes (summed) one AppendBatch may carry."""

RETENTION_NS_DEFAULT: Final = 24 * 60 * 60 * 1_000_000_000
"""How long, in log time, an idempotency id is remembered at least."""

_U32_MAX: Final = (1 << 32) - 1
_NEVER: Final = 1 << 66  # later than any log time, even plus any retention
_DATA_CLASS_MAX: Final = max(DataClass)
_EVENT_FORMAT_VERSION: Final = 1
_TYPE_STREAM_CREATED: Final = 1
_TYPE_EVENTS_APPENDED: Final = 2
_FLAG_IDEMPOTENCY_ID: Final = 1

# The byte contract of encoded events (spec `encode_event`), big-endian.
# version u8 ‖ type u8 ‖ timestamp u64 ‖ stream u64, then per type:
_PREFIX: Final = struct.Struct(">BBQQ")
# StreamCreated: ... ‖ data_class u8 ‖ name_len u16 ‖ name
_CREATED: Final = struct.Struct(">BBQQBH")
# EventsAppended: ... ‖ first_offset u64 ‖ flags u8 ‖ [id 16] ‖ count u32 ‖ (len u32 ‖ body)*
_APPENDED: Final = struct.Struct(">BBQQQB")
_APPENDED_KEYED: Final = struct.Struct(f">BBQQQB{IDEMPOTENCY_ID_BYTES}s")
# The hot case, one event, packed with its count and length in a single call.
_APPENDED_ONE: Final = struct.Struct(">BBQQQBII")
_APPENDED_KEYED_ONE: Final = struct.Struct(f">BBQQQB{IDEMPOTENCY_ID_BYTES}sII")
_U8: Final = struct.Struct(">B")
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")
_STATE_MAGIC: Final = b"VKST"
_STATE_VERSION: Final = 1
_STATE_HEAD: Final = struct.Struct(">4sBQQQI")
_STATE_STREAM: Final = struct.Struct(">BQB")
_STATE_ENTRY: Final = struct.Struct(f">{IDEMPOTENCY_ID_BYTES}sQQQ")


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


@final
@dataclass(frozen=True, slots=True)
class CreateStream:
    """Create a named stream of one data class.

    Fields are not checked on construction: the kernel judges them and answers
    `Rejected(reason)` for a bad one, exactly as the spec does.
    """

    tenant: int
    name: str
    """1 to `STREAM_NAME_BYTES_MAX` UTF-8 bytes, printable, unique in the tenant."""
    data_class: int
    """A `DataClass` (or its int value)."""
    timestamp: int
    """ns since the epoch, read by the shell once per command."""


@final
@dataclass(frozen=True, slots=True)
class AppendBatch:
    """Append events, in order, to one stream (fields judged by the kernel)."""

    tenant: int
    stream: int
    events: tuple[bytes, ...]
    """1 to `BATCH_EVENTS_MAX` events of at most `BATCH_BYTES_MAX` bytes in all."""
    idempotency_id: bytes | None
    """16 bytes the client chose for this logical append, or None."""
    expected_offset: int | None
    """The stream's next offset as the client last saw it, or None to skip the check."""
    timestamp: int


Command = CreateStream | AppendBatch


# ---------------------------------------------------------------- outcomes and effects


@final
@dataclass(frozen=True, slots=True)
class Applied:
    """The command took effect (or had already taken effect, when `duplicate`)."""

    stream: StreamId
    offset: Offset
    """CreateStream: 0. AppendBatch: the stream offset of the first event."""
    duplicate: bool
    """True when the idempotency id had already committed: nothing was appended."""


@final
@dataclass(frozen=True, slots=True)
class Rejected:
    """The command was refused; nothing changed."""

    reason: RejectReason


Outcome = Applied | Rejected


@final
@dataclass(frozen=True, slots=True)
class AppendRecord:
    """Append one DATA record carrying `payload` (an encoded event) to the tenant's log."""

    payload: bytes


@final
@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the caller with `outcome`, after every effect before it is durable."""

    outcome: Outcome


Effect = AppendRecord | Reply


@final
@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a tenant's stream is: its id, name and data class."""

    stream_id: StreamId
    name: str
    data_class: DataClass


# A frozen dataclass's __init__ sets each field through object.__setattr__, which
# costs more than the rest of a hot append. Outcomes and effects made on the hot
# path are filled through their slot descriptors instead: the same objects, built
# about twice as fast. Nothing else may build them this way.
_new_object = object.__new__
_set_applied_stream: Final = Applied.__dict__["stream"].__set__
_set_applied_offset: Final = Applied.__dict__["offset"].__set__
_set_applied_duplicate: Final = Applied.__dict__["duplicate"].__set__
_set_reply_outcome: Final = Reply.__dict__["outcome"].__set__
_set_record_payload: Final = AppendRecord.__dict__["payload"].__set__


def _applied(stream: StreamId, offset: int, duplicate: bool) -> Applied:
    outcome: Applied = _new_object(Applied)
    _set_applied_stream(outcome, stream)
    # int.__new__ skips Offset's range check: the kernel's offsets are in range.
    _set_applied_offset(outcome, int.__new__(Offset, offset))
    _set_applied_duplicate(outcome, duplicate)
    return outcome


def _reply(outcome: Outcome) -> Reply:
    reply: Reply = _new_object(Reply)
    _set_reply_outcome(reply, outcome)
    return reply


def _append_record(payload: bytes) -> AppendRecord:
    record: AppendRecord = _new_object(AppendRecord)
    _set_record_payload(record, payload)
    return record


# Rejections carry nothing but the reason, so each is one shared immutable value.
_REJECTED: Final = {reason: Rejected(reason) for reason in RejectReason}
_WRONG_TENANT: Final = _REJECTED[RejectReason.WRONG_TENANT]
_INVALID_TIMESTAMP: Final = _REJECTED[RejectReason.INVALID_TIMESTAMP]
_INVALID_NAME: Final = _REJECTED[RejectReason.INVALID_NAME]
_INVALID_DATA_CLASS: Final = _REJECTED[RejectReason.INVALID_DATA_CLASS]
_DUPLICATE_NAME: Final = _REJECTED[RejectReason.DUPLICATE_NAME]
_TOO_MANY_STREAMS: Final = _REJECTED[RejectReason.TOO_MANY_STREAMS]
_INVALID_IDEMPOTENCY_ID: Final = _REJECTED[RejectReason.INVALID_IDEMPOTENCY_ID]
_INVALID_EVENT: Final = _REJECTED[RejectReason.INVALID_EVENT]
_EMPTY_BATCH: Final = _REJECTED[RejectReason.EMPTY_BATCH]
_BATCH_TOO_LARGE: Final = _REJECTED[RejectReason.BATCH_TOO_LARGE]
_INVALID_EXPECTED_OFFSET: Final = _REJECTED[RejectReason.INVALID_EXPECTED_OFFSET]
_STREAM_OF_ANOTHER_TENANT: Final = _REJECTED[RejectReason.STREAM_OF_ANOTHER_TENANT]
_UNKNOWN_STREAM: Final = _REJECTED[RejectReason.UNKNOWN_STREAM]
_OFFSET_MISMATCH: Final = _REJECTED[RejectReason.OFFSET_MISMATCH]


# ---------------------------------------------------------------- state


@final
class _Stream:
    """The mutable state of one stream: what it is and how many events it holds."""

    __slots__ = ("info", "next_offset")

    def __init__(self, info: StreamInfo, next_offset: int) -> None:
        self.info = info
        self.next_offset = next_offset


@final
class Decision:
    """What `Kernel.decide` concluded about one command, and the event to record.

    `payload` is the encoded event (the payload of the one DATA record the shell
    appends) or None when nothing is recorded (a rejection or a duplicate).
    `stream`, `first_offset` and `count` say where the recorded events go: the
    stream id, the stream offset of the first event and how many there are (0
    for a stream creation and when nothing is recorded). `data_class` is that
    stream's class. A decision that concerns no stream (most rejections) has
    `stream` 0, never a stream id, and `data_class` PHI, the most protected
    class, so that misusing it can never weaken protection. Read-only.
    """

    __slots__ = (
        "_created",
        "_key",
        "_owner",
        "_target",
        "_timestamp",
        "_version",
        "count",
        "data_class",
        "first_offset",
        "outcome",
        "payload",
        "stream",
    )

    def __init__(
        self,
        outcome: Outcome,
        payload: bytes | None,
        target: _Stream | None,
        first_offset: int,
        count: int,
        *,
        owner: object,
        version: int,
        created: bool = False,
        key: bytes | None = None,
        timestamp: int = 0,
    ) -> None:
        self.outcome: Final = outcome
        self.payload: Final = payload
        self.stream: Final[int] = 0 if target is None else target.info.stream_id
        self.first_offset: Final = first_offset
        self.count: Final = count
        self.data_class: Final = DataClass.PHI if target is None else target.info.data_class
        self._target: Final = target
        self._owner: Final = owner
        self._version: Final = version
        self._created: Final = created
        self._key: Final = key
        self._timestamp: Final = timestamp

    def __repr__(self) -> str:
        return (
            f"Decision(outcome={self.outcome!r}, payload_bytes="
            f"{None if self.payload is None else len(self.payload)}, stream={self.stream}, "
            f"first_offset={self.first_offset}, count={self.count}, "
            f"data_class={self.data_class!r})"
        )


def _is_u64(value: object) -> bool:
    # bool is an int subclass; True is not timestamp 1.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX


def _name_bytes(name: object) -> bytes | None:
    """The UTF-8 bytes of `name`, or None when it cannot name a stream."""
    if not isinstance(name, str) or not name or not name.isprintable():
        return None
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return None
    return encoded if len(encoded) <= STREAM_NAME_BYTES_MAX else None


def _encode_appended(
    timestamp: int, stream: int, first_offset: int, key: bytes | None, events: tuple[bytes, ...]
) -> bytes:
    """The payload of an EventsAppended event (spec `encode_event`, type 2)."""
    if len(events) == 1:
        body = events[0]
        if key is None:
            head = _APPENDED_ONE.pack(
                _EVENT_FORMAT_VERSION,
                _TYPE_EVENTS_APPENDED,
                timestamp,
                stream,
                first_offset,
                0,
                1,
                len(body),
            )
        else:
            head = _APPENDED_KEYED_ONE.pack(
                _EVENT_FORMAT_VERSION,
                _TYPE_EVENTS_APPENDED,
                timestamp,
                stream,
                first_offset,
                _FLAG_IDEMPOTENCY_ID,
                key,
                1,
                len(body),
            )
        return head + body
    if key is None:
        head = _APPENDED.pack(
            _EVENT_FORMAT_VERSION, _TYPE_EVENTS_APPENDED, timestamp, stream, first_offset, 0
        )
    else:
        head = _APPENDED_KEYED.pack(
            _EVENT_FORMAT_VERSION,
            _TYPE_EVENTS_APPENDED,
            timestamp,
            stream,
            first_offset,
            _FLAG_IDEMPOTENCY_ID,
            key,
        )
    parts = [head, _U32.pack(len(events))]
    pack_length = _U32.pack
    for body in events:
        parts.append(pack_length(len(body)))
        parts.append(body)
    return b"".join(parts)


def _encode_created(timestamp: int, stream: int, data_class: int, name: bytes) -> bytes:
    """The payload of a StreamCreated event (spec `encode_event`, type 1)."""
    return (
        _CREATED.pack(
            _EVENT_FORMAT_VERSION, _TYPE_STREAM_CREATED, timestamp, stream, data_class, len(name)
        )
        + name
    )


# ---------------------------------------------------------------- the kernel


@final
class Kernel:
    """One tenant's streams, offsets and remembered idempotency ids.

    Not thread-safe: the shell serialises commands per tenant.
    """

    __slots__ = (
        "_committed",
        "_forget_due",
        "_late",
        "_log_time",
        "_names",
        "_queue_ids",
        "_queue_times",
        "_retention_ns",
        "_streams",
        "_tenant",
        "_tenant_bits",
        "_tenant_number",
        "_version",
    )

    def __init__(self, tenant: TenantId, retention_ns: int = RETENTION_NS_DEFAULT) -> None:
        """An empty tenant: no streams, nothing remembered, log time 0.

        :raises InvalidArgument: `tenant` or `retention_ns` is not in 0..2**64-1.
        """
        if not _is_u64(tenant):
            raise InvalidArgument("tenant", tenant, "must be an int in 0..2**64-1")
        if not _is_u64(retention_ns):
            raise InvalidArgument("retention_ns", retention_ns, "must be an int in 0..2**64-1")
        self._tenant: Final = TenantId(tenant)
        self._tenant_number: Final = int(tenant)
        self._tenant_bits: Final = int(tenant) & _U32_MAX
        self._retention_ns: Final = int(retention_ns)
        self._streams: Final[dict[int, _Stream]] = {}  # by stream id, in creation order
        self._names: Final[set[str]] = set()
        # id -> first_offset << 64 | stream id, of every remembered id (an int: no
        # tuple per id for the garbage collector to walk).
        self._committed: Final[dict[bytes, int]] = {}
        # When each id is forgotten. Ids committed in committed_at order (the usual
        # case) queue in `_queue_*`, oldest first. Command timestamps may go
        # backwards, though, and forgetting only from the front of a commit-ordered
        # queue would keep ids the spec forgets: an id committed earlier than the
        # newest queued one goes into `_late`, a min-heap of (committed_at, id).
        self._queue_times: Final[deque[int]] = deque()
        self._queue_ids: Final[deque[bytes]] = deque()
        self._late: Final[list[tuple[int, bytes]]] = []
        # The log time at which the oldest remembered id is forgotten: one compare
        # per event tells whether there is anything to forget.
        self._forget_due = _NEVER
        self._log_time = 0
        # Grows with every evolve; a Decision is only valid for the version it saw.
        self._version = 0

    # ------------------------------------------------------------ queries

    @property
    def tenant(self) -> TenantId:
        """The tenant this kernel belongs to."""
        return self._tenant

    @property
    def retention_ns(self) -> int:
        """How long, in log time, a committed idempotency id is remembered at least."""
        return self._retention_ns

    @property
    def log_time(self) -> int:
        """The greatest event timestamp applied so far, in ns (0 before any)."""
        return self._log_time

    def committed(self, idempotency_id: bytes) -> Offset | None:
        """The first stream offset the append with `idempotency_id` got, or None.

        None also once the id is forgotten (retention passed in log time).

        :raises InvalidArgument: `idempotency_id` is not bytes.
        """
        if not isinstance(idempotency_id, bytes):
            raise InvalidArgument("idempotency_id", idempotency_id, "must be bytes")
        entry = self._committed.get(idempotency_id)
        return None if entry is None else Offset(entry >> 64)

    def streams(self) -> list[StreamInfo]:
        """Every stream of the tenant, in creation order."""
        return [stream.info for stream in self._streams.values()]

    def stream(self, stream_id: int) -> StreamInfo | None:
        """The stream with id `stream_id`, or None when the tenant has none such."""
        if not isinstance(stream_id, int):
            raise InvalidArgument("stream_id", stream_id, "must be an int")
        found = self._streams.get(stream_id)
        return None if found is None else found.info

    def next_offset(self, stream_id: int) -> Offset:
        """How many events stream `stream_id` holds: the offset its next event gets.

        :raises NotFound: the tenant has no stream `stream_id`.
        """
        if not isinstance(stream_id, int):
            raise InvalidArgument("stream_id", stream_id, "must be an int")
        found = self._streams.get(stream_id)
        if found is None:
            raise NotFound("stream", stream_id, f"tenant {int(self._tenant)} has no such stream")
        return Offset(found.next_offset)

    # ------------------------------------------------------------ snapshots

    def snapshot(self) -> bytes:
        """The whole state as bytes, equal to the spec's `encode_state` (docs/formats.md §5.4).

        `Kernel.restore` of it, then the later records replayed, is the kernel a
        replay of the whole log gives.
        """
        parts = [
            _STATE_HEAD.pack(
                _STATE_MAGIC,
                _STATE_VERSION,
                self._tenant_number,
                self._retention_ns,
                self._log_time,
                len(self._streams),
            )
        ]
        for stream in self._streams.values():
            name = stream.info.name.encode("utf-8")
            parts.append(_STATE_STREAM.pack(stream.info.data_class, stream.next_offset, len(name)))
            parts.append(name)
        committed_at = dict(zip(self._queue_ids, self._queue_times, strict=True))
        committed_at.update((key, timestamp) for timestamp, key in self._late)
        assert len(committed_at) == len(self._committed)
        parts.append(_U32.pack(len(self._committed)))
        for key, packed in self._committed.items():
            parts.append(_STATE_ENTRY.pack(key, packed & U64_MAX, packed >> 64, committed_at[key]))
        return b"".join(parts)

    @classmethod
    def restore(cls, data: bytes) -> Kernel:
        """The kernel `snapshot()` encoded as `data`.

        :raises CorruptionError: `data` is not exactly one encoded state, or
            encodes one no sequence of events could reach.
        """
        if not isinstance(data, bytes):
            raise InvalidArgument("data", data, "must be bytes")
        try:
            return cls._restore(data)
        except (struct.error, UnicodeDecodeError, ValueError) as failure:
            raise CorruptionError(f"kernel state does not decode: {failure}") from None

    @classmethod
    def _restore(cls, data: bytes) -> Kernel:
        magic, version, tenant, retention_ns, log_time, stream_count = _STATE_HEAD.unpack_from(data)
        if magic != _STATE_MAGIC or version != _STATE_VERSION:
            raise ValueError(f"magic {magic!r} version {version} is not a version-1 state")
        kernel = cls(TenantId(tenant), retention_ns)
        position = _STATE_HEAD.size
        for number in range(1, stream_count + 1):
            data_class, next_offset, name_bytes = _STATE_STREAM.unpack_from(data, position)
            position += _STATE_STREAM.size
            raw_name = data[position : position + name_bytes]
            position += name_bytes
            name = raw_name.decode("utf-8")
            if (
                len(raw_name) != name_bytes
                or _name_bytes(name) is None
                or data_class > _DATA_CLASS_MAX
                or name in kernel._names
            ):
                raise ValueError(f"stream {number} ({raw_name!r}) cannot have been created")
            stream_id = StreamId((kernel._tenant_bits << 32) | number)
            info = StreamInfo(stream_id, name, DataClass(data_class))
            kernel._streams[stream_id] = _Stream(info, next_offset)
            kernel._names.add(name)
        (entry_count,) = _U32.unpack_from(data, position)
        position += _U32.size
        for _ in range(entry_count):
            key, stream_id, first_offset, committed_at = _STATE_ENTRY.unpack_from(data, position)
            position += _STATE_ENTRY.size
            if key in kernel._committed:
                raise ValueError(f"idempotency id {key.hex()} is remembered twice")
            kernel._remember(key, stream_id, first_offset, committed_at)
        if position != len(data):
            raise ValueError(f"{len(data) - position} bytes left over")
        kernel._log_time = log_time
        assert len(kernel._committed) == entry_count
        return kernel

    # ------------------------------------------------------------ deciding

    def _judge_create(self, command: CreateStream) -> Outcome | tuple[_Stream, bytes]:
        """The rejection, or the new stream and its encoded name (spec order of checks)."""
        if command.tenant != self._tenant_number:
            return _WRONG_TENANT
        if not _is_u64(command.timestamp):
            return _INVALID_TIMESTAMP
        name = _name_bytes(command.name)
        if name is None:
            return _INVALID_NAME
        data_class = command.data_class
        # An int check first: 1.0 == 1, but only an int has a byte to encode.
        if (
            not isinstance(data_class, int)
            or isinstance(data_class, bool)
            or not 0 <= data_class <= _DATA_CLASS_MAX
        ):
            return _INVALID_DATA_CLASS
        if command.name in self._names:
            return _DUPLICATE_NAME
        if len(self._streams) >= _U32_MAX:
            return _TOO_MANY_STREAMS
        stream_id = StreamId((self._tenant_bits << 32) | (len(self._streams) + 1))
        info = StreamInfo(stream_id, command.name, DataClass(data_class))
        return _Stream(info, 0), name

    def _judge_append(self, command: AppendBatch) -> Outcome | _Stream:
        """The final outcome (rejection or duplicate), or the stream to append to."""
        if command.tenant != self._tenant_number:
            return _WRONG_TENANT
        timestamp = command.timestamp
        if not (timestamp.__class__ is int and 0 <= timestamp <= U64_MAX) and not _is_u64(
            timestamp
        ):
            return _INVALID_TIMESTAMP
        key = command.idempotency_id
        if key is not None and (not isinstance(key, bytes) or len(key) != IDEMPOTENCY_ID_BYTES):
            return _INVALID_IDEMPOTENCY_ID
        events = command.events
        if not isinstance(events, tuple):
            return _INVALID_EVENT
        count = len(events)
        if count == 1:
            if not isinstance(events[0], bytes):
                return _INVALID_EVENT
            size = len(events[0])
        else:
            size = 0
            for body in events:
                if not isinstance(body, bytes):
                    return _INVALID_EVENT
                size += len(body)
            if count == 0:
                return _EMPTY_BATCH
        if count > BATCH_EVENTS_MAX or size > BATCH_BYTES_MAX:
            return _BATCH_TOO_LARGE
        expected = command.expected_offset
        if expected is not None and not _is_u64(expected):
            return _INVALID_EXPECTED_OFFSET
        if key is not None:
            # Before the stream and offset checks: a retry gets the original answer
            # even though the original moved the stream past its expected offset.
            entry = self._committed.get(key)
            if entry is not None:
                return _applied(self._streams[entry & U64_MAX].info.stream_id, entry >> 64, True)
        stream = command.stream
        if not (stream.__class__ is int and 0 <= stream <= U64_MAX) and not _is_u64(stream):
            return _UNKNOWN_STREAM
        if stream >> 32 != self._tenant_bits:
            return _STREAM_OF_ANOTHER_TENANT
        target = self._streams.get(stream)
        if target is None:
            return _UNKNOWN_STREAM
        if expected is not None and expected != target.next_offset:
            return _OFFSET_MISMATCH
        return target

    def decide(self, command: Command) -> Decision:
        """Judge `command` against the current state, changing nothing.

        The decision carries the outcome and, when the command records an event,
        its encoded payload; `commit` it once the record is durable.

        :raises InvalidArgument: `command` is neither a CreateStream nor an AppendBatch.
        """
        if isinstance(command, AppendBatch):
            judged = self._judge_append(command)
            if not isinstance(judged, _Stream):
                return self._decision_without_event(judged)
            first_offset = judged.next_offset
            key = command.idempotency_id
            payload = _encode_appended(
                command.timestamp, judged.info.stream_id, first_offset, key, command.events
            )
            assert len(payload) >= _APPENDED_ONE.size
            return Decision(
                _applied(judged.info.stream_id, first_offset, False),
                payload,
                judged,
                first_offset,
                len(command.events),
                owner=self,
                version=self._version,
                key=key,
                timestamp=command.timestamp,
            )
        if isinstance(command, CreateStream):
            created = self._judge_create(command)
            if not isinstance(created, tuple):
                return Decision(created, None, None, 0, 0, owner=self, version=self._version)
            target, name = created
            stream_id = target.info.stream_id
            payload = _encode_created(command.timestamp, stream_id, command.data_class, name)
            return Decision(
                _applied(stream_id, 0, False),
                payload,
                target,
                0,
                0,
                owner=self,
                version=self._version,
                created=True,
                timestamp=command.timestamp,
            )
        raise InvalidArgument("command", command, "must be a CreateStream or an AppendBatch")

    def _decision_without_event(self, outcome: Outcome) -> Decision:
        if isinstance(outcome, Rejected):
            return Decision(outcome, None, None, 0, 0, owner=self, version=self._version)
        assert outcome.duplicate
        return Decision(
            outcome,
            None,
            self._streams[outcome.stream],
            outcome.offset,
            0,
            owner=self,
            version=self._version,
        )

    # ------------------------------------------------------------ evolving

    def _pass_time(self, timestamp: int) -> None:
        """Advance log time to `timestamp` if later, and forget ids retention has passed.

        Called before an event's own id is remembered, as the spec's evolve filters
        the old entries first: an id committed with a timestamp already past
        retention survives until the next event. (`apply` inlines this.)
        """
        if timestamp > self._log_time:
            self._log_time = timestamp
        if self._log_time >= self._forget_due:
            self._forget_expired()

    def _forget_expired(self) -> None:
        """Forget every id with committed_at + retention_ns < log_time (spec `evolve`)."""
        oldest_kept = self._log_time - self._retention_ns
        committed = self._committed
        times = self._queue_times
        ids = self._queue_ids
        late = self._late
        while times and times[0] < oldest_kept:
            times.popleft()
            del committed[ids.popleft()]
        while late and late[0][0] < oldest_kept:
            del committed[heapq.heappop(late)[1]]
        assert len(committed) == len(times) + len(late)
        oldest = min(times[0] if times else _NEVER, late[0][0] if late else _NEVER)
        self._forget_due = oldest + self._retention_ns + 1
        assert self._forget_due > self._log_time

    def _remember(self, key: bytes, stream_id: int, first_offset: int, timestamp: int) -> None:
        """Remember that `key` committed; `apply` inlines this."""
        self._committed[key] = (first_offset << 64) | stream_id
        times = self._queue_times
        if not times or timestamp >= times[-1]:
            times.append(timestamp)
            self._queue_ids.append(key)
        else:
            heapq.heappush(self._late, (timestamp, key))
        if timestamp + self._retention_ns < self._forget_due:
            self._forget_due = timestamp + self._retention_ns + 1

    def commit(self, decision: Decision) -> None:
        """Evolve by `decision`'s event, once its record is durable (no-op without one).

        `decision` must come from `decide` on this kernel with nothing committed
        since; anything else is a bug in the shell (AssertionError).
        """
        assert decision._owner is self, "decision made by another kernel"
        assert decision._version == self._version, "decision made against an older state"
        target = decision._target
        if decision.payload is None or target is None:
            return
        if decision._created:
            assert target.info.stream_id not in self._streams
            self._streams[target.info.stream_id] = target
            self._names.add(target.info.name)
            self._pass_time(decision._timestamp)
        else:
            target.next_offset = decision.first_offset + decision.count
            self._pass_time(decision._timestamp)
            if decision._key is not None:
                self._remember(
                    decision._key, target.info.stream_id, decision.first_offset, decision._timestamp
                )
        self._version += 1

    def apply(self, command: Command) -> tuple[Effect, ...]:
        """Decide `command` and, when it records an event, evolve by it at once.

        Returns the spec's effects: `(AppendRecord(payload), Reply(outcome))` when
        an event was recorded, else `(Reply(outcome),)`.

        :raises InvalidArgument: `command` is neither a CreateStream nor an AppendBatch.
        """
        if type(command) is AppendBatch:
            judged = self._judge_append(command)
            if not isinstance(judged, _Stream):
                return (_reply(judged),)
            # The hot path: decide, encode and evolve without building a Decision.
            first_offset = judged.next_offset
            events = command.events
            timestamp = command.timestamp
            key = command.idempotency_id
            stream_id = judged.info.stream_id
            payload = _encode_appended(timestamp, stream_id, first_offset, key, events)
            judged.next_offset = first_offset + len(events)
            # Inlined _pass_time and _remember: a call costs as much as their common case.
            if timestamp > self._log_time:
                self._log_time = timestamp
            if self._log_time >= self._forget_due:
                self._forget_expired()
            if key is not None:
                self._committed[key] = (first_offset << 64) | stream_id
                times = self._queue_times
                if not times or timestamp >= times[-1]:
                    times.append(timestamp)
                    self._queue_ids.append(key)
                else:
                    heapq.heappush(self._late, (timestamp, key))
                if timestamp + self._retention_ns < self._forget_due:
                    self._forget_due = timestamp + self._retention_ns + 1
            self._version += 1
            return (
                _append_record(payload),
                _reply(_applied(stream_id, first_offset, False)),
            )
        decision = self.decide(command)
        if decision.payload is None:
            return (_reply(decision.outcome),)
        self.commit(decision)
        return (_append_record(decision.payload), _reply(decision.outcome))

    # ------------------------------------------------------------ replaying

    def replay(self, payload: bytes) -> Decision:
        """Evolve by one recorded event (a log record's payload), as on open.

        Returns the decision the event records (already committed). The event must
        be one `decide` could have recorded at this point, exactly as the spec's
        `event_fits` says.

        :raises CorruptionError: `payload` is not an encoded event, or does not
            follow from the events before it; the reason names the problem.
        """
        kind, timestamp, stream_id = _decode_prefix(payload)
        if kind == _TYPE_STREAM_CREATED:
            return self._replay_created(payload, timestamp, stream_id)
        return self._replay_appended(payload, timestamp, stream_id)

    def _replay_created(self, payload: bytes, timestamp: int, stream_id: int) -> Decision:
        position = _PREFIX.size
        data_class = _take_number(payload, position, _U8)
        name_length = _take_number(payload, position + 1, _U16)
        position += 3
        if position + name_length > len(payload):
            raise _corrupt(payload, f"ends before byte {position + name_length}")
        name_bytes = payload[position : position + name_length]
        if position + name_length != len(payload):
            left = len(payload) - position - name_length
            raise _corrupt(payload, f"has {left} bytes left over")
        try:
            name = name_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise _corrupt(payload, f"stream name {name_bytes!r} is not UTF-8") from None
        # event_fits: encodable, the next stream id, a name not taken.
        if _name_bytes(name) is None:
            raise _misfit(payload, f"stream name {name!r} cannot name a stream")
        if data_class > _DATA_CLASS_MAX:
            raise _misfit(payload, f"data class {data_class} is not one of 0..4")
        expected_id = (self._tenant_bits << 32) | (len(self._streams) + 1)
        if stream_id != expected_id:
            raise _misfit(payload, f"creates stream {stream_id}, the next stream is {expected_id}")
        if name in self._names:
            raise _misfit(payload, f"stream name {name!r} is taken")
        target = _Stream(StreamInfo(StreamId(stream_id), name, DataClass(data_class)), 0)
        self._streams[stream_id] = target
        self._names.add(name)
        self._pass_time(timestamp)
        self._version += 1
        return Decision(
            _applied(target.info.stream_id, 0, False), payload, target, 0, 0, owner=self, version=-1
        )

    def _replay_appended(self, payload: bytes, timestamp: int, stream_id: int) -> Decision:
        first_offset, key, count = _decode_appended(payload, None)
        # event_fits: a stream of this tenant, at its next offset, with an id not remembered.
        target = self._streams.get(stream_id)
        if target is None:
            raise _misfit(payload, f"appends to stream {stream_id}, which does not exist")
        if first_offset != target.next_offset:
            raise _misfit(
                payload,
                f"appends at offset {first_offset} of stream {stream_id}, "
                f"whose next offset is {target.next_offset}",
            )
        if key is not None and key in self._committed:
            raise _misfit(payload, f"idempotency id {key.hex()} has already committed")
        target.next_offset = first_offset + count
        self._pass_time(timestamp)
        if key is not None:
            self._remember(key, target.info.stream_id, first_offset, timestamp)
        self._version += 1
        return Decision(
            _applied(target.info.stream_id, first_offset, False),
            payload,
            target,
            first_offset,
            count,
            owner=self,
            version=-1,
        )


def decode_events(payload: bytes) -> tuple[StreamId, Offset, tuple[bytes, ...]]:
    """The stream, first offset and event bodies an EventsAppended payload records.

    `payload` is what `Decision.payload` (or an `AppendRecord`) carried; the shell
    reads events back with this.

    :raises CorruptionError: `payload` is not an encoded EventsAppended event.
    """
    kind, _, stream_id = _decode_prefix(payload)
    if kind != _TYPE_EVENTS_APPENDED:
        raise _corrupt(payload, f"event type {kind}, expected {_TYPE_EVENTS_APPENDED}")
    bodies: list[bytes] = []
    first_offset, _, count = _decode_appended(payload, bodies)
    assert len(bodies) == count
    return StreamId(stream_id), Offset(first_offset), tuple(bodies)


def _decode_prefix(payload: bytes) -> tuple[int, int, int]:
    """(type, timestamp, stream) of an encoded event; the type is 1 or 2."""
    if not isinstance(payload, bytes):
        raise InvalidArgument("payload", payload, "must be bytes")
    if payload and payload[0] != _EVENT_FORMAT_VERSION:
        raise _corrupt(payload, f"event format version {payload[0]}, must be 1")
    if len(payload) < _PREFIX.size:
        raise _corrupt(payload, f"ends before byte {_PREFIX.size}")
    _, kind, timestamp, stream_id = _PREFIX.unpack_from(payload)
    if kind != _TYPE_STREAM_CREATED and kind != _TYPE_EVENTS_APPENDED:
        raise _corrupt(payload, f"event type {kind}, must be 1 or 2")
    return kind, timestamp, stream_id


def _decode_appended(payload: bytes, bodies: list[bytes] | None) -> tuple[int, bytes | None, int]:
    """(first offset, idempotency id, count) of an EventsAppended payload.

    Appends each event body to `bodies` unless None (replay needs only the count).
    """
    position = _PREFIX.size
    first_offset = _take_number(payload, position, _U64)
    flags = _take_number(payload, position + 8, _U8)
    position += 9
    if flags & ~_FLAG_IDEMPOTENCY_ID:
        raise _corrupt(payload, f"event flags {flags:#04x} have unknown bits set")
    key: bytes | None = None
    if flags & _FLAG_IDEMPOTENCY_ID:
        if position + IDEMPOTENCY_ID_BYTES > len(payload):
            raise _corrupt(payload, f"ends before byte {position + IDEMPOTENCY_ID_BYTES}")
        key = payload[position : position + IDEMPOTENCY_ID_BYTES]
        position += IDEMPOTENCY_ID_BYTES
    count = _take_number(payload, position, _U32)
    position += 4
    end = len(payload)
    unpack_length = _U32.unpack_from
    for _ in range(count):
        if position + 4 > end:
            raise _corrupt(payload, f"ends before byte {position + 4}")
        start = position + 4
        position = start + unpack_length(payload, position)[0]
        if position > end:
            raise _corrupt(payload, f"ends before byte {position}")
        if bodies is not None:
            bodies.append(payload[start:position])
    if position != end:
        raise _corrupt(payload, f"has {end - position} bytes left over")
    return first_offset, key, count


def _take_number(payload: bytes, position: int, field: struct.Struct) -> int:
    if position + field.size > len(payload):
        raise _corrupt(payload, f"ends before byte {position + field.size}")
    number: int = field.unpack_from(payload, position)[0]
    return number


def _corrupt(payload: bytes, problem: str) -> CorruptionError:
    return CorruptionError(f"kernel event {_shown(payload)} does not decode: {problem}")


def _misfit(payload: bytes, problem: str) -> CorruptionError:
    return CorruptionError(
        f"kernel event {_shown(payload)} does not follow from the events before it: {problem}"
    )


def _shown(payload: bytes) -> str:
    head = payload[:32].hex()
    return f"({len(payload)} bytes: {head}{'...' if len(payload) > 32 else ''})"
