"""Client of the Landmark Search HTTP API (docs/api.md), the bot's only view of the backend."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

# The contract caps k at 100, so paging can reach that deep and no further.
MAX_K = 100


class ApiUnavailable(Exception):
    """The API is down, slow, still loading or answered something unexpected: try again later."""


class ApiRejected(Exception):
    """The API refused this image (corrupt, too large, not an image); `detail` is readable."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Landmark:
    landmark_id: str
    name: str
    score: float
    city: str | None = None
    country: str | None = None
    lat: float | None = None
    lon: float | None = None

    @property
    def place(self) -> str:
        return ", ".join(part for part in (self.city, self.country) if part)


@dataclass(frozen=True)
class Match:
    image_id: int
    landmark_id: str
    name: str
    score: float
    image_url: str


@dataclass(frozen=True)
class BestGuess:
    landmark_id: str
    name: str
    confidence: float


@dataclass(frozen=True)
class SearchResult:
    landmark: BestGuess | None
    landmarks: list[Landmark]
    matches: list[Match]
    gallery_size: int
    notice: str | None

    def landmark_info(self, landmark_id: str) -> Landmark | None:
        return next((item for item in self.landmarks if item.landmark_id == landmark_id), None)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_search(payload: dict[str, Any]) -> SearchResult:
    best = payload.get("landmark")
    return SearchResult(
        landmark=BestGuess(best["landmark_id"], best["name"], float(best["confidence"])) if best else None,
        landmarks=[
            Landmark(
                landmark_id=item["landmark_id"],
                name=item["name"],
                score=float(item["score"]),
                city=item.get("city") or None,
                country=item.get("country") or None,
                lat=_optional_float(item.get("lat")),
                lon=_optional_float(item.get("lon")),
            )
            for item in payload.get("landmarks", [])
        ],
        matches=[
            Match(int(m["image_id"]), m["landmark_id"], m["name"], float(m["score"]), m["image_url"])
            for m in payload.get("matches", [])
        ],
        gallery_size=int(payload.get("gallery_size", 0)),
        notice=payload.get("notice"),
    )


class LandmarksApi:
    def __init__(self, base_url: str, *, timeout: float, concurrency: int, gallery_image_size: int) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout)
        # Bounds the searches in flight over all users; waiters are served first come, first served.
        self._slots = asyncio.Semaphore(concurrency)
        self._gallery_image_size = gallery_image_size

    async def close(self) -> None:
        await self._client.aclose()

    async def search(self, image: bytes, *, filename: str, mime_type: str, k: int) -> SearchResult:
        async with self._slots:
            response = await self._request(
                "POST", "/search", params={"k": k}, files={"image": (filename, image, mime_type)}
            )
        try:
            return parse_search(response.json())
        except (ValueError, KeyError, TypeError) as error:
            raise ApiUnavailable(f"unexpected /search answer: {error!r}") from error

    async def gallery_image(self, match: Match) -> bytes:
        # httpx merges `size` into the query that image_url may already carry.
        response = await self._request("GET", match.image_url, params={"size": self._gallery_image_size})
        return response.content

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            raise ApiUnavailable(f"{method} {url}: {type(error).__name__}: {error}") from error
        if response.is_success:
            return response
        detail = _detail(response)
        if response.status_code in (400, 413, 415, 422):
            raise ApiRejected(response.status_code, detail)
        raise ApiUnavailable(f"{method} {url}: HTTP {response.status_code}: {detail}")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return detail if isinstance(detail, str) else response.reason_phrase
