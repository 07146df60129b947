"""The spec of encryption at rest (verity_spec.envelope): known answers, round trips, tampering."""

from __future__ import annotations

import json

import icontract
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from hypothesis import given, settings
from hypothesis import strategies as st

from verity_spec import envelope as spec
from verity_spec import kernel as spec_kernel
from verity_spec.errors import (
    CorruptionError,
    DamagedFileError,
    ExposedKeyFileError,
    WrongKeyError,
)

MASTER = bytes(range(32))
KEK = bytes(range(32, 64))
DEK = bytes(range(64, 96))
OTHER = bytes(range(96, 128))
NOW = 1_767_225_600_000_000_000
U64_MAX = 2**64 - 1


def appended_event(data_class: int, events: tuple[bytes, ...] = (b"pulse 72",)) -> bytes:
    state = spec_kernel.initial_state(7)
    state, _ = spec_kernel.apply(state, spec_kernel.CreateStream(7, "s", data_class, NOW))
    stream = state.streams[0].stream
    _, effects = spec_kernel.apply(
        state, spec_kernel.AppendBatch(7, stream, events, None, None, NOW + 1)
    )
    [payload] = [e.payload for e in effects if isinstance(e, spec_kernel.AppendRecord)]
    return payload


def created_event(data_class: int) -> bytes:
    _, effects = spec_kernel.apply(
        spec_kernel.initial_state(7), spec_kernel.CreateStream(7, "s", data_class, NOW)
    )
    [payload] = [e.payload for e in effects if isinstance(e, spec_kernel.AppendRecord)]
    return payload


# ---------------------------------------------------------------- the primitives' own vectors


def test_key_wrap_is_rfc_3394_section_4_6() -> None:
    # RFC 3394 §4.6: wrap 256 bits of key data with a 256-bit KEK.
    kek = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
    key = bytes.fromhex("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f")
    wrapped = bytes.fromhex(
        "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21"
    )
    assert spec.wrap_key(kek, key) == wrapped
    assert spec.unwrap_key(kek, wrapped, "the RFC's key") == key


def test_aes_gcm_is_the_gcm_papers_test_case_16() -> None:
    # McGrew and Viega, "The Galois/Counter Mode of Operation", test case 16 (AES-256, 96-bit IV).
    key = bytes.fromhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    iv = bytes.fromhex("cafebabefacedbaddecaf888")
    plain = bytes.fromhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    )
    aad = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    sealed = bytes.fromhex(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        "76fc6ece0f4e1768cddf8853bb2d551b"
    )
    assert spec._gcm_seal(key, iv, plain, aad) == sealed


# ---------------------------------------------------------------- the record envelope


def test_nonce_and_associated_data_byte_for_byte() -> None:
    assert spec.nonce(5) == bytes.fromhex("000000000000000000000005")
    assert spec.nonce(U64_MAX) == bytes.fromhex("00000000ffffffffffffffff")
    assert spec.associated_data(0x01020304, 7, 5) == bytes.fromhex(
        "020102030400000000000000070000000000000005"
    )
    assert spec.associated_data(1, U64_MAX, 2**63) == bytes.fromhex(
        "0200000001ffffffffffffffff8000000000000000"
    )


def test_seal_is_marker_dek_id_then_aes_gcm_under_the_offset_nonce() -> None:
    plain = appended_event(4)
    nonce = bytes.fromhex("000000000000000000000009")
    aad = bytes.fromhex("020000002a00000000000000070000000000000009")
    expected = bytes.fromhex("020000002a") + AESGCM(DEK).encrypt(nonce, plain, aad)
    assert spec.seal(7, 9, 42, DEK, plain) == expected
    assert len(expected) == len(plain) + 21


def test_a_pinned_sealed_record() -> None:
    # A regression pin: the bytes a tenant 7 record at offset 3 stores under DEK 1 (key 64..95).
    plain = b"\x03VQL"
    assert spec.seal(7, 3, 1, DEK, plain).hex() == (
        "0200000001"
        + AESGCM(DEK).encrypt(spec.nonce(3), plain, spec.associated_data(1, 7, 3)).hex()
    )
    assert (
        spec.seal(7, 3, 1, DEK, plain).hex() == "02000000013a6077efb6eee4bf64424e4922d01c6f41e9406c"
    )


