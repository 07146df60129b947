"""Owner-only files and folders, and the one-writer lock on a folder.

Everything VerityDB creates holds keys or data, so it is created owner-only
(folders 0700, files 0600) whatever the process umask: the mode is set with
`fchmod`/`chmod` after creation, because a umask can only take bits away from
the mode passed to `open`, and an unusual one (0o777) would leave a file the
owner cannot read back.

`FolderLock` is an exclusive `flock(2)` on `<folder>/verity.lock`, taken
before anything else in the folder is read or written and held until close.
A second writer (another process, or a second open in this one: flock locks
belong to the open file, not the process) gets `InUse`, naming the holder's
process id, which the holder writes into the lock file. Read-only openers take
no lock, so any number of them run beside one writer.

`storage_error` turns an `OSError` of a write into the typed error callers
see: `StorageFull` when space ran out (ENOSPC, EDQUOT, EFBIG), else
`StorageError`, saying whether the write happened (docs/formats.md §4.7).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Final, final

from verity.errors import InUse, StorageError, StorageFull
from verity.storage._io import OS

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "FULL_ERRNOS",
    "LOCK_FILE",
    "FolderLock",
    "make_private_dir",
    "open_private",
    "storage_error",
]

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
LOCK_FILE: Final = "verity.lock"
# A full disk, a full quota, or a file size limit (RLIMIT_FSIZE): space may come back.
FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# What a non-blocking flock fails with when another process holds the lock.
_HELD_ERRNOS: Final = frozenset({errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES})


def storage_error(
    what: str, failure: OSError, *, path: str | os.PathLike[str] | None, written: bool | None
) -> StorageError:
    """The typed error for `failure` of `what` on `path`: `StorageFull` when space ran out.

    `written` is what is known of the write (see `verity.errors.StorageError`).
    The caller raises it `from failure`.
    """
    kind = StorageFull if failure.errno in FULL_ERRNOS else StorageError
    shown = None if path is None else os.fspath(path)
    return kind(what, failure, path=shown, written=written)


def make_private_dir(path: Path, *, parents: bool = False) -> None:
    """Create folder `path` (and, with `parents`, missing parents) with mode 0700.

    An existing folder is left as it is. Parents created here are 0700 too.
    """
    if path.is_dir():
        return
    if parents and not path.parent.is_dir():
        make_private_dir(path.parent, parents=True)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    os.chmod(path, DIR_MODE)


def open_private(path: Path | str, flags: int) -> int:
    """`os.open(path, flags)`; a file this call creates gets mode 0600 whatever the umask."""
    created = False
    if flags & os.O_CREAT and not flags & os.O_EXCL:
        try:
            fd = os.open(path, flags | os.O_EXCL, FILE_MODE)
            created = True
        except FileExistsError:
            fd = os.open(path, flags & ~os.O_CREAT)
    else:
        fd = os.open(path, flags, FILE_MODE)
        created = bool(flags & os.O_CREAT)
    if created:
        try:
            os.fchmod(fd, FILE_MODE)
        except BaseException:
            os.close(fd)
            raise
    return fd


def _holder_pid(fd: int) -> int | None:
    """The process id the lock's holder wrote into the file, if it reads as one."""
    try:
        text = OS.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


@final
class FolderLock:
    """An exclusive, OS-level lock on one folder, held until `release`."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @staticmethod
    def acquire(folder: Path) -> FolderLock:
        """Lock `folder` (which must exist) for writing; `InUse` if someone else holds it.

        A lock the OS refuses for another reason is a `StorageError` naming the
        lock file and the errno: the folder is not known to be in use.

        On refusal nothing in the folder is written: the lock file already
        exists, since its holder made it.
        """
        path = folder / LOCK_FILE
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
        try:
            OS.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as failure:
            if failure.errno not in _HELD_ERRNOS:
                # Not another holder (ENOLCK on a network filesystem, say): the folder is
                # not known to be in use, and not known to be free either.
                os.close(fd)
                raise storage_error(
                    f"lock folder {folder}", failure, path=path, written=False
                ) from failure
            pid = _holder_pid(fd)
            os.close(fd)
            raise InUse(str(folder), pid) from None
        try:
            stamp = f"{os.getpid()}\n".encode("ascii")
            OS.ftruncate(fd, 0)
            OS.pwrite(fd, stamp, 0)
        except OSError:
            # The pid is only a courtesy to a refused opener; a full disk must not stop an open.
            pass
        return FolderLock(path, fd)

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Unlock and close; idempotent. The pid stays: it is read only by a refused opener."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # closing the last descriptor of the open file drops the flock
