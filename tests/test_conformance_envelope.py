"""Envelope vectors: fresh, passed by the implementation, failed by wrong implementations."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import verity._keyring
import verity._tenant
import verity.crypto
from verity_conformance import _runner, envelope_vectors
from verity_conformance.__main__ import main

REPO_VECTORS = Path(__file__).resolve().parents[1] / "conformance" / "vectors"


def committed() -> list[Path]:
    return sorted(REPO_VECTORS.glob("envelope-*.json"))


def test_committed_vectors_are_what_the_spec_generates(tmp_path: Path) -> None:
    written = _runner.write_vectors(tmp_path, envelope_vectors.build_vectors())
    assert [path.name for path in sorted(written)] == [path.name for path in committed()]
    for path in written:
        assert path.read_bytes() == (REPO_VECTORS / path.name).read_bytes(), path.name


def test_generate_writes_the_envelope_vectors(tmp_path: Path) -> None:
    assert main(["generate", "--out", str(tmp_path)]) == 0
    for path in committed():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()


def test_the_implementation_passes_every_envelope_vector() -> None:
    results = envelope_vectors.run_all(REPO_VECTORS)
    assert len(results) == len(committed()) >= 7
    assert [(r.path.name, r.failure) for r in results if r.failure] == []
    assert all(r.steps > 0 for r in results)


def test_every_step_is_checked_both_ways_where_it_can_be() -> None:
    # Each vector writes with the implementation and reads what the spec wrote.
    ops: dict[str, set[str]] = {}
    for path in committed():
        vector = json.loads(path.read_text())
        ops[vector["name"]] = {step["op"] for step in vector["steps"]}
    assert ops["key-wrapping"] == {"wrap_kek", "unwrap_kek"}
    assert ops["keyring"] == {"create_keyring", "load_keyring"}
    assert ops["pages"] == {"seal_page", "open_page"}
    assert ops["at-rest"] == {"write_database", "read_with_spec", "scan_files", "scan_keys"}


def failures(names: list[str]) -> dict[str, str | None]:
    return {
        name: envelope_vectors.run_vector(REPO_VECTORS / f"envelope-{name}.json").failure
        for name in names
    }


def assert_caught(names: list[str], *, by: list[str] | None = None) -> dict[str, str | None]:
    """Every vector in `names` fails (or, with `by`, at least those in `by`)."""
    found = failures(names)
    for name in by if by is not None else names:
        assert found[name] is not None, f"envelope-{name}.json passed a wrong implementation"
    return found


class OffByOne:
    """A nonce struct that packs the next position: the nonce of the wrong offset."""

    size = 12

    def pack(self, position: int) -> bytes:
        return struct.pack(">4xQ", position + 1)


def test_associated_data_without_the_tenant_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def aad(self: Any, dek_id: int, log_offset: int) -> bytes:
        return bytes([2]) + dek_id.to_bytes(4, "big") + log_offset.to_bytes(8, "big")

    monkeypatch.setattr(verity._tenant.TenantHandle, "_aad", aad)
    found = assert_caught(["records", "open-records", "at-rest"])
    assert "store_records" in str(found["records"])
    assert "read_with_spec" in str(found["at-rest"])


def test_a_nonce_off_by_one_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verity.crypto, "_NONCE", OffByOne())
    assert_caught(["records", "open-records", "at-rest"])


def test_dek_ids_from_min_instead_of_max_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The mutant of issue 11's table: the third session's key overwrites the second's.
    monkeypatch.setattr(verity._keyring, "max", min, raising=False)
    found = assert_caught(["keyring", "at-rest"])
    assert "create_keyring" in str(found["keyring"])


def test_sensitive_events_stored_plain_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def stored(self: Any, decision: Any, log_offset: int) -> bytes:
        payload: bytes = decision.payload
        return payload

    monkeypatch.setattr(verity._tenant.TenantHandle, "_stored_payload", stored)
    found = assert_caught(["records", "at-rest"])
    assert "read_with_spec" in str(found["at-rest"])


def test_a_leak_to_disk_is_caught_by_the_byte_search(monkeypatch: pytest.MonkeyPatch) -> None:
    # The records stay sealed; a copy of every plain form goes to a file beside the log.
    original = verity._tenant.TenantHandle._stored_payload

    def leaky(self: Any, decision: Any, log_offset: int) -> bytes:
        with open(self._folder / "debug.log", "ab") as leak:
            leak.write(decision.payload)
        stored: bytes = original(self, decision, log_offset)
        return stored

    monkeypatch.setattr(verity._tenant.TenantHandle, "_stored_payload", leaky)
    found = failures(["at-rest"])
    assert found["at-rest"] is not None and "scan_files" in found["at-rest"]
    assert "PHI secret" in found["at-rest"]


def test_a_keyring_in_other_json_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    class CompactJson:
        loads = staticmethod(json.loads)

        @staticmethod
        def dumps(value: object, **options: Any) -> str:
            return json.dumps(value, separators=(",", ":"), **options)

    monkeypatch.setattr(verity._keyring, "json", CompactJson)
    found = assert_caught(["keyring", "records", "at-rest"])
    assert "keyring_canonical" in str(found["at-rest"])


def test_key_wrapping_other_than_rfc_3394_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives.keywrap import (
        aes_key_unwrap_with_padding,
        aes_key_wrap_with_padding,
    )

    monkeypatch.setattr(verity.crypto, "aes_key_wrap", aes_key_wrap_with_padding)
    monkeypatch.setattr(verity.crypto, "aes_key_unwrap", aes_key_unwrap_with_padding)
    assert_caught(["key-wrapping", "keyring", "records", "open-records", "key-files"])


def test_page_sealing_without_the_page_number_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = struct.Struct(">16sQ")

    class NoNumber:
        def pack(self, domain: bytes, page_number: int) -> bytes:
            return real.pack(domain, 0)

    monkeypatch.setattr(verity.crypto, "_PAGE_AAD", NoNumber())
    assert_caught(["pages"])


def test_key_files_any_may_read_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verity.crypto, "_GROUP_OTHER_BITS", 0)
    assert_caught(["key-files"])


@pytest.mark.parametrize(
    ("patch", "vectors"),
    [
        (lambda m: m.setattr(verity._tenant, "ENVELOPE_ENCRYPTED", 0x04), ["open-records"]),
        (lambda m: m.setattr(verity._tenant, "ENVELOPE_HEADER_BYTES", 4), ["open-records"]),
    ],
)
def test_other_wrong_envelopes_are_caught(
    monkeypatch: pytest.MonkeyPatch,
    patch: Callable[[pytest.MonkeyPatch], None],
    vectors: list[str],
) -> None:
    patch(monkeypatch)
    assert_caught(vectors)
