"""glibc's malloc settings, for processes whose memory use we know: the server hands
memory back after large steps (``watchkeeper.server.hub.memory``); the streamed check's
worker processes keep what they free for the next batch (:func:`keep_freed_memory`).

glibc only (``mallopt``, ``malloc_trim``, looked up with ctypes); elsewhere these do
nothing.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pyarrow as pa

#: mallopt's parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

_LIBC: Any = None  # glibc once looked up; False where there is none


def libc() -> Any:
    """glibc (with ``mallopt`` and ``malloc_trim``), or False."""
    global _LIBC
    if _LIBC is None:
        try:
            found = ctypes.CDLL("libc.so.6")
            _LIBC = found if hasattr(found, "malloc_trim") and hasattr(found, "mallopt") \
                else False
        except OSError:
            _LIBC = False
    return _LIBC


def keep_freed_memory(largest: int = 1 << 30) -> bool:
    """In a process of our own that works batch after batch (a worker process): memory
    freed after one batch is kept for the next instead of being handed back to the system
    and faulted in again (each fault zeroes a page, a 2 MB one where numpy asks for huge
    pages: a fifth of a worker's CPU went there, see ``benchmarks/results/stream.md``).
    Arrow allocates from glibc (its system pool, not mimalloc, which hands freed pages back
    within milliseconds), and glibc maps no block under ``largest`` bytes on its own and
    trims nothing, so the process keeps the most one batch needed. Not for a user's
    process: it changes the whole process. Returns whether glibc took it."""
    pa.set_memory_pool(pa.system_memory_pool())
    c = libc()
    if not c:
        return False
    return bool(c.mallopt(M_MMAP_THRESHOLD, largest)) and bool(
        c.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1))
