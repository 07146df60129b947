"""Encryption at rest: how a tenant's records, key ring and key files are stored.

This module is the byte-exact definition of docs/formats.md §5.2 (the stored
form of a tenant log's DATA records), §5.3 (SQL statements), §5.9 (the key
ring and the key files) and the sealed pages of §6. With it and a database's
master key, another implementation reads every record this one wrote.
All integers are unsigned big-endian; `‖` is concatenation.

Record payloads (`stored_payload`, `read_payload`)
    A DATA record of a tenant log carries one *plain form*, stored either as
    it is or *sealed*:

        plain kernel event   0x01 ‖ the rest of the event (§5.1; 0x01 is its version byte)
        plain SQL statement  0x03 ‖ the engine's event (§5.3)
        sealed               0x02 ‖ dek_id (4) ‖ AES-256-GCM(dek, nonce, plain form, aad) ‖ tag (16)

        nonce = 0x00000000 ‖ log_offset (8)                          12 bytes
        aad   = 0x02 ‖ dek_id (4) ‖ tenant (8) ‖ log_offset (8)      21 bytes

    `log_offset` is the record's offset in the tenant log and `tenant` the
    tenant id, so a sealed payload copied to another offset or another
    tenant's log does not open; `dek_id` names the data key (DEK) in the
    tenant's key ring, and is bound too. The whole plain form, marker
    included, is what is encrypted: a sealed payload is 21 bytes longer than
    its plain form. A payload whose first byte is not 0x02 is a plain form,
    read as it is (the kernel or the engine refuses one it cannot decode).

    What is sealed (`must_seal`): every SQL statement (table rows are
    sensitive by default), and every EventsAppended event of a stream whose
    data class is not PUBLIC (0). StreamCreated events (stream names and
    classes) and PUBLIC streams' events are stored plain, so anyone can
    check proofs over them.

Data keys, sessions and nonces
    A DEK is 32 random bytes. Each session (one open of a tenant by a
    writer) that seals something makes a fresh DEK on its first seal, under
    the next DEK id (`next_dek_id`: the largest id in the ring plus one,
    from 1), and writes the key ring durably before the DEK seals anything.
    A session never seals two records at one offset (offsets only grow), a
    DEK never serves two sessions, and a session whose write failed after
    some bytes reached the disk takes a fresh DEK before its next seal
    (docs/formats.md §4.7): so no (DEK, nonce) pair ever seals two plain
    forms, even when a crash makes an offset be written again.

Key wrapping (`wrap_key`, `unwrap_key`)
    Keys are wrapped with AES Key Wrap, RFC 3394 §2.2.1, with the default
    initial value A6A6A6A6A6A6A6A6: a wrapped 32-byte key is 40 bytes. The
    master key (32 bytes) wraps each tenant's KEK (32 random bytes); the KEK
    wraps the tenant's DEKs and its page key. An unwrap whose integrity check
    fails, or that does not give 32 bytes, is `WrongKeyError`.

The key ring (`encode_keyring`, `decode_keyring`), `keyring.json` in the tenant folder
    UTF-8 JSON, exactly as Python's `json.dumps(fields, sort_keys=True)`
    writes it: members sorted, `", "` between members and `": "` after each
    name, no newline at the end, wrapped keys in lowercase hex:

        {"deks": {"1": HEX, "2": HEX}, "format": 1, "page_key": HEX, "tenant": 7,
         "wrapped_kek": HEX}                                        (one line in the file)

    `deks` maps each DEK id (decimal, no leading zeros, 0..2^32-1) to the DEK
    wrapped by the KEK, names in the order of their strings ("10" sorts
    before "2"); `page_key` (absent until the tenant's store has a key) is
    the page key wrapped by the KEK; `tenant` the tenant id (decimal);
    `wrapped_kek` the KEK wrapped by the master key. A reader refuses a file
    whose format is not 1, whose tenant is another, or whose fields do not
    have these types (`DamagedFileError`); it ignores members it does not
    know. The file is replaced atomically and made durable before a key it
    adds is used.

Key files (`encode_key_file`, `decode_key_file`)
    `master.key` (database folder) and `signing.key` (tenant folder, or
    `tenant-<id>.signing.key` in a signing key folder) hold exactly the 32
    key bytes, nothing else: the master key, and the Ed25519 seed (RFC 8032
    private key; its public key is `verity_spec.signing.public_key_of`). The
    mode is 0600: a key file that group or others may access is refused
    (`ExposedKeyFileError`), one of another length is damaged.

Sealed store pages (`seal_page`, `open_page`), `store/pages.vstore`
    Page `n` (4,096 bytes) is stored at byte 4,124·n as

        nonce (12, random per write) ‖ AES-256-GCM(page_key, nonce, page, aad) ‖ tag (16)
        aad = "verity.page.v1" ‖ 0x00 0x00 ‖ n (8)

    Pages are rewritten in place, so their nonce is random, not derived.

The primitives are `cryptography`'s AES-GCM (NIST SP 800-38D, 96-bit nonce,
128-bit tag) and AES key wrap (RFC 3394); this module fixes every byte
around them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import icontract
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from verity_spec.errors import (
    CorruptionError,
    DamagedFileError,
    ExposedKeyFileError,
    WrongKeyError,
)

__all__ = [
    "AAD_BYTES",
    "DATA_CLASS_PUBLIC",
    "DEK_ID_MAX",
    "KEYRING_FILE",
    "KEYRING_FORMAT",
    "KEY_BYTES",
    "KEY_FILE_MODE",
    "KEY_WRAP_IV",
    "MASTER_KEY_FILE",
    "NONCE_BYTES",
    "PAGE_BYTES",
    "PAGE_DOMAIN",
    "PAGE_NONCE_BYTES",
    "PLAIN_EVENT",
    "PLAIN_STATEMENT",
    "SEALED",
    "SEALED_HEADER_BYTES",
    "SEALED_OVERHEAD_BYTES",
    "SEALED_PAGE_BYTES",
    "SIGNING_KEY_FILE",
    "TAG_BYTES",
    "WRAPPED_KEY_BYTES",
    "KeyRing",
    "add_dek",
    "associated_data",
    "decode_key_file",
    "decode_keyring",
    "dek_of",
    "encode_key_file",
    "encode_keyring",
    "is_keyring",
    "must_seal",
    "new_keyring",
    "next_dek_id",
    "nonce",
    "open_kek",
    "open_page",
    "open_page_key",
    "open_sealed",
    "page_associated_data",
    "read_payload",
    "seal",
    "seal_page",
    "sealed_dek_id",
    "stored_payload",
    "unwrap_key",
    "with_page_key",
    "wrap_key",
]

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1

PLAIN_EVENT = 0x01
"""First byte of a plain kernel event (its format version, §5.1)."""
SEALED = 0x02
"""First byte of a sealed payload."""
PLAIN_STATEMENT = 0x03
"""First byte of a plain SQL statement (§5.3)."""
PLAIN_MARKERS = (PLAIN_EVENT, PLAIN_STATEMENT)
EVENT_TYPE_STREAM_CREATED = 1
EVENT_TYPE_EVENTS_APPENDED = 2
DATA_CLASS_PUBLIC = 0
"""The one data class whose events are stored plain (§5.1: 0 PUBLIC .. 4 PHI)."""

KEY_BYTES = 32
"""Every key: master key, KEK, DEK, page key, Ed25519 seed."""
DEK_ID_MAX = U32_MAX
NONCE_BYTES = 12
TAG_BYTES = 16
SEALED_HEADER_BYTES = 5
"""marker (1) ‖ dek_id (4)"""
SEALED_OVERHEAD_BYTES = SEALED_HEADER_BYTES + TAG_BYTES
"""How much longer a sealed payload is than its plain form."""
AAD_BYTES = 21
KEY_WRAP_IV = bytes.fromhex("a6a6a6a6a6a6a6a6")
"""RFC 3394 §2.2.3.1 default initial value (the library's; stated for the reader)."""
WRAPPED_KEY_BYTES = KEY_BYTES + 8

KEYRING_FILE = "keyring.json"
KEYRING_FORMAT = 1
MASTER_KEY_FILE = "master.key"
SIGNING_KEY_FILE = "signing.key"
KEY_FILE_MODE = 0o600
GROUP_OTHER_BITS = 0o077

PAGE_BYTES = 4096
PAGE_NONCE_BYTES = 12
PAGE_DOMAIN = b"verity.page.v1\x00\x00"
SEALED_PAGE_BYTES = PAGE_NONCE_BYTES + PAGE_BYTES + TAG_BYTES
PAGES_FILE = "store/pages.vstore"


def u32(value: int) -> bytes:
    """`value` as 4 big-endian bytes."""
    return value.to_bytes(4, "big")


def u64(value: int) -> bytes:
    """`value` as 8 big-endian bytes."""
    return value.to_bytes(8, "big")


def is_u32(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U32_MAX


def is_u64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX


def is_key(key: object) -> bool:
    return isinstance(key, bytes) and len(key) == KEY_BYTES


# ---------------------------------------------------------------- records


@icontract.require(lambda log_offset: is_u64(log_offset))
@icontract.ensure(lambda result: len(result) == NONCE_BYTES)
def nonce(log_offset: int) -> bytes:
    """The AES-GCM nonce of the record at `log_offset`: 4 zero bytes ‖ the offset (u64)."""
    return bytes(4) + u64(log_offset)


@icontract.require(lambda dek_id: is_u32(dek_id))
@icontract.require(lambda tenant: is_u64(tenant))
@icontract.require(lambda log_offset: is_u64(log_offset))
@icontract.ensure(lambda result: len(result) == AAD_BYTES)
def associated_data(dek_id: int, tenant: int, log_offset: int) -> bytes:
    """What a sealed record authenticates besides its plain form: marker, DEK id, tenant, offset."""
    return bytes([SEALED]) + u32(dek_id) + u64(tenant) + u64(log_offset)


def must_seal(plain: bytes, data_class: int | None) -> bool:
    """Whether the record carrying the plain form `plain` is stored sealed.

    `data_class` is the class of the stream an EventsAppended event appends
    to (it is not consulted for other plain forms). Every SQL statement is
    sealed; an EventsAppended event is sealed unless its stream is PUBLIC;
    a StreamCreated event never is.
    """
    if plain[:1] == bytes([PLAIN_STATEMENT]):
        return True
    if plain[:2] == bytes([PLAIN_EVENT, EVENT_TYPE_EVENTS_APPENDED]):
        return data_class != DATA_CLASS_PUBLIC
    return False


def _gcm_seal(key: bytes, nonce_bytes: bytes, plain: bytes, aad: bytes) -> bytes:
    """AES-256-GCM encryption: the ciphertext (as long as `plain`), then the 16-byte tag."""
    return AESGCM(key).encrypt(nonce_bytes, plain, aad)


def _gcm_open(key: bytes, nonce_bytes: bytes, sealed: bytes, aad: bytes) -> bytes | None:
    """The plain bytes `_gcm_seal` sealed into `sealed`, or None when it does not authenticate."""
    try:
        return AESGCM(key).decrypt(nonce_bytes, sealed, aad)
    except InvalidTag:
        return None


@icontract.require(lambda stored: len(stored) >= SEALED_HEADER_BYTES and stored[0] == SEALED)
@icontract.ensure(lambda stored, result: result == int.from_bytes(stored[1:5], "big"))
def sealed_dek_id(stored: bytes) -> int:
    """The DEK id a sealed payload names (bytes 1..4)."""
    return int.from_bytes(stored[1:SEALED_HEADER_BYTES], "big")


@icontract.require(lambda tenant: is_u64(tenant))
@icontract.require(lambda log_offset: is_u64(log_offset))
@icontract.require(lambda dek: is_key(dek))
@icontract.require(lambda stored: len(stored) >= SEALED_HEADER_BYTES and stored[0] == SEALED)
@icontract.ensure(lambda stored, result: len(result) == len(stored) - SEALED_OVERHEAD_BYTES)
@icontract.ensure(
    lambda tenant, log_offset, dek, stored, result: (
        stored[:SEALED_HEADER_BYTES]
        + _gcm_seal(
            dek,
            nonce(log_offset),
            result,
            associated_data(sealed_dek_id(stored), tenant, log_offset),
        )
        == stored
    )
)
def open_sealed(tenant: int, log_offset: int, dek: bytes, stored: bytes) -> bytes:
    """The plain form sealed in `stored` (record `log_offset` of `tenant`'s log) with `dek`.

    `CorruptionError` when it does not authenticate: another tenant, another
    offset, another DEK id in the header, another key, or any byte changed.

    :raises CorruptionError: `stored` does not authenticate.
    """
    dek_id = sealed_dek_id(stored)
    plain = _gcm_open(
        dek,
        nonce(log_offset),
        stored[SEALED_HEADER_BYTES:],
        associated_data(dek_id, tenant, log_offset),
    )
    if plain is None:
        raise CorruptionError(
            log_offset,
            f"sealed payload (DEK {dek_id}, {len(stored)} bytes) fails AES-GCM authentication "
            f"for tenant {tenant} at this offset",
        )
    # What it holds is read as a plain form: the kernel or the engine refuses one it
    # cannot decode (a writer seals only plain forms, 0x01 or 0x03 first).
    return plain


@icontract.require(lambda tenant: is_u64(tenant))
@icontract.require(lambda log_offset: is_u64(log_offset))
@icontract.require(lambda dek_id: is_u32(dek_id))
@icontract.require(lambda dek: is_key(dek))
@icontract.require(lambda plain: plain[:1] in (bytes([PLAIN_EVENT]), bytes([PLAIN_STATEMENT])))
@icontract.ensure(lambda plain, result: len(result) == len(plain) + SEALED_OVERHEAD_BYTES)
@icontract.ensure(
    lambda dek_id, result: result[:SEALED_HEADER_BYTES] == bytes([SEALED]) + u32(dek_id)
)
@icontract.ensure(
    lambda tenant, log_offset, dek, plain, result: (
        open_sealed(tenant, log_offset, dek, result) == plain
    )
)
def seal(tenant: int, log_offset: int, dek_id: int, dek: bytes, plain: bytes) -> bytes:
    """The sealed payload of the plain form `plain`, for record `log_offset` of `tenant`'s log."""
    return (
        bytes([SEALED])
        + u32(dek_id)
        + _gcm_seal(dek, nonce(log_offset), plain, associated_data(dek_id, tenant, log_offset))
    )


@icontract.require(lambda tenant: is_u64(tenant))
@icontract.require(lambda log_offset: is_u64(log_offset))
@icontract.require(lambda plain: plain[:1] in (bytes([PLAIN_EVENT]), bytes([PLAIN_STATEMENT])))
@icontract.require(lambda dek_id: is_u32(dek_id))
@icontract.require(lambda dek: is_key(dek))
@icontract.ensure(
    lambda plain, data_class, result: (result[0] == SEALED) == must_seal(plain, data_class)
)
def stored_payload(
    tenant: int, log_offset: int, plain: bytes, data_class: int | None, dek_id: int, dek: bytes
) -> bytes:
    """What record `log_offset` of `tenant`'s log stores for the plain form `plain`.

    `dek_id` and `dek` are the session's data key (only used when the record
    is sealed); `data_class` is as for `must_seal`.
    """
    if must_seal(plain, data_class):
        return seal(tenant, log_offset, dek_id, dek, plain)
    return plain


# ---------------------------------------------------------------- key wrapping


@icontract.require(lambda wrapping_key: is_key(wrapping_key))
@icontract.ensure(lambda result: is_key(result))
def unwrap_key(wrapping_key: bytes, wrapped: bytes, what: str) -> bytes:
    """The 32-byte key `wrap_key` wrapped into `wrapped`; `WrongKeyError` naming `what` if not.

    Fails when RFC 3394's integrity check fails (another wrapping key, or
    damaged bytes), when `wrapped` is not a whole number (at least 3) of
    8-byte blocks, and when it does not unwrap to exactly 32 bytes.

    :raises WrongKeyError: `wrapped` does not unwrap to a key under `wrapping_key`.
    """
    try:
        key = aes_key_unwrap(wrapping_key, wrapped)
    except (InvalidUnwrap, ValueError) as failure:
        raise WrongKeyError(
            what, f"the {len(wrapped)}-byte wrapped key fails RFC 3394's integrity check"
        ) from failure
    if len(key) != KEY_BYTES:
        raise WrongKeyError(what, f"it unwraps to {len(key)} bytes, not {KEY_BYTES}")
    return key


@icontract.require(lambda wrapping_key: is_key(wrapping_key))
@icontract.require(lambda key: is_key(key))
@icontract.ensure(lambda result: len(result) == WRAPPED_KEY_BYTES)
@icontract.ensure(lambda wrapping_key, key, result: unwrap_key(wrapping_key, result, "key") == key)
def wrap_key(wrapping_key: bytes, key: bytes) -> bytes:
    """RFC 3394 AES key wrap of the 32-byte `key` under the 32-byte `wrapping_key` (40 bytes)."""
    return aes_key_wrap(wrapping_key, key)


# ---------------------------------------------------------------- the key ring


@dataclass(frozen=True)
class KeyRing:
    """A tenant's wrapped keys, as `keyring.json` holds them."""

    tenant: int
    wrapped_kek: bytes
    """The KEK wrapped by the master key."""
    deks: tuple[tuple[int, bytes], ...]
    """(DEK id, the DEK wrapped by the KEK), ids ascending, each once."""
    page_key: bytes | None
    """The store's page key wrapped by the KEK, or None before the store has one."""


def is_keyring(ring: KeyRing) -> bool:
    """Every field of `ring` is one a key ring file can hold."""
    ids = [dek_id for dek_id, _ in ring.deks]
    return (
        is_u64(ring.tenant)
        and isinstance(ring.wrapped_kek, bytes)
        and all(is_u32(dek_id) and isinstance(wrapped, bytes) for dek_id, wrapped in ring.deks)
        and ids == sorted(set(ids))
        and (ring.page_key is None or isinstance(ring.page_key, bytes))
    )


@icontract.require(lambda ring: is_keyring(ring))
@icontract.require(lambda master_key: is_key(master_key))
def open_kek(ring: KeyRing, master_key: bytes) -> bytes:
    """The tenant's KEK; `WrongKeyError` if it does not unwrap under `master_key`.

    :raises WrongKeyError: the KEK does not unwrap under `master_key`.
    """
    return unwrap_key(master_key, ring.wrapped_kek, f"the KEK of tenant {ring.tenant}")


@icontract.require(lambda ring: is_keyring(ring))
@icontract.require(lambda kek: is_key(kek))
@icontract.require(lambda log_offset: is_u64(log_offset))
def dek_of(ring: KeyRing, kek: bytes, dek_id: int, log_offset: int) -> bytes:
    """DEK `dek_id`, for reading record `log_offset`.

    `CorruptionError` (of that record) when the ring holds no such DEK;
    `WrongKeyError` when it does not unwrap under `kek`.

    :raises CorruptionError: the ring holds no DEK `dek_id`.
    :raises WrongKeyError: it does not unwrap under `kek`.
    """
    for held_id, wrapped in ring.deks:
        if held_id == dek_id:
            return unwrap_key(kek, wrapped, f"DEK {dek_id} of tenant {ring.tenant}")
    raise CorruptionError(
        log_offset, f"record names DEK {dek_id}, which the key ring does not hold"
    )


@icontract.require(lambda ring: is_keyring(ring))
@icontract.require(lambda kek: is_key(kek))
def open_page_key(ring: KeyRing, kek: bytes) -> bytes | None:
    """The store's page key (None if the ring has none); `WrongKeyError` if it does not unwrap.

    :raises WrongKeyError: the page key does not unwrap under `kek`.
    """
    if ring.page_key is None:
        return None
    return unwrap_key(kek, ring.page_key, f"the page key of tenant {ring.tenant}")


@icontract.require(lambda tenant: is_u64(tenant))
@icontract.require(lambda master_key: is_key(master_key))
@icontract.require(lambda kek: is_key(kek))
@icontract.ensure(lambda result: is_keyring(result) and result.deks == () and not result.page_key)
@icontract.ensure(lambda master_key, kek, result: open_kek(result, master_key) == kek)
def new_keyring(tenant: int, master_key: bytes, kek: bytes) -> KeyRing:
    """A new tenant's key ring: its KEK (32 fresh random bytes) wrapped by the master key."""
    return KeyRing(tenant, wrap_key(master_key, kek), (), None)


@icontract.require(lambda ring: is_keyring(ring))
@icontract.ensure(lambda result: 1 <= result <= U32_MAX + 1)
def next_dek_id(ring: KeyRing) -> int:
    """The id of the next session's DEK: the largest id in the ring plus one (1 for none)."""
    return max((dek_id for dek_id, _ in ring.deks), default=0) + 1


@icontract.require(lambda ring: is_keyring(ring))
@icontract.require(lambda ring: next_dek_id(ring) <= DEK_ID_MAX)
@icontract.require(lambda kek: is_key(kek))
@icontract.require(lambda dek: is_key(dek))
@icontract.ensure(lambda result: is_keyring(result[0]))
@icontract.ensure(lambda ring, result: result[1] == next_dek_id(ring))
@icontract.ensure(lambda ring, result: result[0].deks[:-1] == ring.deks)
@icontract.ensure(lambda kek, dek, result: dek_of(result[0], kek, result[1], 0) == dek)
def add_dek(ring: KeyRing, kek: bytes, dek: bytes) -> tuple[KeyRing, int]:
    """The ring with a session's new DEK (32 fresh random bytes) wrapped by the KEK, and its id.

    Ids are never reused: a new DEK never replaces one that sealed records.
    """
    dek_id = next_dek_id(ring)
    deks = (*ring.deks, (dek_id, wrap_key(kek, dek)))
    return KeyRing(ring.tenant, ring.wrapped_kek, deks, ring.page_key), dek_id


@icontract.require(lambda ring: is_keyring(ring))
@icontract.require(lambda kek: is_key(kek))
@icontract.require(lambda page_key: is_key(page_key))
@icontract.ensure(lambda kek, page_key, result: open_page_key(result, kek) == page_key)
def with_page_key(ring: KeyRing, kek: bytes, page_key: bytes) -> KeyRing:
    """The ring with a new store page key (32 fresh random bytes) wrapped by the KEK."""
    return KeyRing(ring.tenant, ring.wrapped_kek, ring.deks, wrap_key(kek, page_key))


@icontract.require(lambda tenant: is_u64(tenant))
@icontract.require(lambda log_offset: is_u64(log_offset))
@icontract.require(lambda ring, tenant: is_keyring(ring) and ring.tenant == tenant)
@icontract.require(lambda kek: is_key(kek))
@icontract.ensure(lambda stored, result: stored[:1] == bytes([SEALED]) or result == stored)
def read_payload(tenant: int, log_offset: int, ring: KeyRing, kek: bytes, stored: bytes) -> bytes:
    """The plain form of the payload `stored` at `log_offset` of `tenant`'s log.

    In this order: a payload that does not start with 0x02 is the plain form
    itself; a sealed one shorter than its 5-byte header is corrupt; the DEK
    it names comes from the ring (`dek_of`); then it must open
    (`open_sealed`).

    :raises CorruptionError: the sealed payload is cut, names no DEK of the ring, or
        does not authenticate.
    :raises WrongKeyError: the DEK it names does not unwrap under `kek`.
    """
    if stored[:1] != bytes([SEALED]):
        return stored
    if len(stored) < SEALED_HEADER_BYTES:
        raise CorruptionError(log_offset, "sealed payload shorter than its 5-byte header")
    dek = dek_of(ring, kek, sealed_dek_id(stored), log_offset)
    return open_sealed(tenant, log_offset, dek, stored)


def _is_canonical_id(text: str) -> bool:
    return (
        text.isascii()
        and text.isdigit()
        and (text == "0" or not text.startswith("0"))
        and int(text) <= DEK_ID_MAX
    )


def _decode_hex(file: str, name: str, value: object) -> bytes:
    """Hex digits (either case, no spaces) as bytes; `DamagedFileError` otherwise."""
    digits = "0123456789abcdefABCDEF"
    if (
        not isinstance(value, str)
        or len(value) % 2
        or not all(character in digits for character in value)
    ):
        raise DamagedFileError(file, f"{name} is not a string of hex digits: {value!r:.100}")
    return bytes.fromhex(value)


def _is_json_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _no_duplicate_names(pairs: list[tuple[str, object]]) -> dict[str, object]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"a JSON object names a member twice: {sorted(names)}")
    return dict(pairs)


@icontract.require(lambda tenant: is_u64(tenant))
@icontract.ensure(lambda tenant, result: is_keyring(result) and result.tenant == tenant)
def decode_keyring(data: bytes, tenant: int) -> KeyRing:
    """The key ring `keyring.json` holds for `tenant`; `DamagedFileError` if it holds none.

    Reads any JSON text with these members (the canonical bytes are
    `encode_keyring`'s): a format other than 1, another tenant, a missing
    member, a member of the wrong type, a DEK id that is not a canonical
    decimal u32, a member named twice, and bytes that are not UTF-8 JSON are
    damage. Members it does not know are ignored.

    :raises DamagedFileError: `data` is not a key ring of `tenant`.
    """
    try:
        fields = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_names)
    except ValueError as failure:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DamagedFileError(KEYRING_FILE, f"not UTF-8 JSON: {failure}") from failure
    if not isinstance(fields, dict):
        raise DamagedFileError(KEYRING_FILE, "not a JSON object")
    missing = sorted({"deks", "format", "tenant", "wrapped_kek"} - set(fields))
    if missing:
        raise DamagedFileError(KEYRING_FILE, f"missing {', '.join(missing)}")
    if not _is_json_int(fields["format"]) or fields["format"] != KEYRING_FORMAT:
        raise DamagedFileError(KEYRING_FILE, f"format {fields['format']!r}, not 1")
    if not _is_json_int(fields["tenant"]) or fields["tenant"] != tenant:
        raise DamagedFileError(KEYRING_FILE, f"tenant {fields['tenant']!r}, not {tenant}")
    wrapped_kek = _decode_hex(KEYRING_FILE, "wrapped_kek", fields["wrapped_kek"])
    if not isinstance(fields["deks"], dict):
        raise DamagedFileError(KEYRING_FILE, "deks is not a JSON object")
    deks = []
    for name, wrapped in fields["deks"].items():
        if not _is_canonical_id(name):
            raise DamagedFileError(KEYRING_FILE, f"DEK id {name!r} is not a decimal u32")
        deks.append((int(name), _decode_hex(KEYRING_FILE, f"DEK {name}", wrapped)))
    page_key = None
    if "page_key" in fields:
        page_key = _decode_hex(KEYRING_FILE, "page_key", fields["page_key"])
    return KeyRing(tenant, wrapped_kek, tuple(sorted(deks)), page_key)


