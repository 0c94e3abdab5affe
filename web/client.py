"""Typed HTTP client for the Landmark Search API (docs/api.md).

This is the web page's only view of the backend: it speaks the documented JSON over HTTP and
turns every failure into one of four exception classes, so pages can tell a person what went
wrong without knowing anything about httpx.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8000"
# The first search after the API starts may warm the model up on a CPU; 30 s leaves room for it
# while still failing visibly when the service hangs.
DEFAULT_TIMEOUT_S = 30.0
# The API takes at most 20 photos per request, and refuses request bodies over its upload limit
# (LANDMARKS_MAX_UPLOAD_BYTES, 15 MiB by default) with 413. Batches stay well under the default;
# a server with a lower limit is met by splitting on 413 (see `add_photos_in_batches`).
MAX_PHOTOS_PER_REQUEST = 20
MAX_BATCH_BYTES = 8 * 1024 * 1024


class ApiError(Exception):
    """Base class: the API could not give us an answer."""


class ApiUnavailable(ApiError):
    """Nothing answered at the API address (stopped, wrong URL, network down)."""


class ApiTimeout(ApiError):
    """The API accepted the connection but did not answer in time."""


class ApiHttpError(ApiError):
    """The API answered with an error status; `detail` is its human sentence."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class ApiClientError(ApiHttpError):
    """4xx: the request (usually the uploaded file) was refused."""


class ApiServerError(ApiHttpError):
    """5xx: the service failed or is still loading (503)."""


@dataclass(frozen=True)
class BestGuess:
    landmark_id: str
    name: str
    confidence: float


@dataclass(frozen=True)
class Landmark:
    """A landmark with its gallery metadata; any field but the id and name may be missing."""

    landmark_id: str
    name: str
    city: str | None = None
    country: str | None = None
    lat: float | None = None
    lon: float | None = None
    image_count: int | None = None
    # Set in search results (similarity of the best photo) and absent in the gallery listing.
    score: float | None = None
    sample_image_url: str | None = None

    @property
    def place(self) -> str:
        """'City, Country' with whatever parts are known ('' when none)."""
        return ", ".join(part for part in (self.city, self.country) if part)

    @property
    def has_coordinates(self) -> bool:
        return self.lat is not None and self.lon is not None


@dataclass(frozen=True)
class Match:
    image_id: int
    landmark_id: str
    name: str
    score: float
    image_url: str


@dataclass(frozen=True)
class SearchResult:
    landmark: BestGuess | None
    landmarks: list[Landmark] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)
    gallery_size: int = 0
    notice: str | None = None


@dataclass(frozen=True)
class LandmarkList:
    landmarks: list[Landmark]
    total: int


@dataclass(frozen=True)
class Health:
    ready: bool
    gallery_size: int
    landmark_count: int
    model: str


@dataclass(frozen=True)
class Photo:
    """A photo to add to the gallery; the file name is how the API names it when rejecting it."""

    filename: str
    data: bytes
    mime_type: str = "application/octet-stream"


@dataclass(frozen=True)
class GalleryImage:
    image_id: int
    image_url: str


@dataclass(frozen=True)
class RejectedPhoto:
    filename: str
    detail: str


@dataclass(frozen=True)
class AddedPhotos:
    landmark_id: str
    added: list[GalleryImage]
    rejected: list[RejectedPhoto]


@dataclass(frozen=True)
class Deleted:
    deleted: str
    removed_images: int


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


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _landmark(data: dict[str, Any]) -> Landmark:
    count = data.get("image_count")
    return Landmark(
        landmark_id=str(data["landmark_id"]),
        name=str(data.get("name") or data["landmark_id"]),
        city=data.get("city") or None,
        country=data.get("country") or None,
        lat=_float_or_none(data.get("lat")),
        lon=_float_or_none(data.get("lon")),
        image_count=None if count is None else int(count),
        score=_float_or_none(data.get("score")),
        sample_image_url=data.get("sample_image_url") or None,
    )


def _search_result(data: dict[str, Any]) -> SearchResult:
    best = data.get("landmark")
    return SearchResult(
        landmark=None
        if best is None
        else BestGuess(str(best["landmark_id"]), str(best["name"]), float(best["confidence"])),
        landmarks=[_landmark(item) for item in data.get("landmarks") or []],
        matches=[
            Match(
                image_id=int(m["image_id"]),
                landmark_id=str(m["landmark_id"]),
                name=str(m.get("name") or m["landmark_id"]),
                score=float(m["score"]),
                image_url=str(m["image_url"]),
            )
            for m in data.get("matches") or []
        ],
        gallery_size=int(data.get("gallery_size") or 0),
        notice=data.get("notice") or None,
    )


def _added_photos(data: dict[str, Any]) -> AddedPhotos:
    return AddedPhotos(
        landmark_id=str(data["landmark_id"]),
        added=[
            GalleryImage(int(item["image_id"]), str(item["image_url"]))
            for item in data.get("added") or []
        ],
        rejected=[
            RejectedPhoto(str(item["filename"]), str(item["detail"]))
            for item in data.get("rejected") or []
        ],
    )


