"""The search service: composes the engine (model + index) with the gallery's metadata.

Knows nothing of HTTP; the FastAPI layer calls it off the event loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from landmarks.gallery import Landmark
from landmarks.images import decode_image, thumbnail_jpeg
from landmarks.index import GalleryIndex
from landmarks.models import Extractor, load_extractor
from landmarks.search import Searcher, SearchResult

from api.settings import Settings

log = logging.getLogger(__name__)

EMPTY_GALLERY_NOTICE = (
    "The gallery is empty, so there is nothing to match yet. Index a folder of photos (one folder per "
    "landmark) with `landmarks index build GALLERY_DIR --out {index_dir}`, or fetch the Google Landmarks v2 "
    "subset with `landmarks data gldv2`, then restart the service."
)


class UnknownImage(LookupError):
    pass


@dataclass
class SearchOutcome:
    result: SearchResult
    landmarks: dict[str, Landmark]
    counts: dict[str, int]
    gallery_size: int


class SearchService:
    def __init__(self, settings: Settings, extractor: Extractor, index: GalleryIndex) -> None:
        self.settings = settings
        self.extractor = extractor
        self.index = index
        self.searcher = Searcher(extractor, index, threshold=settings.threshold)
        self._refresh_metadata()
        self.thumbnail = lru_cache(maxsize=1024)(self._thumbnail)

    @classmethod
    def load(cls, settings: Settings) -> SearchService:
        extractor = load_extractor(settings.model, device=settings.device)
        index = GalleryIndex.open(settings.index_dir, fingerprint=extractor.fingerprint, model=extractor.source, dim=extractor.dim)
        log.info("service loaded", extra={"model": extractor.describe(), "gallery_size": len(index)})
        return cls(settings, extractor, index)

    def close(self) -> None:
        self.index.close()

    def _refresh_metadata(self) -> None:
        self.landmarks = self.index.landmarks()
        self.counts = self.index.store.image_counts()

    @property
    def empty_notice(self) -> str | None:
        return EMPTY_GALLERY_NOTICE.format(index_dir=self.settings.index_dir) if len(self.index) == 0 else None

    def decode(self, data: bytes) -> Image.Image:
        return decode_image(data, max_pixels=self.settings.max_pixels)

    def embed(self, images: list[Image.Image]) -> list[np.ndarray]:
        """One model call for a batch of photos (the micro-batcher groups concurrent searches)."""
        return list(self.searcher.embed(images))

    def search_vector(self, vector: np.ndarray, k: int) -> SearchOutcome:
        result = self.searcher.search(vector[None, :], k)[0]
        return SearchOutcome(result, self.landmarks, self.counts, len(self.index))

    def landmark(self, landmark_id: str) -> Landmark | None:
        return self.landmarks.get(landmark_id)

    def _thumbnail(self, image_id: int, size: int) -> bytes:
        record = self.index.image(image_id)
        if record is None:
            raise UnknownImage(image_id)
        return thumbnail_jpeg(Path(record.path), size)