def _fields(ring: KeyRing) -> dict[str, object]:
    """The key ring as the JSON object `encode_keyring` writes (for its postcondition)."""
    fields: dict[str, object] = {
        "deks": {str(dek_id): wrapped.hex() for dek_id, wrapped in ring.deks},
        "format": KEYRING_FORMAT,
        "tenant": ring.tenant,
        "wrapped_kek": ring.wrapped_kek.hex(),
    }
    if ring.page_key is not None:
        fields["page_key"] = ring.page_key.hex()
    return fields


@icontract.require(lambda ring: is_keyring(ring))
@icontract.ensure(lambda ring, result: decode_keyring(result, ring.tenant) == ring)
@icontract.ensure(lambda ring, result: result == json.dumps(_fields(ring), sort_keys=True).encode())
def encode_keyring(ring: KeyRing) -> bytes:
    """The bytes of `keyring.json` holding `ring` (see the module docstring)."""
    deks_by_name = sorted((str(dek_id), wrapped) for dek_id, wrapped in ring.deks)
    deks = ", ".join(f'"{name}": "{wrapped.hex()}"' for name, wrapped in deks_by_name)
    page_key = "" if ring.page_key is None else f'"page_key": "{ring.page_key.hex()}", '
    text = (
        f'{{"deks": {{{deks}}}, "format": {KEYRING_FORMAT}, {page_key}'
        f'"tenant": {ring.tenant}, "wrapped_kek": "{ring.wrapped_kek.hex()}"}}'
    )
    return text.encode("utf-8")


