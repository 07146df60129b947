"""verity.store: damaged bytes are reported with their page, never repaired away.

- Any three of the four superblock copies may be destroyed: the store still
  opens at its last state (and rewrites the bad copies from the good one).
- All four destroyed: CorruptionError naming the file.
- A flipped byte in a tree page: opening works, and reading that page raises
  CorruptionError naming the file, the page and its byte offset; `verify()`
  finds it too. A flipped byte in the free list fails the open.
- A tree of a shape the writer never makes (a branch without a separator key,
  as a branch split that promoted the branch's last key would leave): `verify()`
  names the page.
"""

from __future__ import annotations

import itertools
import logging
import random
from pathlib import Path

import pytest

import verity.store._tree as tree_module
from verity.errors import CorruptionError
from verity.store import MemoryStore, Store, open_store

PAGE_BYTES = 4096


def build(folder: Path) -> MemoryStore:
    """A store of a few hundred rows over two trees, closed cleanly; its model."""
    rng = random.Random(9)
    model = MemoryStore()
    with open_store(folder) as store:
        for position in range(1, 21):
            batch: list[tuple[str, bytes, bytes | None]] = [
                (rng.choice(["t", "u"]), rng.randbytes(3), rng.randbytes(rng.randrange(200)))
                for _ in range(30)
            ]
            store.write_batch(position, bytes([position]) * 32, batch, sync=position % 5 == 0)
            model.write_batch(position, bytes([position]) * 32, batch)
    return model


def flip(file: Path, byte_offset: int) -> None:
    data = bytearray(file.read_bytes())
    data[byte_offset] ^= 0x5A
    file.write_bytes(bytes(data))


def same_answers(store: Store, model: MemoryStore) -> bool:
    return store.applied() == model.applied() and all(
        list(store.scan(tree)) == list(model.scan(tree))
        and list(store.scan(tree, as_of=7)) == list(model.scan(tree, as_of=7))
        for tree in model.trees()
    )


@pytest.mark.parametrize("destroyed", list(itertools.combinations(range(4), 3)))
def test_any_three_superblock_copies_may_be_lost(
    tmp_path: Path, destroyed: tuple[int, ...], caplog: pytest.LogCaptureFixture
) -> None:
    model = build(tmp_path / "s")
    file = tmp_path / "s" / "pages.vstore"
    for copy in destroyed:
        flip(file, copy * PAGE_BYTES + 50)
    folder = tmp_path / "s"
    with caplog.at_level(logging.WARNING, logger="verity.store"), open_store(folder) as store:
        assert same_answers(store, model)
    assert "superblock copies" in caplog.text
    # The bad copies were rewritten from the good one: now any other three may go.
    survivor = ({0, 1, 2, 3} - set(destroyed)).pop()
    for copy in {0, 1, 2, 3} - {(survivor + 1) % 4}:
        flip(file, copy * PAGE_BYTES + 60)
    with open_store(tmp_path / "s") as store:
        assert same_answers(store, model)


def test_all_four_superblock_copies_lost_is_corruption(tmp_path: Path) -> None:
    build(tmp_path / "s")
    file = tmp_path / "s" / "pages.vstore"
    for copy in range(4):
        flip(file, copy * PAGE_BYTES + 200)
    with pytest.raises(CorruptionError) as caught:
        open_store(tmp_path / "s")
    assert caught.value.file == str(file)
    assert "no valid superblock copy" in str(caught.value)
    assert "copy 3 at byte 12288: checksum mismatch" in str(caught.value)


def leaf_of(store: Store, tree: str, key: bytes) -> int:
    """Page number of the leaf holding `key`'s newest version (white-box, to aim the flip)."""
    leaf, _ = store._pager.seek_ge(store._roots[tree], key)
    assert leaf is not None and leaf.is_leaf
    return leaf.page


