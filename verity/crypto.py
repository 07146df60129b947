"""Hashing, envelope encryption, signing and tokenization for VerityDB.

Every primitive comes from `cryptography` (OpenSSL) or `blake3`; this module
only chooses them, fixes their byte layouts and turns their failures into
`verity.errors` types.

Hashes
    `chain_hash` is the log's chain hash, SHA-256 with a domain prefix
    (docs/formats.md §1.3). `internal_hash` is BLAKE3 for internal use only
    (deduplication, cache keys): it appears in no proof and no format a third
    party checks.

Key hierarchy (envelope encryption)
    master key (`MasterKeyProvider`: a file today, an HSM later)
      wraps one KEK per tenant (`TenantKeys`, 32 random bytes),
        which wraps one DEK per writing session (`SegmentKey`, AES-256-GCM;
        the name is historical: a DEK seals records, not segments).
    Keys are wrapped with AES Key Wrap (RFC 3394), so a wrapped key is stored
    beside the data it protects and is useless without the key above it. The
    byte-exact construction is `verity_spec.envelope` (docs/formats.md §5.2,
    §5.9), pinned by the `envelope-*` conformance vectors.

Why no (key, nonce) pair ever repeats
    AES-GCM loses confidentiality and authenticity if one key encrypts two
    messages under one nonce. A `SegmentKey` derives its 12-byte nonce from a
    position the caller gives, the record's tenant log offset: 4 zero bytes ‖
    offset (u64, big-endian). A pair cannot repeat because
    - every DEK is 32 fresh random bytes, made by `TenantKeys.new_segment_dek`
      for exactly one writing session of a tenant (`verity._keyring`), and
      retired early when a sealed write that failed may have reached the disk
      (its offset is then written again with other bytes, under a new DEK);
    - within a session, log offsets only grow: a record's offset is sealed
      once, and a torn tail cut by recovery is only ever rewritten by a later
      session, under that session's DEK.
    The caller owns the second rule: never call `encrypt` twice with one
    position on one `SegmentKey`.

Clearing key material (best effort)
    Objects holding secrets keep them in a `bytearray` and `close()` (or
    leaving a `with` block) overwrites it with zeros; any use after that
    raises `ClosedError`. This is best effort only: `cryptography` copies keys
    into its own immutable `bytes` and OpenSSL contexts, `os.urandom` returns
    immutable `bytes`, and Python may have copied a buffer elsewhere. None of
    those copies can be wiped from Python; closing drops our references to them
    so they are freed sooner, nothing more.

Signing
    `SigningKey` is a pure Ed25519 (RFC 8032) key; `sign_checkpoint` builds a
    `verity.proofs.SignedCheckpoint` that `verity.proofs.verify_signed_checkpoint`
    accepts (docs/formats.md §3).

Tokenization
    `Tokenizer.token` is a keyed, deterministic pseudonym (HMAC-SHA-256), so
    equal values can be joined without revealing them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol, Self, final

import blake3
from cryptography.exceptions import InvalidSignature as _CryptographyInvalidSignature
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from verity.errors import (
    ClosedError,
    CorruptionError,
    CryptoError,
    InvalidArgument,
    InvalidSignature,
    KeyError_,
)
from verity.proofs import SignedCheckpoint, key_id_of, signed_checkpoint_bytes
from verity.types import U64_MAX, Hash, TenantId

__all__ = [
    "CHAIN_DOMAIN",
    "GCM_TAG_BYTES",
    "KEY_BYTES",
    "PARALLEL_THRESHOLD_BYTES",
    "RECORD_HEADER_BYTES",
    "FileMasterKeyProvider",
    "MasterKeyProvider",
    "PageKey",
    "SegmentKey",
    "SigningKey",
    "TenantKeys",
    "Tokenizer",
    "chain_hash",
    "internal_hash",
    "sign_checkpoint",
    "verify_signature",
]

CHAIN_DOMAIN: Final = b"verity.chain.v1\x00"
"""Prefix of every chain hash input (docs/formats.md §1.3)."""

RECORD_HEADER_BYTES: Final = 53
"""Size of the canonical record header (docs/formats.md §1.1)."""

PARALLEL_THRESHOLD_BYTES: Final = 128 * 1024
"""Inputs longer than this are hashed by BLAKE3 on several threads."""

KEY_BYTES: Final = 32
"""Size of every symmetric key (master, KEK, DEK, tokenization) and Ed25519 seed."""

GCM_TAG_BYTES: Final = 16
"""AES-GCM authentication tag appended to every ciphertext."""

_PUBLIC_KEY_BYTES: Final = 32
_SIGNATURE_BYTES: Final = 64
_HASH_BYTES: Final = 32
# 4 zero bytes then the position as u64 big-endian: 12 bytes, the GCM nonce size
# that needs no extra hashing (NIST SP 800-38D §8.2.1 deterministic construction).
_NONCE: Final = struct.Struct(">4xQ")
_PAYLOAD_LEN_FIELD: Final = struct.Struct(">I")
_PAYLOAD_LEN_AT: Final = 48  # offset (8) + prev_hash (32) + timestamp (8)
_MASTER_KEY_ID_DOMAIN: Final = b"verity.master-key-id.v1\x00"
_GROUP_OTHER_BITS: Final = 0o077

assert _NONCE.size == 12


# ---------------------------------------------------------------------------
# Hashes


def chain_hash(record_bytes: bytes) -> Hash:
    """SHA-256(CHAIN_DOMAIN ‖ record_bytes): the chain hash of one record.

    `record_bytes` is the canonical record (docs/formats.md §1.2): the 53-byte
    header, which already holds `prev_hash` at bytes 8..40, then the payload.
    The domain prefix keeps a chain hash distinct from any Merkle leaf or node
    hash. Passing anything shorter than a header is a bug in the caller.
    """
    assert len(record_bytes) >= RECORD_HEADER_BYTES, len(record_bytes)
    (payload_len,) = _PAYLOAD_LEN_FIELD.unpack_from(record_bytes, _PAYLOAD_LEN_AT)
    assert len(record_bytes) == RECORD_HEADER_BYTES + payload_len, (len(record_bytes), payload_len)
    digest = hashlib.sha256(CHAIN_DOMAIN)
    digest.update(record_bytes)
    return Hash(digest.digest())


def internal_hash(data: bytes) -> bytes:
    """BLAKE3 of `data`, 32 bytes. For internal (non-proof) use only.

    No domain prefix: these digests are never compared with any other kind of
    hash and never leave the process in a verifiable format. Inputs longer than
    `PARALLEL_THRESHOLD_BYTES` are hashed on several threads; below that the
    thread start-up costs more than it saves. The digest is the same either way.
    """
    if len(data) > PARALLEL_THRESHOLD_BYTES:
        hasher = blake3.blake3(data, max_threads=blake3.blake3.AUTO)
    else:
        hasher = blake3.blake3(data)
    digest = hasher.digest()
    assert len(digest) == _HASH_BYTES
    return digest


# ---------------------------------------------------------------------------
# Secret buffers and key files


def _redacted(secret: bytes | bytearray | memoryview) -> str:
    # Error messages name bad values, but never a key's bytes.
    return f"<{len(secret)} secret bytes>"


def _take_key(name: str, key: bytes | bytearray | memoryview) -> bytearray:
    """Return `key` as a bytearray we own: a bytearray is adopted, anything else copied."""
    if not isinstance(key, bytes | bytearray | memoryview):
        raise InvalidArgument(name, type(key).__name__, "must be bytes or bytearray")
    if len(key) != KEY_BYTES:
        raise InvalidArgument(name, _redacted(key), f"must be {KEY_BYTES} bytes, got {len(key)}")
    return key if isinstance(key, bytearray) else bytearray(key)


def _zero(buffer: bytearray) -> None:
    # Slice assignment of equal length overwrites in place; it never reallocates.
    buffer[:] = bytes(len(buffer))
    assert not any(buffer)


class _SecretHolder:
    """Owns one secret `bytearray`; `close()` zeroes it (best effort, see module doc)."""

    _secret: bytearray
    _closed: bool

    def _hold(self, secret: bytearray) -> None:
        assert len(secret) == KEY_BYTES
        self._secret = secret
        self._closed = False

    def _describe(self) -> str:
        return type(self).__name__

    def _drop_library_objects(self) -> None:
        """Release objects built from the secret (overridden where there are any)."""

    def _open_secret(self) -> bytearray:
        if self._closed:
            raise ClosedError(self._describe())
        return self._secret

    @property
    def closed(self) -> bool:
        """True once `close()` has run; every later use raises `ClosedError`."""
        return self._closed

    def close(self) -> None:
        """Overwrite the key bytes with zeros and drop library copies. Idempotent."""
        if self._closed:
            return
        _zero(self._secret)
        self._drop_library_objects()
        self._closed = True

    def __enter__(self) -> Self:
        self._open_secret()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_key_file(path: Path, secret: bytearray) -> bool:
    """Durably create `path` holding `secret`, mode 0o600. False if `path` already exists.

    The secret is written to a fresh temporary file (O_EXCL, mode 0o600 from the
    start, so it is never readable by others), fsynced, then hard-linked to
    `path` and the folder fsynced. A link, unlike a rename, refuses to replace
    an existing file: when two processes race to create a key, one wins and
    the other loads the winner's key, instead of silently overwriting a key
    that may already protect data.
    """
    temporary = path.with_name(f".{path.name}.{os.urandom(8).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # exactly 0600: an unusual umask must not leave it unreadable
        try:
            written = os.write(fd, secret)
            assert written == len(secret), written
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)
    return True


def _load_key_file(path: Path) -> bytearray:
    """Read a 32-byte key file, refusing one that group or others may access."""
    fd = os.open(path, os.O_RDONLY)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & _GROUP_OTHER_BITS:
            raise CryptoError(
                f"key file {path} has mode {mode:#o}; it must not be accessible by group "
                f"or others (expected 0o600)"
            )
        # Read straight into a bytearray so no immutable copy of the key is made;
        # one spare byte detects an over-long file.
        secret = bytearray(KEY_BYTES + 1)
        size = 0
        while size < len(secret):
            with memoryview(secret) as whole, whole[size:] as rest:
                count = os.readv(fd, [rest])
            if count == 0:
                break
            size += count
    finally:
        os.close(fd)
    if size != KEY_BYTES:
        _zero(secret)
        shown = f"{size}" if size <= KEY_BYTES else f"more than {KEY_BYTES}"
        raise CorruptionError(
            f"key file holds {shown} bytes, expected exactly {KEY_BYTES}", file=str(path)
        )
    del secret[KEY_BYTES:]
    return secret


def _load_existing_key_file(path: Path, what: str) -> bytearray:
    if not isinstance(path, Path):
        raise InvalidArgument("path", path, "must be a pathlib.Path")
    try:
        return _load_key_file(path)
    except FileNotFoundError:
        raise KeyError_(f"{what} file {path} is missing") from None


def _load_or_create_key_file(path: Path) -> bytearray:
    if not isinstance(path, Path):
        raise InvalidArgument("path", path, "must be a pathlib.Path")
    try:
        return _load_key_file(path)
    except FileNotFoundError:
        pass
    secret = bytearray(os.urandom(KEY_BYTES))
    if _create_key_file(path, secret):
        return secret
    # Another process created the file first: its key is the key.
    _zero(secret)
    return _load_key_file(path)


# ---------------------------------------------------------------------------
# Master keys


class MasterKeyProvider(Protocol):
    """The root of the key hierarchy: wraps and unwraps tenant KEKs.

    `FileMasterKeyProvider` keeps the master key in a local file; an HSM or
    cloud KMS implements the same three members and never reveals its key.
    """

    @property
    def key_id(self) -> str:
        """A stable, non-secret name of the master key, stored beside wrapped keys."""
        ...

    def wrap_key(self, key: bytes) -> bytes:
        """Encrypt and authenticate `key` under the master key."""
        ...

    def unwrap_key(self, wrapped: bytes) -> bytes:
        """Recover a key from `wrap_key` output; raise `CryptoError` if it fails to verify."""
        ...


def _check_wrappable(name: str, key: bytes) -> None:
    if not isinstance(key, bytes | bytearray):
        raise InvalidArgument(name, type(key).__name__, "must be bytes")
    # RFC 3394 wraps whole 64-bit blocks, at least two of them.
    if len(key) < 16 or len(key) % 8:
        raise InvalidArgument(
            name, _redacted(key), "RFC 3394 needs a multiple of 8 bytes, at least 16"
        )


def _unwrap(wrapping_key: bytearray, wrapped: bytes, what: str) -> bytearray:
    """RFC 3394 unwrap of a 32-byte key; `KeyError_` naming `what` when it fails."""
    if not isinstance(wrapped, bytes | bytearray):
        raise InvalidArgument("wrapped", type(wrapped).__name__, "must be bytes")
    try:
        unwrapped = aes_key_unwrap(bytes(wrapping_key), bytes(wrapped))
    except InvalidUnwrap:
        raise KeyError_(
            f"cannot unwrap {what}: the {len(wrapped)}-byte wrapped key fails its RFC 3394 "
            f"integrity check (wrong wrapping key or damaged bytes)"
        ) from None
    if len(unwrapped) != KEY_BYTES:
        raise KeyError_(f"unwrapped {what} is {len(unwrapped)} bytes, expected {KEY_BYTES}")
    return bytearray(unwrapped)


@final
class FileMasterKeyProvider(_SecretHolder):
    """A master key of 32 random bytes in a local file readable only by its owner."""

    def __init__(self, master_key: bytearray, path: Path) -> None:
        """Use `load_or_create`; this constructor adopts an already-loaded key."""
        self._hold(_take_key("master_key", master_key))
        self._path = path
        fingerprint = hashlib.sha256(_MASTER_KEY_ID_DOMAIN)
        fingerprint.update(self._secret)
        # A hash of a 256-bit random key reveals nothing useful about it.
        self._key_id = f"file:{fingerprint.hexdigest()[:32]}"

    @staticmethod
    def load_or_create(path: Path) -> FileMasterKeyProvider:
        """Load the master key at `path`, creating it (mode 0o600) if it does not exist.

        Raises `CorruptionError` naming the file if it does not hold exactly 32
        bytes, and `CryptoError` naming its mode if group or others may access it.
        """
        return FileMasterKeyProvider(_load_or_create_key_file(path), path)

    @staticmethod
    def load(path: Path) -> FileMasterKeyProvider:
        """Load the master key at `path`; `KeyError_` naming the file if it is missing.

        Never creates one: a new master key cannot unwrap the key rings that
        the old one wrapped.
        """
        return FileMasterKeyProvider(_load_existing_key_file(path, "master key"), path)

    @property
    def path(self) -> Path:
        """The key file."""
        return self._path

    @property
    def key_id(self) -> str:
        """`file:` and 32 hex digits of a domain-separated SHA-256 of the master key."""
        return self._key_id

    def wrap_key(self, key: bytes) -> bytes:
        """RFC 3394 AES Key Wrap of `key` (a multiple of 8 bytes, at least 16)."""
        master_key = self._open_secret()
        _check_wrappable("key", key)
        wrapped = aes_key_wrap(bytes(master_key), bytes(key))
        assert len(wrapped) == len(key) + 8
        return wrapped

    def unwrap_key(self, wrapped: bytes) -> bytes:
        """Inverse of `wrap_key`; `KeyError_` (a `CryptoError`) if it fails to verify."""
        master_key = self._open_secret()
        if not isinstance(wrapped, bytes | bytearray):
            raise InvalidArgument("wrapped", type(wrapped).__name__, "must be bytes")
        try:
            return aes_key_unwrap(bytes(master_key), bytes(wrapped))
        except InvalidUnwrap:
            raise KeyError_(
                f"cannot unwrap a {len(wrapped)}-byte wrapped key with master key "
                f"{self._key_id} ({self._path}): RFC 3394 integrity check failed"
            ) from None

    def _describe(self) -> str:
        return f"FileMasterKeyProvider({self._path})"

    def __repr__(self) -> str:
        return f"FileMasterKeyProvider(path={str(self._path)!r}, key_id={self._key_id!r})"


# ---------------------------------------------------------------------------
# Segment data keys


def _check_position(name: str, position: int) -> None:
    # bool is an int subclass; position True is a caller bug, not position 1.
    if not isinstance(position, int) or isinstance(position, bool):
        raise InvalidArgument(name, position, "must be an int")
    if not 0 <= position <= U64_MAX:
        raise InvalidArgument(name, position, "must be in 0..2**64-1")


@final
class SegmentKey(_SecretHolder):
    """A segment's data key (DEK): AES-256-GCM with position-derived nonces.

    Ciphertext = AES-256-GCM(key, nonce, plaintext, associated_data), which is
    the plaintext length plus a 16-byte tag; nonce = 4 zero bytes ‖ position
    (u64 big-endian). See the module docstring for why a (key, nonce) pair
    never repeats; in short, encrypt each position at most once.

    Passing a `bytearray` hands it over: `close()` zeroes that very buffer.
    """

    def __init__(self, key: bytes | bytearray) -> None:
        """Build from a raw 32-byte key; normally obtained from `TenantKeys`."""
        self._hold(_take_key("key", key))
        # AESGCM copies the key into an OpenSSL context we cannot wipe.
        self._aead: AESGCM | None = AESGCM(self._secret)

    def _cipher(self) -> AESGCM:
        self._open_secret()
        assert self._aead is not None
        return self._aead

    def _drop_library_objects(self) -> None:
        self._aead = None

    def encrypt(self, position: int, plaintext: bytes, associated_data: bytes = b"") -> bytes:
        """Encrypt and authenticate `plaintext` (and `associated_data`) for `position`."""
        cipher = self._cipher()
        _check_position("position", position)
        ciphertext = cipher.encrypt(_NONCE.pack(position), plaintext, associated_data)
        assert len(ciphertext) == len(plaintext) + GCM_TAG_BYTES
        return ciphertext

    def encrypt_batch(
        self,
        first_position: int,
        plaintexts: Sequence[bytes],
        associated_data: Sequence[bytes] | None = None,
    ) -> list[bytes]:
        """Encrypt `plaintexts[i]` for position `first_position + i`.

        `associated_data`, when given, has one entry per plaintext.
        """
        cipher = self._cipher()
        _check_position("first_position", first_position)
        count = len(plaintexts)
        if count and first_position + count - 1 > U64_MAX:
            raise InvalidArgument(
                "first_position", first_position, f"a batch of {count} would pass 2**64-1"
            )
        if associated_data is not None and len(associated_data) != count:
            raise InvalidArgument(
                "associated_data",
                f"<{len(associated_data)} entries>",
                f"must have one entry per plaintext ({count})",
            )
        ciphertexts = [
            cipher.encrypt(
                _NONCE.pack(first_position + index),
                plaintext,
                b"" if associated_data is None else associated_data[index],
            )
            for index, plaintext in enumerate(plaintexts)
        ]
        assert len(ciphertexts) == count
        return ciphertexts

    def decrypt(self, position: int, ciphertext: bytes, associated_data: bytes = b"") -> bytes:
        """Return the plaintext `encrypt(position, ...)` made, or raise `CryptoError`.

        Any change to the ciphertext, the associated data, the position or the
        key fails authentication: nothing unauthenticated is ever returned.
        """
        cipher = self._cipher()
        _check_position("position", position)
        try:
            plaintext = cipher.decrypt(_NONCE.pack(position), ciphertext, associated_data)
        except InvalidTag:
            raise CryptoError(
                f"AES-GCM authentication failed for position {position} "
                f"({len(ciphertext)}-byte ciphertext): wrong key, position, associated "
                f"data, or damaged ciphertext"
            ) from None
        assert len(plaintext) == len(ciphertext) - GCM_TAG_BYTES
        return plaintext

    def __repr__(self) -> str:
        return f"SegmentKey(closed={self._closed})"


PAGE_NONCE_BYTES: Final = 12
_PAGE_AAD: Final = struct.Struct(">16sQ")
_PAGE_DOMAIN: Final = b"verity.page.v1\x00\x00"


@final
class PageKey(_SecretHolder):
    """The projection store's page key: AES-256-GCM with a random nonce per page write.

    A sealed page is nonce (12) ‖ ciphertext ‖ tag (16); the associated data
    is "verity.page.v1" padded to 16 bytes ‖ the page number (u64 big-endian),
    so a page copied to another place fails to open. The store rewrites
    freed page numbers, so a nonce cannot come from the page number: each
    seal draws 96 random bits from `random_bytes` (NIST SP 800-38D §8.2.2
    allows 2**32 seals per key this way; the key is replaced whenever the
    store is rebuilt).
    """

    def __init__(
        self, key: bytes | bytearray, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        """Build from a raw 32-byte key; normally obtained from `TenantKeys`."""
        self._hold(_take_key("key", key))
        self._aead: AESGCM | None = AESGCM(self._secret)
        self._random_bytes = random_bytes

    def _cipher(self) -> AESGCM:
        self._open_secret()
        assert self._aead is not None
        return self._aead

    def _drop_library_objects(self) -> None:
        self._aead = None

    def seal(self, page_number: int, page: bytes) -> bytes:
        """Encrypt and authenticate `page` as page `page_number`."""
        cipher = self._cipher()
        _check_position("page_number", page_number)
        nonce = self._random_bytes(PAGE_NONCE_BYTES)
        assert len(nonce) == PAGE_NONCE_BYTES, len(nonce)
        sealed: bytes = nonce + cipher.encrypt(
            nonce, page, _PAGE_AAD.pack(_PAGE_DOMAIN, page_number)
        )
        assert len(sealed) == len(page) + PAGE_NONCE_BYTES + GCM_TAG_BYTES
        return sealed

    def open(self, page_number: int, sealed: bytes) -> bytes:
        """The page `seal(page_number, ...)` made, or raise `CryptoError`."""
        cipher = self._cipher()
        _check_position("page_number", page_number)
        try:
            page = cipher.decrypt(
                sealed[:PAGE_NONCE_BYTES],
                sealed[PAGE_NONCE_BYTES:],
                _PAGE_AAD.pack(_PAGE_DOMAIN, page_number),
            )
        except (InvalidTag, ValueError):
            raise CryptoError(
                f"AES-GCM authentication failed for page {page_number} ({len(sealed)} sealed "
                "bytes): wrong key, page number, or damaged page"
            ) from None
        assert len(page) == len(sealed) - PAGE_NONCE_BYTES - GCM_TAG_BYTES
        return page

    def __repr__(self) -> str:
        return f"PageKey(closed={self._closed})"


# ---------------------------------------------------------------------------
# Tenant key-encryption keys


@final
class TenantKeys(_SecretHolder):
    """A tenant's key-encryption key (KEK): makes and opens its segments' DEKs.

    The KEK is 32 random bytes, stored only wrapped by the master key; each
    DEK is stored only wrapped by the KEK (RFC 3394).
    """

    def __init__(self, tenant: TenantId, kek: bytearray) -> None:
        """Use `create` or `load`; this constructor adopts an already-unwrapped KEK."""
        if not isinstance(tenant, TenantId):
            raise InvalidArgument("tenant", tenant, "must be a TenantId")
        self._hold(_take_key("kek", kek))
        self._tenant = tenant

    @staticmethod
    def create(provider: MasterKeyProvider, tenant: TenantId) -> tuple[TenantKeys, bytes]:
        """A fresh random KEK for `tenant`, and its master-wrapped form to store."""
        kek = bytearray(os.urandom(KEY_BYTES))
        keys = TenantKeys(tenant, kek)
        return keys, provider.wrap_key(bytes(kek))

    @staticmethod
    def load(provider: MasterKeyProvider, tenant: TenantId, wrapped_kek: bytes) -> TenantKeys:
        """Unwrap a stored KEK; `CryptoError` if it does not verify under `provider`."""
        if not isinstance(tenant, TenantId):
            raise InvalidArgument("tenant", tenant, "must be a TenantId")
        kek = provider.unwrap_key(wrapped_kek)
        if len(kek) != KEY_BYTES:
            raise KeyError_(
                f"KEK of tenant {int(tenant)} unwrapped to {len(kek)} bytes, expected {KEY_BYTES}"
            )
        return TenantKeys(tenant, bytearray(kek))

    @property
    def tenant(self) -> TenantId:
        """The tenant this KEK belongs to."""
        return self._tenant

    def new_segment_dek(self) -> tuple[SegmentKey, bytes]:
        """A fresh random DEK for one new segment (or generation), and its wrapped form.

        Never reuse a DEK for a second segment or a rewritten segment: that is
        what keeps (key, nonce) pairs unique.
        """
        dek, wrapped = self._new_wrapped_key()
        return SegmentKey(dek), wrapped

    def _new_wrapped_key(self) -> tuple[bytearray, bytes]:
        """32 fresh random bytes, and the same wrapped by the KEK (RFC 3394) to store."""
        kek = self._open_secret()
        key = bytearray(os.urandom(KEY_BYTES))
        wrapped = aes_key_wrap(bytes(kek), bytes(key))
        assert len(wrapped) == KEY_BYTES + 8
        return key, wrapped

    def open_segment_dek(self, wrapped: bytes) -> SegmentKey:
        """Unwrap a DEK made by `new_segment_dek`; `KeyError_` if it fails to verify."""
        kek = self._open_secret()
        return SegmentKey(_unwrap(kek, wrapped, f"segment DEK of tenant {int(self._tenant)}"))

    def new_page_key(self) -> tuple[PageKey, bytes]:
        """A fresh random key for the projection store's pages, and its wrapped form."""
        key, wrapped = self._new_wrapped_key()
        return PageKey(key), wrapped

    def open_page_key(self, wrapped: bytes) -> PageKey:
        """Unwrap a key made by `new_page_key`; `KeyError_` if it fails to verify."""
        kek = self._open_secret()
        return PageKey(_unwrap(kek, wrapped, f"page key of tenant {int(self._tenant)}"))

    def _describe(self) -> str:
        return f"TenantKeys(tenant={int(self._tenant)})"

    def __repr__(self) -> str:
        return f"TenantKeys(tenant={int(self._tenant)}, closed={self._closed})"


