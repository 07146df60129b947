"""A tenant's key ring, `keyring.json` (docs/formats.md §5.9): its wrapped KEK and every DEK.

The KEK is wrapped (RFC 3394) by the master key; each DEK and the projection
store's page key are wrapped by the KEK. The file is replaced atomically and
made durable before a new key encrypts anything, so every stored ciphertext
has its key on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from verity.crypto import MasterKeyProvider, PageKey, SegmentKey, TenantKeys
from verity.errors import CorruptionError, VerityError
from verity.storage._files import storage_error
from verity.storage._index import write_atomic
from verity.types import TenantId

__all__ = ["DEK_ID_MAX", "KEYRING_FILE", "Keyring"]

KEYRING_FILE: Final = "keyring.json"
DEK_ID_MAX: Final = (1 << 32) - 1


class Keyring:
    """A tenant's wrapped KEK and every DEK its sessions created (keyring.json).

    The file is replaced atomically and made durable before a new DEK encrypts
    anything, so every stored ciphertext has its key on disk.
    """

    def __init__(
        self,
        path: Path,
        provider: MasterKeyProvider,
        tenant: TenantId,
        created: tuple[TenantKeys, bytes] | None = None,
    ) -> None:
        """Load the key ring at `path` (use `create` for a new tenant's)."""
        self._path = path
        self._tenant = tenant
        self._open_keys: dict[int, SegmentKey] = {}
        self._wrapped_deks: dict[int, bytes] = {}
        self._wrapped_page_key: bytes | None = None
        self._page_key: PageKey | None = None
        self._session: tuple[int, SegmentKey] | None = None
        if created is not None:
            self._keys, self._wrapped_kek = created
            self._write()
            return
        try:
            fields = json.loads(path.read_text(encoding="utf-8"))
            if fields["format"] != 1 or fields["tenant"] != int(tenant):
                raise ValueError(f"format {fields['format']}, tenant {fields['tenant']}")
            wrapped_kek = bytes.fromhex(fields["wrapped_kek"])
            for dek_id, wrapped in fields["deks"].items():
                self._wrapped_deks[int(dek_id)] = bytes.fromhex(wrapped)
            if "page_key" in fields:
                self._wrapped_page_key = bytes.fromhex(fields["page_key"])
        except (ValueError, KeyError, TypeError, AttributeError) as failure:
            raise CorruptionError(f"key ring unreadable: {failure}", file=str(path)) from None
        self._keys = TenantKeys.load(provider, tenant, wrapped_kek)
        self._wrapped_kek = wrapped_kek

    @staticmethod
    def create(path: Path, provider: MasterKeyProvider, tenant: TenantId) -> Keyring:
        """A new tenant's key ring: a fresh KEK wrapped by the master key, durable on return."""
        return Keyring(path, provider, tenant, TenantKeys.create(provider, tenant))

    def _write(self) -> None:
        fields = {
            "format": 1,
            "tenant": int(self._tenant),
            "wrapped_kek": self._wrapped_kek.hex(),
            "deks": {str(k): v.hex() for k, v in sorted(self._wrapped_deks.items())},
        }
        if self._wrapped_page_key is not None:
            fields["page_key"] = self._wrapped_page_key.hex()
        try:
            write_atomic(self._path, json.dumps(fields, sort_keys=True).encode("utf-8"))
        except OSError as failure:
            # The new key encrypts nothing until this returns; the old file stands
            # (or the new one, if only the folder's fsync failed: it holds every key).
            self._path.with_name(self._path.name + ".tmp").unlink(missing_ok=True)
            raise storage_error(
                f"write key ring {self._path}", failure, path=self._path, written=False
            ) from failure

    def retire_session_key(self) -> None:
        """Never seal with this session's DEK again; the next `session_key` makes a fresh one.

        Call it when a write sealed under the session DEK may have reached
        the disk and was undone (`verity.storage.Log.failed_write_generation`
        changed): the next record at that log position carries other bytes,
        and one AES-GCM key must never seal two plaintexts under one nonce.
        The retired key stays in the ring (and open) for reading. Does no IO,
        so it cannot fail; making the fresh key (which writes the ring) is
        left to the next `session_key`, which raises `StorageError` while the
        disk is full and tries again on the next call.
        """
        self._session = None

    def new_session_key(self) -> tuple[int, SegmentKey]:
        """Retire this session's DEK and make a fresh one, durable on return."""
        self.retire_session_key()
        return self.session_key()

    def session_key(self) -> tuple[int, SegmentKey]:
        """This session's DEK, created (and made durable) on first use.

        `StorageError` if the ring cannot be written (a full disk): no key
        was made current, and the next call makes another under the same
        id (if the failed write did reach the file, that key sealed nothing,
        and the next write replaces it).
        """
        if self._session is None:
            dek_id = max(self._wrapped_deks, default=0) + 1
            if dek_id > DEK_ID_MAX:
                raise VerityError(f"tenant {int(self._tenant)} has used every DEK id")
            key, wrapped = self._keys.new_segment_dek()
            self._wrapped_deks[dek_id] = wrapped
            try:
                self._write()
            except BaseException:
                del self._wrapped_deks[dek_id]
                key.close()
                raise
            self._open_keys[dek_id] = key
            self._session = (dek_id, key)
        return self._session

    def key(self, dek_id: int, log_offset: int) -> SegmentKey:
        found = self._open_keys.get(dek_id)
        if found is None:
            wrapped = self._wrapped_deks.get(dek_id)
            if wrapped is None:
                raise CorruptionError(
                    f"record names DEK {dek_id}, which the key ring does not hold",
                    file=str(self._path),
                    record_offset=log_offset,
                )
            found = self._keys.open_segment_dek(wrapped)
            self._open_keys[dek_id] = found
        return found

    def page_key(self, *, fresh: bool) -> PageKey:
        """The projection store's page key; `fresh`: a new one, durable before it is used.

        A new store (first open, or a rebuild) gets a new key, so that no key
        seals more pages than one store's lifetime writes.
        """
        if fresh or self._wrapped_page_key is None:
            key, wrapped = self._keys.new_page_key()
            self._wrapped_page_key = wrapped
            try:
                self._write()
            except BaseException:
                # Which key the file holds is not known: the next call makes a fresh one.
                self._wrapped_page_key = None
                key.close()
                raise
        else:
            key = self._keys.open_page_key(self._wrapped_page_key)
        # The old key's store is closed or abandoned by now.
        if self._page_key is not None:
            self._page_key.close()
        self._page_key = key
        return key

    def close(self) -> None:
        for key in self._open_keys.values():
            key.close()
        self._open_keys.clear()
        if self._page_key is not None:
            self._page_key.close()
        self._keys.close()
