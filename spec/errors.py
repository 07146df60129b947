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
    "HistoryLostError",
    "InvalidArgumentError",
    "KeyMismatchError",
    "NotFoundError",
    "SpecError",
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
