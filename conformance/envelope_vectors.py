"""Vectors of the at-rest format (machine `envelope`): sealed records, key rings, key files.

Every byte here is defined by `verity_spec.envelope` (docs/formats.md §5.2,
§5.3, §5.9 and the sealed pages of §6). The vectors use fixed test keys,
spelled out in hex in each step, so they pin the exact stored bytes; each
step is checked both ways where it can be: the implementation, given the
same keys, writes the bytes the spec writes, and reads back (or refuses)
what the spec wrote.

Steps (byte strings are lowercase hex; `expect` is `{"ok": {...}}` or
`{"error": KIND}`, KIND one of `corruption`, `wrong_key`, `exposed`,
`dek_ids_exhausted`):

    wrap_kek        master_key, kek -> {"wrapped_kek"}
                    the master key file's wrapping of a tenant KEK (RFC 3394)
    unwrap_kek      master_key, wrapped_kek -> {"kek"} | wrong_key
    create_keyring  tenant, master_key, random_keys, calls -> {"dek_ids", "file"}
                    a new tenant's key ring (KEK = random_keys[0]), then each call in
                    order: "session_key" (this session's DEK, made from the next random
                    key when the session has none), "new_session_key" (a fresh DEK
                    whatever the session has), "page_key" (a fresh store page key);
                    "dek_ids" are the ids the session calls returned, "file" the
                    bytes of keyring.json at the end (UTF-8 text)
    load_keyring    tenant, master_key, file -> {} | corruption | wrong_key
    store_records   tenant, master_key, file, random_keys, records -> {"stored", "file"}
                    one session of a tenant whose key ring is `file`: each record's
                    command (a stream creation or an append, with its timestamp) is
                    decided by the kernel and stored at its `log_offset`; the session's
                    DEK is made from random_keys on its first seal. "stored" is each
                    record's stored payload, "file" the key ring after the session
    open_record     tenant, master_key, file, log_offset, stored -> {"plain"} | error
                    what a reader of the tenant's log gets from that stored payload
    seal_page       page_key, page_number, nonce, page -> {"sealed"}
    open_page       page_key, page_number, sealed -> {"page"} | corruption
    load_key_file   file ("master.key" | "signing.key"), bytes, mode, probe
                    -> {"wrapped_probe"} (master: the probe key wrapped by it)
                     | {"public_key"} (signing: the seed's Ed25519 public key) | error

and the end-to-end steps, on one database folder:

    write_database  sessions -> {"results"}
                    each session opens the database (`verity.open`), runs its actions
                    ({"tenant", "do": "create_stream", "name", "data_class"},
                    {"tenant", "do": "append", "stream": NAME, "events", "idempotency_id"},
                    {"tenant", "do": "execute", "sql"}) and closes it; "results" holds
                    each action's stream id, first stream offset, or null (execute)
    read_with_spec  -> {"tenants": {ID: {"dek_ids", "keyring_canonical", "records"}}}
                    reads the folder with nothing but the spec and the formats:
                    master.key, each tenant's keyring.json (decoded, checked to be in
                    canonical bytes, every key unwrapped), every record of its log
                    segments (frames of docs/formats.md §4.1, chained), and for each
                    DATA record whether it is sealed, under which DEK id, and what its
                    plain form says
    scan_files      absent, present -> {"found_absent": [], "missing_present": []}
                    a byte search over every file: no `absent` text (UTF-8) anywhere,
                    every `present` one somewhere
    scan_keys       -> {"raw_keys_found": []}
                    no tenant's KEK, DEK or page key appears unwrapped in any file

The implementation side drives the narrowest real code path: the master
key file provider (`verity.crypto.FileMasterKeyProvider`), the key ring
(`verity._keyring.Keyring`), the tenant's own sealing and reading
(`TenantHandle._stored_payload`, `_plain_payload`) on a handle that holds
only a tenant id, a key ring and a folder, the store's `PageKey`, the key
file loaders, and `verity.open` for the end-to-end steps. Where the
implementation draws a fresh key (`os.urandom(32)`), the vector's
`random_keys` are handed out instead, in order.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import verity_spec.envelope as spec
import verity_spec.kernel as spec_kernel
import verity_spec.records as spec_records
from verity_conformance import _runner
from verity_conformance._runner import FORMAT, VectorResult
from verity_spec.errors import (
    CorruptionError,
    DamagedFileError,
    ExposedKeyFileError,
    WrongKeyError,
)
from verity_spec.signing import public_key_of

__all__ = [
    "MACHINE",
    "SpecEnvelope",
    "build_vectors",
    "generate",
    "perform_spec",
    "read_with_spec",
    "run_all",
    "run_vector",
    "scan_files",
    "scan_keys",
]

MACHINE = "envelope"
NOW_START = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
U64_MAX = 2**64 - 1

Step = dict[str, Any]
Observation = dict[str, Any]


def test_key(label: str) -> bytes:
    """A fixed 32-byte test key: SHA-256 of its label (the vectors spell out the bytes)."""
    return hashlib.sha256(b"verity envelope test key: " + label.encode()).digest()


MASTER_KEY = test_key("master")
OTHER_MASTER_KEY = test_key("another master")
KEK = test_key("kek")
OTHER_KEK = test_key("another kek")
PAGE_KEY = test_key("page key")


def dek(number: int) -> bytes:
    return test_key(f"dek {number}")


def ok(**fields: Any) -> Observation:
    return {"ok": fields}


def error(kind: str) -> Observation:
    return {"error": kind}


# ---------------------------------------------------------------------------
# The spec side: what each step must observe.


def _spec_error(failure: Exception) -> Observation:
    if isinstance(failure, WrongKeyError):
        return error("wrong_key")
    if isinstance(failure, ExposedKeyFileError):
        return error("exposed")
    if isinstance(failure, CorruptionError | DamagedFileError):
        return error("corruption")
    raise failure


class SpecEnvelope:
    """Computes every step's observation with `verity_spec` alone."""

    def __init__(self) -> None:
        self._expected_read: Observation | None = None

    def perform(self, step: Step) -> Observation:
        try:
            return self._perform(step)
        except (WrongKeyError, ExposedKeyFileError, CorruptionError, DamagedFileError) as failure:
            return _spec_error(failure)

    def _perform(self, step: Step) -> Observation:
        op = step["op"]
        if op == "wrap_kek":
            wrapped = spec.wrap_key(_hex(step["master_key"]), _hex(step["kek"]))
            return ok(wrapped_kek=wrapped.hex())
        if op == "unwrap_kek":
            kek = spec.unwrap_key(_hex(step["master_key"]), _hex(step["wrapped_kek"]), "the KEK")
            return ok(kek=kek.hex())
        if op == "create_keyring":
            return self._create_keyring(step)
        if op == "load_keyring":
            ring = spec.decode_keyring(step["file"].encode(), step["tenant"])
            spec.open_kek(ring, _hex(step["master_key"]))
            return ok()
        if op == "store_records":
            return self._store_records(step)
        if op == "open_record":
            ring = spec.decode_keyring(step["file"].encode(), step["tenant"])
            kek = spec.open_kek(ring, _hex(step["master_key"]))
            plain = spec.read_payload(
                step["tenant"], step["log_offset"], ring, kek, _hex(step["stored"])
            )
            return ok(plain=plain.hex())
        if op == "seal_page":
            sealed = spec.seal_page(
                _hex(step["page_key"]), step["page_number"], _hex(step["nonce"]), _hex(step["page"])
            )
            return ok(sealed=sealed.hex())
        if op == "open_page":
            page = spec.open_page(_hex(step["page_key"]), step["page_number"], _hex(step["sealed"]))
            return ok(page=page.hex())
        if op == "load_key_file":
            key = spec.decode_key_file(step["file"], _hex(step["bytes"]), step["mode"])
            if step["file"] == spec.MASTER_KEY_FILE:
                return ok(wrapped_probe=spec.wrap_key(key, _hex(step["probe"])).hex())
            return ok(public_key=public_key_of(key).hex())
        if op == "write_database":
            results, expected_read = _expected_database(step["sessions"])
            self._expected_read = expected_read
            return ok(results=results)
        if op == "read_with_spec":
            assert self._expected_read is not None, "read_with_spec before write_database"
            return self._expected_read
        if op == "scan_files":
            return ok(found_absent=[], missing_present=[])
        if op == "scan_keys":
            return ok(raw_keys_found=[])
        raise ValueError(f"unknown op {op!r}")

    def _create_keyring(self, step: Step) -> Observation:
        master_key = _hex(step["master_key"])
        random_keys = [_hex(key) for key in step["random_keys"]]
        kek = random_keys.pop(0)
        ring = spec.new_keyring(step["tenant"], master_key, kek)
        session: int | None = None
        dek_ids = []
        for call in step["calls"]:
            if call == "page_key":
                ring = spec.with_page_key(ring, kek, random_keys.pop(0))
                continue
            if call == "new_session_key" or session is None:
                ring, session = spec.add_dek(ring, kek, random_keys.pop(0))
            dek_ids.append(session)
        assert not random_keys, "every random key of the vector is drawn"
        return ok(dek_ids=dek_ids, file=spec.encode_keyring(ring).decode())

    def _store_records(self, step: Step) -> Observation:
        tenant = step["tenant"]
        ring = spec.decode_keyring(step["file"].encode(), tenant)
        kek = spec.open_kek(ring, _hex(step["master_key"]))
        random_keys = [_hex(key) for key in step["random_keys"]]
        state = spec_kernel.initial_state(tenant)
        session: tuple[int, bytes] | None = None
        stored = []
        for record in step["records"]:
            plain, data_class, state = _spec_event(state, tenant, record["command"])
            if spec.must_seal(plain, data_class) and session is None:
                if spec.next_dek_id(ring) > spec.DEK_ID_MAX:
                    return error("dek_ids_exhausted")
                session_dek = random_keys.pop(0)
                ring, dek_id = spec.add_dek(ring, kek, session_dek)
                session = (dek_id, session_dek)
            dek_id, session_dek = session if session is not None else (0, bytes(32))
            stored.append(
                spec.stored_payload(
                    tenant, record["log_offset"], plain, data_class, dek_id, session_dek
                ).hex()
            )
        return ok(stored=stored, file=spec.encode_keyring(ring).decode())


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


