"""The projection store as the SQL engine sees it: versioned trees of byte keys.

`verity.store` implements this Protocol with a B+tree page file; tests and small
tools use `MemoryVersionedStore`. The engine relies on nothing else, so any
object with these four methods plugs in.

A tree springs into existence on its first write. Keys are bytes compared
bytewise (the engine encodes typed keys so that byte order is SQL order). Every
change carries the log position of the record that made it, so a read can ask
for the state as of any earlier position.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, TypeAlias

__all__ = ["Change", "VersionedStore"]

Change: TypeAlias = tuple[str, bytes, bytes | None]
"""One change of a log record: (tree name, key, value); value None deletes the key."""


class VersionedStore(Protocol):
    """Trees of byte keys whose every version is kept by log position."""

    def write_batch(self, position: int, log_hash: bytes, changes: Sequence[Change]) -> None:
        """Apply every change of the log record at `position` (trees by name; value None =
        delete), atomically with recording AppliedIndex(position, log_hash).
        Positions strictly increase."""
        ...

    def get(self, tree: str, key: bytes, as_of: int | None = None) -> bytes | None:
        """The value of `key` as of log position `as_of` (None: latest); None if absent or
        deleted then."""
        ...

    def scan(
        self,
        tree: str,
        low: bytes | None = None,
        high: bytes | None = None,
        *,
        as_of: int | None = None,
        low_inclusive: bool = True,
        high_inclusive: bool = True,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Live (key, value) pairs as of `as_of` with low <= key <= high, in key byte order."""
        ...

    def applied(self) -> tuple[int, bytes] | None:
        """(position, log_hash) of the record applied last, or None before the first."""
        ...
