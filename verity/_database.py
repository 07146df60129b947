"""The embedded database: `verity.open(path)` -> `Verity` -> `TenantHandle` (verity._tenant).

A database is a folder: its layout file (`verity.json`), its master key (by
default) and one folder per tenant, placed in shards by `verity.directory`.
`Verity` opens tenants on first use, verifies them all, and shuts them down.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar, final

from verity._tenant import QueryResult, Receipt, TenantHandle, _check_instance
from verity.crypto import (
    FileMasterKeyProvider,
    MasterKeyProvider,
)
from verity.directory import SHARD_COUNT_DEFAULT, Directory
from verity.errors import (
    ClosedError,
    CorruptionError,
    InvalidArgument,
    NotFound,
)
from verity.kernel import (
    RETENTION_NS_DEFAULT,
)
from verity.storage._index import write_atomic
from verity.types import (
    CheckpointPolicy,
    SyncPolicy,
    TenantId,
)

__all__ = [
    "BadRecord",
    "QueryResult",
    "Receipt",
    "TenantHandle",
    "VerificationReport",
    "Verity",
    "open",
]

logger = logging.getLogger("verity")

_Answer = TypeVar("_Answer")

Clock = Callable[[], int]

DATABASE_FILE: Final = "verity.json"
MASTER_KEY_FILE: Final = "master.key"
DATABASE_FORMAT: Final = 1


@final
@dataclass(frozen=True, slots=True)
class BadRecord:
    """Where verification failed first."""

    tenant: TenantId
    record_offset: int | None
    file: str | None
    reason: str


@final
@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The result of `Verity.verify()`: every tenant's log from genesis."""

    ok: bool
    records_checked: int
    tenants_checked: int
    first_bad: BadRecord | None