def _spec_event(
    state: spec_kernel.KernelState, tenant: int, command: dict[str, Any]
) -> tuple[bytes, int, spec_kernel.KernelState]:
    """The plain kernel event `command` records, its stream's data class, and the next state."""
    if "create_stream" in command:
        create = command["create_stream"]
        spec_command: spec_kernel.Command = spec_kernel.CreateStream(
            tenant, create["name"], create["data_class"], create["timestamp"]
        )
    else:
        append = command["append"]
        stream = next(s for s in state.streams if s.name == append["stream"])
        spec_command = spec_kernel.AppendBatch(
            tenant,
            stream.stream,
            tuple(_hex(event) for event in append["events"]),
            None if append["idempotency_id"] is None else _hex(append["idempotency_id"]),
            None,
            append["timestamp"],
        )
    state, effects = spec_kernel.apply(state, spec_command)
    [payload] = [e.payload for e in effects if isinstance(e, spec_kernel.AppendRecord)]
    event = spec_kernel.decode_event(payload)
    [stream_info] = [s for s in state.streams if s.stream == event.stream]
    return payload, stream_info.data_class, state


# ---------------------------------------------------------------------------
# The end-to-end expectation: what reading the database with the spec must find.


def _describe_event(event: spec_kernel.Event) -> dict[str, Any]:
    """A kernel event as the end-to-end steps report it (its timestamp left out)."""
    if isinstance(event, spec_kernel.StreamCreated):
        return {
            "created": {"stream": event.stream, "name": event.name, "data_class": event.data_class}
        }
    return {
        "appended": {
            "stream": event.stream,
            "first_offset": event.first_offset,
            "events": [body.hex() for body in event.events],
            "idempotency_id": None if event.idempotency_id is None else event.idempotency_id.hex(),
        }
    }


