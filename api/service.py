"""The search service: composes the engine (model + index) with the gallery's metadata.

Knows nothing of HTTP; the FastAPI layer calls it off the event loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from landmarks.gallery import Landmark
from landmarks.images import ImageError, decode_image, thumbnail_jpeg
from landmarks.index import GalleryIndex, recorded_model
from landmarks.index.gallery_index import UPLOAD_PREFIX, UPLOADS_DIR
from landmarks.models import Extractor, load_extractor, resolve_model
from landmarks.search import SearchConfig, Searcher, SearchResult

from api.settings import Settings

log = logging.getLogger(__name__)

EMPTY_GALLERY_NOTICE = (
    "The gallery is empty, so there is nothing to match yet. Index a folder of photos (one folder per "
    "landmark) with `landmarks index build GALLERY_DIR --out {index_dir}`, or fetch the Google Landmarks v2 "
    "subset with `landmarks data gldv2`, then restart the service."
)


class UnknownImage(LookupError):
    pass


class UnknownLandmark(LookupError):
    pass


class LandmarkExists(ValueError):
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
        self.searcher = Searcher(extractor, index, SearchConfig.from_settings(settings))
        self._refresh_metadata()
        self.thumbnail = lru_cache(maxsize=1024)(self._thumbnail)
        self._write_lock = threading.Lock()  # one gallery change at a time

    @classmethod
    def load(cls, settings: Settings) -> SearchService:
        model = resolve_model(settings.model, recorded_model(settings.index_dir))
        extractor = load_extractor(model, device=settings.device, runtime=settings.runtime, weights_file=settings.weights_file)
        index = GalleryIndex.open(
            settings.index_dir,
            fingerprint=extractor.fingerprint,
            model=extractor.source,
            dim=extractor.dim,
            backend=settings.vector_backend,
            milvus_uri=settings.milvus_uri,
        )
        log.info("service loaded", extra={"model": extractor.describe(), "gallery_size": len(index)})
        return cls(settings, extractor, index)

    def close(self) -> None:
        self.index.save()  # a warm FAISS cache for the next start; SQLite already holds every write
        self.index.close()

    def reloaded(self) -> SearchService:
        """A fresh service over the index as it is on disk now, sharing the loaded model."""
        index = GalleryIndex.open(
            self.settings.index_dir,
            fingerprint=self.extractor.fingerprint,
            model=self.extractor.source,
            dim=self.extractor.dim,
            backend=self.settings.vector_backend,
            milvus_uri=self.settings.milvus_uri,
        )
        return SearchService(self.settings, self.extractor, index)

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

    # --- gallery changes ------------------------------------------------------------------------
    def create_landmark(self, landmark: Landmark) -> Landmark:
        with self._write_lock:
            if landmark.landmark_id in self.landmarks:
                raise LandmarkExists(landmark.landmark_id)
            self.index.store.upsert_landmarks([landmark])
            self._refresh_metadata()
        return landmark

    def add_photos(self, landmark_id: str, photos: list[tuple[str, bytes]]) -> tuple[list[int], list[tuple[str, str]]]:
        """Decode, embed, store durably and index photos; returns (new image ids, rejected (name, why))."""
        if landmark_id not in self.landmarks:
            raise UnknownLandmark(landmark_id)
        accepted, rejected = [], []
        for filename, data in photos:
            try:
                accepted.append((filename, data, self.decode(data)))
            except ImageError as exc:
                rejected.append((filename, str(exc)))
        if not accepted:
            return [], rejected
        vectors = self.embed([image for _, _, image in accepted])
        folder = self.settings.index_dir / UPLOADS_DIR / landmark_id
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for (_, data, _), vector in zip(accepted, vectors, strict=True):
            digest = hashlib.sha256(data).hexdigest()[:24]
            path = folder / f"{digest}.img"
            _write_durably(path, data)
            rows.append((landmark_id, f"{UPLOAD_PREFIX}{landmark_id}/{digest}", str(path), len(data), 0.0, vector))
        with self._write_lock:
            if landmark_id not in self.landmarks:  # deleted while we were embedding
                raise UnknownLandmark(landmark_id)
            ids = self.index.add([], rows)  # committed to SQLite before this returns
            self._refresh_metadata()
        return ids, rejected

    def delete_landmark(self, landmark_id: str) -> int:
        with self._write_lock:
            if landmark_id not in self.landmarks:
                raise UnknownLandmark(landmark_id)
            removed = self.index.remove_landmark(landmark_id)
            self._refresh_metadata()
            self.thumbnail.cache_clear()
        shutil.rmtree(self.settings.index_dir / UPLOADS_DIR / landmark_id, ignore_errors=True)
        return len(removed)

    def delete_image(self, image_id: int) -> None:
        with self._write_lock:
            record = self.index.image(image_id)
            if record is None:
                raise UnknownImage(image_id)
            self.index.remove([image_id])
            self._refresh_metadata()
            self.thumbnail.cache_clear()
        if record.source.startswith(UPLOAD_PREFIX):
            Path(record.path).unlink(missing_ok=True)

    def landmark(self, landmark_id: str) -> Landmark | None:
        return self.landmarks.get(landmark_id)

    def _thumbnail(self, image_id: int, size: int) -> bytes:
        record = self.index.image(image_id)
        if record is None:
            raise UnknownImage(image_id)
        return thumbnail_jpeg(Path(record.path), size)


def _write_durably(path: Path, data: bytes) -> None:
    """Write, fsync and rename: after this returns the photo survives a crash or power loss."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
