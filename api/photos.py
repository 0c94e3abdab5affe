"""Uploaded photos on their way to the model: decoded within the decode budget, embedded, released."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from PIL import Image
from starlette.concurrency import run_in_threadpool

from api.batching import MicroBatcher
from api.service import SearchService
from landmarks.images import photo_location
from landmarks.search import Query


@asynccontextmanager
async def decoded_photo(service: SearchService, data: bytes) -> AsyncIterator[Image.Image]:
    """The upload decoded, its peak memory reserved until the block ends. Raises ImageError, DecodeBusy."""
    cost = service.decode_cost(data)  # the header alone: microseconds, and it refuses bad files early
    reserved = await run_in_threadpool(service.decode_budget.acquire, cost)
    try:
        yield await run_in_threadpool(service.decode, data)
    finally:
        service.decode_budget.release(reserved)


async def embed_upload(service: SearchService, data: bytes, batcher: MicroBatcher | None = None) -> Query:
    """Decode and embed one upload (its `Query`: the vector and any local features), holding its decoded pixels no longer than the model needs them."""
    location = photo_location(data)  # the header's EXIF GPS, if any: a prior on where the landmark is
    async with decoded_photo(service, data) as photo:
        if batcher is not None:
            query = await batcher.submit(photo)
        else:
            query = (await run_in_threadpool(service.embed, [photo]))[0]
    return replace(query, location=location) if location is not None else query