def _expected_database(
    sessions: list[list[dict[str, Any]]],
) -> tuple[list[Any], Observation]:
    """The results of the actions and what `read_with_spec` must then find, by the spec."""
    states: dict[int, spec_kernel.KernelState] = {}
    dek_ids: dict[int, list[int]] = {}
    records: dict[int, list[dict[str, Any]]] = {}
    results: list[Any] = []
    now = NOW_START
    for actions in sessions:
        session_dek: dict[int, int] = {}
        for action in actions:
            tenant = action["tenant"]
            state = states.setdefault(tenant, spec_kernel.initial_state(tenant))
            dek_ids.setdefault(tenant, [])
            tenant_records = records.setdefault(tenant, [])
            now += 1_000_000
            if action["do"] == "execute":
                results.append(None)
                plain_form: dict[str, Any] = {"statement": action["sql"]}
                sealed = True
            else:
                if action["do"] == "create_stream":
                    command: spec_kernel.Command = spec_kernel.CreateStream(
                        tenant, action["name"], action["data_class"], now
                    )
                else:
                    stream = next(s for s in state.streams if s.name == action["stream"])
                    identifier = action["idempotency_id"]
                    command = spec_kernel.AppendBatch(
                        tenant,
                        stream.stream,
                        tuple(_hex(event) for event in action["events"]),
                        None if identifier is None else _hex(identifier),
                        None,
                        now,
                    )
                state, effects = spec_kernel.apply(state, command)
                states[tenant] = state
                [reply] = [e for e in effects if isinstance(e, spec_kernel.Reply)]
                assert isinstance(reply.outcome, spec_kernel.Applied), reply
                results.append(
                    reply.outcome.stream
                    if action["do"] == "create_stream"
                    else reply.outcome.offset
                )
                payloads = [e.payload for e in effects if isinstance(e, spec_kernel.AppendRecord)]
                if not payloads:
                    continue  # a duplicate (idempotency id already committed): no record
                event = spec_kernel.decode_event(payloads[0])
                [info] = [s for s in state.streams if s.stream == event.stream]
                plain_form = _describe_event(event)
                sealed = spec.must_seal(payloads[0], info.data_class)
            dek_id = None
            if sealed:
                if tenant not in session_dek:
                    session_dek[tenant] = max(dek_ids[tenant], default=0) + 1
                    dek_ids[tenant].append(session_dek[tenant])
                dek_id = session_dek[tenant]
            tenant_records.append({"sealed": sealed, "dek_id": dek_id, "plain": plain_form})
    tenants = {
        str(tenant): {
            "dek_ids": dek_ids[tenant],
            "keyring_canonical": True,
            "records": records[tenant],
        }
        for tenant in sorted(records)
    }
    return results, ok(tenants=tenants)


# ---------------------------------------------------------------------------
# Reading a database folder with the spec alone (end-to-end checks).

_FRAME = struct.Struct(">II")
_HEADER = struct.Struct(">Q32sQIB")


def _log_records(log_dir: Path) -> list[spec_records.Record]:
    """Every record of the segments in `log_dir` (docs/formats.md §4.1), checked to chain."""
    records: list[spec_records.Record] = []
    for segment in sorted(log_dir.glob("*.vlog")):
        data = segment.read_bytes()
        at = 0
        while at < len(data):
            length, crc = _FRAME.unpack_from(data, at)
            body = data[at + _FRAME.size : at + _FRAME.size + length]
            if len(body) != length or zlib.crc32(body) != crc:
                raise ValueError(f"{segment.name}: frame at byte {at} is torn or fails its CRC")
            offset, prev_hash, timestamp, payload_len, kind = _HEADER.unpack_from(body)
            if _HEADER.size + payload_len != length:
                raise ValueError(f"{segment.name}: frame at byte {at} has a bad payload length")
            records.append(
                spec_records.Record(offset, prev_hash, timestamp, kind, body[_HEADER.size :])
            )
            at += _FRAME.size + length
    for number, record in enumerate(records):
        previous = spec_records.ZERO_HASH if number == 0 else records[number - 1]
        expected = previous if isinstance(previous, bytes) else spec_records.chain_hash(previous)
        if record.offset != number or record.prev_hash != expected:
            raise ValueError(f"{log_dir}: record {number} does not continue the chain")
    return records


def _tenant_folders(folder: Path) -> dict[int, Path]:
    return {
        int(path.name.removeprefix("tenant-")): path
        for path in folder.glob("shard-*/tenant-*")
        if path.is_dir()
    }


def _master_key(folder: Path) -> bytes:
    path = folder / spec.MASTER_KEY_FILE
    mode = path.stat().st_mode & 0o7777
    return spec.decode_key_file(spec.MASTER_KEY_FILE, path.read_bytes(), mode)


def _tenant_keys(folder: Path, tenant: int, master_key: bytes) -> tuple[bytes, spec.KeyRing, bytes]:
    data = (folder / spec.KEYRING_FILE).read_bytes()
    ring = spec.decode_keyring(data, tenant)
    return data, ring, spec.open_kek(ring, master_key)


def _describe_plain(plain: bytes) -> dict[str, Any]:
    if plain[:1] == bytes([spec.PLAIN_EVENT]):
        return _describe_event(spec_kernel.decode_event(plain))
    if plain[:1] == bytes([spec.PLAIN_STATEMENT]):
        return {"statement": _statement_sql(plain[1:])}
    return {"unknown": plain.hex()}


def _statement_sql(event: bytes) -> str:
    """The SQL text of an engine event (docs/formats.md §5.3): its header, field by field."""
    if event[:3] != b"VQL":
        return f"<no VQL event: {event[:8].hex()}>"
    at = 5  # magic (3) ‖ format (1) ‖ kind (1)
    (table_len,) = struct.unpack_from(">H", event, at)
    at += 2 + table_len + 8  # table ‖ rows_affected (8)
    (sql_len,) = struct.unpack_from(">I", event, at)
    return event[at + 4 : at + 4 + sql_len].decode("utf-8")


def read_with_spec(folder: Path) -> Observation:
    """What the spec reads from the database in `folder` (the `read_with_spec` step)."""
    master_key = _master_key(folder)
    tenants: dict[str, Any] = {}
    for tenant, tenant_folder in sorted(_tenant_folders(folder).items()):
        data, ring, kek = _tenant_keys(tenant_folder, tenant, master_key)
        for dek_id, _ in ring.deks:
            spec.dek_of(ring, kek, dek_id, 0)  # every DEK unwraps
        spec.open_page_key(ring, kek)
        records = []
        for record in _log_records(tenant_folder / "log"):
            if record.kind != spec_records.KIND_DATA:
                continue
            plain = spec.read_payload(tenant, record.offset, ring, kek, record.payload)
            sealed = record.payload[:1] == bytes([spec.SEALED])
            records.append(
                {
                    "sealed": sealed,
                    "dek_id": spec.sealed_dek_id(record.payload) if sealed else None,
                    "plain": _describe_plain(plain),
                }
            )
        tenants[str(tenant)] = {
            "dek_ids": [dek_id for dek_id, _ in ring.deks],
            "keyring_canonical": spec.encode_keyring(ring) == data,
            "records": records,
        }
    return ok(tenants=tenants)


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def scan_files(folder: Path, absent: list[str], present: list[str]) -> Observation:
    """A byte search of every file in `folder` (the `scan_files` step)."""
    contents = {str(path.relative_to(folder)): path.read_bytes() for path in _files(folder)}
    found_absent = [
        {"text": text, "file": name}
        for text in absent
        for name, data in contents.items()
        if text.encode("utf-8") in data
    ]
    missing_present = [
        text for text in present if not any(text.encode("utf-8") in d for d in contents.values())
    ]
    return ok(found_absent=found_absent, missing_present=missing_present)