@settings(max_examples=60, deadline=None)
@given(
    tenant=st.integers(0, U64_MAX),
    log_offset=st.integers(0, U64_MAX),
    dek_id=st.integers(0, 2**32 - 1),
    marker=st.sampled_from([spec.PLAIN_EVENT, spec.PLAIN_STATEMENT]),
    body=st.binary(max_size=300),
)
def test_open_sealed_gives_back_what_seal_sealed(
    tenant: int, log_offset: int, dek_id: int, marker: int, body: bytes
) -> None:
    plain = bytes([marker]) + body
    stored = spec.seal(tenant, log_offset, dek_id, DEK, plain)
    assert spec.sealed_dek_id(stored) == dek_id
    assert spec.open_sealed(tenant, log_offset, DEK, stored) == plain


def test_every_field_of_the_associated_data_is_bound() -> None:
    plain = appended_event(4)
    stored = spec.seal(7, 5, 1, DEK, plain)
    with pytest.raises(CorruptionError):
        spec.open_sealed(8, 5, DEK, stored)  # another tenant
    with pytest.raises(CorruptionError):
        spec.open_sealed(7, 6, DEK, stored)  # another offset (and so another nonce)
    with pytest.raises(CorruptionError):
        spec.open_sealed(7, 5, DEK, stored[:4] + b"\x02" + stored[5:])  # another DEK id, same key
    with pytest.raises(CorruptionError):
        spec.open_sealed(7, 5, OTHER, stored)  # another key
    wrong_nonce = b"\x02\x00\x00\x00\x01" + AESGCM(DEK).encrypt(
        spec.nonce(6), plain, spec.associated_data(1, 7, 5)
    )
    with pytest.raises(CorruptionError):
        spec.open_sealed(7, 5, DEK, wrong_nonce)


def test_every_flipped_byte_is_refused() -> None:
    ring = spec.new_keyring(7, MASTER, KEK)
    ring, dek_id = spec.add_dek(ring, KEK, DEK)
    stored = spec.seal(7, 5, dek_id, DEK, appended_event(3))
    for at in range(1, len(stored)):
        flipped = bytearray(stored)
        flipped[at] ^= 0x01
        with pytest.raises(CorruptionError) as caught:
            spec.read_payload(7, 5, ring, KEK, bytes(flipped))
        assert caught.value.record_offset == 5
    for cut in (0, 1, 4, 5, 20, len(stored) - 1):
        if cut == 0:
            assert spec.read_payload(7, 5, ring, KEK, b"") == b""  # empty: a plain form
            continue
        with pytest.raises(CorruptionError):
            spec.read_payload(7, 5, ring, KEK, stored[:cut])


def test_read_payload_passes_plain_forms_and_names_missing_or_foreign_deks() -> None:
    ring = spec.new_keyring(7, MASTER, KEK)
    ring, first = spec.add_dek(ring, KEK, DEK)
    foreign = spec.KeyRing(7, ring.wrapped_kek, (*ring.deks, (2, spec.wrap_key(OTHER, DEK))), None)
    created = created_event(4)
    assert spec.read_payload(7, 1, ring, KEK, created) == created
    statement = b"\x03VQL..."
    assert spec.read_payload(7, 1, ring, KEK, statement) == statement
    sealed = spec.seal(7, 2, first, DEK, statement)
    assert spec.read_payload(7, 2, ring, KEK, sealed) == statement
    with pytest.raises(CorruptionError, match="does not hold"):
        spec.read_payload(7, 2, ring, KEK, spec.seal(7, 2, 9, DEK, statement))
    with pytest.raises(WrongKeyError):
        spec.read_payload(7, 2, foreign, KEK, spec.seal(7, 2, 2, DEK, statement))


def test_what_is_sealed() -> None:
    for data_class in (1, 2, 3, 4):
        assert spec.must_seal(appended_event(data_class), data_class)
        assert not spec.must_seal(created_event(data_class), data_class)
    assert not spec.must_seal(appended_event(0), 0)
    assert not spec.must_seal(created_event(0), 0)
    assert spec.must_seal(b"\x03VQL", None)
    assert spec.must_seal(b"\x03VQL", 0)
    phi = appended_event(4)
    assert spec.stored_payload(7, 4, phi, 4, 1, DEK) == spec.seal(7, 4, 1, DEK, phi)
    public = appended_event(0)
    assert spec.stored_payload(7, 4, public, 0, 1, DEK) == public