# ---------------------------------------------------------------- key files


@icontract.require(lambda mode: 0 <= mode <= 0o7777)
@icontract.ensure(lambda result: is_key(result))
def decode_key_file(file: str, data: bytes, mode: int) -> bytes:
    """The key in key file `file` of permission bits `mode`.

    `ExposedKeyFileError` when group or others have any access (checked
    first: such a file is never read); `DamagedFileError` unless it holds
    exactly 32 bytes.

    :raises ExposedKeyFileError: group or others may access the file.
    :raises DamagedFileError: it does not hold exactly 32 bytes.
    """
    if mode & GROUP_OTHER_BITS:
        raise ExposedKeyFileError(file, mode)
    if len(data) != KEY_BYTES:
        raise DamagedFileError(file, f"holds {len(data)} bytes, not {KEY_BYTES}")
    return bytes(data)


@icontract.require(lambda key: is_key(key))
@icontract.ensure(
    lambda key, result: decode_key_file(MASTER_KEY_FILE, result, KEY_FILE_MODE) == key
)
def encode_key_file(key: bytes) -> bytes:
    """The bytes of a key file (`master.key`, `signing.key`): the 32 key bytes, nothing else.

    It is created with mode 0600 (`KEY_FILE_MODE`).
    """
    return key


# ---------------------------------------------------------------- sealed store pages


