"""The durable, hash-chained log (docs/formats.md §4 describes the files).

`open_log(path, ...)` opens or creates a log folder and returns a `Log`:
appends (single, batched, explicit checkpoints) made durable per `SyncPolicy`,
CRC-checked reads located through a per-segment offset index, verified reads
back to the nearest checkpoint, full verification, and RFC 9162 Merkle roots
and proofs from stored nodes. Opening recovers a torn tail (after a durable
`RecoveryRecord`), rebuilds derived files (indexes, Merkle nodes, checkpoint
list) that are missing or stale, and never truncates anything but a torn tail.
"""

from verity.storage._frame import PAYLOAD_BYTES_MAX as PAYLOAD_BYTES_MAX
from verity.storage._frame import Record as Record
from verity.storage._log import Clock as Clock
from verity.storage._log import Log as Log
from verity.storage._log import open_log as open_log
from verity.storage._segment import SegmentInfo as SegmentInfo

__all__ = ["PAYLOAD_BYTES_MAX", "Clock", "Log", "Record", "SegmentInfo", "open_log"]
