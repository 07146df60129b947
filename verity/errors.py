"""The one exception hierarchy of VerityDB.

Every error a caller can see derives from `VerityError`. Each message names the
bad value, so that a log line alone tells an operator what was wrong. An
`AssertionError` is never one of these: it always means a bug in VerityDB.
"""

from __future__ import annotations

from typing import final

__all__ = [
    "AlreadyExists",
    "ChainBroken",
    "ClosedError",
    "Conflict",
    "CorruptionError",
    "CryptoError",
    "InvalidArgument",
    "InvalidProof",
    "InvalidSignature",
    "KeyError_",
    "NotFound",
    "SqlError",
    "SqlSyntaxError",
    "UnsupportedSql",
    "VerityError",
]


class VerityError(Exception):
    """Root of every error VerityDB raises on purpose."""


@final
class InvalidArgument(VerityError, ValueError):
    """An argument at a public boundary is of the wrong type or out of range.

    `name` is the parameter, `value` the rejected value (kept for callers that
    want to inspect it; the message shows its repr, truncated).
    """

    def __init__(self, name: str, value: object, reason: str) -> None:
        self.name = name
        self.value = value
        self.reason = reason
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"invalid {name}={shown}: {reason}")


@final
class NotFound(VerityError, LookupError):
    """A thing named by the caller (an offset, a tree size, a key) does not exist."""

    def __init__(self, what: str, value: object, reason: str = "") -> None:
        self.what = what
        self.value = value
        suffix = f": {reason}" if reason else ""
        super().__init__(f"{what} {value!r} not found{suffix}")


@final
class AlreadyExists(VerityError):
    """A thing the caller asked to create (a stream name, say) already exists."""

    def __init__(self, what: str, value: object) -> None:
        self.what = what
        self.value = value
        super().__init__(f"{what} {value!r} already exists")


@final
class Conflict(VerityError):
    """An optimistic-concurrency check failed: the state moved since the caller looked.

    Nothing was changed; re-read and retry.
    """

    def __init__(self, name: str, value: object, reason: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"conflict on {name}={value!r}: {reason}")


class CorruptionError(VerityError):
    """Stored bytes do not match what was written.

    Names the file and the byte offset in it (and the log offset of the
    record, when known). Corruption is reported, never repaired away.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        byte_offset: int | None = None,
        record_offset: int | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.byte_offset = byte_offset
        self.record_offset = record_offset
        where = []
        if record_offset is not None:
            where.append(f"record offset {record_offset}")
        if file is not None:
            where.append(f"file {file}")
        if byte_offset is not None:
            where.append(f"byte {byte_offset}")
        location = f" ({', '.join(where)})" if where else ""
        super().__init__(f"corruption{location}: {reason}")


@final
class ChainBroken(CorruptionError):
    """A record's `prev_hash` does not equal the chain hash of its predecessor."""


@final
class ClosedError(VerityError):
    """An operation was attempted on a log or database that is closed."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is closed")


class CryptoError(VerityError):
    """A cryptographic operation failed (bad key, failed authentication)."""


@final
class KeyError_(CryptoError):
    """A key is missing, of the wrong size, or fails to unwrap."""


@final
class InvalidSignature(CryptoError):
    """An Ed25519 signature does not verify under the given public key."""


@final
class InvalidProof(VerityError):
    """A Merkle inclusion or consistency proof does not verify."""


class SqlError(VerityError):
    """A SQL statement cannot run: bad syntax, an unsupported construct, unknown names,
    mismatched types or a violated constraint. Nothing is appended and nothing changes.

    `kind` is one of: "syntax", "unsupported", "unknown_table", "unknown_column",
    "type_mismatch", "constraint", "table_exists", "parameter".
    """

    def __init__(self, kind: str, construct: str, reason: str) -> None:
        self.kind = kind
        self.construct = construct
        super().__init__(f"{kind}: {construct!r}: {reason}")


@final
class SqlSyntaxError(SqlError):
    """The text is not SQL that parses."""

    def __init__(self, construct: str, reason: str) -> None:
        super().__init__("syntax", construct, reason)


@final
class UnsupportedSql(SqlError):
    """Valid SQL that VerityDB does not run (JOIN, subqueries, unknown functions, ...)."""

    def __init__(self, construct: str, reason: str) -> None:
        super().__init__("unsupported", construct, reason)