def scan_keys(folder: Path) -> Observation:
    """Search every file for every tenant's unwrapped KEK, DEKs and page key."""
    master_key = _master_key(folder)
    raw: list[tuple[str, bytes]] = []
    for tenant, tenant_folder in sorted(_tenant_folders(folder).items()):
        _, ring, kek = _tenant_keys(tenant_folder, tenant, master_key)
        raw.append((f"tenant {tenant} KEK", kek))
        for dek_id, _ in ring.deks:
            raw.append((f"tenant {tenant} DEK {dek_id}", spec.dek_of(ring, kek, dek_id, 0)))
        page_key = spec.open_page_key(ring, kek)
        if page_key is not None:
            raw.append((f"tenant {tenant} page key", page_key))
    found = []
    for path in _files(folder):
        data = path.read_bytes()
        found += [
            {"key": name, "file": str(path.relative_to(folder))} for name, key in raw if key in data
        ]
    return ok(raw_keys_found=found)


# ---------------------------------------------------------------------------
# The implementation side.


@contextlib.contextmanager
def fixed_randomness(keys: list[bytes]) -> Iterator[None]:
    """Hand out `keys`, in order, where the implementation draws a 32-byte key from os.urandom.

    Other sizes (temporary file names) stay random. Drawing more keys than
    given is a failure of the step.
    """
    queue = list(keys)
    real = os.urandom

    def urandom(size: int) -> bytes:
        if size != spec.KEY_BYTES:
            return real(size)
        if not queue:
            raise AssertionError("the implementation drew more keys than the vector gives")
        return queue.pop(0)

    setattr(os, "urandom", urandom)  # noqa: B010 (a module attribute replaced for the step)
    try:
        yield
    finally:
        setattr(os, "urandom", real)  # noqa: B010


class ImplementationEnvelope:
    """Performs the steps on the installed `verity`, in a scratch folder of its own."""

    def __init__(self, scratch: Path) -> None:
        self._scratch = scratch
        self._database = scratch / "database"
        self._files = 0

    def _fresh(self, name: str) -> Path:
        self._files += 1
        folder = self._scratch / f"{self._files:04d}"
        folder.mkdir()
        return folder / name

    def perform(self, step: Step) -> Observation:
        from verity.errors import CorruptionError as ImplementationCorruption
        from verity.errors import CryptoError, KeyError_

        op = step["op"]
        try:
            return self._perform(step)
        except KeyError_:
            return error("wrong_key")
        except ImplementationCorruption:
            return error("corruption")
        except CryptoError:
            # The store treats a page that fails to open as damage; a key file refused
            # for its mode is the one other CryptoError these steps can meet.
            return error("corruption" if op == "open_page" else "exposed")

    def _provider(self, master_key: str) -> Any:
        from verity.crypto import FileMasterKeyProvider

        return FileMasterKeyProvider(bytearray(_hex(master_key)), self._fresh("master.key"))

    def _keyring(self, step: Step) -> tuple[Any, Path]:
        """The key ring `step["file"]` holds, loaded by `verity._keyring.Keyring`, and its path."""
        from verity._keyring import Keyring
        from verity.types import TenantId

        path = self._fresh(spec.KEYRING_FILE)
        path.write_bytes(step["file"].encode())
        provider = self._provider(step["master_key"])
        return Keyring(path, provider, TenantId(step["tenant"])), path

    def _shell(self, tenant: int, keyring: Any) -> Any:
        """A tenant handle holding only what its sealing and reading use."""
        from verity._tenant import TenantHandle
        from verity.types import TenantId

        handle = object.__new__(TenantHandle)
        handle._tenant = TenantId(tenant)
        handle._keyring = keyring
        handle._keyless = None
        handle._folder = self._scratch
        return handle

    def _perform(self, step: Step) -> Observation:
        op = step["op"]
        if op == "wrap_kek":
            wrapped = self._provider(step["master_key"]).wrap_key(_hex(step["kek"]))
            return ok(wrapped_kek=bytes(wrapped).hex())
        if op == "unwrap_kek":
            kek = self._provider(step["master_key"]).unwrap_key(_hex(step["wrapped_kek"]))
            return ok(kek=bytes(kek).hex())
        if op == "create_keyring":
            return self._create_keyring(step)
        if op == "load_keyring":
            self._keyring(step)[0].close()
            return ok()
        if op == "store_records":
            return self._store_records(step)
        if op == "open_record":
            keyring, _ = self._keyring(step)
            try:
                plain = self._shell(step["tenant"], keyring)._plain_payload(
                    _hex(step["stored"]), step["log_offset"]
                )
            finally:
                keyring.close()
            return ok(plain=bytes(plain).hex())
        if op in ("seal_page", "open_page"):
            return self._page(step)
        if op == "load_key_file":
            return self._load_key_file(step)
        if op == "write_database":
            return ok(results=self._write_database(step["sessions"]))
        if op == "read_with_spec":
            return read_with_spec(self._database)
        if op == "scan_files":
            return scan_files(self._database, step["absent"], step["present"])
        if op == "scan_keys":
            return scan_keys(self._database)
        raise ValueError(f"unknown op {op!r}")

    def _create_keyring(self, step: Step) -> Observation:
        from verity._keyring import Keyring
        from verity.types import TenantId

        path = self._fresh(spec.KEYRING_FILE)
        provider = self._provider(step["master_key"])
        dek_ids = []
        with fixed_randomness([_hex(key) for key in step["random_keys"]]):
            keyring = Keyring.create(path, provider, TenantId(step["tenant"]))
            try:
                for call in step["calls"]:
                    if call == "page_key":
                        keyring.page_key(fresh=True)
                    elif call == "session_key":
                        dek_ids.append(keyring.session_key()[0])
                    else:
                        dek_ids.append(keyring.new_session_key()[0])
            finally:
                keyring.close()
        return ok(dek_ids=dek_ids, file=path.read_bytes().decode())

    def _store_records(self, step: Step) -> Observation:
        from verity.errors import VerityError
        from verity.kernel import AppendBatch, Applied, CreateStream, Kernel
        from verity.types import DataClass, TenantId

        tenant = step["tenant"]
        keyring, path = self._keyring(step)
        handle = self._shell(tenant, keyring)
        kernel = Kernel(TenantId(tenant))
        streams: dict[str, int] = {}
        stored = []
        try:
            with fixed_randomness([_hex(key) for key in step["random_keys"]]):
                for record in step["records"]:
                    command = record["command"]
                    if "create_stream" in command:
                        create = command["create_stream"]
                        decision = kernel.decide(
                            CreateStream(
                                TenantId(tenant),
                                create["name"],
                                DataClass(create["data_class"]),
                                create["timestamp"],
                            )
                        )
                    else:
                        append = command["append"]
                        identifier = append["idempotency_id"]
                        decision = kernel.decide(
                            AppendBatch(
                                TenantId(tenant),
                                streams[append["stream"]],
                                tuple(_hex(event) for event in append["events"]),
                                None if identifier is None else _hex(identifier),
                                None,
                                append["timestamp"],
                            )
                        )
                    assert isinstance(decision.outcome, Applied), decision
                    if "create_stream" in command:
                        streams[command["create_stream"]["name"]] = decision.stream
                    try:
                        payload = handle._stored_payload(decision, record["log_offset"])
                    except VerityError as failure:
                        if "every DEK id" in str(failure):
                            return error("dek_ids_exhausted")
                        raise
                    stored.append(bytes(payload).hex())
                    kernel.commit(decision)
        finally:
            keyring.close()
        return ok(stored=stored, file=path.read_bytes().decode())

    def _page(self, step: Step) -> Observation:
        from verity.crypto import PageKey

        page_key = _hex(step["page_key"])
        if step["op"] == "seal_page":
            page_nonce = _hex(step["nonce"])
            key = PageKey(page_key, random_bytes=lambda size: page_nonce[:size])
            with contextlib.closing(key):
                sealed = key.seal(step["page_number"], _hex(step["page"]))
            return ok(sealed=sealed.hex())
        with contextlib.closing(PageKey(page_key)) as key:
            page = key.open(step["page_number"], _hex(step["sealed"]))
        return ok(page=page.hex())

    def _load_key_file(self, step: Step) -> Observation:
        from verity.crypto import FileMasterKeyProvider, SigningKey

        path = self._fresh(step["file"])
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _hex(step["bytes"]))
            os.fchmod(fd, step["mode"])
        finally:
            os.close(fd)
        if step["file"] == spec.MASTER_KEY_FILE:
            with FileMasterKeyProvider.load(path) as provider:
                wrapped = provider.wrap_key(_hex(step["probe"]))
            return ok(wrapped_probe=bytes(wrapped).hex())
        with SigningKey.load(path) as signing_key:
            return ok(public_key=signing_key.public_key_bytes().hex())

    def _write_database(self, sessions: list[list[dict[str, Any]]]) -> list[Any]:
        import verity
        from verity.types import DataClass, IdempotencyId, StreamId, TenantId

        now = [NOW_START]

        def clock() -> int:
            now[0] += 1_000
            return now[0]

        results: list[Any] = []
        streams: dict[tuple[int, str], int] = {}
        for actions in sessions:
            with verity.open(self._database, create=True, clock=clock) as database:
                for action in actions:
                    tenant = database.tenant(TenantId(action["tenant"]), create=True)
                    if action["do"] == "create_stream":
                        stream = tenant.create_stream(
                            action["name"], DataClass(action["data_class"])
                        )
                        streams[action["tenant"], action["name"]] = int(stream)
                        results.append(int(stream))
                    elif action["do"] == "append":
                        identifier = action["idempotency_id"]
                        offset = tenant.append(
                            StreamId(streams[action["tenant"], action["stream"]]),
                            [_hex(event) for event in action["events"]],
                            idempotency_id=None
                            if identifier is None
                            else IdempotencyId(_hex(identifier)),
                        )
                        results.append(int(offset))
                    else:
                        tenant.execute(action["sql"])
                        results.append(None)
        return results