def _rejection(exc: ApiClientError, photo: Photo) -> RejectedPhoto:
    """Why the API refused a request holding only this photo. Its 400 sentence reads "None of the
    photos could be used. <file>: <why>"; keep the <why>, the file name is shown beside it."""
    reason = exc.detail.partition(f"{photo.filename}: ")[2]
    return RejectedPhoto(photo.filename, reason or exc.detail)


def _detail(response: httpx.Response) -> str:
    """The API's `detail` sentence, or something readable when the body is not the documented JSON
    (a proxy's HTML error page, FastAPI's list-shaped 422 detail)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return str(detail[0].get("msg", response.reason_phrase))
    return response.reason_phrase or f"HTTP {response.status_code}"


class LandmarksClient:
    """One instance per page run; cheap to create, holds no connection between runs."""

    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    @classmethod
    def from_env(cls) -> LandmarksClient:
        """Read `LANDMARKS_API_URL` / `LANDMARKS_API_TIMEOUT` at call time, so a changed
        environment (tests, a redeploy) takes effect on the next page run."""
        return cls(
            os.environ.get("LANDMARKS_API_URL") or DEFAULT_API_URL,
            float(os.environ.get("LANDMARKS_API_TIMEOUT") or DEFAULT_TIMEOUT_S),
        )

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = httpx.request(method, url, timeout=self.timeout_s, **kwargs)
        # A connect timeout means nothing is listening usefully: report it as "down", not "slow".
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ApiUnavailable(f"Cannot connect to {self.base_url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise ApiTimeout(f"{self.base_url} did not answer within {self.timeout_s:g} s") from exc
        except httpx.TransportError as exc:
            raise ApiUnavailable(f"Connection to {self.base_url} failed: {exc}") from exc
        if response.status_code >= 500:
            raise ApiServerError(response.status_code, _detail(response))
        if response.status_code >= 400:
            raise ApiClientError(response.status_code, _detail(response))
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, f"{self.base_url}{path}", **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiServerError(
                response.status_code, "The service sent an unreadable answer."
            ) from exc

    def search(self, image: bytes, filename: str, mime_type: str, k: int) -> SearchResult:
        data = self._json(
            "POST", "/search", params={"k": k}, files={"image": (filename, image, mime_type)}
        )
        return _search_result(data)

    def landmarks(self, query: str = "") -> LandmarkList:
        data = self._json("GET", "/landmarks", params={"q": query} if query else None)
        items = [_landmark(item) for item in data.get("landmarks") or []]
        return LandmarkList(landmarks=items, total=int(data.get("total", len(items))))

    def health(self) -> Health:
        data = self._json("GET", "/health")
        return Health(
            ready=bool(data.get("ready")),
            gallery_size=int(data.get("gallery_size") or 0),
            landmark_count=int(data.get("landmark_count") or 0),
            model=str(data.get("model") or ""),
        )

    def image(self, url: str, size: int) -> bytes:
        """A gallery photo's JPEG bytes. Fetched here on the server because the visitor's browser
        may not be able to reach the API (it often lives on a private Docker network)."""
        # Merge rather than pass `params=`: httpx would replace any query the URL already has.
        sized = httpx.URL(url).copy_merge_params({"size": size})
        return self._request("GET", str(sized)).content

    # Gallery management (README "Gallery management at run time"). The operator's key is passed
    # per call and only ever travels in the X-API-Key header: the client keeps no copy of it.

    def landmark(self, landmark_id: str) -> Landmark:
        """One landmark with its photo count (404 as ApiClientError when there is none)."""
        return _landmark(self._json("GET", f"/landmarks/{quote(landmark_id, safe='')}"))

    def create_landmark(
        self,
        api_key: str,
        landmark_id: str,
        name: str,
        *,
        city: str | None = None,
        country: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
    ) -> Landmark:
        """A new landmark without photos yet; 409 (as ApiClientError) when the id is taken."""
        fields = {"city": city, "country": country, "lat": lat, "lon": lon}
        body = {
            "landmark_id": landmark_id,
            "name": name,
            **{key: value for key, value in fields.items() if value is not None},
        }
        data = self._json("POST", "/landmarks", json=body, headers={"X-API-Key": api_key})
        return _landmark(data)

    def add_photos(self, api_key: str, landmark_id: str, photos: Sequence[Photo]) -> AddedPhotos:
        """One request: at most MAX_PHOTOS_PER_REQUEST photos within the API's upload limit.
        Unreadable photos come back in `rejected`; 400 when none of them was usable."""
        files = [("images", (photo.filename, photo.data, photo.mime_type)) for photo in photos]
        data = self._json(
            "POST",
            f"/landmarks/{quote(landmark_id, safe='')}/images",
            files=files,
            headers={"X-API-Key": api_key},
        )
        return _added_photos(data)

    def add_photos_in_batches(
        self, api_key: str, landmark_id: str, photos: Sequence[Photo]
    ) -> Iterator[AddedPhotos]:
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
        data = self._json(
            "DELETE", f"/landmarks/{quote(landmark_id, safe='')}", headers={"X-API-Key": api_key}
        )
        return Deleted(deleted=str(data["deleted"]), removed_images=int(data["removed_images"]))

    def delete_photo(self, api_key: str, image_id: int) -> Deleted:
        data = self._json("DELETE", f"/gallery/{int(image_id)}", headers={"X-API-Key": api_key})
        return Deleted(deleted=str(data["deleted"]), removed_images=int(data["removed_images"]))
