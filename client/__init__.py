"""The HTTP contract of the Landmark Search API, for its front ends (the bot and the web page).

They know the API only through this package: its limits and answers (`client.contract`), one set
of errors (`client.errors`), and a blocking (`LandmarksClient`) and an asyncio
(`AsyncLandmarksClient`) client that send the same calls (`client.calls`). It depends on httpx
alone: never on the service or the engine.
"""

from client.aio import AsyncLandmarksClient
from client.contract import (
    DEFAULT_API_URL,
    DEFAULT_TIMEOUT_S,
    LANDMARK_ID_MAX_LENGTH,
    LANDMARK_ID_PATTERN,
    LANDMARK_TEXT_MAX_LENGTH,
    MAX_IMAGE_SIZE,
    MAX_K,
    MAX_PHOTOS_PER_REQUEST,
    MIN_IMAGE_SIZE,
    MIN_K,
    AddedPhotos,
    BestGuess,
    Deleted,
    Detection,
    ExcludedImage,
    GalleryImage,
    Health,
    Landmark,
    LandmarkList,
    Match,
    Photo,
    RejectedPhoto,
    SearchRequest,
    SearchResult,
)
from client.errors import (
    ApiClientError,
    ApiError,
    ApiHttpError,
    ApiRejected,
    ApiServerError,
    ApiTimeout,
    ApiUnavailable,
)
from client.sync import LandmarksClient, photo_batches

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_TIMEOUT_S",
    "LANDMARK_ID_MAX_LENGTH",
    "LANDMARK_ID_PATTERN",
    "LANDMARK_TEXT_MAX_LENGTH",
    "MAX_IMAGE_SIZE",
    "MAX_K",
    "MAX_PHOTOS_PER_REQUEST",
    "MIN_IMAGE_SIZE",
    "MIN_K",
    "AddedPhotos",
    "ApiClientError",
    "ApiError",
    "ApiHttpError",
    "ApiRejected",
    "ApiServerError",
    "ApiTimeout",
    "ApiUnavailable",
    "AsyncLandmarksClient",
    "BestGuess",
    "Deleted",
    "Detection",
    "ExcludedImage",
    "GalleryImage",
    "Health",
    "Landmark",
    "LandmarkList",
    "LandmarksClient",
    "Match",
    "Photo",
    "RejectedPhoto",
    "SearchRequest",
    "SearchResult",
    "photo_batches",
]