# ---------------------------------------------------------------------------
# Scenarios.


def _ring_file(
    tenant: int,
    deks: dict[int, tuple[bytes, bytes]],
    page_key: bytes | None = None,
    master_key: bytes = MASTER_KEY,
    kek: bytes = KEK,
) -> str:
    """keyring.json (spec-encoded) of `tenant`: deks maps an id to (wrapping KEK, DEK)."""
    ring = spec.KeyRing(
        tenant,
        spec.wrap_key(master_key, kek),
        tuple(
            (dek_id, spec.wrap_key(wrapper, key)) for dek_id, (wrapper, key) in sorted(deks.items())
        ),
        None if page_key is None else spec.wrap_key(kek, page_key),
    )
    return spec.encode_keyring(ring).decode()


def _key_wrapping_steps() -> list[Step]:
    rfc3394_kek = bytes(range(32))
    rfc3394_key = bytes.fromhex("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f")
    wrapped = spec.wrap_key(MASTER_KEY, KEK)
    tampered = bytearray(wrapped)
    tampered[17] ^= 0x01
    return [
        # RFC 3394 §4.6: 256 bits of key data with a 256-bit KEK.
        {"op": "wrap_kek", "master_key": rfc3394_kek.hex(), "kek": rfc3394_key.hex()},
        {"op": "wrap_kek", "master_key": MASTER_KEY.hex(), "kek": KEK.hex()},
        {"op": "unwrap_kek", "master_key": MASTER_KEY.hex(), "wrapped_kek": wrapped.hex()},
        {"op": "unwrap_kek", "master_key": MASTER_KEY.hex(), "wrapped_kek": bytes(tampered).hex()},
        {"op": "unwrap_kek", "master_key": OTHER_MASTER_KEY.hex(), "wrapped_kek": wrapped.hex()},
        {"op": "unwrap_kek", "master_key": MASTER_KEY.hex(), "wrapped_kek": wrapped[:32].hex()},
    ]


