"""Each endpoint once: what its request carries and how its answer is read. The sync and the async
client only send these, so the two cannot drift apart."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from client.contract import (
    API_KEY_HEADER,
    AddedPhotos,
    Deleted,
    Health,
    Landmark,
    LandmarkList,
    Photo,
    SearchRequest,
    SearchResult,
    parse_added_photos,
    parse_deleted,
    parse_health,
    parse_landmark,
    parse_landmark_list,
    parse_search,
)
from client.errors import UNREADABLE_ANSWER, ApiServerError, check_status

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request of the contract and the reader of its successful answer."""

    method: str
    # Relative to the client's base URL, or absolute (the gallery photo URLs the API hands out).
    url: str
    read: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: dict[str, Any] | None = None
    files: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def answer(self, response: httpx.Response) -> T:
        """The typed answer, or the ApiError that the status or an unreadable body means."""
        check_status(response)
        try:
            return self.read(response)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ApiServerError(response.status_code, UNREADABLE_ANSWER) from exc


def _json(parse: Callable[[dict[str, Any]], T]) -> Callable[[httpx.Response], T]:
    return lambda response: parse(response.json())


def _content(response: httpx.Response) -> bytes:
    return response.content


def _segment(value: str) -> str:
    """A landmark id as one path segment: an id with '/' or '?' must not change the route."""
    return quote(value, safe="")


def _key(api_key: str) -> dict[str, str]:
    return {API_KEY_HEADER: api_key}


def search(request: SearchRequest) -> Call[SearchResult]:
    near = request.near
    params: dict[str, Any] = (
        {"k": request.k}
        | ({"lat": near[0], "lon": near[1]} if near is not None else {})
        | ({"box": "true"} if request.box else {})
        | ({"detect": "all"} if request.find_all else {})
    )
    photo = request.photo
    files = {"image": (photo.filename, photo.data, photo.mime_type)}
    return Call("POST", "/search", _json(parse_search), params=params, files=files)


def landmarks(query: str = "") -> Call[LandmarkList]:
    return Call("GET", "/landmarks", _json(parse_landmark_list), params={"q": query} if query else None)


def landmark(landmark_id: str) -> Call[Landmark]:
    return Call("GET", f"/landmarks/{_segment(landmark_id)}", _json(parse_landmark))


def health() -> Call[Health]:
    return Call("GET", "/health", _json(parse_health))


def image(url: str, size: int) -> Call[bytes]:
    # Merged into the URL rather than passed as `params`: httpx would replace a query the URL has.
    return Call("GET", str(httpx.URL(url).copy_merge_params({"size": size})), _content)


def create_landmark(api_key: str, landmark: Landmark) -> Call[Landmark]:
    """LANDMARK's id, name and the place fields it has (search and gallery fields are not sent)."""
    place = {"city": landmark.city, "country": landmark.country, "lat": landmark.lat, "lon": landmark.lon}
    body = {"landmark_id": landmark.landmark_id, "name": landmark.name}
    body.update((key, value) for key, value in place.items() if value is not None)
    return Call("POST", "/landmarks", _json(parse_landmark), json=body, headers=_key(api_key))


def add_photos(api_key: str, landmark_id: str, photos: Sequence[Photo]) -> Call[AddedPhotos]:
    files = [("images", (photo.filename, photo.data, photo.mime_type)) for photo in photos]
    return Call(
        "POST",
        f"/landmarks/{_segment(landmark_id)}/images",
        _json(parse_added_photos),
        files=files,
        headers=_key(api_key),
    )


def delete_landmark(api_key: str, landmark_id: str) -> Call[Deleted]:
    return Call("DELETE", f"/landmarks/{_segment(landmark_id)}", _json(parse_deleted), headers=_key(api_key))


def delete_photo(api_key: str, image_id: int) -> Call[Deleted]:
    return Call("DELETE", f"/gallery/{int(image_id)}", _json(parse_deleted), headers=_key(api_key))
