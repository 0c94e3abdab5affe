"""The blocking client (the web page): one httpx.Client, every failure an ApiError.

Use it as a context manager so its connections close when the caller is done:

    with LandmarksClient(url) as api:
        result = api.search(SearchRequest(Photo("photo.jpg", data, "image/jpeg"), k=5))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

import httpx

from client import calls
from client.contract import (
    DEFAULT_TIMEOUT_S,
    MAX_PHOTOS_PER_REQUEST,
    AddedPhotos,
    Deleted,
    Health,
    Landmark,
    LandmarkList,
    Photo,
    RejectedPhoto,
    SearchRequest,
    SearchResult,
)
from client.errors import ApiClientError, transport_error

T = TypeVar("T")

# The API refuses request bodies over its upload limit (LANDMARKS_MAX_UPLOAD_BYTES, 15 MiB by
# default) with 413. Batches stay well under the default; a server with a lower limit is met by
# splitting on 413 (see `add_photos_in_batches`).
MAX_BATCH_BYTES = 8 * 1024 * 1024


def photo_batches(
    photos: Sequence[Photo],
    max_count: int = MAX_PHOTOS_PER_REQUEST,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[list[Photo]]:
    """The photos in order, cut into requests of at most `max_count` photos and, unless one photo
    alone is bigger, `max_bytes` bytes."""
    batches: list[list[Photo]] = []
    current: list[Photo] = []
    size = 0
    for photo in photos:
        if current and (len(current) == max_count or size + len(photo.data) > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(photo)
        size += len(photo.data)
    if current:
        batches.append(current)
    return batches


def _rejection(exc: ApiClientError, photo: Photo) -> RejectedPhoto:
    """Why the API refused a request holding only this photo. Its 400 sentence reads "None of the
    photos could be used. <file>: <why>"; keep the <why>, the file name is shown beside it."""
    reason = exc.detail.partition(f"{photo.filename}: ")[2]
    return RejectedPhoto(photo.filename, reason or exc.detail)


class LandmarksClient:
    """The API at `base_url`. The operator's key is passed per write call and only ever travels in
    the X-API-Key header: the client keeps no copy of it."""

    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def __enter__(self) -> LandmarksClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: calls.Call[T]) -> T:
        try:
            response = self._http.request(
                call.method, call.url, params=call.params, json=call.json, files=call.files, headers=call.headers
            )
        except httpx.RequestError as exc:
            raise transport_error(exc, self.base_url, self.timeout_s) from exc
        return call.answer(response)

    def search(self, request: SearchRequest) -> SearchResult:
        return self._send(calls.search(request))

    def landmarks(self, query: str = "") -> LandmarkList:
        return self._send(calls.landmarks(query))

    def landmark(self, landmark_id: str) -> Landmark:
        """One landmark with its photos, matched and excluded (404 as ApiClientError when there is none)."""
        return self._send(calls.landmark(landmark_id))

    def health(self) -> Health:
        return self._send(calls.health())

    def image(self, url: str, size: int) -> bytes:
        """A gallery photo's JPEG bytes. Fetched by the front end because the person's browser or
        Telegram may not be able to reach the API (it often lives on a private Docker network)."""
        return self._send(calls.image(url, size))

    def create_landmark(self, api_key: str, landmark: Landmark) -> Landmark:
        """A new landmark without photos yet; 409 (as ApiClientError) when the id is taken."""
        return self._send(calls.create_landmark(api_key, landmark))

    def add_photos(self, api_key: str, landmark_id: str, photos: Sequence[Photo]) -> AddedPhotos:
        """One request: at most MAX_PHOTOS_PER_REQUEST photos within the API's upload limit.
        Unreadable photos come back in `rejected`; 400 when none of them was usable."""
        return self._send(calls.add_photos(api_key, landmark_id, photos))

    def add_photos_in_batches(self, api_key: str, landmark_id: str, photos: Sequence[Photo]) -> Iterator[AddedPhotos]:
        """Any number of photos, one answer per request as it arrives (for a progress bar).

        A request the API refuses whole, as too large (413: the server's limit is lower than
        MAX_BATCH_BYTES) or as holding no usable photo (400), is split in two and sent again, down
        to single photos that are then reported as rejected with the API's reason: one huge or
        broken photo never costs the others. Any other error (key, unknown landmark, API down)
        raises, since every further request would fail the same way.
        """
        pending = photo_batches(photos)
        while pending:
            batch = pending.pop(0)
            try:
                answer = self.add_photos(api_key, landmark_id, batch)
            except ApiClientError as exc:
                if exc.status not in (400, 413):
                    raise
                if len(batch) > 1:
                    half = len(batch) // 2
                    pending[:0] = [batch[:half], batch[half:]]
                    continue
                answer = AddedPhotos(landmark_id, added=[], rejected=[_rejection(exc, batch[0])])
            yield answer

    def delete_landmark(self, api_key: str, landmark_id: str) -> Deleted:
        """The landmark and all its photos, gone from the next search on."""
        return self._send(calls.delete_landmark(api_key, landmark_id))

    def delete_photo(self, api_key: str, image_id: int) -> Deleted:
        return self._send(calls.delete_photo(api_key, image_id))
