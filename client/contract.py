"""The HTTP contract of the Landmark Search API (docs/api.md) as the front ends see it: its limits,
the answers as typed values, and how each answer is read from the API's JSON.

The limits are the API's own; `tests/client/test_contract.py` checks them against the live
`/openapi.json`, so a change on the server side fails there instead of in front of a person.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Where `landmarks serve` listens by default.
DEFAULT_API_URL = "http://127.0.0.1:8000"
# The first search after the API starts may warm the model up on a CPU; 30 s leaves room for it
# while still failing visibly when the service hangs.
DEFAULT_TIMEOUT_S = 30.0

# POST /search?k=: how many gallery photos one answer may hold.
MIN_K = 1
MAX_K = 100
# GET /gallery/{image_id}?size=: the longest side of the returned JPEG, in pixels.
MIN_IMAGE_SIZE = 64
MAX_IMAGE_SIZE = 1024
# POST /landmarks: the landmark id rule and the longest name, city or country.
LANDMARK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
LANDMARK_ID_MAX_LENGTH = 128
LANDMARK_TEXT_MAX_LENGTH = 200
# POST /landmarks/{landmark_id}/images: more photos in one request are refused whole (413).
MAX_PHOTOS_PER_REQUEST = 20
# The header that carries the operator's key on every gallery change.
API_KEY_HEADER = "X-API-Key"
# A landmark's names in other languages travel as extra metadata (landmarks.csv columns, or fields
# of POST /landmarks): name_ru, city_ru, country_ru, ... A front end shows them to users of that
# language and falls back to the plain fields.
TRANSLATION_KEY = re.compile(r"^(name|city|country)_([a-z]{2,3})$")


@dataclass(frozen=True)
class BestGuess:
    landmark_id: str
    name: str
    confidence: float
    # Where the landmark is in the photo (a search sent with box=True): (x0, y0, x1, y1) as fractions
    # of the upright photo's width and height; box_source says how it was found ("crops", "inliers").
    box: tuple[float, float, float, float] | None = None
    box_source: str | None = None


@dataclass(frozen=True)
class Detection:
    """A landmark found in the photo (a search sent with find_all), with the region that shows it best."""

    landmark_id: str
    name: str
    confidence: float
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) as fractions of the upright photo


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
    # In search results: the probability that the photo shows this landmark (the answer's is its confidence).
    confidence: float | None = None
    sample_image_url: str | None = None
    # language -> {"name"|"city"|"country": text}, from the name_ru-style metadata fields
    translations: dict[str, dict[str, str]] = field(default_factory=dict, compare=False)
    # In the gallery: photos left out of matching (`landmarks index clean`); with GET /landmarks/{id}
    # its photos too, those that match and those excluded (with why).
    excluded_count: int = 0
    # In search results, when the photo carried GPS: how far the landmark is from where it was taken.
    distance_km: float | None = None
    images: tuple[GalleryImage, ...] = field(default=(), compare=False)
    excluded: tuple[ExcludedImage, ...] = field(default=(), compare=False)

    @property
    def place(self) -> str:
        """'City, Country' with whatever parts are known ('' when none)."""
        return self.place_in("")

    def name_in(self, language: str) -> str:
        return self.translations.get(language, {}).get("name") or self.name

    def place_in(self, language: str) -> str:
        """'City, Country' in that language where the gallery has it, else as stored."""
        own = self.translations.get(language, {})
        return ", ".join(part for part in (own.get("city") or self.city, own.get("country") or self.country) if part)

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
    # Why `landmark` is None: "not_a_landmark" (the photo does not look like one) or "unknown_landmark".
    refusal: str | None = None
    # (lat, lon) where the photo was taken: its EXIF GPS, else the `near` the search was sent with.
    photo_location: tuple[float, float] | None = None
    photo_location_source: str | None = None  # "exif" or "request"
    # Every landmark found in the photo, most confident first: with find_all, else None.
    detections: list[Detection] | None = None

    @property
    def not_a_landmark(self) -> bool:
        return self.refusal == "not_a_landmark"

    @property
    def also_found(self) -> list[Detection]:
        """The landmarks found in the photo (find_all) besides the answer, most confident first."""
        answer = self.landmark.landmark_id if self.landmark is not None else None
        return [d for d in self.detections or [] if d.landmark_id != answer]

    def landmark_info(self, landmark_id: str) -> Landmark | None:
        """The candidate landmark with this id, with its place and coordinates."""
        return next((item for item in self.landmarks if item.landmark_id == landmark_id), None)

    def name_in(self, landmark_id: str, name: str, language: str) -> str:
        """A landmark's name (of a match or the best guess) in the user's language, where known."""
        info = self.landmark_info(landmark_id)
        return info.name_in(language) if info else name


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
class SearchRequest:
    """One photo to search and what to find in it. near: (lat, lon) where the photo was taken, for a
    photo without EXIF GPS (the API lifts the landmarks near it). box: also find where the named
    landmark is in the photo (slower). find_all: also every landmark the photo shows, each with its
    region (`detections`; slower still)."""

    photo: Photo
    k: int
    near: tuple[float, float] | None = None
    box: bool = False
    find_all: bool = False


@dataclass(frozen=True)
class GalleryImage:
    image_id: int
    image_url: str


@dataclass(frozen=True)
class ExcludedImage(GalleryImage):
    """A gallery photo left out of matching: `reason` no_landmark, other_landmark or operator."""

    reason: str = ""
    detail: str = ""


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


# --- reading the API's JSON ---------------------------------------------------------------------
# Lenient where the contract allows absence (optional fields, empty lists), strict on what an
# answer cannot do without: a missing id raises KeyError, which the clients report as an
# unreadable answer.


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_landmark(data: dict[str, Any]) -> Landmark:
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
        confidence=_float_or_none(data.get("confidence")),
        sample_image_url=data.get("sample_image_url") or None,
        translations=_translations(data),
        excluded_count=int(data.get("excluded_count") or len(data.get("excluded") or [])),
        distance_km=_float_or_none(data.get("distance_km")),
        images=tuple(GalleryImage(int(item["image_id"]), str(item["image_url"])) for item in data.get("images") or []),
        excluded=tuple(
            ExcludedImage(
                int(item["image_id"]),
                str(item["image_url"]),
                str(item.get("reason") or ""),
                str(item.get("detail") or ""),
            )
            for item in data.get("excluded") or []
        ),
    )


def _translations(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for key, value in data.items():
        match = TRANSLATION_KEY.match(key)
        if match and isinstance(value, str) and value.strip():
            found.setdefault(match[2], {})[match[1]] = value.strip()
    return found


def parse_search(data: dict[str, Any]) -> SearchResult:
    best = data.get("landmark")
    return SearchResult(
        landmark=None if best is None else parse_best_guess(best),
        landmarks=[parse_landmark(item) for item in data.get("landmarks") or []],
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
        refusal=data.get("refusal") or None,
        photo_location=_location(data.get("photo_location")),
        photo_location_source=_location_source(data.get("photo_location")),
        detections=None
        if data.get("detections") is None
        else [
            Detection(
                str(d["landmark_id"]), str(d.get("name") or d["landmark_id"]), float(d["confidence"]), _box(d["box"])
            )
            for d in data["detections"]
        ],
    )


def _box(value: Any) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in value)
    return x0, y0, x1, y1


def parse_best_guess(data: dict[str, Any]) -> BestGuess:
    box = data.get("box")
    return BestGuess(
        str(data["landmark_id"]),
        str(data["name"]),
        float(data["confidence"]),
        box=_box(box) if isinstance(box, list) and len(box) == 4 else None,
        box_source=data.get("box_source") if box else None,
    )


def _location_source(data: Any) -> str | None:
    return data.get("source") if isinstance(data, dict) and _location(data) is not None else None


def _location(data: Any) -> tuple[float, float] | None:
    if not isinstance(data, dict) or data.get("lat") is None or data.get("lon") is None:
        return None
    return float(data["lat"]), float(data["lon"])


def parse_landmark_list(data: dict[str, Any]) -> LandmarkList:
    items = [parse_landmark(item) for item in data.get("landmarks") or []]
    return LandmarkList(landmarks=items, total=int(data.get("total", len(items))))


def parse_health(data: dict[str, Any]) -> Health:
    return Health(
        ready=bool(data.get("ready")),
        gallery_size=int(data.get("gallery_size") or 0),
        landmark_count=int(data.get("landmark_count") or 0),
        model=str(data.get("model") or ""),
    )


def parse_added_photos(data: dict[str, Any]) -> AddedPhotos:
    return AddedPhotos(
        landmark_id=str(data["landmark_id"]),
        added=[GalleryImage(int(item["image_id"]), str(item["image_url"])) for item in data.get("added") or []],
        rejected=[RejectedPhoto(str(item["filename"]), str(item["detail"])) for item in data.get("rejected") or []],
    )


def parse_deleted(data: dict[str, Any]) -> Deleted:
    return Deleted(deleted=str(data["deleted"]), removed_images=int(data["removed_images"]))