@icontract.require(lambda page_number: is_u64(page_number))
@icontract.ensure(lambda result: len(result) == len(PAGE_DOMAIN) + 8)
def page_associated_data(page_number: int) -> bytes:
    """What a sealed page authenticates besides its bytes: the domain and its page number."""
    return PAGE_DOMAIN + u64(page_number)


@icontract.require(lambda page_key: is_key(page_key))
@icontract.require(lambda page_number: is_u64(page_number))
@icontract.ensure(lambda result: len(result) == PAGE_BYTES)
def open_page(page_key: bytes, page_number: int, sealed: bytes) -> bytes:
    """The page sealed in `sealed`; `DamagedFileError` unless it opens as page `page_number`.

    :raises DamagedFileError: `sealed` does not open as page `page_number`.
    """
    if len(sealed) != SEALED_PAGE_BYTES:
        raise DamagedFileError(
            PAGES_FILE, f"page {page_number} is {len(sealed)} bytes, not {SEALED_PAGE_BYTES}"
        )
    page = _gcm_open(
        page_key,
        sealed[:PAGE_NONCE_BYTES],
        sealed[PAGE_NONCE_BYTES:],
        page_associated_data(page_number),
    )
    if page is None:
        raise DamagedFileError(
            PAGES_FILE,
            f"page {page_number} fails AES-GCM authentication (moved, damaged, or "
            "sealed under another key)",
        )
    return page


@icontract.require(lambda page_key: is_key(page_key))
@icontract.require(lambda page_number: is_u64(page_number))
@icontract.require(lambda page_nonce: len(page_nonce) == PAGE_NONCE_BYTES)
@icontract.require(lambda page: len(page) == PAGE_BYTES)
@icontract.ensure(lambda result: len(result) == SEALED_PAGE_BYTES)
@icontract.ensure(
    lambda page_key, page_number, page, result: open_page(page_key, page_number, result) == page
)
def seal_page(page_key: bytes, page_number: int, page_nonce: bytes, page: bytes) -> bytes:
    """Page `page_number` as stored: its nonce (random per write), then AES-256-GCM of it."""
    return page_nonce + _gcm_seal(page_key, page_nonce, page, page_associated_data(page_number))
