"""Give freed memory back to the system: glibc keeps freed decode buffers in its arenas, so under a
steady stream of photos the service's RSS would creep up although nothing leaks."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util


async def trim_memory_forever(every: float = 5.0) -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(trim, 0)