# ---------------------------------------------------------------------------
# Signing


@final
class SigningKey(_SecretHolder):
    """An Ed25519 (RFC 8032) private key, held as its 32-byte seed.

    Passing a `bytearray` seed hands it over: `close()` zeroes that buffer.
    """

    def __init__(self, seed: bytes | bytearray) -> None:
        """Use `generate`, `from_seed` or `load_or_create`."""
        self._hold(_take_key("seed", seed))
        # cryptography copies the seed into an OpenSSL key we cannot wipe.
        self._private_key: Ed25519PrivateKey | None = Ed25519PrivateKey.from_private_bytes(
            self._secret
        )
        self._public_key = self._private_key.public_key().public_bytes_raw()
        assert len(self._public_key) == _PUBLIC_KEY_BYTES

    @staticmethod
    def generate() -> SigningKey:
        """A new key from 32 OS-random bytes (an RFC 8032 private key is exactly that)."""
        return SigningKey(bytearray(os.urandom(KEY_BYTES)))

    @staticmethod
    def from_seed(seed: bytes | bytearray) -> SigningKey:
        """The key whose RFC 8032 private key (seed) is these 32 bytes."""
        return SigningKey(seed)

    @staticmethod
    def load_or_create(path: Path) -> SigningKey:
        """Load the raw 32-byte seed at `path`, creating it (mode 0o600) if missing.

        Raises `CorruptionError` naming the file if it does not hold exactly 32
        bytes, and `CryptoError` naming its mode if group or others may access it.
        """
        return SigningKey(_load_or_create_key_file(path))

    @staticmethod
    def load(path: Path) -> SigningKey:
        """Load the raw 32-byte seed at `path`; `KeyError_` naming the file if it is missing."""
        return SigningKey(_load_existing_key_file(path, "signing key"))

    def public_key_bytes(self) -> bytes:
        """The raw 32-byte public key (kept after `close()`: it is not secret)."""
        return self._public_key

    def key_id(self) -> bytes:
        """SHA-256 of the raw public key (`verity.proofs.key_id_of`)."""
        return key_id_of(self._public_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message`."""
        self._open_secret()
        assert self._private_key is not None
        signature = self._private_key.sign(message)
        assert len(signature) == _SIGNATURE_BYTES
        return signature

    def _drop_library_objects(self) -> None:
        self._private_key = None

    def __repr__(self) -> str:
        return f"SigningKey(public={self._public_key.hex()}, closed={self._closed})"


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise `InvalidSignature` unless `signature` is Ed25519 over `message` by `public_key`.

    Wrong lengths (public key not 32 bytes, signature not 64) or a public key
    that is not a curve point raise `InvalidArgument`.
    """
    if not isinstance(public_key, bytes) or len(public_key) != _PUBLIC_KEY_BYTES:
        raise InvalidArgument("public_key", public_key, "must be 32 raw Ed25519 bytes")
    if not isinstance(signature, bytes) or len(signature) != _SIGNATURE_BYTES:
        raise InvalidArgument("signature", signature, "must be 64 bytes")
    try:
        verifier = Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        raise InvalidArgument("public_key", public_key, "is not an Ed25519 public key") from None
    try:
        verifier.verify(signature, message)
    except _CryptographyInvalidSignature:
        raise InvalidSignature(
            f"Ed25519 signature {signature.hex()} over a {len(message)}-byte message does not "
            f"verify under public key {public_key.hex()}"
        ) from None


def sign_checkpoint(
    key: SigningKey, tree_size: int, root: bytes, chain_hash: bytes, timestamp: int
) -> SignedCheckpoint:
    """Sign "the log had `tree_size` records with this root and head hash at `timestamp`".

    The signature covers `verity.proofs.signed_checkpoint_bytes` (docs/formats.md
    §3), so `verity.proofs.verify_signed_checkpoint` accepts the result.
    """
    _check_position("tree_size", tree_size)
    _check_position("timestamp", timestamp)
    for name, value in (("root", root), ("chain_hash", chain_hash)):
        if not isinstance(value, bytes) or len(value) != _HASH_BYTES:
            raise InvalidArgument(name, value, f"must be {_HASH_BYTES} bytes")
    key_id = key.key_id()
    body = signed_checkpoint_bytes(tree_size, root, chain_hash, timestamp, key_id)
    signed = SignedCheckpoint(
        tree_size=tree_size,
        root=root,
        chain_hash=chain_hash,
        timestamp=timestamp,
        key_id=key_id,
        signature=key.sign(body),
    )
    assert signed.signed_bytes() == body
    return signed


# ---------------------------------------------------------------------------
# Tokenization


@final
class Tokenizer(_SecretHolder):
    """Deterministic keyed tokens (pseudonyms) for values such as e-mail addresses.

    token = HMAC-SHA-256(key, len(domain) ‖ domain ‖ value), where `domain` is
    UTF-8 encoded and `len(domain)` is its byte length as u32 big-endian. The
    length prefix makes the split between domain and value unambiguous, so
    ("ab", b"c") and ("a", b"bc") never collide. The same value and domain
    always give the same 32-byte token; another domain gives an unrelated one,
    so tokens from two domains cannot be joined. Without the key a token
    reveals nothing about the value.

    Passing a `bytearray` key hands it over: `close()` zeroes that buffer.
    """

    def __init__(self, key: bytes | bytearray) -> None:
        """Build from a 32-byte secret key."""
        self._hold(_take_key("key", key))

    def token(self, value: bytes, domain: str) -> bytes:
        """The 32-byte token of `value` in `domain` (a non-empty name such as "email")."""
        key = self._open_secret()
        if not isinstance(domain, str) or not domain:
            raise InvalidArgument("domain", domain, "must be a non-empty str")
        if not isinstance(value, bytes | bytearray):
            raise InvalidArgument("value", type(value).__name__, "must be bytes")
        domain_bytes = domain.encode("utf-8")
        mac = hmac.new(key, struct.pack(">I", len(domain_bytes)), hashlib.sha256)
        mac.update(domain_bytes)
        mac.update(value)
        token = mac.digest()
        assert len(token) == _HASH_BYTES
        return token

    def __repr__(self) -> str:
        return f"Tokenizer(closed={self._closed})"
