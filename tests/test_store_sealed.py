"""Sealed projection-store pages: rows are ciphertext on disk, and any tampering fails loudly.

With a `PageKey` (docs/formats.md §6) each page is AES-256-GCM sealed with a
random nonce and its page number as associated data. What a user can see: the
same answers after reopening with the key; no row bytes in the file; a wrong
key, a flipped byte or a page moved elsewhere raises `CorruptionError` naming
the page.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from verity.crypto import GCM_TAG_BYTES, PAGE_NONCE_BYTES, PageKey
from verity.errors import CorruptionError, CryptoError, InvalidArgument
from verity.store import open_store
from verity.store._format import PAGE_BYTES

KEY = bytes(range(32))
STORED_PAGE_BYTES = PAGE_BYTES + PAGE_NONCE_BYTES + GCM_TAG_BYTES
SECRET = b"patient-ada-lovelace-diagnosis"


def fill(folder: Path, key: bytes = KEY) -> dict[bytes, bytes]:
    rows = {f"k{i:05d}".encode(): SECRET + f"-{i}".encode() * 20 for i in range(3000)}
    with open_store(folder, page_key=PageKey(key)) as store:
        items = list(rows.items())
        for position, start in enumerate(range(0, len(items), 500), start=1):
            batch = [("rows", k, v) for k, v in items[start : start + 500]]
            store.write_batch(position, bytes([position]) * 32, batch)
    return rows


def test_sealed_pages_hold_no_plaintext_and_reopen_with_the_key(tmp_path: Path) -> None:
    rows = fill(tmp_path / "s")
    data = (tmp_path / "s" / "pages.vstore").read_bytes()
    assert len(data) % STORED_PAGE_BYTES == 0 and len(data) // STORED_PAGE_BYTES > 10
    assert SECRET not in data
    assert b"rows" not in data  # tree names are sealed too
    with open_store(tmp_path / "s", page_key=PageKey(KEY)) as store:
        assert dict(store.scan("rows")) == rows
        assert store.applied() == (6, bytes([6]) * 32)


def test_another_key_cannot_open_the_store(tmp_path: Path) -> None:
    fill(tmp_path / "s")
    with pytest.raises(CorruptionError, match="no valid superblock") as caught:
        open_store(tmp_path / "s", page_key=PageKey(bytes(32)))
    assert "does not open under the store's page key" in str(caught.value)
    with pytest.raises(CorruptionError):
        open_store(tmp_path / "s")  # nor can a reader without a key


def test_every_flipped_page_is_named(tmp_path: Path) -> None:
    fill(tmp_path / "s")
    path = tmp_path / "s" / "pages.vstore"
    pristine = path.read_bytes()
    pages = len(pristine) // STORED_PAGE_BYTES
    found = 0
    for page in range(4, pages):
        damaged = bytearray(pristine)
        damaged[page * STORED_PAGE_BYTES + 2000] ^= 0x01
        path.write_bytes(bytes(damaged))
        try:
            with open_store(tmp_path / "s", page_key=PageKey(KEY)) as store:
                list(store.scan("rows"))
        except CorruptionError as failure:
            assert f"page {page}:" in str(failure)
            assert failure.byte_offset == page * STORED_PAGE_BYTES
            found += 1
    # Pages copy-on-write freed are not read by a scan; every page in use was caught.
    assert found >= (pages - 4) // 2


def test_a_page_moved_to_another_place_does_not_open(tmp_path: Path) -> None:
    fill(tmp_path / "s")
    path = tmp_path / "s" / "pages.vstore"
    data = bytearray(path.read_bytes())
    pages = len(data) // STORED_PAGE_BYTES
    # Copy every page over the next one: each copy is authentic, but for another place.
    for page in range(pages - 1, 4, -1):
        data[page * STORED_PAGE_BYTES : (page + 1) * STORED_PAGE_BYTES] = data[
            (page - 1) * STORED_PAGE_BYTES : page * STORED_PAGE_BYTES
        ]
    path.write_bytes(bytes(data))
    with (
        pytest.raises(CorruptionError, match="does not open"),
        open_store(tmp_path / "s", page_key=PageKey(KEY)) as store,
    ):
        list(store.scan("rows"))


def test_page_key_seals_with_fresh_nonces_and_binds_the_page_number() -> None:
    counter = itertools.count()
    key = PageKey(KEY, random_bytes=lambda n: next(counter).to_bytes(n, "big"))
    page = bytes(PAGE_BYTES)
    first, second = key.seal(7, page), key.seal(7, page)
    assert first != second  # same page, same number: different nonce, different bytes
    assert len(first) == STORED_PAGE_BYTES
    assert key.open(7, first) == key.open(7, second) == page
    with pytest.raises(CryptoError, match="page 8"):
        key.open(8, first)
    with pytest.raises(CryptoError):
        key.open(7, first[:-1] + bytes([first[-1] ^ 1]))
    with pytest.raises(InvalidArgument):
        key.seal(-1, page)
    with pytest.raises(InvalidArgument):
        open_store(Path("unused"), page_key=KEY)  # type: ignore[arg-type]
