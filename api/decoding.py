"""A budget for decoded photos: how many may be held at once, and how many bytes they may take.

A small upload can declare a huge image: an 85 KB WebP of 6000x6000 pixels takes about 550 MB at
its decoding peak. Every decode reserves its peak (`landmarks.images.decoded_size_estimate`) from
this budget before it starts and gives it back once the photo is embedded (or thumbnailed), so N
such uploads at once cost one budget, not N peaks; the rest wait their turn, or get 503 after
`wait` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class DecodeBusy(Exception):
    """No room in the decode budget within the wait: the caller should retry later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"decode budget busy, retry after {retry_after}s")
        self.retry_after = retry_after


class DecodeBudget:
    def __init__(self, max_bytes: int, max_photos: int, wait: float = 30.0) -> None:
        if max_bytes < 1 or max_photos < 1:
            raise ValueError("the decode budget needs at least one photo and one byte")
        self.max_bytes = max_bytes
        self.max_photos = max_photos
        self.wait = wait
        self.bytes_held = 0
        self.photos_held = 0
        self._changed = threading.Condition()

    def acquire(self, nbytes: int) -> int:
        """Block until NBYTES fit (a photo larger than the whole budget takes all of it, alone).

        Returns what was reserved, for `release`; raises DecodeBusy after `wait` seconds.
        """
        nbytes = min(max(int(nbytes), 1), self.max_bytes)
        deadline = time.monotonic() + self.wait
        with self._changed:
            while self.photos_held >= self.max_photos or self.bytes_held + nbytes > self.max_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DecodeBusy(retry_after=max(1, round(self.wait / 10)))
                self._changed.wait(left)
            self.bytes_held += nbytes
            self.photos_held += 1
        return nbytes

    def release(self, reserved: int) -> None:
        with self._changed:
            self.bytes_held -= reserved
            self.photos_held -= 1
            self._changed.notify_all()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        reserved = self.acquire(nbytes)
        try:
            yield
        finally:
            self.release(reserved)
