"""The typed HTTP contract (docs/api.md). Field names are relied on by the bot, the web page and
outside checks: change them only with a new API version."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from landmarks.gallery import Landmark


class BestLandmark(BaseModel):
    landmark_id: str
    name: str
    confidence: float = Field(ge=0.0, le=1.0)
    box: list[float] | None = Field(
        default=None,
        min_length=4,
        max_length=4,
        description="Where the landmark is in the photo (asked for with `box=true`): [x0, y0, x1, y1] as "
        "fractions of the photo's width and height, of the photo upright (EXIF orientation applied).",
    )
    box_source: Literal["crops", "inliers"] | None = Field(
        default=None,
        description="How the box was found: `crops` (the best-matching crops of the photo), `inliers` (the "
        "photo's points that spatial verification matched to the landmark's gallery photo).",
    )


class Detection(BaseModel):
    landmark_id: str
    name: str
    confidence: float = Field(ge=0.0, le=1.0, description="As `landmark.confidence`, for the region `box`.")
    box: list[float] = Field(
        min_length=4,
        max_length=4,
        description="The region of the photo that shows it best: [x0, y0, x1, y1] as fractions of the upright "
        "photo's width and height ([0, 0, 1, 1]: the whole photo).",
    )


class LandmarkInfo(BaseModel):
    # Extra columns of the gallery's landmarks.csv travel along as additional fields.
    model_config = ConfigDict(extra="allow")

    landmark_id: str
    name: str
    city: str | None = None
    country: str | None = None
    lat: float | None = None
    lon: float | None = None
    image_count: int = 0


class LandmarkHit(LandmarkInfo):
    score: float
    confidence: float = Field(
        ge=0.0,
        le=1.0,
        description="The probability that the photo shows this landmark: the answer's equals `landmark.confidence`; "
        "the others share what it leaves, so the values never add up to more than 1.",
    )
    distance_km: float | None = Field(
        default=None,
        description="How far it is from where the photo was taken (`photo_location`), when both are known.",
    )


class PhotoLocation(BaseModel):
    lat: float
    lon: float
    source: Literal["exif", "request"] = Field(
        description="exif: the photo's own GPS; request: the lat/lon the client sent (the photo had none)."
    )


class Match(BaseModel):
    image_id: int
    landmark_id: str
    name: str
    score: float
    image_url: str


class SearchResponse(BaseModel):
    landmark: BestLandmark | None
    landmarks: list[LandmarkHit]
    matches: list[Match]
    gallery_size: int
    notice: str | None = None
    photo_location: PhotoLocation | None = Field(
        default=None,
        description="Where the photo was taken, from its EXIF GPS; landmarks near it rank higher (LANDMARKS_GEO_BONUS).",
    )
    refusal: Literal["not_a_landmark", "unknown_landmark"] | None = Field(
        default=None,
        description="Why `landmark` is null: the photo does not look like a landmark at all, or no landmark "
        "of the gallery is close enough. Null when a landmark is named (or the gallery is empty: see `notice`).",
    )
    detections: list[Detection] | None = Field(
        default=None,
        description="With `detect=all`: every landmark found in the photo, most confident first (regions of "
        "the photo searched as photos, each refused as a whole photo is; a landmark named by at least two "
        "of them). Null otherwise.",
    )


class BatchError(BaseModel):
    status: int = Field(description="The status a single POST /search would have answered for this photo.")
    detail: str


class BatchItem(BaseModel):
    filename: str
    result: SearchResponse | None = Field(default=None, description="The photo's answer, as POST /search's.")
    error: BatchError | None = Field(default=None, description="Why this photo got no answer (the others still do).")


class BatchResponse(BaseModel):
    results: list[BatchItem] = Field(description="One item per photo, in the order sent.")


class LandmarkSummary(LandmarkInfo):
    sample_image_url: str | None = None
    excluded_count: int = Field(
        default=0, description="Gallery photos of this landmark left out of matching (see `excluded` of its detail)."
    )


class LandmarkList(BaseModel):
    landmarks: list[LandmarkSummary]
    total: int


class GalleryImageRef(BaseModel):
    image_id: int
    image_url: str


class ExcludedPhoto(GalleryImageRef):
    reason: str = Field(
        description="`no_landmark` (it looks like no landmark), `other_landmark` (it looks like another one), "
        "both found by `landmarks index clean`; `operator` (excluded by hand)."
    )
    detail: str = Field(description="The reason in a sentence, with the scores behind it.")


class LandmarkDetail(LandmarkInfo):
    images: list[GalleryImageRef] = Field(description="The photos that take part in matching.")
    excluded: list[ExcludedPhoto] = Field(
        default_factory=list,
        description="Photos kept in the gallery but left out of matching, and why (`landmarks index clean`).",
    )


class Health(BaseModel):
    status: str
    ready: bool
    gallery_size: int
    landmark_count: int
    model: str
    device: str


class Ready(BaseModel):
    status: str


class ErrorBody(BaseModel):
    detail: str


LANDMARK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

# Extra metadata of a landmark (like extra columns of landmarks.csv) travels beside the fields
# below, so it may not take their names; and it is bounded, since every GET /landmarks carries it.
RESERVED_FIELDS = frozenset(
    {
        "landmark_id",
        "name",
        "city",
        "country",
        "lat",
        "lon",
        "image_count",
        "score",
        "confidence",
        "images",
        "sample_image_url",
        "excluded",
        "excluded_count",
        "distance_km",
    }
)
METADATA_KEY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
METADATA_MAX_KEYS = 32
METADATA_MAX_VALUE_CHARS = 2000
METADATA_MAX_TOTAL_BYTES = 16 * 1024


def landmark_fields(landmark: Landmark) -> dict[str, Any]:
    """A landmark's fields for an answer: its extra metadata never shadows a field of the contract
    (an older index or a landmarks.csv column may hold such a name: it is left out)."""
    extra = {key: value for key, value in landmark.extra.items() if key not in RESERVED_FIELDS}
    return {
        **extra,
        "landmark_id": landmark.landmark_id,
        "name": landmark.name,
        "city": landmark.city,
        "country": landmark.country,
        "lat": landmark.lat,
        "lon": landmark.lon,
    }


class LandmarkCreate(BaseModel):
    """A new landmark. Extra fields are kept as metadata (like extra columns of landmarks.csv): at most
    32, named with letters, digits, '_', '-', '.' (not a field name of the answers), each a string,
    number or boolean of at most 2,000 characters, 16 KB in all."""

    model_config = ConfigDict(extra="allow", strict=True)

    landmark_id: str = Field(pattern=LANDMARK_ID_PATTERN, description="Letters, digits, '_', '-', '.'.")
    name: str = Field(min_length=1, max_length=200)
    city: str | None = Field(None, max_length=200)
    country: str | None = Field(None, max_length=200)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)

    @model_validator(mode="after")
    def _bounded_metadata(self) -> LandmarkCreate:
        extra = self.model_extra or {}
        if len(extra) > METADATA_MAX_KEYS:
            raise ValueError(f"at most {METADATA_MAX_KEYS} extra metadata fields (got {len(extra)})")
        for key, value in extra.items():
            if key in RESERVED_FIELDS:
                raise ValueError(f"{key!r} is a field of the answers and cannot be set as metadata")
            if not METADATA_KEY_PATTERN.match(key):
                raise ValueError(
                    f"metadata field name {key[:80]!r} must be 1-64 letters, digits, '_', '-', '.', starting with a letter"
                )
            if isinstance(value, dict | list) or value is None:
                raise ValueError(f"metadata field {key!r} must be a string, number or boolean")
            if len(str(value)) > METADATA_MAX_VALUE_CHARS:
                raise ValueError(f"metadata field {key!r} is longer than {METADATA_MAX_VALUE_CHARS} characters")
        if len(json.dumps(self.metadata(), ensure_ascii=False).encode()) > METADATA_MAX_TOTAL_BYTES:
            raise ValueError(f"extra metadata is larger than {METADATA_MAX_TOTAL_BYTES // 1024} KB in all")
        return self

    def metadata(self) -> dict[str, str]:
        return {key: str(value) for key, value in (self.model_extra or {}).items()}

    def to_landmark(self) -> Landmark:
        return Landmark(self.landmark_id, self.name, self.city, self.country, self.lat, self.lon, extra=self.metadata())


class RejectedPhoto(BaseModel):
    filename: str
    detail: str


class AddedPhotos(BaseModel):
    landmark_id: str
    added: list[GalleryImageRef]
    rejected: list[RejectedPhoto]


class Deleted(BaseModel):
    deleted: str
    removed_images: int


class Reloaded(BaseModel):
    gallery_size: int
    landmark_count: int
