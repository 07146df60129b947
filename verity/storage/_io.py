"""The IO seam: every OS call storage makes to read, write, sync or rename a file.

Storage calls `OS.pread(...)`, `OS.write(...)`, ... instead of `os.pread(...)`
(and `OS.flock(...)` instead of `fcntl.flock(...)`).
`OS` holds the real `os` functions, so the cost is one attribute lookup. A test
double (the conformance suite's `FaultyIO`) replaces them with `install` to
drive short reads and writes, EIO, ENOSPC and bit flips into storage, and puts
the previous ones back with `restore` (docs/architecture.md, "The IO seam").
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class IO:
    """The OS calls storage makes. Each attribute has the signature of its `os` namesake."""

    pread: Callable[[int, int, int], bytes] = os.pread
    write: Callable[[int, bytes | bytearray | memoryview], int] = os.write
    pwrite: Callable[[int, bytes | bytearray | memoryview, int], int] = os.pwrite
    fsync: Callable[[int], None] = os.fsync
    ftruncate: Callable[[int, int], None] = os.ftruncate
    replace: Callable[[str | os.PathLike[str], str | os.PathLike[str]], None] = os.replace
    flock: Callable[[int, int], None] = fcntl.flock


OS = IO()
"""The seam storage calls through; its attributes are replaced, never the object."""


def install(io: IO) -> IO:
    """Route storage's OS calls through `io`'s; return what was installed before."""
    previous = IO(OS.pread, OS.write, OS.pwrite, OS.fsync, OS.ftruncate, OS.replace, OS.flock)
    restore(io)
    return previous


def restore(io: IO) -> None:
    """Put `io`'s calls in the seam (the value `install` returned, or `IO()` for the OS)."""
    OS.pread, OS.write, OS.pwrite = io.pread, io.write, io.pwrite
    OS.fsync, OS.ftruncate, OS.replace = io.fsync, io.ftruncate, io.replace
    OS.flock = io.flock
