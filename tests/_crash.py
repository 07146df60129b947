"""Crash helpers for tests: the disk as a process death in the middle of an append leaves it.

The log writes its durability mark (`durable.vmark`, docs/formats.md §4.6)
only after an fsync covered the records it names. A process that dies after
writing an append's frames but before that fsync returned leaves the frames
(whole or torn) and the mark of the last append that did return. Tests make
that state by saving the mark before the appends that "never return" and
putting it back after `abandon()`: every record cut after that is one whose
append was never acknowledged, which recovery may discard. Cutting records
the mark covers is lost history, which open refuses (`HistoryLost`).
"""

from __future__ import annotations

from pathlib import Path

MARK_FILE = "durable.vmark"


def saved_mark(log_dir: Path) -> bytes:
    """The durability mark as it is now (the last acknowledged append's)."""
    return (log_dir / MARK_FILE).read_bytes()


def unacknowledge(log_dir: Path, mark: bytes) -> None:
    """Put back a mark saved before appends that are then taken never to have returned."""
    (log_dir / MARK_FILE).write_bytes(mark)


def acknowledged_through(log_dir: Path, size: int, head_hash: bytes) -> None:
    """Write the mark the log writes once `size` records ending in `head_hash` were fsynced."""
    from verity.storage._durable import encode_mark

    (log_dir / MARK_FILE).write_bytes(encode_mark(size, head_hash))
