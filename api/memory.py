"""Give freed memory back to the system: glibc keeps freed decode buffers in its arenas, so under a
steady stream of photos the service's RSS would creep up although nothing leaks."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD = 1 << 20


def map_large_buffers() -> None:
    """Serve allocations of 1 MiB and more from their own mappings, returned to the system on free.

    glibc otherwise raises its mmap threshold after the first large free (up to 32 MiB), so the
    buffers of one huge decode after another land in per-thread arenas that keep them: peak RSS then
    grows with every decode thread, although the decode budget lets only one run at a time
    (tests/reliability/test_abuse.py measured 1.1 GB for 8 WebPs of 36 MP, one budget at a time).
    Setting the threshold explicitly also switches that adjustment off.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):  # not glibc
        pass


async def trim_memory_forever(every: float = 5.0) -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(trim, 0)
