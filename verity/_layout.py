"""The database's layout file, `verity.json`: its format and how tenants are placed.

```
{"format": 1, "sha256": HEX, "shard_count": N}      keys sorted, no spaces
sha256 = SHA-256 of the same JSON without the "sha256" key
```

The shard count decides which folder holds each tenant (`verity.directory`),
so a wrong one would hide tenants: the file is checksummed, a folder that
holds tenant data and no valid layout refuses to open, and every tenant
folder found must sit in the shard the count places it in. A layout written
before the checksum existed is read as is and rewritten with one by the next
writer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Final

from verity.directory import Directory
from verity.errors import CorruptionError
from verity.storage._index import write_atomic
from verity.types import TenantId

__all__ = [
    "DATABASE_FILE",
    "DATABASE_FORMAT",
    "Layout",
    "check_placement",
    "read_layout",
    "tenant_folders",
]

DATABASE_FILE: Final = "verity.json"
DATABASE_FORMAT: Final = 1


def _canonical(fields: dict[str, object]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")


class Layout:
    """What `verity.json` says: the shard count, and whether the file carries its checksum."""

    __slots__ = ("checksummed", "shard_count")

    def __init__(self, shard_count: int, *, checksummed: bool) -> None:
        self.shard_count = shard_count
        self.checksummed = checksummed

    def write(self, folder: Path) -> None:
        """Write (atomically, durably) the checksummed layout file into `folder`."""
        fields: dict[str, object] = {"format": DATABASE_FORMAT, "shard_count": self.shard_count}
        fields["sha256"] = hashlib.sha256(_canonical(fields)).hexdigest()
        write_atomic(folder / DATABASE_FILE, _canonical(fields))
        self.checksummed = True


def read_layout(folder: Path) -> Layout:
    """The layout in `folder`; `CorruptionError` naming the file if it is not a valid one."""
    file = folder / DATABASE_FILE
    try:
        fields = json.loads(file.read_bytes())
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
        stated = fields.pop("sha256", None)
        if fields.get("format") != DATABASE_FORMAT:
            raise ValueError(f"format {fields.get('format')!r}, expected {DATABASE_FORMAT}")
        if set(fields) != {"format", "shard_count"}:
            raise ValueError(f"fields {sorted(fields)}")
        shard_count = fields["shard_count"]
        if not isinstance(shard_count, int) or isinstance(shard_count, bool):
            raise ValueError(f"shard_count {shard_count!r}")
        Directory(folder, shard_count)  # the count must be one placement accepts
        if stated is not None and stated != hashlib.sha256(_canonical(fields)).hexdigest():
            raise ValueError("its sha256 does not match its contents")
    except (ValueError, TypeError) as failure:  # InvalidArgument is a ValueError too
        raise CorruptionError(
            f"database layout file unreadable: {failure}", file=str(file)
        ) from None
    return Layout(shard_count, checksummed=stated is not None)


def tenant_folders(folder: Path) -> list[Path]:
    """Every `shard-*/tenant-<id>` folder under the database folder."""
    return sorted(
        entry
        for shard in folder.glob("shard-*")
        if shard.is_dir()
        for entry in shard.glob("tenant-*")
        if entry.is_dir() and entry.name.removeprefix("tenant-").isdigit()
    )


def check_placement(folder: Path, directory: Directory) -> None:
    """Every tenant folder sits where the shard count places it, or `CorruptionError`.

    A folder in another shard means the layout file's count is not the one
    the data was written under: opening with it would show an empty tenant
    and hide the real one.
    """
    for entry in tenant_folders(folder):
        tenant = TenantId(int(entry.name.removeprefix("tenant-")))
        expected = directory.tenant_path(tenant)
        if entry != expected:
            raise CorruptionError(
                f"tenant {int(tenant)} is in {entry.parent.name}, but shard_count "
                f"{directory.shard_count} places it in {expected.parent.name}: the layout does "
                "not match the data (was the shard count changed?)",
                file=str(folder / DATABASE_FILE),
            )
