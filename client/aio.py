"""The asyncio client (the Telegram bot): one httpx.AsyncClient, the same calls and errors as the
blocking client in `client.sync`.

    async with AsyncLandmarksClient(url, max_concurrent_searches=4) as api:
        result = await api.search(photo, "photo.jpg", "image/jpeg", k=5)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TypeVar

import httpx

from client import calls
from client.contract import (
    DEFAULT_TIMEOUT_S,
    AddedPhotos,
    Deleted,
    Health,
    Landmark,
    LandmarkList,
    Photo,
    SearchRequest,
    SearchResult,
)
from client.errors import transport_error

T = TypeVar("T")


class AsyncLandmarksClient:
    """The API at `base_url`. `max_concurrent_searches` bounds the searches in flight through this
    client (one search keeps a CPU busy on the API); further ones wait, first come, first served.
    The operator's key is passed per write call and the client keeps no copy of it."""

    def __init__(
        self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S, *, max_concurrent_searches: int | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s)
        self._search_slots = (
            asyncio.Semaphore(max_concurrent_searches) if max_concurrent_searches else contextlib.nullcontext()
        )

    async def __aenter__(self) -> AsyncLandmarksClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: calls.Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method, call.url, params=call.params, json=call.json, files=call.files, headers=call.headers
            )
        except httpx.RequestError as exc:
            raise transport_error(exc, self.base_url, self.timeout_s) from exc
        return call.answer(response)

    async def search(self, request: SearchRequest) -> SearchResult:
        async with self._search_slots:
            return await self._send(calls.search(request))

    async def landmarks(self, query: str = "") -> LandmarkList:
        return await self._send(calls.landmarks(query))

    async def landmark(self, landmark_id: str) -> Landmark:
        return await self._send(calls.landmark(landmark_id))

    async def health(self) -> Health:
        return await self._send(calls.health())

    async def image(self, url: str, size: int) -> bytes:
        """A gallery photo's JPEG bytes (Telegram cannot fetch a URL on a private network)."""
        return await self._send(calls.image(url, size))

    async def create_landmark(self, api_key: str, landmark: Landmark) -> Landmark:
        return await self._send(calls.create_landmark(api_key, landmark))

    async def add_photos(self, api_key: str, landmark_id: str, photos: Sequence[Photo]) -> AddedPhotos:
        return await self._send(calls.add_photos(api_key, landmark_id, photos))

    async def delete_landmark(self, api_key: str, landmark_id: str) -> Deleted:
        return await self._send(calls.delete_landmark(api_key, landmark_id))

    async def delete_photo(self, api_key: str, image_id: int) -> Deleted:
        return await self._send(calls.delete_photo(api_key, image_id))
