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
from landmarks.search.region import photo_for_crops


def upload_location(data: bytes, given: tuple[float, float] | None) -> tuple[tuple[float, float] | None, str | None]:
    """(where the photo was taken, how we know: "exif" or "request"): the photo's own EXIF GPS wins over
    a position the client gives (a shared location: where the user is, not where the photo was taken;
    Telegram strips EXIF from photos, so a bot can only send that)."""
    exif = photo_location(data)
    if exif is not None:
        return exif, "exif"
    return (given, "request") if given is not None else (None, None)


@asynccontextmanager
async def decoded_photo(service: SearchService, data: bytes) -> AsyncIterator[Image.Image]:
    """The upload decoded, its peak memory reserved until the block ends. Raises ImageError, DecodeBusy."""
    cost = service.decode_cost(data)  # the header alone: microseconds, and it refuses bad files early
    reserved = await run_in_threadpool(service.decode_budget.acquire, cost)
    try:
        yield await run_in_threadpool(service.decode, data)
    finally:
        service.decode_budget.release(reserved)


async def embed_upload(
    service: SearchService,
    data: bytes,
    batcher: MicroBatcher | None = None,
    location: tuple[float, float] | None = None,
) -> Query:
    """Decode and embed one upload (its `Query`: the vector and any local features), holding its decoded
    pixels no longer than the model needs them. location: where the photo was taken (a prior on where
    the landmark is), when known: see `upload_location`."""
    return (await embed_upload_keeping(service, data, batcher, location, keep=False))[0]


async def embed_upload_keeping(
    service: SearchService,
    data: bytes,
    batcher: MicroBatcher | None = None,
    location: tuple[float, float] | None = None,
    *,
    keep: bool = True,
) -> tuple[Query, Image.Image | None]:
    """As `embed_upload`, and (KEEP) a copy of the decoded photo for finding the landmark's box in it, no
    larger than twice the model's input (photo_for_crops): the full pixels go back to the decode budget
    once embedded, and the box's crops, half the photo's side and more, are embedded at the model's size."""
    async with decoded_photo(service, data) as photo:
        if batcher is not None:
            query = await batcher.submit(photo)
        else:
            query = (await run_in_threadpool(service.embed, [photo]))[0]
        kept = await run_in_threadpool(photo_for_crops, photo, service.model_side) if keep else None
    return (replace(query, location=location) if location is not None else query), kept
