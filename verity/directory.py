"""Placement: which shard serves a tenant (the plan's vdb-directory).

Placement is a pure function of the tenant id and the shard count, so every
process that knows the count agrees on it without asking anyone. It uses jump
consistent hashing (Lamping and Veach, 2014): when the shard count grows from
n to n + 1, only about 1/(n + 1) of the tenants move, and never between two
old shards. On the embedded default a shard is a folder of the database;
later a shard is a replica group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, final

from verity.errors import InvalidArgument
from verity.types import TenantId

__all__ = ["SHARD_COUNT_DEFAULT", "SHARD_COUNT_MAX", "Directory", "shard_of"]

SHARD_COUNT_DEFAULT: Final = 16
SHARD_COUNT_MAX: Final = 1 << 16

_U64_MASK: Final = (1 << 64) - 1
_LCG_MULTIPLIER: Final = 2862933555777941757  # from the paper; any full-period LCG works
_BIT_31: Final = float(1 << 31)


def _check_shard_count(shard_count: object) -> int:
    if not isinstance(shard_count, int) or isinstance(shard_count, bool):
        raise InvalidArgument("shard_count", shard_count, "must be an int")
    if not 1 <= shard_count <= SHARD_COUNT_MAX:
        raise InvalidArgument("shard_count", shard_count, f"must be in 1..{SHARD_COUNT_MAX}")
    return shard_count


def shard_of(tenant: TenantId, shard_count: int) -> int:
    """The shard (0 ≤ shard < shard_count) that serves `tenant`."""
    if not isinstance(tenant, TenantId):
        raise InvalidArgument("tenant", tenant, "must be a TenantId")
    buckets = _check_shard_count(shard_count)
    key = int(tenant)
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * _LCG_MULTIPLIER + 1) & _U64_MASK
        candidate = int((bucket + 1) * (_BIT_31 / float((key >> 33) + 1)))
    assert 0 <= bucket < buckets
    return bucket


@final
class Directory:
    """Maps tenants to shards and, on the embedded default, to folders under a root."""

    __slots__ = ("_root", "_shard_count")

    def __init__(self, root: Path, shard_count: int = SHARD_COUNT_DEFAULT) -> None:
        self._root = root
        self._shard_count = _check_shard_count(shard_count)

    @property
    def shard_count(self) -> int:
        return self._shard_count

    def shard_of(self, tenant: TenantId) -> int:
        return shard_of(tenant, self._shard_count)

    def tenant_path(self, tenant: TenantId) -> Path:
        """`<root>/shard-NNNNN/tenant-<id>`: the folder of everything the tenant owns."""
        return self._root / f"shard-{self.shard_of(tenant):05d}" / f"tenant-{int(tenant)}"

    def tenants(self) -> list[TenantId]:
        """Every tenant with a folder under the root, by id."""
        found: list[TenantId] = []
        for shard in sorted(self._root.glob("shard-*")):
            for folder in shard.glob("tenant-*"):
                suffix = folder.name.removeprefix("tenant-")
                if suffix.isdigit():
                    tenant = TenantId(int(suffix))
                    # A folder in the wrong shard was not made by this directory.
                    if folder.parent.name == f"shard-{self.shard_of(tenant):05d}":
                        found.append(tenant)
        return sorted(found)