def _keyring_steps() -> list[Step]:
    def create(tenant: int, calls: list[str], draws: int) -> Step:
        return {
            "op": "create_keyring",
            "tenant": tenant,
            "master_key": MASTER_KEY.hex(),
            "random_keys": [KEK.hex()] + [dek(n).hex() for n in range(1, draws + 1)],
            "calls": calls,
        }

    good = _ring_file(7, {1: (KEK, dek(1)), 2: (KEK, dek(2))}, PAGE_KEY)
    loads = [
        ("a key ring as the spec writes it", 7, good, MASTER_KEY),
        ("under another master key", 7, good, OTHER_MASTER_KEY),
        ("of another tenant", 8, good, MASTER_KEY),
        ("with a member this reader does not know", 7, good[:-1] + ', "zz": [1]}', MASTER_KEY),
        (
            "in uppercase hex",
            7,
            good.upper()
            .replace('"DEKS"', '"deks"')
            .replace('"FORMAT"', '"format"')
            .replace('"PAGE_KEY"', '"page_key"')
            .replace('"TENANT"', '"tenant"')
            .replace('"WRAPPED_KEK"', '"wrapped_kek"'),
            MASTER_KEY,
        ),
        ("of format 2", 7, good.replace('"format": 1', '"format": 2'), MASTER_KEY),
        ("cut short", 7, good[:-20], MASTER_KEY),
        ("without its wrapped KEK", 7, good.replace('"wrapped_kek"', '"wrapped_kex"'), MASTER_KEY),
        ("without its DEKs", 7, good.replace('"deks"', '"dekz"'), MASTER_KEY),
        ("with a DEK that is not hex", 7, good.replace('"1": "', '"1": "zz'), MASTER_KEY),
        ("of no DEK and no page key", 7, _ring_file(7, {}), MASTER_KEY),
    ]
    return [
        create(7, ["session_key", "session_key", "page_key", "new_session_key", "session_key"], 3),
        create(7, ["session_key", "new_session_key", "new_session_key"], 3),
        create(U64_MAX, ["page_key"], 1),
        create(0, [], 0),
        # Eleven sessions: the file lists DEK ids in the order of their strings ("10" < "2").
        create(9, ["session_key"] + ["new_session_key"] * 10, 11),
    ] + [
        {
            "op": "load_keyring",
            "why": why,
            "tenant": tenant,
            "master_key": master_key.hex(),
            "file": text,
        }
        for why, tenant, text, master_key in loads
    ]


def _store_steps() -> list[Step]:
    def create(name: str, data_class: int, timestamp: int) -> dict[str, Any]:
        return {"create_stream": {"name": name, "data_class": data_class, "timestamp": timestamp}}

    def append(
        stream: str, events: list[bytes], timestamp: int, idempotency_id: bytes | None = None
    ) -> dict[str, Any]:
        return {
            "append": {
                "stream": stream,
                "events": [event.hex() for event in events],
                "idempotency_id": None if idempotency_id is None else idempotency_id.hex(),
                "timestamp": timestamp,
            }
        }

    every_class = []
    offset = 1
    for data_class, name in enumerate(("public", "internal", "confidential", "pii", "phi")):
        every_class.append(
            {"log_offset": offset, "command": create(name, data_class, NOW_START + offset)}
        )
        every_class.append(
            {
                "log_offset": offset + 1,
                "command": append(
                    name,
                    [f"{name} event {n}".encode() for n in range(data_class + 1)],
                    NOW_START + offset + 1,
                ),
            }
        )
        offset += 2
    every_class.append(
        {
            "log_offset": 40,
            "command": append("phi", [b"second phi batch"], NOW_START + 40, bytes(range(16))),
        }
    )
    big_offsets = [
        {"log_offset": 2**63 + 1, "command": create("vitals", 4, NOW_START)},
        {
            "log_offset": U64_MAX - 1,
            "command": append("vitals", [b"\x00" * 3, b"", b"\xff" * 70], NOW_START + 1),
        },
        {"log_offset": U64_MAX, "command": append("vitals", [b"last"], NOW_START + 2)},
    ]

    def store(tenant: int, ring: str, records: list[dict[str, Any]], why: str) -> Step:
        return {
            "op": "store_records",
            "why": why,
            "tenant": tenant,
            "master_key": MASTER_KEY.hex(),
            "file": ring,
            "random_keys": [dek(100).hex()],
            "records": records,
        }

    return [
        store(7, _ring_file(7, {}, PAGE_KEY), every_class, "every data class: streams and events"),
        store(
            7,
            _ring_file(7, {1: (KEK, dek(1)), 2: (KEK, dek(2))}, PAGE_KEY),
            every_class[:4],
            "a ring holding DEKs 1 and 2: the session seals under DEK 3",
        ),
        store(
            U64_MAX,
            _ring_file(U64_MAX, {0x01020303: (KEK, dek(3))}),
            big_offsets,
            "the largest tenant id and log offsets; DEK id 0x01020304 (its byte order)",
        ),
        store(
            5,
            _ring_file(5, {spec.DEK_ID_MAX: (KEK, dek(4))}),
            [
                {"log_offset": 1, "command": create("open", 0, NOW_START)},
                {"log_offset": 2, "command": append("open", [b"plain"], NOW_START + 1)},
                {"log_offset": 3, "command": create("closed", 3, NOW_START + 2)},
                {"log_offset": 4, "command": append("closed", [b"sealed"], NOW_START + 3)},
            ],
            "every DEK id is used: nothing more can be sealed",
        ),
    ]


def _open_steps() -> list[Step]:
    tenant = 7
    ring = _ring_file(
        tenant,
        {1: (KEK, dek(1)), 2: (KEK, dek(2)), 3: (KEK, dek(1)), 9: (OTHER_KEK, dek(9))},
        PAGE_KEY,
    )
    state = spec_kernel.initial_state(tenant)
    created, _, state = _spec_event(
        state, tenant, {"create_stream": {"name": "phi", "data_class": 4, "timestamp": NOW_START}}
    )
    appended, _, state = _spec_event(
        state,
        tenant,
        {
            "append": {
                "stream": "phi",
                "events": [b"blood pressure 142/91".hex(), b"".hex()],
                "idempotency_id": None,
                "timestamp": NOW_START + 1,
            }
        },
    )
    statement = b"\x03VQL\x01\x04" + b"an engine event: the envelope does not look inside"
    sealed_event = spec.seal(tenant, 5, 1, dek(1), appended)
    sealed_statement = spec.seal(tenant, 6, 2, dek(2), statement)

    def changed(data: bytes, at: int, value: int) -> bytes:
        copy = bytearray(data)
        copy[at] = value
        return bytes(copy)

    cases: list[tuple[str, int, str, int, bytes]] = [
        ("a sealed kernel event", tenant, ring, 5, sealed_event),
        ("a sealed SQL statement", tenant, ring, 6, sealed_statement),
        ("a plain kernel event", tenant, ring, 1, created),
        (
            "a plain SQL statement (written before statements were sealed)",
            tenant,
            ring,
            6,
            statement,
        ),
        (
            "a sealed event read as another tenant's",
            8,
            ring.replace('"tenant": 7', '"tenant": 8'),
            5,
            sealed_event,
        ),
        ("a sealed event read at the next offset", tenant, ring, 6, sealed_event),
        ("a sealed event read at the offset before", tenant, ring, 4, sealed_event),
        (
            "its DEK id changed to another id of the same key",
            tenant,
            ring,
            5,
            changed(sealed_event, 4, 3),
        ),
        (
            "its DEK id changed to one the ring does not hold",
            tenant,
            ring,
            5,
            changed(sealed_event, 1, 1),
        ),
        ("a DEK the tenant's KEK did not wrap", tenant, ring, 5, changed(sealed_event, 4, 9)),
        (
            "a ciphertext byte flipped",
            tenant,
            ring,
            5,
            changed(sealed_event, 7, sealed_event[7] ^ 0x80),
        ),
        (
            "a tag byte flipped",
            tenant,
            ring,
            5,
            changed(sealed_event, len(sealed_event) - 1, sealed_event[-1] ^ 1),
        ),
        ("cut to 4 bytes, shorter than its header", tenant, ring, 5, sealed_event[:4]),
        ("cut to 20 bytes, shorter than its tag", tenant, ring, 5, sealed_event[:20]),
        (
            "4 bytes whose first 3 after the marker name a foreign DEK: the header check is first",
            tenant,
            ring,
            5,
            bytes.fromhex("02000009"),
        ),
        ("cut by one byte", tenant, ring, 5, sealed_event[:-1]),
        (
            "sealed with the nonce of the next offset",
            tenant,
            ring,
            5,
            bytes([spec.SEALED])
            + spec.u32(1)
            + spec._gcm_seal(dek(1), spec.nonce(6), appended, spec.associated_data(1, tenant, 5)),
        ),
        (
            "sealed without the tenant in its associated data",
            tenant,
            ring,
            5,
            bytes([spec.SEALED])
            + spec.u32(1)
            + spec._gcm_seal(
                dek(1), spec.nonce(5), appended, bytes([spec.SEALED]) + spec.u32(1) + spec.u64(5)
            ),
        ),
        (
            "the largest tenant id and offset",
            U64_MAX,
            _ring_file(U64_MAX, {2**32 - 1: (KEK, dek(2))}),
            U64_MAX,
            spec.seal(U64_MAX, U64_MAX, 2**32 - 1, dek(2), statement),
        ),
    ]
    return [
        {
            "op": "open_record",
            "why": why,
            "tenant": case_tenant,
            "master_key": MASTER_KEY.hex(),
            "file": file,
            "log_offset": log_offset,
            "stored": stored.hex(),
        }
        for why, case_tenant, file, log_offset, stored in cases
    ]