@final
class Verity:
    """An embedded VerityDB: a folder of tenants. Open it with `verity.open(path)`.

    A context manager; `close()` shuts every tenant down cleanly (a checkpoint,
    then fsync).
    """

    def __init__(
        self,
        path: Path,
        *,
        sync_policy: SyncPolicy,
        checkpoint_policy: CheckpointPolicy,
        shard_count: int,
        clock: Clock,
        master_key_provider: MasterKeyProvider | None,
        idempotency_retention_ns: int,
    ) -> None:
        self._path = path
        self._sync_policy = sync_policy
        self._checkpoint_policy = checkpoint_policy
        self._clock = clock
        self._retention_ns = idempotency_retention_ns
        self._lock = threading.Lock()
        self._closed = False
        self._tenants: dict[int, TenantHandle] = {}
        path.mkdir(parents=True, exist_ok=True)
        self._directory = Directory(path, self._load_shard_count(shard_count))
        self._owned_provider: FileMasterKeyProvider | None = None
        if master_key_provider is None:
            self._owned_provider = FileMasterKeyProvider.load_or_create(path / MASTER_KEY_FILE)
            master_key_provider = self._owned_provider
        self._provider = master_key_provider

    def _load_shard_count(self, shard_count: int) -> int:
        file = self._path / DATABASE_FILE
        if not file.exists():
            Directory(self._path, shard_count)  # validates the count before anything is written
            fields = {"format": DATABASE_FORMAT, "shard_count": shard_count}
            write_atomic(file, json.dumps(fields, sort_keys=True).encode("utf-8"))
            return shard_count
        try:
            fields = json.loads(file.read_text(encoding="utf-8"))
            stored = int(fields["shard_count"])
            if fields["format"] != DATABASE_FORMAT:
                raise ValueError(f"format {fields['format']!r}")
        except (ValueError, KeyError, TypeError) as failure:
            raise CorruptionError(f"database file unreadable: {failure}", file=str(file)) from None
        return stored

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"database {self._path}")

    def tenant(self, tenant: TenantId, *, create: bool = True) -> TenantHandle:
        """The handle of `tenant`, opening (and, when `create`, creating) it on first use."""
        _check_instance("tenant", tenant, TenantId, "a TenantId")
        with self._lock:
            self._check_open()
            handle = self._tenants.get(int(tenant))
            if handle is not None:
                return handle
            folder = self._directory.tenant_path(tenant)
            if not create and not folder.exists():
                raise NotFound("tenant", tenant, f"no tenant folder under {self._path}")
            handle = TenantHandle(
                tenant,
                folder,
                self._provider,
                self._sync_policy,
                self._checkpoint_policy,
                self._clock,
                self._retention_ns,
            )
            self._tenants[int(tenant)] = handle
            return handle

    def tenants(self) -> list[TenantId]:
        """Every tenant the database holds, by id."""
        with self._lock:
            self._check_open()
            return self._directory.tenants()

    def sync(self) -> None:
        """Make everything appended so far durable, in every open tenant."""
        with self._lock:
            self._check_open()
            handles = list(self._tenants.values())
        for handle in handles:
            handle._sync()

    def verify(
        self, progress: Callable[[TenantId, int, int], None] | None = None
    ) -> VerificationReport:
        """Verify every tenant's log from genesis; report the first bad record, if any.

        `progress(tenant, records_done, records_total)` is called as each log is read.
        """
        records = 0
        checked = 0
        for tenant in self.tenants():
            try:
                handle = self.tenant(tenant, create=False)
                per_tenant = None if progress is None else partial(progress, tenant)
                records += handle._verify(per_tenant)
            except CorruptionError as failure:
                bad = BadRecord(tenant, failure.record_offset, failure.file, failure.reason)
                return VerificationReport(False, records, checked + 1, bad)
            checked += 1
        return VerificationReport(True, records, checked, None)

    def close(self) -> None:
        """Shut every tenant down cleanly; idempotent."""
        self._shutdown(clean=True)

    def _abandon(self) -> None:
        """Stop without a clean shutdown, as a crash would (for tests and campaigns)."""
        self._shutdown(clean=False)

    def _shutdown(self, *, clean: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handles = list(self._tenants.values())
            self._tenants.clear()
        try:
            for handle in handles:
                handle._close(clean=clean)
        finally:
            if self._owned_provider is not None:
                self._owned_provider.close()

    def __enter__(self) -> Verity:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open(  # `verity.open` is the documented entry point; it shadows the builtin here only
    path: str | os.PathLike[str],
    *,
    sync_policy: SyncPolicy | None = None,
    checkpoint_policy: CheckpointPolicy | None = None,
    shard_count: int = SHARD_COUNT_DEFAULT,
    clock: Clock = time.time_ns,
    master_key_provider: MasterKeyProvider | None = None,
    idempotency_retention_ns: int = RETENTION_NS_DEFAULT,
) -> Verity:
    """Open (or create) the database in folder `path`.

    `sync_policy` defaults to `SyncPolicy.every_batch()` (each append call is
    one fsync); `clock` returns ns since the epoch and is the only clock the
    database reads; `master_key_provider` defaults to a key file in the folder
    (`master.key`, mode 0600) and is where an HSM plugs in.
    """
    if not isinstance(path, str | os.PathLike):
        raise InvalidArgument("path", path, "must be a str or os.PathLike")
    if sync_policy is not None and not isinstance(sync_policy, SyncPolicy):
        raise InvalidArgument("sync_policy", sync_policy, "must be a SyncPolicy")
    if checkpoint_policy is not None and not isinstance(checkpoint_policy, CheckpointPolicy):
        raise InvalidArgument("checkpoint_policy", checkpoint_policy, "must be a CheckpointPolicy")
    _check_instance("idempotency_retention_ns", idempotency_retention_ns, int, "an int")
    if idempotency_retention_ns < 0:
        raise InvalidArgument("idempotency_retention_ns", idempotency_retention_ns, "must be >= 0")
    return Verity(
        Path(path),
        sync_policy=sync_policy or SyncPolicy.every_batch(),
        checkpoint_policy=checkpoint_policy or CheckpointPolicy(),
        shard_count=shard_count,
        clock=clock,
        master_key_provider=master_key_provider,
        idempotency_retention_ns=idempotency_retention_ns,
    )