def test_only_plain_forms_are_sealed() -> None:
    with pytest.raises(icontract.ViolationError):
        spec.seal(7, 1, 1, DEK, b"\x02 looks sealed already")
    with pytest.raises(icontract.ViolationError):
        spec.seal(7, 1, 1, DEK, b"")
    with pytest.raises(icontract.ViolationError):
        spec.seal(7, 1, 2**32, DEK, b"\x01")
    with pytest.raises(icontract.ViolationError):
        spec.seal(2**64, 1, 1, DEK, b"\x01")
    with pytest.raises(icontract.ViolationError):
        spec.seal(7, 1, 1, DEK[:16], b"\x01")


# ---------------------------------------------------------------- keys and the key ring


def test_wrapping_refuses_another_key_and_damage() -> None:
    wrapped = spec.wrap_key(MASTER, KEK)
    assert len(wrapped) == 40
    assert spec.unwrap_key(MASTER, wrapped, "kek") == KEK
    with pytest.raises(WrongKeyError):
        spec.unwrap_key(OTHER, wrapped, "kek")
    for at in range(len(wrapped)):
        damaged = bytearray(wrapped)
        damaged[at] ^= 0x80
        with pytest.raises(WrongKeyError):
            spec.unwrap_key(MASTER, bytes(damaged), "kek")
    with pytest.raises(WrongKeyError):
        spec.unwrap_key(MASTER, wrapped[:-1], "kek")
    with pytest.raises(WrongKeyError, match="unwraps to 24 bytes"):
        spec.unwrap_key(MASTER, aes_key_wrap(MASTER, bytes(24)), "kek")


def test_dek_ids_are_the_largest_plus_one() -> None:
    ring = spec.new_keyring(7, MASTER, KEK)
    assert spec.next_dek_id(ring) == 1
    ids = []
    for number in range(3):
        ring, dek_id = spec.add_dek(ring, KEK, bytes([number]) * 32)
        ids.append(dek_id)
    assert ids == [1, 2, 3]
    gap = spec.KeyRing(7, ring.wrapped_kek, ((5, ring.deks[0][1]),), None)
    assert spec.next_dek_id(gap) == 6
    full = spec.KeyRing(7, ring.wrapped_kek, ((spec.DEK_ID_MAX, ring.deks[0][1]),), None)
    with pytest.raises(icontract.ViolationError):
        spec.add_dek(full, KEK, DEK)
    assert [spec.dek_of(ring, KEK, n, 0) for n in (1, 2, 3)] == [bytes([n]) * 32 for n in range(3)]


def test_keyring_bytes_spelled_out() -> None:
    ring = spec.new_keyring(7, MASTER, KEK)
    ring, _ = spec.add_dek(ring, KEK, DEK)
    ring = spec.with_page_key(ring, KEK, OTHER)
    kek, dek, page = (w.hex() for w in (ring.wrapped_kek, ring.deks[0][1], ring.page_key or b""))
    assert (
        spec.encode_keyring(ring)
        == (
            f'{{"deks": {{"1": "{dek}"}}, "format": 1, "page_key": "{page}", '
            f'"tenant": 7, "wrapped_kek": "{kek}"}}'
        ).encode()
    )
    bare = spec.new_keyring(2**64 - 1, MASTER, KEK)
    assert (
        spec.encode_keyring(bare)
        == (
            f'{{"deks": {{}}, "format": 1, "tenant": 18446744073709551615, "wrapped_kek": "{kek}"}}'
        ).encode()
    )


def test_dek_ids_are_listed_in_the_order_of_their_strings() -> None:
    ring = spec.new_keyring(7, MASTER, KEK)
    for number in range(11):
        ring, _ = spec.add_dek(ring, KEK, bytes([number]) * 32)
    data = spec.encode_keyring(ring)
    names = list(json.loads(data)["deks"])
    assert names == ["1", "10", "11", "2", "3", "4", "5", "6", "7", "8", "9"]
    assert spec.decode_keyring(data, 7) == ring


