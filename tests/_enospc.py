"""Real "disk full" for tests: a small tmpfs the test fills, or RLIMIT_FSIZE in a child.

Two kinds of disk, one interface (`fill`, `free`), so one scenario runs on both:

- `TmpfsDisk`: a tmpfs of a few MiB mounted under the test's `tmp_path`
  (needs root or CAP_SYS_ADMIN, as CI has). `fill` writes a filler file until
  the kernel answers ENOSPC; `free` deletes it. Every file on it really runs
  out of space, derived files included; tmpfs never fails an fsync.
- `FsizeDisk`: RLIMIT_FSIZE, in a child process only (it would fail pytest's
  own files). A write at or past the limit fails with EFBIG (SIGXFSZ is
  ignored, else the kernel kills the process); one that crosses it is cut
  short there, as a full disk cuts it. It works on any Linux, so the
  scenarios never go untested where mounting is not permitted. The limit
  applies to every file alike, so `fill(around=...)` lets the one file the
  scenario names grow by `leave_bytes`, and `fill()` lets no write through
  at all (not even an overwrite).

`run_in_child` starts the test module as a script that runs one scenario on
an `FsizeDisk` and kills the child in a `finally`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

PAGE_BYTES = 4096
_MNT_DETACH = 2
_CHILD_TIMEOUT_S = 120


class Disk(Protocol):
    def fill(self, leave_bytes: int = 0, around: Path | None = None) -> None:
        """From now on files can grow by about `leave_bytes` in all (see the kinds)."""

    def free(self) -> None:
        """Give the space back."""


class TmpfsDisk:
    """A mounted tmpfs; `fill` leaves `leave_bytes` (whole pages) free, `around` is unused.

    A file's last page may have room left that needs no new page: the
    scenarios keep the files they fill page-aligned where it matters.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self, leave_bytes: int = 0, around: Path | None = None) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk_bytes in (1 << 16, PAGE_BYTES, 1):
                chunk = bytes(chunk_bytes)
                try:
                    while True:
                        os.write(fd, chunk)
                except OSError as full:
                    assert full.errno == errno.ENOSPC, full
            if leave_bytes:
                pages = -(-leave_bytes // PAGE_BYTES)
                filler_bytes = os.fstat(fd).st_size
                os.ftruncate(fd, max(0, (filler_bytes // PAGE_BYTES - pages) * PAGE_BYTES))
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


class FsizeDisk:
    """RLIMIT_FSIZE in this (child) process: writes at or past `size(around) + leave` fail."""

    def __init__(self, root: Path) -> None:
        self.root = root
        _, self._hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def fill(self, leave_bytes: int = 0, around: Path | None = None) -> None:
        base = 0 if around is None else around.stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (base + leave_bytes, self._hard))

    def free(self) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (self._hard, self._hard))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


@contextmanager
def mounted_tmpfs(path: Path, size_bytes: int) -> Iterator[TmpfsDisk | None]:
    """A tmpfs of `size_bytes` at `path` (made here), unmounted at the end; None if refused.

    Mounts with mount(2) directly (no process to start). The caller skips,
    saying why, when it gets None.
    """
    path.mkdir(mode=0o700)
    libc = _libc()
    options = f"size={size_bytes},mode=0700".encode()
    if libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", 0, options) != 0:
        yield None
        return
    try:
        yield TmpfsDisk(path)
    finally:
        # Detach even if a failed test left a file open; the memory goes with the last one.
        if libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
            raise OSError(ctypes.get_errno(), f"umount {path}")


def mount_refusal(path: Path) -> str:
    """Why a tmpfs cannot be mounted here (for the skip reason)."""
    return (
        f"cannot mount a tmpfs at {path} (mount(2): {os.strerror(ctypes.get_errno())}; "
        f"uid {os.getuid()}): the full-disk scenarios need root or CAP_SYS_ADMIN; "
        "the RLIMIT_FSIZE scenarios still run"
    )


def run_in_child(module_file: str, scenario: str, folder: Path) -> None:
    """Run `scenario` of the test module at `module_file` on an `FsizeDisk` in a child."""
    child = subprocess.Popen(
        [sys.executable, module_file, scenario, str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = child.communicate(timeout=_CHILD_TIMEOUT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, f"scenario {scenario} failed in the child:\n{out}\n{err}"


def child_main(scenarios: dict[str, Callable[[Disk, Path], None]]) -> None:
    """Entry point of the child: `<module> <scenario> <folder>`, under RLIMIT_FSIZE."""
    # Past the limit the kernel sends SIGXFSZ, which kills by default; ignored,
    # write() returns EFBIG instead, as a full disk returns ENOSPC.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    name, folder = sys.argv[1], Path(sys.argv[2])
    scenarios[name](FsizeDisk(folder), folder)
