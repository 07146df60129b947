"""verity.crypto: known-answer tests against the RFCs, and the behaviour callers rely on."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import struct
from dataclasses import replace
from pathlib import Path

import blake3
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from verity.crypto import (
    CHAIN_DOMAIN,
    GCM_TAG_BYTES,
    PARALLEL_THRESHOLD_BYTES,
    FileMasterKeyProvider,
    SegmentKey,
    SigningKey,
    TenantKeys,
    Tokenizer,
    chain_hash,
    internal_hash,
    sign_checkpoint,
    verify_signature,
)
from verity.errors import (
    ClosedError,
    CorruptionError,
    CryptoError,
    InvalidArgument,
    InvalidSignature,
)
from verity.proofs import key_id_of, verify_signed_checkpoint
from verity.storage import Record
from verity.types import Hash, Offset, RecordHeader, RecordKind, TenantId, Timestamp

# RFC 3394 §4.6: 256-bit KEK wrapping 256 bits of key data.
RFC3394_KEK = bytes(range(32))
RFC3394_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
RFC3394_WRAPPED = bytes.fromhex(
    "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
)

# RFC 8032 §7.1 TEST 1: empty message.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

BLAKE3_EMPTY = bytes.fromhex("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262")


def write_key_file(path: Path, content: bytes, mode: int = 0o600) -> None:
    path.write_bytes(content)
    path.chmod(mode)


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def record_bytes(offset: int, prev_hash: bytes, timestamp: int, kind: int, payload: bytes) -> bytes:
    # docs/formats.md §1.1, field by field.
    return struct.pack(">Q32sQIB", offset, prev_hash, timestamp, len(payload), kind) + payload


# --- chain_hash ------------------------------------------------------------------------------


def test_chain_domain_is_the_documented_prefix() -> None:
    assert CHAIN_DOMAIN == b"verity.chain.v1\x00"
    assert len(CHAIN_DOMAIN) == 16


@given(
    offset=st.integers(0, 2**64 - 1),
    prev_hash=st.binary(min_size=32, max_size=32),
    timestamp=st.integers(0, 2**64 - 1),
    kind=st.integers(0, 2),
    payload=st.binary(max_size=256),
)
def test_chain_hash_is_domain_separated_sha256_of_record_bytes(
    offset: int, prev_hash: bytes, timestamp: int, kind: int, payload: bytes
) -> None:
    record = record_bytes(offset, prev_hash, timestamp, kind, payload)
    result = chain_hash(record)
    assert isinstance(result, Hash)
    assert result == hashlib.sha256(b"verity.chain.v1\x00" + record).digest()
    assert result != hashlib.sha256(record).digest()


def test_chain_hash_matches_storage_records() -> None:
    header = RecordHeader(Offset(7), Hash(b"\x11" * 32), Timestamp(123), 5, RecordKind.DATA)
    stored = Record(header, b"hello")
    assert chain_hash(stored.record_bytes()) == stored.chain_hash()


def test_chain_hash_commits_to_prev_hash() -> None:
    first = record_bytes(1, b"\x00" * 32, 10, 0, b"x")
    second = record_bytes(1, b"\x01" + b"\x00" * 31, 10, 0, b"x")
    assert chain_hash(first) != chain_hash(second)


def test_chain_hash_of_a_truncated_record_is_a_caller_bug() -> None:
    with pytest.raises(AssertionError):
        chain_hash(b"\x00" * 52)
    with pytest.raises(AssertionError):
        # Header says 5 payload bytes, only 4 follow.
        chain_hash(record_bytes(0, bytes(32), 1, 0, b"hello")[:-1])


# --- internal_hash ---------------------------------------------------------------------------


def test_internal_hash_empty_known_answer() -> None:
    assert internal_hash(b"") == BLAKE3_EMPTY


@pytest.mark.parametrize(
    "size",
    [
        1,
        PARALLEL_THRESHOLD_BYTES - 1,
        PARALLEL_THRESHOLD_BYTES,
        PARALLEL_THRESHOLD_BYTES + 1,
        4 * PARALLEL_THRESHOLD_BYTES + 17,
    ],
)
def test_internal_hash_equals_blake3_below_and_above_threshold(size: int) -> None:
    data = bytes(index % 251 for index in range(size))
    digest = internal_hash(data)
    assert digest == blake3.blake3(data).digest()
    assert len(digest) == 32


# --- master key file -------------------------------------------------------------------------


def test_file_provider_creates_owner_only_file_and_reloads_same_key(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    with FileMasterKeyProvider.load_or_create(path) as created:
        assert file_mode(path) == 0o600
        assert path.stat().st_size == 32
        wrapped = created.wrap_key(RFC3394_KEY)
        key_id = created.key_id
    with FileMasterKeyProvider.load_or_create(path) as reloaded:
        assert reloaded.key_id == key_id
        assert reloaded.unwrap_key(wrapped) == RFC3394_KEY
    # No temporary file is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.key"]


def test_two_file_providers_have_different_keys(tmp_path: Path) -> None:
    first = FileMasterKeyProvider.load_or_create(tmp_path / "a.key")
    second = FileMasterKeyProvider.load_or_create(tmp_path / "b.key")
    assert first.key_id != second.key_id
    assert (tmp_path / "a.key").read_bytes() != (tmp_path / "b.key").read_bytes()


def test_file_provider_rfc3394_known_answer(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    write_key_file(path, RFC3394_KEK)
    provider = FileMasterKeyProvider.load_or_create(path)
    assert provider.wrap_key(RFC3394_KEY) == RFC3394_WRAPPED
    assert provider.unwrap_key(RFC3394_WRAPPED) == RFC3394_KEY
    # An existing key file is loaded, never replaced.
    assert path.read_bytes() == RFC3394_KEK


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o620])
def test_file_provider_refuses_key_file_others_can_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    write_key_file(path, RFC3394_KEK, mode)
    with pytest.raises(CryptoError) as raised:
        FileMasterKeyProvider.load_or_create(path)
    assert oct(mode) in str(raised.value)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_size_key_file_is_corruption_naming_path(tmp_path: Path, size: int) -> None:
    path = tmp_path / "master.key"
    write_key_file(path, b"\x07" * size)
    with pytest.raises(CorruptionError) as raised:
        FileMasterKeyProvider.load_or_create(path)
    assert raised.value.file == str(path)
    assert str(path) in str(raised.value)
    assert path.read_bytes() == b"\x07" * size


def test_unwrap_under_wrong_master_key_is_crypto_error(tmp_path: Path) -> None:
    ours = FileMasterKeyProvider.load_or_create(tmp_path / "ours.key")
    theirs = FileMasterKeyProvider.load_or_create(tmp_path / "theirs.key")
    with pytest.raises(CryptoError) as raised:
        ours.unwrap_key(theirs.wrap_key(RFC3394_KEY))
    assert ours.key_id in str(raised.value)


def test_unwrap_of_damaged_bytes_is_crypto_error(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    write_key_file(path, RFC3394_KEK)
    provider = FileMasterKeyProvider.load_or_create(path)
    damaged = bytes([RFC3394_WRAPPED[0] ^ 1]) + RFC3394_WRAPPED[1:]
    with pytest.raises(CryptoError, match="40-byte wrapped key"):
        provider.unwrap_key(damaged)
    with pytest.raises(CryptoError):
        provider.unwrap_key(RFC3394_WRAPPED[:-8] + b"\x00" * 3)


def test_wrap_rejects_key_sizes_rfc3394_cannot_wrap(tmp_path: Path) -> None:
    provider = FileMasterKeyProvider.load_or_create(tmp_path / "master.key")
    for bad in (b"", b"\x01" * 8, b"\x01" * 20):
        with pytest.raises(InvalidArgument) as raised:
            provider.wrap_key(bad)
        assert raised.value.name == "key"


# --- tenant keys and segment DEKs ------------------------------------------------------------


def test_tenant_kek_roundtrips_through_the_master_key(tmp_path: Path) -> None:
    provider = FileMasterKeyProvider.load_or_create(tmp_path / "master.key")
    tenant = TenantId(42)
    keys, wrapped_kek = TenantKeys.create(provider, tenant)
    assert keys.tenant == tenant
    dek, wrapped_dek = keys.new_segment_dek()
    ciphertext = dek.encrypt(3, b"payload", b"ad")

    reloaded = TenantKeys.load(provider, tenant, wrapped_kek)
    opened = reloaded.open_segment_dek(wrapped_dek)
    assert opened.decrypt(3, ciphertext, b"ad") == b"payload"
    assert opened.encrypt(3, b"payload", b"ad") == ciphertext


def test_each_segment_dek_is_fresh(tmp_path: Path) -> None:
    provider = FileMasterKeyProvider.load_or_create(tmp_path / "master.key")
    keys, _ = TenantKeys.create(provider, TenantId(1))
    first, first_wrapped = keys.new_segment_dek()
    second, second_wrapped = keys.new_segment_dek()
    assert first_wrapped != second_wrapped
    assert first.encrypt(0, b"same") != second.encrypt(0, b"same")


def test_open_segment_dek_known_answer() -> None:
    # The tenant KEK and DEK of RFC 3394 §4.6: unwrapping gives exactly that DEK.
    keys = TenantKeys(TenantId(9), bytearray(RFC3394_KEK))
    dek = keys.open_segment_dek(RFC3394_WRAPPED)
    nonce = bytes(4) + (5).to_bytes(8, "big")
    assert dek.encrypt(5, b"record") == AESGCM(RFC3394_KEY).encrypt(nonce, b"record", b"")


def test_dek_of_another_tenant_does_not_open(tmp_path: Path) -> None:
    provider = FileMasterKeyProvider.load_or_create(tmp_path / "master.key")
    alice, _ = TenantKeys.create(provider, TenantId(1))
    bob, _ = TenantKeys.create(provider, TenantId(2))
    _, wrapped = alice.new_segment_dek()
    with pytest.raises(CryptoError) as raised:
        bob.open_segment_dek(wrapped)
    assert "tenant 2" in str(raised.value)


def test_kek_under_another_master_does_not_load(tmp_path: Path) -> None:
    ours = FileMasterKeyProvider.load_or_create(tmp_path / "ours.key")
    theirs = FileMasterKeyProvider.load_or_create(tmp_path / "theirs.key")
    _, wrapped_kek = TenantKeys.create(theirs, TenantId(1))
    with pytest.raises(CryptoError):
        TenantKeys.load(ours, TenantId(1), wrapped_kek)


def test_tenant_must_be_a_tenant_id(tmp_path: Path) -> None:
    provider = FileMasterKeyProvider.load_or_create(tmp_path / "master.key")
    with pytest.raises(InvalidArgument) as raised:
        TenantKeys.create(provider, 5)  # type: ignore[arg-type]
    assert raised.value.name == "tenant"


# --- AES-GCM ---------------------------------------------------------------------------------


def fresh_segment_key() -> SegmentKey:
    return SegmentKey(os.urandom(32))


@given(
    position=st.integers(0, 2**64 - 1),
    plaintext=st.binary(max_size=512),
    associated_data=st.binary(max_size=64),
)
def test_segment_key_roundtrip(position: int, plaintext: bytes, associated_data: bytes) -> None:
    key = fresh_segment_key()
    ciphertext = key.encrypt(position, plaintext, associated_data)
    assert len(ciphertext) == len(plaintext) + GCM_TAG_BYTES
    assert key.decrypt(position, ciphertext, associated_data) == plaintext


def test_nonce_is_position_as_documented() -> None:
    raw = os.urandom(32)
    position = 0x0102030405060708
    nonce = b"\x00\x00\x00\x00" + bytes.fromhex("0102030405060708")
    expected = AESGCM(raw).encrypt(nonce, b"data", b"ad")
    assert SegmentKey(raw).encrypt(position, b"data", b"ad") == expected


def test_same_plaintext_at_different_positions_differs() -> None:
    key = fresh_segment_key()
    ciphertexts = {key.encrypt(position, b"identical plaintext") for position in range(64)}
    assert len(ciphertexts) == 64


def test_flipped_ciphertext_byte_is_detected() -> None:
    key = fresh_segment_key()
    ciphertext = key.encrypt(11, b"account balance: 100")
    for index in (0, len(ciphertext) // 2, len(ciphertext) - 1):
        tampered = bytearray(ciphertext)
        tampered[index] ^= 0x01
        with pytest.raises(CryptoError) as raised:
            key.decrypt(11, bytes(tampered))
        assert "position 11" in str(raised.value)


def test_wrong_position_is_detected() -> None:
    key = fresh_segment_key()
    ciphertext = key.encrypt(11, b"record")
    with pytest.raises(CryptoError, match="position 12"):
        key.decrypt(12, ciphertext)


def test_wrong_associated_data_or_key_is_detected() -> None:
    key = fresh_segment_key()
    ciphertext = key.encrypt(0, b"record", b"tenant 1")
    with pytest.raises(CryptoError):
        key.decrypt(0, ciphertext, b"tenant 2")
    with pytest.raises(CryptoError):
        fresh_segment_key().decrypt(0, ciphertext, b"tenant 1")
    with pytest.raises(CryptoError):
        key.decrypt(0, ciphertext[: GCM_TAG_BYTES - 1], b"tenant 1")


@pytest.mark.parametrize("position", [-1, 2**64, True, 1.0])
def test_position_out_of_range_is_rejected(position: object) -> None:
    key = fresh_segment_key()
    with pytest.raises(InvalidArgument) as raised:
        key.encrypt(position, b"x")  # type: ignore[arg-type]
    assert raised.value.value is position
    with pytest.raises(InvalidArgument):
        key.decrypt(position, bytes(32))  # type: ignore[arg-type]


def test_encrypt_batch_equals_encrypting_one_by_one() -> None:
    key = fresh_segment_key()
    plaintexts = [b"a", b"", b"ccc" * 100]
    associated = [b"1", b"2", b"3"]
    batch = key.encrypt_batch(1000, plaintexts, associated)
    assert batch == [
        key.encrypt(1000 + index, plaintext, associated[index])
        for index, plaintext in enumerate(plaintexts)
    ]
    assert key.encrypt_batch(5, plaintexts, None) == [
        key.encrypt(5 + index, plaintext) for index, plaintext in enumerate(plaintexts)
    ]
    assert key.encrypt_batch(0, [], None) == []


def test_encrypt_batch_rejects_bad_arguments() -> None:
    key = fresh_segment_key()
    with pytest.raises(InvalidArgument) as raised:
        key.encrypt_batch(0, [b"a", b"b"], [b"only one"])
    assert raised.value.name == "associated_data"
    with pytest.raises(InvalidArgument) as raised:
        key.encrypt_batch(2**64 - 1, [b"a", b"b"], None)
    assert raised.value.name == "first_position"
    assert key.encrypt_batch(2**64 - 2, [b"a", b"b"], None)[1] == key.encrypt(2**64 - 1, b"b")


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_wrong_size_key_is_rejected_without_revealing_it(size: int) -> None:
    secret = b"\xab" * size
    for build in (SegmentKey, Tokenizer, SigningKey.from_seed):
        with pytest.raises(InvalidArgument) as raised:
            build(secret)
        assert f"got {size}" in str(raised.value)
        assert "\\xab" not in str(raised.value)
        assert "abab" not in str(raised.value)


# --- clearing key material -------------------------------------------------------------------


def test_close_zeroes_segment_key_buffer_and_blocks_use() -> None:
    buffer = bytearray(os.urandom(32))
    key = SegmentKey(buffer)
    ciphertext = key.encrypt(0, b"secret")
    key.close()
    assert buffer == bytearray(32)
    assert key.closed
    with pytest.raises(ClosedError):
        key.encrypt(1, b"x")
    with pytest.raises(ClosedError):
        key.decrypt(0, ciphertext)
    with pytest.raises(ClosedError):
        key.encrypt_batch(0, [b"x"], None)
    key.close()  # idempotent
    assert key.closed


def test_context_manager_closes_tokenizer_and_signing_key() -> None:
    token_key = bytearray(os.urandom(32))
    with Tokenizer(token_key) as tokenizer:
        assert len(tokenizer.token(b"v", "email")) == 32
    assert token_key == bytearray(32)
    with pytest.raises(ClosedError, match="Tokenizer is closed"):
        tokenizer.token(b"v", "email")

    seed = bytearray(RFC8032_SECRET)
    with SigningKey.from_seed(seed) as signing_key:
        assert signing_key.sign(b"") == RFC8032_SIGNATURE
    assert seed == bytearray(32)
    with pytest.raises(ClosedError):
        signing_key.sign(b"")
    with pytest.raises(ClosedError):
        sign_checkpoint(signing_key, 0, bytes(32), bytes(32), 0)
    # The public half is not secret and stays usable.
    assert signing_key.public_key_bytes() == RFC8032_PUBLIC


def test_closed_tenant_keys_and_provider_refuse_use(tmp_path: Path) -> None:
    provider = FileMasterKeyProvider.load_or_create(tmp_path / "master.key")
    keys, wrapped_kek = TenantKeys.create(provider, TenantId(3))
    _, wrapped_dek = keys.new_segment_dek()
    keys.close()
    with pytest.raises(ClosedError, match="tenant=3"):
        keys.new_segment_dek()
    with pytest.raises(ClosedError):
        keys.open_segment_dek(wrapped_dek)
    provider.close()
    with pytest.raises(ClosedError, match=r"master\.key"):
        provider.unwrap_key(wrapped_kek)
    with pytest.raises(ClosedError):
        TenantKeys.create(provider, TenantId(4))
    with pytest.raises(ClosedError), provider:
        pass


def test_bytes_key_is_copied_not_shared() -> None:
    raw = os.urandom(32)
    key = SegmentKey(raw)
    key.close()
    assert raw != bytes(32)
    assert SegmentKey(raw).decrypt(0, SegmentKey(raw).encrypt(0, b"x")) == b"x"


# --- signing ---------------------------------------------------------------------------------


def test_ed25519_rfc8032_test_1() -> None:
    key = SigningKey.from_seed(RFC8032_SECRET)
    assert key.public_key_bytes() == RFC8032_PUBLIC
    assert key.key_id() == key_id_of(RFC8032_PUBLIC)
    assert key.sign(b"") == RFC8032_SIGNATURE
    verify_signature(RFC8032_PUBLIC, b"", RFC8032_SIGNATURE)


def test_verify_signature_rejects_wrong_message_key_or_signature() -> None:
    key = SigningKey.generate()
    signature = key.sign(b"message")
    verify_signature(key.public_key_bytes(), b"message", signature)
    with pytest.raises(InvalidSignature):
        verify_signature(key.public_key_bytes(), b"messagE", signature)
    with pytest.raises(InvalidSignature):
        verify_signature(SigningKey.generate().public_key_bytes(), b"message", signature)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(InvalidSignature):
        verify_signature(key.public_key_bytes(), b"message", flipped)


def test_verify_signature_rejects_wrong_lengths() -> None:
    with pytest.raises(InvalidArgument) as raised:
        verify_signature(RFC8032_PUBLIC[:31], b"", RFC8032_SIGNATURE)
    assert raised.value.name == "public_key"
    with pytest.raises(InvalidArgument) as raised:
        verify_signature(RFC8032_PUBLIC, b"", RFC8032_SIGNATURE + b"\x00")
    assert raised.value.name == "signature"


def test_generated_keys_differ() -> None:
    assert SigningKey.generate().public_key_bytes() != SigningKey.generate().public_key_bytes()


def test_signing_key_file_is_created_owner_only_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    created = SigningKey.load_or_create(path)
    assert file_mode(path) == 0o600
    reloaded = SigningKey.load_or_create(path)
    assert reloaded.public_key_bytes() == created.public_key_bytes()
    verify_signature(reloaded.public_key_bytes(), b"m", created.sign(b"m"))


def test_signing_key_file_is_the_raw_seed(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    write_key_file(path, RFC8032_SECRET)
    assert SigningKey.load_or_create(path).public_key_bytes() == RFC8032_PUBLIC


def test_signing_key_file_of_wrong_size_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    write_key_file(path, RFC8032_SECRET + RFC8032_PUBLIC)
    with pytest.raises(CorruptionError) as raised:
        SigningKey.load_or_create(path)
    assert raised.value.file == str(path)


def test_signed_checkpoint_verifies_with_proofs_module() -> None:
    key = SigningKey.from_seed(RFC8032_SECRET)
    root = hashlib.sha256(b"root").digest()
    head = hashlib.sha256(b"head").digest()
    signed = sign_checkpoint(key, 10, root, head, 1_700_000_000_000_000_000)
    assert signed.tree_size == 10
    assert signed.root == root
    assert signed.chain_hash == head
    assert signed.key_id == key.key_id()
    verify_signed_checkpoint(signed, RFC8032_PUBLIC)
    verify_signature(RFC8032_PUBLIC, signed.signed_bytes(), signed.signature)


def flip_first_bit(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x80]) + data[1:]


def test_signed_checkpoint_fails_after_one_byte_change() -> None:
    key = SigningKey.from_seed(RFC8032_SECRET)
    signed = sign_checkpoint(key, 10, bytes(32), b"\x22" * 32, 99)
    verify_signed_checkpoint(signed, RFC8032_PUBLIC)
    tampered_copies = [
        replace(signed, root=flip_first_bit(signed.root)),
        replace(signed, chain_hash=flip_first_bit(signed.chain_hash)),
        replace(signed, signature=flip_first_bit(signed.signature)),
        replace(signed, tree_size=11),
        replace(signed, timestamp=98),
    ]
    for tampered in tampered_copies:
        with pytest.raises(InvalidSignature):
            verify_signed_checkpoint(tampered, RFC8032_PUBLIC)


def test_signed_checkpoint_fails_under_another_key() -> None:
    signed = sign_checkpoint(SigningKey.generate(), 1, bytes(32), bytes(32), 1)
    with pytest.raises(InvalidSignature):
        verify_signed_checkpoint(signed, RFC8032_PUBLIC)
    with pytest.raises(InvalidSignature):
        verify_signed_checkpoint(replace(signed, key_id=key_id_of(RFC8032_PUBLIC)), RFC8032_PUBLIC)


def test_sign_checkpoint_rejects_bad_arguments() -> None:
    key = SigningKey.generate()
    with pytest.raises(InvalidArgument) as raised:
        sign_checkpoint(key, -1, bytes(32), bytes(32), 0)
    assert raised.value.name == "tree_size"
    with pytest.raises(InvalidArgument) as raised:
        sign_checkpoint(key, 0, bytes(31), bytes(32), 0)
    assert raised.value.name == "root"
    with pytest.raises(InvalidArgument) as raised:
        sign_checkpoint(key, 0, bytes(32), bytes(32), 2**64)
    assert raised.value.name == "timestamp"


# --- tokenization ----------------------------------------------------------------------------


def test_token_byte_layout_known_answer() -> None:
    key = bytes(range(32))
    expected = hmac.new(key, b"\x00\x00\x00\x05email" + b"alice@example.com", "sha256").digest()
    assert Tokenizer(key).token(b"alice@example.com", "email") == expected


@given(value=st.binary(max_size=64), domain=st.text(min_size=1, max_size=16))
def test_token_is_deterministic(value: bytes, domain: str) -> None:
    key = bytes(range(32))
    assert Tokenizer(key).token(value, domain) == Tokenizer(key).token(value, domain)


def test_token_domains_and_keys_separate() -> None:
    tokenizer = Tokenizer(bytes(range(32)))
    assert tokenizer.token(b"alice", "email") != tokenizer.token(b"alice", "name")
    # The length prefix keeps the domain/value split unambiguous.
    assert tokenizer.token(b"c", "ab") != tokenizer.token(b"bc", "a")
    assert tokenizer.token(b"alice", "email") != Tokenizer(bytes(32)).token(b"alice", "email")
    assert tokenizer.token(b"alice", "email") != tokenizer.token(b"alicf", "email")


def test_token_rejects_empty_domain() -> None:
    with pytest.raises(InvalidArgument) as raised:
        Tokenizer(bytes(32)).token(b"v", "")
    assert raised.value.name == "domain"
