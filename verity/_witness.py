"""The witness: every signed checkpoint a tenant handed out, and checking a log against them.

A signed checkpoint is a promise about a prefix of the log: its size, its
RFC 9162 root and its head hash. Someone who can write the log files can cut
the log back at a record boundary (checkpoints, durability mark and all,
none of which needs a key) and the folder alone cannot tell. What can tell is
a signed checkpoint obtained earlier: the log must still hold its records,
with the same root and the same head.

`TenantHandle.checkpoint()` appends each checkpoint it hands out to the
tenant's witness file (`checkpoints.witness`, docs/formats.md §5.6), kept
beside the signing key, so a folder whose keys live elsewhere carries no
copy an attacker of the folder can roll back with it. `verify()` checks the
log against every witnessed checkpoint and any the caller trusts.

File format: magic "VWIT" ‖ version u8, then entries of
`tree_size u64 ‖ root 32 ‖ chain_hash 32 ‖ timestamp u64 ‖ key_id 32 ‖
signature 64 ‖ crc32 u32` (big-endian), each written and fsynced before the
checkpoint is returned, then zeros: room reserved ahead (`reserve`, before
the checkpoint is signed), so a full disk refuses a checkpoint instead of
signing one the witness has no room for. The first all-zero entry ends the
list. A torn last entry belongs to a call that never returned and is
ignored; a bad entry before the last is reported.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Final

from verity.errors import CorruptionError, InvalidSignature, VerityError
from verity.proofs import SignedCheckpoint, key_id_of, verify_signed_checkpoint
from verity.storage import Log
from verity.storage._files import open_private
from verity.storage._frame import decode_key_payload, write_all
from verity.storage._index import fsync_directory
from verity.types import RecordKind

__all__ = ["WITNESS_FILE", "Witness", "checkpoint_problem", "pinned_keys"]

WITNESS_FILE: Final = "checkpoints.witness"
_MAGIC: Final = b"VWIT"
_VERSION: Final = 1
_HEADER: Final = _MAGIC + bytes([_VERSION])
_ENTRY: Final = struct.Struct(">Q32s32sQ32s64s")
_ENTRY_BYTES: Final = _ENTRY.size + 4
_EMPTY_ENTRY: Final = bytes(_ENTRY_BYTES)
# Entries reserved at a time: one allocation per this many checkpoints.
_RESERVE_ENTRIES: Final = 64

assert _ENTRY.size == 176


class Witness:
    """The append-only list of signed checkpoints a tenant handed out."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def reserve(self) -> None:
        """Make sure the next entry has room on disk; `OSError` (a full disk) if it cannot.

        Called before a checkpoint is signed, so `record` never meets a full disk.
        """
        new_file = not self.path.exists()
        fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        try:
            if os.fstat(fd).st_size == 0:
                write_all(fd, _HEADER)
            file_bytes = os.fstat(fd).st_size
            if self._next_entry_at(fd) + _ENTRY_BYTES > file_bytes:
                os.posix_fallocate(fd, file_bytes, _RESERVE_ENTRIES * _ENTRY_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new_file:
            fsync_directory(self.path.parent)

    def _next_entry_at(self, fd: int) -> int:
        """Where the next entry goes: after the last one, at the first empty slot."""
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        position = len(_HEADER)
        while position + _ENTRY_BYTES <= len(data):
            if data[position : position + _ENTRY_BYTES] == _EMPTY_ENTRY:
                break
            position += _ENTRY_BYTES
        assert (position - len(_HEADER)) % _ENTRY_BYTES == 0
        return position

    def record(self, checkpoint: SignedCheckpoint) -> None:
        """Write `checkpoint` durably into the room `reserve` made (before it is handed out)."""
        body = _ENTRY.pack(
            checkpoint.tree_size,
            checkpoint.root,
            checkpoint.chain_hash,
            checkpoint.timestamp,
            checkpoint.key_id,
            checkpoint.signature,
        )
        entry = body + zlib.crc32(body).to_bytes(4, "big")
        assert len(entry) == _ENTRY_BYTES and entry != _EMPTY_ENTRY
        fd = open_private(self.path, os.O_RDWR)
        try:
            os.pwrite(fd, entry, self._next_entry_at(fd))
            os.fsync(fd)
        finally:
            os.close(fd)

    def checkpoints(self) -> list[SignedCheckpoint]:
        """Every checkpoint recorded, oldest first; `CorruptionError` for a damaged file."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        if not data.startswith(_HEADER):
            raise CorruptionError(
                f"witness file starts {data[:5]!r}, not {_HEADER!r}", file=str(self.path)
            )
        found: list[SignedCheckpoint] = []
        entry_count = (len(data) - len(_HEADER)) // _ENTRY_BYTES
        for index in range(entry_count):
            start = len(_HEADER) + index * _ENTRY_BYTES
            if data[start : start + _ENTRY_BYTES] == _EMPTY_ENTRY:
                entry_count = index  # reserved room: the list ends here
                break
            body = data[start : start + _ENTRY.size]
            stored_crc = int.from_bytes(data[start + _ENTRY.size : start + _ENTRY_BYTES], "big")
            if zlib.crc32(body) != stored_crc:
                after = data[start + _ENTRY_BYTES : start + 2 * _ENTRY_BYTES]
                if not after.strip(b"\x00"):
                    break  # the last entry, torn by a crash: its call never returned
                raise CorruptionError(
                    f"witness entry {index} fails its CRC-32", file=str(self.path)
                )
            tree_size, root, chain, timestamp, key_id, signature = _ENTRY.unpack(body)
            found.append(SignedCheckpoint(tree_size, root, chain, timestamp, key_id, signature))
        assert len(found) <= entry_count
        return found


def pinned_keys(log: Log) -> dict[bytes, bytes]:
    """Every public key the log ever pinned (genesis and rotations), by key id.

    Reads every KEY record; only called when a checkpoint names a key other
    than the one pinned now, so a verification pays for it only after a rotation.
    """
    keys: dict[bytes, bytes] = {}
    for record in log.records():
        if record.header.kind is RecordKind.KEY:
            decoded = decode_key_payload(record.payload)
            if decoded is not None:
                keys[key_id_of(decoded[0])] = decoded[0]
    return keys


def checkpoint_problem(
    log: Log, checkpoint: SignedCheckpoint, keys: Callable[[], dict[bytes, bytes]]
) -> str | None:
    """Why `log` breaks the promise `checkpoint` made, or None if it keeps it.

    The signature must verify under a key the log pinned (`keys()`); the log
    must still hold `tree_size` records (else it was cut back: a rollback),
    with the same Merkle root and the same head hash (else it is a fork).
    """
    size = checkpoint.tree_size
    known = keys()
    public_key = known.get(checkpoint.key_id)
    if public_key is None:
        return (
            f"signed checkpoint tree_size={size} names key id {checkpoint.key_id.hex()}, "
            "which this log never pinned"
        )
    try:
        verify_signed_checkpoint(checkpoint, public_key)
    except InvalidSignature as failure:
        return f"signed checkpoint tree_size={size}: {failure}"
    if log.size < size:
        return (
            f"rollback: a signed checkpoint covers {size} records and the log holds "
            f"{log.size}; records {log.size}..{size - 1} were cut away"
        )
    try:
        root = log.merkle_root(size)
        head = log.read(size - 1).chain_hash() if size else bytes(32)
    except VerityError as failure:
        return f"signed checkpoint tree_size={size} cannot be checked: {failure}"
    if root != checkpoint.root or head != checkpoint.chain_hash:
        return (
            f"fork: the log's first {size} records have root {root.hex()} and head "
            f"{head.hex()}, a signed checkpoint says root {checkpoint.root.hex()} and "
            f"head {checkpoint.chain_hash.hex()}"
        )
    return None
