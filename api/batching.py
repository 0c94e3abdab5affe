"""Micro-batching: concurrent searches are embedded together (each gets back its own `Query`).

A model call on 8 photos costs far less than 8 calls on one (better use of the cores and of the GPU),
so requests that arrive within `max_wait` of each other share a batch. The queue is bounded: when it
is full the caller is told to come back later (HTTP 503 + Retry-After) instead of waiting unboundedly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Output = TypeVar("Output")


class QueueFull(Exception):
    """Too many searches are waiting; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"busy, retry after {retry_after}s")
        self.retry_after = retry_after


@dataclass
class _Pending(Generic[Item, Output]):
    item: Item
    future: asyncio.Future


class MicroBatcher(Generic[Item, Output]):
    """Collects items into batches of at most `max_batch`, waiting at most `max_wait` seconds.

    `process` runs on a worker thread, takes a list of items and returns one output per item.
    """

    def __init__(
        self,
        process: Callable[[list[Item]], Sequence[Output]],
        *,
        max_batch: int = 16,
        max_wait: float = 0.005,
        max_queue: int = 64,
    ) -> None:
        self.process = process
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self.batches = 0
        self.items = 0

    async def start(self) -> None:
        self._queue = asyncio.Queue(self.max_queue)
        self._worker = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    async def submit(self, item: Item) -> Output:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(item, future))
        except asyncio.QueueFull:
            raise QueueFull(retry_after=1) from None
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            # Drop requests whose client went away while queued: no work for nobody.
            batch = [pending for pending in batch if not pending.future.done()]
            if not batch:
                continue
            try:
                outputs = await run_in_threadpool(self.process, [pending.item for pending in batch])
            except Exception as exc:  # one bad batch must not kill the worker
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(batch)
            for pending, output in zip(batch, outputs, strict=True):
                if not pending.future.done():
                    pending.future.set_result(output)