def test_decode_keyring_reads_json_and_refuses_damage() -> None:
    ring = spec.with_page_key(spec.add_dek(spec.new_keyring(7, MASTER, KEK), KEK, DEK)[0], KEK, DEK)
    good = spec.encode_keyring(ring)
    fields = json.loads(good)
    assert spec.decode_keyring(json.dumps(fields, indent=2).encode(), 7) == ring
    assert spec.decode_keyring(json.dumps({**fields, "later": [1]}).encode(), 7) == ring
    upper = {**fields, "wrapped_kek": fields["wrapped_kek"].upper()}
    assert spec.decode_keyring(json.dumps(upper).encode(), 7) == ring
    without_page = {k: v for k, v in fields.items() if k != "page_key"}
    assert spec.decode_keyring(json.dumps(without_page).encode(), 7).page_key is None
    damaged = [
        good[:-1],
        b"\xff" + good,
        b"[]",
        json.dumps({**fields, "format": 2}).encode(),
        json.dumps({**fields, "format": True}).encode(),
        json.dumps({**fields, "format": 1.0}).encode(),
        json.dumps({**fields, "tenant": 8}).encode(),
        json.dumps({**fields, "tenant": "7"}).encode(),
        json.dumps({k: v for k, v in fields.items() if k != "wrapped_kek"}).encode(),
        json.dumps({k: v for k, v in fields.items() if k != "deks"}).encode(),
        json.dumps({**fields, "deks": []}).encode(),
        json.dumps({**fields, "deks": {"01": fields["deks"]["1"]}}).encode(),
        json.dumps({**fields, "deks": {"+1": fields["deks"]["1"]}}).encode(),
        json.dumps({**fields, "deks": {str(2**32): fields["deks"]["1"]}}).encode(),
        json.dumps({**fields, "deks": {"1": 5}}).encode(),
        json.dumps({**fields, "wrapped_kek": "abc"}).encode(),
        json.dumps({**fields, "wrapped_kek": "ab cd"}).encode(),
        json.dumps({**fields, "page_key": None}).encode(),
        good.replace(b'"deks": {', b'"deks": {"1": "00", '),  # a DEK id named twice
    ]
    for data in damaged:
        with pytest.raises(DamagedFileError):
            spec.decode_keyring(data, 7)


def test_open_kek_needs_the_master_key() -> None:
    ring = spec.new_keyring(7, MASTER, KEK)
    assert spec.open_kek(ring, MASTER) == KEK
    with pytest.raises(WrongKeyError):
        spec.open_kek(ring, OTHER)


def test_key_files() -> None:
    assert spec.encode_key_file(MASTER) == MASTER
    assert spec.decode_key_file("master.key", MASTER, 0o600) == MASTER
    assert spec.decode_key_file("master.key", MASTER, 0o400) == MASTER
    for mode in (0o640, 0o604, 0o601, 0o610, 0o777):
        with pytest.raises(ExposedKeyFileError):
            spec.decode_key_file("master.key", MASTER, mode)
    for data in (b"", MASTER[:31], MASTER + b"\n"):
        with pytest.raises(DamagedFileError):
            spec.decode_key_file("signing.key", data, 0o600)
    with pytest.raises(ExposedKeyFileError):
        spec.decode_key_file("signing.key", b"", 0o644)  # the mode is checked first


# ---------------------------------------------------------------- sealed store pages


def test_pages_bytes_and_binding() -> None:
    page = bytes(range(256)) * 16
    nonce = bytes.fromhex("0102030405060708090a0b0c")
    sealed = spec.seal_page(DEK, 3, nonce, page)
    aad = b"verity.page.v1\x00\x00" + bytes.fromhex("0000000000000003")
    assert spec.page_associated_data(3) == aad
    assert sealed == nonce + AESGCM(DEK).encrypt(nonce, page, aad)
    assert len(sealed) == 4124
    assert spec.open_page(DEK, 3, sealed) == page
    for number, key, data in (
        (4, DEK, sealed),
        (3, OTHER, sealed),
        (3, DEK, sealed[:-1]),
        (3, DEK, bytes([sealed[0] ^ 1]) + sealed[1:]),
    ):
        with pytest.raises(DamagedFileError):
            spec.open_page(key, number, data)
