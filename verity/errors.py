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
    "HistoryLost",
    "InUse",
    "InvalidArgument",
    "InvalidProof",
    "InvalidSignature",
    "KeyError_",
    "NotFound",
    "OutcomeUnknown",
    "ReadOnly",
    "SqlError",
    "SqlLimitExceeded",
    "SqlSyntaxError",
    "StorageError",
    "StorageFull",
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
class HistoryLost(CorruptionError):
    """Records that were durable (acknowledged) are gone: a segment deleted or cut short.

    Unlike a torn tail (the partial last record of an append that was never
    acknowledged), this is never repaired by truncation: the log refuses to
    open for writing and nothing is truncated or appended. `first_lost` and
    `end_lost` are the half-open range of log offsets known to be missing
    (`end_lost` is the least count the evidence vouches for).
    """

    def __init__(self, reason: str, *, file: str, first_lost: int, end_lost: int) -> None:
        self.first_lost = first_lost
        self.end_lost = end_lost
        super().__init__(
            f"history lost: records {first_lost}..{end_lost - 1} were durable and are gone; "
            f"{reason}",
            file=file,
            record_offset=first_lost,
        )


@final
class InUse(VerityError):
    """Another process (or another open in this one) holds the database or log for writing.

    Nothing was read, written, renamed or deleted. `pid` is the holder's process
    id when the lock file names it, else None.
    """

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"{path} is in use: {holder} has it open for writing; open it with "
            "read_only=True to read beside the writer"
        )


@final
class ReadOnly(VerityError):
    """A write (append, SQL write, checkpoint, key change) on something opened read-only."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what} is open read-only: nothing can be written through it")


class StorageError(VerityError):
    """The operating system refused a read or write (an IO error, a full disk).

    `written` says what is known of the write that failed: False when it is
    known not to have happened (nothing of it is in the log), None when its
    outcome is unknown (see `OutcomeUnknown`). `os_error` is the cause.
    """

    def __init__(
        self, what: str, os_error: OSError, *, path: str | None, written: bool | None
    ) -> None:
        self.what = what
        self.os_error = os_error
        self.path = path
        self.written = written
        where = f" on {path}" if path is not None else ""
        outcome = {
            False: "nothing of it was written",
            None: "it may or may not be in the log",
            True: "it was written",
        }[written]
        super().__init__(f"{what} failed{where}: {os_error.strerror or os_error}; {outcome}")


@final
class StorageFull(StorageError):
    """The disk (or a quota, or a file size limit) is full: ENOSPC, EDQUOT or EFBIG.

    The database stays open for reads and verification; writes succeed again
    once space returns, without reopening.
    """


@final
class OutcomeUnknown(StorageError):
    """A write may have reached the log before the error: it is neither confirmed nor undone.

    The log takes no more writes until it is reopened; after reopening, ask
    `TenantHandle.committed(idempotency_id)` (or read the stream, or the
    record at `log_offset`) to learn whether it committed. `idempotency_id`
    is the id the append carried (None when it carried none: give appends an
    id to be able to ask), `log_offset` the log position it would have taken.
    """

    def __init__(
        self,
        what: str,
        os_error: OSError,
        *,
        path: str | None,
        idempotency_id: bytes | None,
        log_offset: int | None,
    ) -> None:
        self.idempotency_id = idempotency_id
        self.log_offset = log_offset
        super().__init__(what, os_error, path=path, written=None)


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
    "type_mismatch", "constraint", "table_exists", "parameter", "limit".
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


@final
class SqlLimitExceeded(SqlError):
    """A size that came from the statement or its parameters is over a documented bound.

    `limit` names the bound (a constant of `verity.query`, e.g.
    `SQL_TEXT_BYTES_MAX`), `value` the size found and `maximum` the bound.
    """

    def __init__(self, limit: str, value: int, maximum: int, construct: str = "") -> None:
        self.limit = limit
        self.value = value
        self.maximum = maximum
        super().__init__("limit", construct or limit, f"{limit} is {maximum}, got {value}")
