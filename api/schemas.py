"""The typed HTTP contract (docs/api.md). Field names are relied on by the bot, the web page and
outside checks: change them only with a new API version."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BestLandmark(BaseModel):
    landmark_id: str
    name: str
    confidence: float = Field(ge=0.0, le=1.0)


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


class LandmarkSummary(LandmarkInfo):
    sample_image_url: str | None = None


class LandmarkList(BaseModel):
    landmarks: list[LandmarkSummary]
    total: int


class GalleryImageRef(BaseModel):
    image_id: int
    image_url: str


class LandmarkDetail(LandmarkInfo):
    images: list[GalleryImageRef]


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


class LandmarkCreate(BaseModel):
    """A new landmark. Extra fields are kept as metadata (like extra columns of landmarks.csv)."""

    model_config = ConfigDict(extra="allow", strict=True)

    landmark_id: str = Field(pattern=LANDMARK_ID_PATTERN, description="Letters, digits, '_', '-', '.'.")
    name: str = Field(min_length=1, max_length=200)
    city: str | None = Field(None, max_length=200)
    country: str | None = Field(None, max_length=200)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


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
