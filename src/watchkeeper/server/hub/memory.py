"""Handing memory back to the system after large fold steps, so that the server's RSS follows
what it holds, not the largest step it has folded (issue #19: a 100,000-label batch against
10M prediction records left +138 MiB behind).

glibc only (``malloc_trim``, ``mallopt``, looked up with ctypes); elsewhere these do nothing
but release what pyarrow's memory pool keeps.
"""

from __future__ import annotations

import gc
import os

import pyarrow as pa

from watchkeeper.io.malloc import M_ARENA_MAX, M_MMAP_THRESHOLD
from watchkeeper.io.malloc import libc as _libc

#: At most this many glibc malloc arenas (mallopt's M_ARENA_MAX; default 8 per core: each
#: thread that folds or answers requests may get one, and memory freed in one is not
#: reused by the others)
ARENAS = 2
#: For mallopt's M_MMAP_THRESHOLD: blocks from this size up get pages of their own, handed back
#: when freed. glibc raises its default (128 KiB) to the size of each large block freed, up
#: to 32 MiB, after which the request bodies, payloads and Arrow buffers of a few MiB each
#: come from the heap and leave it fragmented (issue #19: ~10 MiB more after 1M rows
#: posted in batches of 100,000). Setting it keeps it fixed.
MMAP_THRESHOLD = 256 * 1024


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before the server's threads start allocating) unless
    the environment sets MALLOC_ARENA_MAX; returns whether it did. The server's threads
    mostly wait on the GIL or the store, so few arenas cost nothing in speed; many keep
    freed memory each."""
    if "MALLOC_ARENA_MAX" in os.environ:  # glibc's own setting, as the user chose it
        return False
    libc = _libc()
    return bool(libc) and bool(libc.mallopt(M_ARENA_MAX, arenas))


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Keep glibc's mmap threshold at ``size`` (see M_MMAP_THRESHOLD) unless the environment
    sets MALLOC_MMAP_THRESHOLD_; returns whether it did. Large blocks then go back to the
    system as soon as they are freed, whichever thread frees them and whenever."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    libc = _libc()
    return bool(libc) and bool(libc.mallopt(M_MMAP_THRESHOLD, size))


def give_back(*, collect: bool = False) -> None:
    """Hand freed heap pages back to the system: pyarrow's pool, then glibc's
    ``malloc_trim`` (every arena). ``collect``: run the cycle collector first (a fold
    step of many rows, whose frames and tables may sit in reference cycles)."""
    if collect:
        gc.collect()
    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc:
        libc.malloc_trim(0)
