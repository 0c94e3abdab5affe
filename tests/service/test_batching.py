"""Micro-batching: concurrent searches share model calls, answers stay exact, overload is refused."""

from __future__ import annotations

import asyncio
import shutil
import threading

import httpx
import numpy as np
import pytest

from api.batching import MicroBatcher, QueueFull
from landmarks.images import decode_image
from landmarks.models import load_extractor
from tests.support import ApiServer, dev_protocol


async def test_concurrent_items_share_batches_and_keep_their_own_results():
    extractor = load_extractor(image_size=160)
    photos = [decode_image(path) for path, _ in dev_protocol().queries[:12]]
    expected = extractor.embed_images(photos)
    sizes = []

    def embed(batch):
        sizes.append(len(batch))
        return list(extractor.embed_images(batch))

    batcher = MicroBatcher(embed, max_batch=8, max_wait=0.05, max_queue=64)
    await batcher.start()
    try:
        vectors = await asyncio.gather(*(batcher.submit(photo) for photo in photos))
    finally:
        await batcher.stop()
    assert sum(sizes) == 12 and max(sizes) == 8 and len(sizes) < 12
    np.testing.assert_allclose(np.stack(vectors), expected, atol=1e-4)


async def test_a_full_queue_refuses_instead_of_waiting():
    release = threading.Event()

    def slow(batch):
        release.wait(5)
        return batch

    batcher = MicroBatcher(slow, max_batch=1, max_wait=0, max_queue=2)
    await batcher.start()
    try:
        running = [asyncio.create_task(batcher.submit(0))]
        await asyncio.sleep(0.1)  # the worker has taken item 0 into the (blocked) model
        running += [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.1)  # items 1 and 2 fill the queue
        with pytest.raises(QueueFull):
            await batcher.submit(99)
        release.set()
        assert await asyncio.gather(*running) == [0, 1, 2]
    finally:
        release.set()
        await batcher.stop()


async def test_a_failing_batch_fails_its_callers_and_the_worker_lives_on():
    calls = []

    def flaky(batch):
        calls.append(batch)
        if len(calls) == 1:
            raise RuntimeError("model fell over")
        return [item * 2 for item in batch]

    batcher = MicroBatcher(flaky, max_batch=4, max_wait=0.01)
    await batcher.start()
    try:
        with pytest.raises(RuntimeError):
            await batcher.submit(1)
        assert await batcher.submit(21) == 42
    finally:
        await batcher.stop()


def test_service_answers_a_burst_with_and_without_batching(lite_index, tmp_path):
    # Lite0 over a small gallery: batching is the service's, whatever the model (and it loads fast).
    index = shutil.copytree(lite_index, tmp_path / "index")
    protocol = dev_protocol()
    queries = protocol.queries[:16]

    async def burst(url):
        async with httpx.AsyncClient(timeout=120) as client:
            responses = await asyncio.gather(
                *(
                    client.post(f"{url}/search", files={"image": (p.name, p.read_bytes(), "image/jpeg")})
                    for p, _ in queries
                )
            )
        return [r.json()["matches"][0]["image_id"] for r in responses if r.status_code == 200]

    with ApiServer(index, env={"LANDMARKS_BATCHING": "0"}) as unbatched:
        plain = asyncio.run(burst(unbatched.url))
    with ApiServer(index, env={"LANDMARKS_BATCH_MAX_WAIT_MS": "20"}) as batched:
        grouped = asyncio.run(burst(batched.url))
    assert len(plain) == len(grouped) == len(queries)
    assert grouped == plain  # batching changes speed, never answers