def test_flipped_byte_in_a_leaf_names_the_page(tmp_path: Path) -> None:
    model = build(tmp_path / "s")
    key, _ = next(model.scan("t"))
    with open_store(tmp_path / "s") as store:
        page = leaf_of(store, "t", key)
    file = tmp_path / "s" / "pages.vstore"
    flip(file, page * PAGE_BYTES + 1000)
    with open_store(tmp_path / "s") as store:
        with pytest.raises(CorruptionError) as caught:
            store.get("t", key)
        assert caught.value.file == str(file)
        assert caught.value.byte_offset == page * PAGE_BYTES
        assert f"page {page}: checksum mismatch" in str(caught.value)
        with pytest.raises(CorruptionError, match=f"page {page}"):
            list(store.scan("t"))
        with pytest.raises(CorruptionError, match=f"page {page}"):
            store.verify()
        # Pages that are intact still answer: nothing was repaired or dropped silently.
        assert list(store.scan("u")) == list(model.scan("u"))
    assert file.read_bytes()[page * PAGE_BYTES + 1000] != 0  # the damage stays visible


def test_flipped_byte_in_a_branch_or_catalog_is_found(tmp_path: Path) -> None:
    build(tmp_path / "s")
    with open_store(tmp_path / "s") as store:
        root = store._roots["t"]
        catalog = store._catalog_root
    file = tmp_path / "s" / "pages.vstore"
    flip(file, root * PAGE_BYTES + 9)
    with open_store(tmp_path / "s") as store, pytest.raises(CorruptionError, match=f"page {root}"):
        store.get("t", b"\x00\x00\x00")
    flip(file, catalog * PAGE_BYTES + 9)
    with pytest.raises(CorruptionError, match=f"page {catalog}"):
        open_store(tmp_path / "s")


def write_long_escaped_keys(store: Store) -> None:
    """Keys of 650 to 999 bytes, mostly zero bytes (stored escaped, twice as long), in
    random order: branches of three long separators that split often."""
    rng = random.Random(1)
    keys = [b"\x00" * rng.randrange(650, 996) + rng.randbytes(3) for _ in range(60)]
    for position in range(1, 4):
        batch: list[tuple[str, bytes, bytes | None]] = [
            ("t", key, rng.randbytes(rng.randrange(40))) for key in rng.sample(keys, len(keys))
        ]
        store.write_batch(position, bytes(32), batch)


def test_a_branch_without_a_separator_key_is_found_by_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(tmp_path / "good") as store:
        write_long_escaped_keys(store)
        assert store.verify() > 0
        answers = list(store.scan("t"))

    def promote_the_last_key(
        self: tree_module.Pager, branch: tree_module.Node, appended: bool
    ) -> tuple[bytes, int]:
        # A wrong split: the right side keeps one child and no key. Every answer stays
        # right (the child is still reached); only the shape is wrong.
        separator = branch.keys.pop()
        right = self.new_branch([], [branch.children.pop()])
        branch.size = tree_module._branch_size(branch.keys)
        return separator, right.page

    monkeypatch.setattr(tree_module.Pager, "_split_branch", promote_the_last_key)
    with open_store(tmp_path / "bad") as store:
        write_long_escaped_keys(store)
        assert list(store.scan("t")) == answers
        with pytest.raises(CorruptionError, match="a branch without a separator key"):
            store.verify()


def test_flipped_byte_in_the_free_list_fails_the_open(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    with open_store(folder) as store:
        for position in range(1, 30):
            store.write_batch(position, b"h", [("t", bytes([position % 5]), b"v" * 100)])
        assert store.stats().pages_free > 0
        chain = list(store._freelist_pages)
    assert chain
    flip(folder / "pages.vstore", chain[0] * PAGE_BYTES + 20)
    with pytest.raises(CorruptionError, match=f"page {chain[0]}"):
        open_store(folder)


def test_truncated_file_is_corruption(tmp_path: Path) -> None:
    build(tmp_path / "s")
    file = tmp_path / "s" / "pages.vstore"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) - PAGE_BYTES])
    with pytest.raises(CorruptionError, match=r"counts \d+ pages but the file holds"):
        open_store(tmp_path / "s")
    file.write_bytes(data[:PAGE_BYTES])
    with pytest.raises(CorruptionError, match="fewer than its 4 superblock pages"):
        open_store(tmp_path / "s")
