"""The errors the specification raises.

Three kinds, and only three, are observable outcomes of the log: the caller
named something that does not exist (`NotFoundError`), passed an argument that
can never be valid (`InvalidArgumentError`), or asked for a record whose stored
bytes were damaged (`CorruptionError`). A conforming implementation maps its
own errors onto these kinds (docs/conformance.md).
"""

from __future__ import annotations

__all__ = [
    "CorruptionError",
    "DamagedFileError",
    "ExposedKeyFileError",
    "HistoryLostError",
    "InUseError",
    "InvalidArgumentError",
    "KeyMismatchError",
    "LockFailedError",
    "NotFoundError",
    "SpecError",
    "WrongKeyError",
]


class SpecError(Exception):
    """Root of the errors the specification raises."""


class InvalidArgumentError(SpecError):
    """An argument can never be valid: wrong type, negative, or out of its domain."""

    def __init__(self, name: str, value: object, reason: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"invalid {name}={value!r}: {reason}")


class NotFoundError(SpecError):
    """An offset or tree size is beyond the end of the log."""

    def __init__(self, name: str, value: object, reason: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"{name} {value!r} not found: {reason}")


class CorruptionError(SpecError):
    """The stored bytes of record `record_offset` are not the bytes that were written."""

    def __init__(self, record_offset: int, reason: str) -> None:
        self.record_offset = record_offset
        super().__init__(f"record {record_offset} is corrupt: {reason}")


class HistoryLostError(CorruptionError):
    """Records `first_lost .. end_lost - 1` were durable (acknowledged) and are gone.

    Opening refuses such a log: nothing is truncated and nothing is appended
    until an operator restores the missing records.
    """

    def __init__(self, first_lost: int, end_lost: int, reason: str) -> None:
        self.first_lost = first_lost
        self.end_lost = end_lost
        super().__init__(first_lost, f"history lost up to record {end_lost - 1}: {reason}")


class KeyMismatchError(SpecError):
    """The signing key given is not the one the log pins: it refuses to sign with it."""

    def __init__(self, pinned: bytes, given: bytes) -> None:
        self.pinned = pinned
        self.given = given
        super().__init__(
            f"the log pins public key {pinned.hex()}; the signing key given is {given.hex()}"
        )


class WrongKeyError(SpecError):
    """A wrapped key does not unwrap: RFC 3394's integrity check fails under the key given.

    Either the wrapping key is not the one that wrapped it, or the wrapped
    bytes were damaged; nothing unwrapped is ever used then (verity_spec.envelope).
    """

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        super().__init__(f"cannot unwrap {what}: {reason}")


class DamagedFileError(SpecError):
    """A key ring, key file or sealed store page is not in its format (verity_spec.envelope)."""

    def __init__(self, file: str, reason: str) -> None:
        self.file = file
        super().__init__(f"{file} is damaged: {reason}")


class ExposedKeyFileError(SpecError):
    """A key file that group or others may access: it is refused, never read."""

    def __init__(self, file: str, mode: int) -> None:
        self.file = file
        self.mode = mode
        super().__init__(
            f"key file {file} has mode {mode:#o}; group and others must have no access (0o600)"
        )


class InUseError(SpecError):
    """Another process holds the folder's exclusive lock: it owns the log, this opener does not."""

    def __init__(self, folder: str) -> None:
        super().__init__(f"{folder} is in use by another process")
        self.folder = folder


class LockFailedError(SpecError):
    """The OS refused the folder's lock for a reason other than another holder.

    The folder is not known to be in use, and not known to be free: the opener
    may not go on as if it held the lock.
    """

    def __init__(self, folder: str, errno_name: str) -> None:
        super().__init__(f"the lock of {folder} failed ({errno_name})")
        self.folder = folder
        self.errno_name = errno_name
