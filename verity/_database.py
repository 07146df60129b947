"""The embedded database: `verity.open(path)` -> `Verity` -> `TenantHandle` (verity._tenant).

A database is a folder: its layout file (`verity.json`), its master key (by
default) and one folder per tenant, placed in shards by `verity.directory`.
`Verity` opens tenants on first use, verifies them all, and shuts them down.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar, final

from verity._layout import (
    DATABASE_FILE,
    Layout,
    check_placement,
    read_layout,
    tenant_folders,
)
from verity._tenant import (
    SIGNING_KEY_FILE,
    QueryResult,
    Receipt,
    TenantHandle,
    TenantVerification,
    _check_instance,
)
from verity._witness import WITNESS_FILE, Witness
from verity.crypto import (
    FileMasterKeyProvider,
    MasterKeyProvider,
)
from verity.directory import SHARD_COUNT_DEFAULT, Directory
from verity.errors import (
    ClosedError,
    CorruptionError,
    InvalidArgument,
    KeyError_,
    NotFound,
    ReadOnly,
)
from verity.kernel import (
    RETENTION_NS_DEFAULT,
)
from verity.proofs import SignedCheckpoint
from verity.storage._files import LOCK_FILE, FolderLock, make_private_dir
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
    "TenantVerification",
    "VerificationReport",
    "Verity",
    "open",
]

logger = logging.getLogger("verity")

_Answer = TypeVar("_Answer")

Clock = Callable[[], int]

MASTER_KEY_FILE: Final = "master.key"


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
    """No record is damaged and every signed checkpoint handed out is kept."""
    records_checked: int
    tenants_checked: int
    first_bad: BadRecord | None
    tenants: tuple[TenantVerification, ...] = ()
    """Per intact tenant: how far it is signed, its key, broken promises, key problems."""


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
        create: bool,
        read_only: bool,
        signing_key_dir: Path | None = None,
    ) -> None:
        """Open the database in `path` (see `verity.open`); every argument is checked by then."""
        self._path = path
        self._sync_policy = sync_policy
        self._checkpoint_policy = checkpoint_policy
        self._clock = clock
        self._retention_ns = idempotency_retention_ns
        self._read_only = read_only
        self._signing_key_dir = signing_key_dir
        self._lock = threading.Lock()
        self._closed = False
        self._tenants: dict[int, TenantHandle] = {}
        self._owned_provider: FileMasterKeyProvider | None = None
        new_database = self._check_folder(create)
        self._folder_lock = None if read_only else FolderLock.acquire(path)
        try:
            self._directory = Directory(path, self._load_layout(new_database, shard_count))
            check_placement(path, self._directory)
            # A provider, or (for a reader without the master key) why there is none.
            self._provider: MasterKeyProvider | str = (
                self._load_master_key(new_database)
                if master_key_provider is None
                else master_key_provider
            )
        except BaseException:
            if self._owned_provider is not None:
                self._owned_provider.close()
            if self._folder_lock is not None:
                self._folder_lock.release()
            raise

    def _check_folder(self, create: bool) -> bool:
        """Whether `path` is to become a new database; refuse a folder that is neither.

        Nothing is created unless `create` (and not read-only); a folder with
        tenant data and no layout file is damage, not a new database.
        """
        path = self._path
        if path.exists() and not path.is_dir():
            raise InvalidArgument("path", str(path), "exists and is not a folder")
        if (path / DATABASE_FILE).exists():
            return False
        if path.exists() and tenant_folders(path):
            raise CorruptionError(
                "the folder holds tenant data but no layout file: restore verity.json "
                "(opening without it could place tenants in the wrong shards)",
                file=str(path / DATABASE_FILE),
            )
        why = "no such folder" if not path.exists() else "it has no verity.json"
        if self._read_only or not create:
            raise NotFound(
                "database",
                str(path),
                f"{why}; open it with create=True to make a new database there",
            )
        if path.exists() and any(entry.name != LOCK_FILE for entry in path.iterdir()):
            raise InvalidArgument(
                "path", str(path), "is a folder that is not empty and not a VerityDB database"
            )
        make_private_dir(path, parents=True)
        return True

    def _load_layout(self, new_database: bool, shard_count: int) -> int:
        if new_database:
            Layout(shard_count, checksummed=True).write(self._path)
            return shard_count
        layout = read_layout(self._path)
        if not layout.checksummed and not self._read_only:
            layout.write(self._path)  # a layout from before the checksum: add it
        return layout.shard_count

    def _load_master_key(self, new_database: bool) -> MasterKeyProvider | str:
        """The key file in the folder; a new one only for a new database, never a replacement.

        A reader of a folder without its master key opens keyless: the reason
        is returned instead of a provider (PUBLIC data stays readable and
        everything verifiable; see `TenantHandle`).
        """
        path = self._path / MASTER_KEY_FILE
        if self._read_only and not path.exists():
            return (
                f"master key file {path} is missing: encrypted events and tables cannot be "
                "read (open with the master_key_provider that holds it)"
            )
        if new_database:
            self._owned_provider = FileMasterKeyProvider.load_or_create(path)
        elif not path.exists() and not self._directory.tenants() and not self._read_only:
            # A database that never held a tenant has no key-wrapped data to lose.
            self._owned_provider = FileMasterKeyProvider.load_or_create(path)
        else:
            try:
                self._owned_provider = FileMasterKeyProvider.load(path)
            except KeyError_:
                raise KeyError_(
                    f"master key file {path} is missing; it wraps the key rings of this "
                    "database's tenants, and a new one could not open them: restore it, "
                    "or open with the master_key_provider that holds it"
                ) from None
        return self._owned_provider

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"database {self._path}")

    def tenant(self, tenant: TenantId, *, create: bool = False) -> TenantHandle:
        """The handle of `tenant`, opening it on first use.

        A tenant that does not exist is `NotFound`, unless `create` (on a
        database not opened read-only), which makes it: its folder, key ring
        and signing key. Reads never create anything.
        """
        _check_instance("tenant", tenant, TenantId, "a TenantId")
        if not isinstance(create, bool):
            raise InvalidArgument("create", create, "must be a bool")
        with self._lock:
            self._check_open()
            handle = self._tenants.get(int(tenant))
            if handle is not None:
                return handle
            folder = self._directory.tenant_path(tenant)
            if not folder.exists():
                if not create:
                    raise NotFound(
                        "tenant", int(tenant), f"{self._path} holds no such tenant (create=True)"
                    )
                if self._read_only:
                    raise ReadOnly(f"database {self._path}")
                make_private_dir(folder, parents=True)
            handle = self._open_handle(tenant, folder, self._provider, read_only=self._read_only)
            self._tenants[int(tenant)] = handle
            return handle

    def _open_handle(
        self, tenant: TenantId, folder: Path, provider: MasterKeyProvider | str, *, read_only: bool
    ) -> TenantHandle:
        key_folder = folder if self._signing_key_dir is None else self._signing_key_dir
        prefix = "" if self._signing_key_dir is None else f"tenant-{int(tenant)}."
        return TenantHandle(
            tenant,
            folder,
            provider,
            self._sync_policy,
            self._checkpoint_policy,
            self._clock,
            self._retention_ns,
            signing_key_path=key_folder / (prefix + SIGNING_KEY_FILE),
            witness_path=key_folder / (prefix + WITNESS_FILE),
            read_only=read_only,
        )

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
        self,
        progress: Callable[[TenantId, int, int], None] | None = None,
        *,
        trusted: Iterable[tuple[TenantId, SignedCheckpoint]] = (),
    ) -> VerificationReport:
        """Verify every tenant's log from genesis; report the first bad record, if any.

        Each log is checked record by record (CRCs, chain, checkpoints and their
        signatures), then held against every signed checkpoint it handed out
        (its witness file) and every one in `trusted` (pairs of tenant and
        checkpoint an auditor kept): a log cut back behind one, or forked from
        it, is reported as a broken promise. Key problems (a missing or foreign
        signing key) are reported per tenant, not raised.
        `progress(tenant, records_done, records_total)` is called as each log is read.
        """
        trusted_by_tenant: dict[int, list[SignedCheckpoint]] = {}
        for pair in trusted:
            if (
                not isinstance(pair, tuple)
                or len(pair) != 2
                or not isinstance(pair[1], SignedCheckpoint)
            ):
                raise InvalidArgument("trusted", pair, "must hold (TenantId, SignedCheckpoint)")
            trusted_by_tenant.setdefault(int(pair[0]), []).append(pair[1])
        records = 0
        checked = 0
        found: list[TenantVerification] = []
        for tenant in self.tenants():
            try:
                per_tenant = None if progress is None else partial(progress, tenant)
                promised = trusted_by_tenant.pop(int(tenant), [])
                try:
                    handle = self.tenant(tenant, create=False)
                except KeyError_ as missing:
                    # A writer refuses a tenant whose key ring is gone; its log is still
                    # verified, by a keyless reader, and the missing key reported.
                    result = self._verify_keyless(tenant, str(missing), per_tenant, promised)
                else:
                    result = handle._verify(per_tenant, promised)
            except CorruptionError as failure:
                bad = BadRecord(tenant, failure.record_offset, failure.file, failure.reason)
                return VerificationReport(False, records, checked + 1, bad, tuple(found))
            records += result.records_checked
            found.append(result)
            checked += 1
        if self._signing_key_dir is not None:
            # A tenant folder deleted whole leaves its witness behind, outside the folder.
            present = {int(tenant) for tenant in self.tenants()}
            for witness in sorted(self._signing_key_dir.glob("tenant-*." + WITNESS_FILE)):
                tenant_id = int(witness.name.split(".")[0].removeprefix("tenant-"))
                if tenant_id not in present:
                    trusted_by_tenant.setdefault(tenant_id, []).extend(
                        Witness(witness).checkpoints()
                    )
        for tenant_id, checkpoints in trusted_by_tenant.items():
            found.append(
                TenantVerification(
                    TenantId(tenant_id),
                    0,
                    0,
                    0,
                    None,
                    tuple(
                        f"rollback: tenant {tenant_id} is gone; a signed checkpoint covers "
                        f"{checkpoint.tree_size} of its records"
                        for checkpoint in checkpoints
                    ),
                    None,
                )
            )
        ok = not any(result.broken_promises for result in found)
        return VerificationReport(ok, records, checked, None, tuple(found))

    def _verify_keyless(
        self,
        tenant: TenantId,
        why: str,
        progress: Callable[[int, int], None] | None,
        promised: list[SignedCheckpoint],
    ) -> TenantVerification:
        handle = self._open_handle(tenant, self._directory.tenant_path(tenant), why, read_only=True)
        try:
            return handle._verify(progress, promised)
        finally:
            handle._close(clean=False)

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
            # Every tenant is closed (and its lock released) even if one of them fails;
            # the first failure is raised after.
            failure: BaseException | None = None
            for handle in handles:
                try:
                    handle._close(clean=clean)
                except BaseException as raised:
                    failure = failure or raised
            if failure is not None:
                raise failure
        finally:
            if self._owned_provider is not None:
                self._owned_provider.close()
            if self._folder_lock is not None:
                self._folder_lock.release()

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
    create: bool = False,
    read_only: bool = False,
    sync_policy: SyncPolicy | None = None,
    checkpoint_policy: CheckpointPolicy | None = None,
    shard_count: int = SHARD_COUNT_DEFAULT,
    clock: Clock = time.time_ns,
    master_key_provider: MasterKeyProvider | None = None,
    idempotency_retention_ns: int = RETENTION_NS_DEFAULT,
    signing_key_dir: str | os.PathLike[str] | None = None,
) -> Verity:
    """Open the database in folder `path`; with `create`, make it if it is not there.

    Without `create`, a path that is not a VerityDB database is `NotFound`
    and nothing is created. The opener holds the database for writing until
    `close()`: a second writer (another process or another `open` here) gets
    `InUse`. With `read_only`, it takes no lock and writes nothing (any
    number of readers run beside one writer): reads, SQL queries,
    verification and proofs see the durable records; writes raise `ReadOnly`.

    `sync_policy` defaults to `SyncPolicy.every_batch()` (each append call is
    one fsync); `clock` returns ns since the epoch and is the only clock the
    database reads; `shard_count` is used only when creating; the
    `master_key_provider` defaults to a key file in the folder (`master.key`,
    mode 0600) and is where an HSM plugs in (`FileMasterKeyProvider` over a
    file outside the folder keeps the master key away from whoever holds
    the folder). `signing_key_dir`, when given, holds each tenant's signing
    key (`tenant-<id>.signing.key`) and its witness of handed-out signed
    checkpoints instead of the tenant folder (docs/sdk.md, "Trust model").
    Every argument is checked before anything on disk is touched.
    """
    if not isinstance(path, str | os.PathLike):
        raise InvalidArgument("path", path, "must be a str or os.PathLike")
    if not isinstance(create, bool):
        raise InvalidArgument("create", create, "must be a bool")
    if not isinstance(read_only, bool):
        raise InvalidArgument("read_only", read_only, "must be a bool")
    if sync_policy is not None and not isinstance(sync_policy, SyncPolicy):
        raise InvalidArgument("sync_policy", sync_policy, "must be a SyncPolicy")
    if checkpoint_policy is not None and not isinstance(checkpoint_policy, CheckpointPolicy):
        raise InvalidArgument("checkpoint_policy", checkpoint_policy, "must be a CheckpointPolicy")
    if not callable(clock):
        raise InvalidArgument("clock", clock, "must be a callable returning ns since the epoch")
    if master_key_provider is not None and not all(
        callable(getattr(master_key_provider, name, None)) for name in ("wrap_key", "unwrap_key")
    ):
        raise InvalidArgument(
            "master_key_provider", master_key_provider, "must be a MasterKeyProvider"
        )
    _check_instance("idempotency_retention_ns", idempotency_retention_ns, int, "an int")
    if idempotency_retention_ns < 0:
        raise InvalidArgument("idempotency_retention_ns", idempotency_retention_ns, "must be >= 0")
    if signing_key_dir is not None and not isinstance(signing_key_dir, str | os.PathLike):
        raise InvalidArgument("signing_key_dir", signing_key_dir, "must be a str or os.PathLike")
    if signing_key_dir is not None and Path(signing_key_dir).is_file():
        raise InvalidArgument("signing_key_dir", str(signing_key_dir), "is a file, not a folder")
    Directory(Path(path), shard_count)  # checks the count before anything is created
    return Verity(
        Path(path),
        sync_policy=sync_policy or SyncPolicy.every_batch(),
        checkpoint_policy=checkpoint_policy or CheckpointPolicy(),
        shard_count=shard_count,
        clock=clock,
        master_key_provider=master_key_provider,
        idempotency_retention_ns=idempotency_retention_ns,
        create=create,
        read_only=read_only,
        signing_key_dir=None if signing_key_dir is None else Path(signing_key_dir),
    )
