"""Recovery records, `recovery.vrec` (docs/formats.md §4.4).

One frame per recovery: `length (4) ‖ crc32 (4) ‖ body`, `body` UTF-8 JSON
with the fields of `RecoveryRecord`:

```
{"discarded_bytes": [file name, start byte, end byte] | null,
 "discarded_range": [first offset, end offset] | null,
 "generation": int, "known_committed": int, "previous_generation": int,
 "reason": "node_restart" | ..., "recovery_point": int, "timestamp": int}
```

(keys sorted, no spaces). The file is the durable account of every loss: it
is never rebuilt, so any bad frame in it is corruption.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Final

from verity.errors import CorruptionError, InvalidArgument
from verity.storage._files import open_private
from verity.storage._frame import write_all
from verity.storage._index import fsync_directory
from verity.storage._io import OS
from verity.types import Generation, Offset, RecoveryReason, RecoveryRecord, Timestamp

__all__ = ["RECOVERY_FILE", "append_recovery", "encode_recovery", "load_recoveries"]

RECOVERY_FILE: Final = "recovery.vrec"
_PREFIX: Final = struct.Struct(">II")


def encode_recovery(record: RecoveryRecord) -> bytes:
    fields: dict[str, Any] = {
        "generation": int(record.generation),
        "previous_generation": int(record.previous_generation),
        "known_committed": int(record.known_committed),
        "recovery_point": int(record.recovery_point),
        "discarded_range": (
            None
            if record.discarded_range is None
            else [int(record.discarded_range[0]), int(record.discarded_range[1])]
        ),
        "discarded_bytes": (
            None if record.discarded_bytes is None else list(record.discarded_bytes)
        ),
        "timestamp": int(record.timestamp),
        "reason": record.reason.value,
    }
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return _PREFIX.pack(len(body), zlib.crc32(body)) + body


def _decode_body(body: bytes) -> RecoveryRecord:
    fields = json.loads(body.decode())
    discarded_range = fields["discarded_range"]
    discarded_bytes = fields["discarded_bytes"]
    return RecoveryRecord(
        generation=Generation(fields["generation"]),
        previous_generation=Generation(fields["previous_generation"]),
        known_committed=Offset(fields["known_committed"]),
        recovery_point=Offset(fields["recovery_point"]),
        discarded_range=(
            None
            if discarded_range is None
            else (Offset(discarded_range[0]), Offset(discarded_range[1]))
        ),
        discarded_bytes=(
            None
            if discarded_bytes is None
            else (str(discarded_bytes[0]), int(discarded_bytes[1]), int(discarded_bytes[2]))
        ),
        timestamp=Timestamp(fields["timestamp"]),
        reason=RecoveryReason(fields["reason"]),
    )


def load_recoveries(directory: Path) -> list[RecoveryRecord]:
    path = directory / RECOVERY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    records: list[RecoveryRecord] = []
    position = 0
    while position < len(data):
        if len(data) - position < _PREFIX.size:
            raise CorruptionError("incomplete frame prefix", file=str(path), byte_offset=position)
        length, crc = _PREFIX.unpack_from(data, position)
        body = data[position + _PREFIX.size : position + _PREFIX.size + length]
        if len(body) != length or zlib.crc32(body) != crc:
            raise CorruptionError(
                "recovery record frame is incomplete or fails its CRC-32",
                file=str(path),
                byte_offset=position,
            )
        try:
            record = _decode_body(body)
        except (ValueError, KeyError, TypeError, IndexError, InvalidArgument) as failure:
            raise CorruptionError(
                f"recovery record body is not a valid record: {failure}",
                file=str(path),
                byte_offset=position,
            ) from None
        expected = records[-1].generation + 1 if records else record.generation
        if int(record.generation) != expected:
            raise CorruptionError(
                f"recovery generation {int(record.generation)} does not follow {expected - 1}",
                file=str(path),
                byte_offset=position,
            )
        records.append(record)
        position += _PREFIX.size + length
    return records


def append_recovery(directory: Path, record: RecoveryRecord) -> None:
    """Append `record` and make it durable before returning.

    If it cannot be written (a full disk), the file is cut back to the frames
    it held, so a failed recovery leaves no torn frame in a file that is
    never rebuilt; the OSError is raised. If even that cut fails, the file
    may end in a torn frame, which the next open reports as corruption.
    """
    path = directory / RECOVERY_FILE
    created = not path.exists()
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        before_bytes = os.fstat(fd).st_size
        try:
            write_all(fd, encode_recovery(record))
            OS.fsync(fd)
        except OSError:
            OS.ftruncate(fd, before_bytes)
            OS.fsync(fd)
            raise
    finally:
        os.close(fd)
    if created:
        fsync_directory(directory)