def _page_steps() -> list[Step]:
    pages = {
        0: bytes(spec.PAGE_BYTES),
        1: hashlib.sha256(b"page 1").digest() * (spec.PAGE_BYTES // 32),
        U64_MAX: bytes(range(256)) * (spec.PAGE_BYTES // 256),
    }
    steps: list[Step] = []
    sealed: dict[int, bytes] = {}
    for number, page in pages.items():
        page_nonce = hashlib.sha256(b"nonce %d" % number).digest()[: spec.PAGE_NONCE_BYTES]
        sealed[number] = spec.seal_page(PAGE_KEY, number, page_nonce, page)
        steps.append(
            {
                "op": "seal_page",
                "page_key": PAGE_KEY.hex(),
                "page_number": number,
                "nonce": page_nonce.hex(),
                "page": page.hex(),
            }
        )
    flipped = bytearray(sealed[1])
    flipped[3] ^= 0x10
    opens = [
        ("page 1 where it was written", PAGE_KEY, 1, sealed[1]),
        ("page 1 moved to page 2", PAGE_KEY, 2, sealed[1]),
        ("page 1 under another key", dek(1), 1, sealed[1]),
        ("page 1 with a nonce byte flipped", PAGE_KEY, 1, bytes(flipped)),
        ("the last page number", PAGE_KEY, U64_MAX, sealed[U64_MAX]),
    ]
    steps += [
        {
            "op": "open_page",
            "why": why,
            "page_key": key.hex(),
            "page_number": number,
            "sealed": data.hex(),
        }
        for why, key, number, data in opens
    ]
    return steps


def _key_file_steps() -> list[Step]:
    probe = test_key("probe")
    seed = test_key("signing seed")
    cases = [
        ("a master key, mode 0600", spec.MASTER_KEY_FILE, MASTER_KEY, 0o600),
        ("a master key, mode 0400", spec.MASTER_KEY_FILE, MASTER_KEY, 0o400),
        ("a master key its group may read", spec.MASTER_KEY_FILE, MASTER_KEY, 0o640),
        ("a master key others may read", spec.MASTER_KEY_FILE, MASTER_KEY, 0o604),
        # Every group and other permission bit alone exposes the key.
        ("a master key others may execute", spec.MASTER_KEY_FILE, MASTER_KEY, 0o601),
        ("a master key others may write", spec.MASTER_KEY_FILE, MASTER_KEY, 0o602),
        ("a master key its group may execute", spec.MASTER_KEY_FILE, MASTER_KEY, 0o610),
        ("a master key its group may write", spec.MASTER_KEY_FILE, MASTER_KEY, 0o620),
        (
            "a signing seed others may execute",
            spec.SIGNING_KEY_FILE,
            test_key("signing seed"),
            0o601,
        ),
        ("a master key of 31 bytes", spec.MASTER_KEY_FILE, MASTER_KEY[:31], 0o600),
        ("a master key and a newline", spec.MASTER_KEY_FILE, MASTER_KEY + b"\n", 0o600),
        ("an empty master key file", spec.MASTER_KEY_FILE, b"", 0o600),
        ("31 bytes others may read: the mode first", spec.MASTER_KEY_FILE, MASTER_KEY[:31], 0o644),
        ("a signing seed, mode 0600", spec.SIGNING_KEY_FILE, seed, 0o600),
        ("a signing seed its group may write", spec.SIGNING_KEY_FILE, seed, 0o660),
        ("a signing seed of 16 bytes", spec.SIGNING_KEY_FILE, seed[:16], 0o600),
    ]
    return [
        {
            "op": "load_key_file",
            "why": why,
            "file": file,
            "bytes": data.hex(),
            "mode": mode,
            "probe": probe.hex(),
        }
        for why, file, data, mode in cases
    ]


def _database_steps() -> list[Step]:
    tenant, other = 7, 0xFFFF_FFFF_0000_0009
    secrets = {
        "phi": "PHI secret: patient 0001 blood pressure 142/91",
        "pii": "PII secret: Ada Lovelace, 12 St James's Square",
        "confidential": "CONFIDENTIAL secret: merger terms 4.2 bn",
        "internal": "INTERNAL secret: on-call rota for March",
        "phi-2": "PHI secret: patient 0001 discharged, remission",
        "phi-3": "PHI secret: patient 0002 MRI scheduled",
        "pii-2": "PII secret: passport 925076473",
        "phi-other": "PHI secret: another tenant's patient 77",
        "phi-5": "PHI secret: the fifth session's note",
    }
    sql_secrets = [
        "SQL secret Grace Hopper",
        "SQL secret diagnosis hypertension",
        "SQL secret remission",
    ]
    public = [
        "PUBLIC: clinic opening hours 8-18",
        "PUBLIC: the second bulletin",
        "PUBLIC: another tenant's bulletin",
        "PUBLIC: the fourth session's bulletin",
    ]
    idempotency_id = bytes(range(16)).hex()

    def act(who: int, do: str, **fields: Any) -> dict[str, Any]:
        return {"tenant": who, "do": do, **fields}

    def events(*texts: str) -> list[str]:
        return [text.encode().hex() for text in texts]

    sessions = [
        [
            act(tenant, "create_stream", name="vitals", data_class=4),
            act(tenant, "create_stream", name="claims", data_class=3),
            act(tenant, "create_stream", name="contracts", data_class=2),
            act(tenant, "create_stream", name="rota", data_class=1),
            act(tenant, "create_stream", name="bulletin", data_class=0),
            *(
                act(tenant, "append", stream=stream, events=events(secret), idempotency_id=None)
                for stream, secret in (
                    ("vitals", secrets["phi"]),
                    ("claims", secrets["pii"]),
                    ("contracts", secrets["confidential"]),
                    ("rota", secrets["internal"]),
                )
            ),
            act(tenant, "append", stream="bulletin", events=events(public[0]), idempotency_id=None),
            act(
                tenant,
                "execute",
                sql="CREATE TABLE patients "
                "(id BIGINT PRIMARY KEY, name TEXT NOT NULL, diagnosis TEXT)",
            ),
            act(
                tenant,
                "execute",
                sql=f"INSERT INTO patients VALUES (1, '{sql_secrets[0]}', '{sql_secrets[1]}')",
            ),
            act(other, "create_stream", name="vitals", data_class=4),
            act(other, "create_stream", name="bulletin", data_class=0),
            act(
                other,
                "append",
                stream="vitals",
                events=events(secrets["phi-other"]),
                idempotency_id=None,
            ),
            act(other, "append", stream="bulletin", events=events(public[2]), idempotency_id=None),
        ],
        [
            act(
                tenant,
                "append",
                stream="vitals",
                events=events(secrets["phi-2"], secrets["phi-3"]),
                idempotency_id=idempotency_id,
            ),
            act(
                tenant,
                "append",
                stream="vitals",
                events=events(secrets["phi-2"], secrets["phi-3"]),
                idempotency_id=idempotency_id,
            ),
            act(tenant, "append", stream="bulletin", events=events(public[1]), idempotency_id=None),
            act(
                tenant,
                "execute",
                sql=f"UPDATE patients SET diagnosis = '{sql_secrets[2]}' WHERE id = 1",
            ),
        ],
        [
            act(
                tenant,
                "append",
                stream="claims",
                events=events(secrets["pii-2"]),
                idempotency_id=None,
            ),
            act(tenant, "execute", sql="DELETE FROM patients WHERE id = 1"),
        ],
        [act(tenant, "append", stream="bulletin", events=events(public[3]), idempotency_id=None)],
        [
            act(
                tenant,
                "append",
                stream="vitals",
                events=events(secrets["phi-5"]),
                idempotency_id=None,
            )
        ],
    ]
    names = ["vitals", "claims", "contracts", "rota", "bulletin"]
    return [
        {"op": "write_database", "sessions": sessions},
        {"op": "read_with_spec"},
        {
            "op": "scan_files",
            "absent": list(secrets.values()) + sql_secrets,
            "present": public + names,
        },
        {"op": "scan_keys"},
    ]


SCENARIOS: dict[str, tuple[str, Callable[[], list[Step]]]] = {
    "key-wrapping": (
        "RFC 3394 key wrapping of a tenant KEK by the master key: the RFC's own vector, "
        "fixed test keys, a damaged wrapped key and another master key",
        _key_wrapping_steps,
    ),
    "keyring": (
        "keyring.json byte for byte: a new tenant's ring, session DEK ids (largest plus one), "
        "page keys, ids sorted as strings; rings the reader must refuse",
        _keyring_steps,
    ),
    "records": (
        "stored payloads pinned with fixed keys: which records are sealed (every data class, "
        "stream creations), the session DEK, nonce and associated data at the largest "
        "tenant id and offsets; a ring whose DEK ids are used up",
        _store_steps,
    ),
    "open-records": (
        "reading sealed and plain payloads, and refusing every tampered one: another tenant, "
        "offset or DEK id, an unknown or foreign DEK, flipped and cut bytes, a wrong nonce "
        "or associated data",
        _open_steps,
    ),
    "pages": (
        "sealed store pages (random nonce, here fixed): pinned bytes, a moved page, "
        "another key, a flipped nonce",
        _page_steps,
    ),
    "key-files": (
        "master.key and signing.key: exactly 32 bytes, mode 0600; other modes and lengths refused",
        _key_file_steps,
    ),
    "at-rest": (
        "a database written through verity.open over five sessions (two tenants, every data "
        "class, SQL tables, an idempotent retry, a session that seals nothing), then read "
        "with the spec alone from its files and the master key; no sensitive plaintext and "
        "no unwrapped key in any file, every PUBLIC event and stream name present",
        _database_steps,
    ),
}


def build_vectors() -> list[dict[str, Any]]:
    """Every envelope vector, each step's `expect` computed by the spec."""
    vectors = []
    for name, (description, make_steps) in SCENARIOS.items():
        performer = SpecEnvelope()
        steps = []
        for step in make_steps():
            steps.append({**step, "expect": performer.perform(step)})
        vectors.append(
            {
                "format": FORMAT,
                "machine": MACHINE,
                "name": name,
                "description": description,
                "config": {},
                "steps": steps,
            }
        )
    return vectors


def perform_spec(step: Step) -> Observation:
    """One step's observation by the spec (a fresh spec: no end-to-end state)."""
    return SpecEnvelope().perform(step)


def generate(out_dir: Path) -> list[Path]:
    return _runner.write_vectors(out_dir, build_vectors())


def _shown(step: Step) -> str:
    why = f" ({step['why']})" if "why" in step else ""
    return f"{step['op']}{why}"


def run_vector(path: Path) -> VectorResult:
    """Check the envelope vector in `path` against the installed implementation."""
    return _runner.run_vector(
        path,
        MACHINE,
        lambda _config, scratch: ImplementationEnvelope(scratch),
        lambda driver, step: driver.perform(step),
        _shown,
    )


def run_all(vectors_dir: Path) -> list[VectorResult]:
    return _runner.run_all(vectors_dir, MACHINE, run_vector)
