"""The search service: composes the engine (model + index) with the gallery's metadata.

Knows nothing of HTTP; the FastAPI layer calls it off the event loop.

Invariants the reliability tests hold it to (tests/reliability/test_write_invariants.py):
- a photo is acknowledged only once its file is fsynced and its SQLite row committed, and every
  acknowledged photo stays fetchable and searchable until it is deleted;
- every write goes through the index that searches read (a reload swaps the index under the write
  lock, so no write can land in a retired one), and a retired index is closed once no search uses it;
- no file under INDEX_DIR/photos outlives its row (files are written and removed under the write
  lock; a crash between the two leaves an orphan that the next start removes).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from api.decoding import DecodeBudget
from api.settings import Settings
from api.uploads import UPLOAD_PREFIX, UPLOADS_DIR
from landmarks.gallery import Landmark
from landmarks.images import decode_image, decoded_size_estimate, thumbnail_jpeg
from landmarks.index import GalleryIndex, recorded_model
from landmarks.index.loading import photo_draft
from landmarks.index.store import Review
from landmarks.models import Extractor, load_extractor, resolve_model
from landmarks.quality.prior import LandmarkPrior
from landmarks.search import Query, Searcher, SearchResult
from landmarks.search.detection import Detection, detect
from landmarks.search.region import Region

log = logging.getLogger(__name__)

EMPTY_GALLERY_NOTICE = (
    "The gallery is empty, so there is nothing to match yet. Index a folder of photos (one folder per "
    "landmark) with `landmarks index build GALLERY_DIR --out {index_dir}`, or fetch the Google Landmarks v2 "
    "subset with `landmarks data gldv2`, then restart the service; or add landmarks and photos at run time "
    "(POST /landmarks, then POST /landmarks/{{landmark_id}}/images)."
)
# Thumbnails are served in these sizes only (a request is rounded down to one): distinct `size`
# values would otherwise each decode the full photo again and crowd the cache.
THUMBNAIL_SIZES = (64, 128, 256, 512, 1024)


class UnknownImage(LookupError):
    pass


class UnknownLandmark(LookupError):
    pass


class LandmarkExists(ValueError):
    pass


class StorageUnavailable(RuntimeError):
    """The index folder cannot be written now (disk full, read-only, I/O error); nothing was changed."""


@dataclass
class SearchOutcome:
    result: SearchResult
    landmarks: dict[str, Landmark]
    counts: dict[str, int]
    gallery_size: int
    region: Region | None = None  # where the named landmark is in the photo, when asked for
    detections: list[Detection] | None = None  # every landmark found in the photo, when asked for


@dataclass
class PreparedPhoto:
    """An upload that decoded and embedded: ready to be stored."""

    filename: str
    data: bytes
    vector: np.ndarray
    prior: float | None = None  # its landmark prior, when the service has the prior model


@dataclass
class AddOutcome:
    added: list[tuple[str, int]]  # (filename, image id); a photo already in the landmark keeps its id
    duplicates: list[tuple[str, str]]  # (filename, the earlier filename in the same request)


class _Generation:
    """One opened index and its searcher. A reload retires it; it closes once no search uses it."""

    def __init__(self, index: GalleryIndex, searcher: Searcher) -> None:
        self.index = index
        self.searcher = searcher
        self.users = 0
        self.retired = False

    def close(self) -> None:
        self.searcher.close()
        self.index.close()


class SearchService:
    def __init__(
        self, settings: Settings, extractor: Extractor, index: GalleryIndex, prior: LandmarkPrior | None = None
    ) -> None:
        self.settings = settings
        self.extractor = extractor
        self.prior = prior
        self.decode_budget = DecodeBudget(settings.decode_memory_mb * 2**20, settings.max_decodes)
        # Uploads decode as the gallery's photos were indexed: JPEGs at reduced size (bench/indexing.py).
        self._draft = photo_draft(extractor.preprocess.image_size)
        self._generation_lock = threading.Lock()  # guards the swap and the users counts
        self._write_lock = threading.Lock()  # one gallery change (or reload) at a time
        self._current = self._generation(index)
        self.thumbnail = lru_cache(maxsize=1024)(self._thumbnail)
        self._remove_orphan_photos()
        self._refresh_metadata()

    @classmethod
    def load(cls, settings: Settings) -> SearchService:
        model = resolve_model(settings.model, recorded_model(settings.index_dir), exported_dir=settings.exported_dir)
        extractor = load_extractor(
            model,
            device=settings.device,
            runtime=settings.runtime,
            weights_file=settings.weights_file,
            **settings.model_files(),
        )
        prior = settings.landmark_prior() if settings.search_config().prior_keep > 0 else None
        service = cls(settings, extractor, cls._open_index(settings, extractor), prior)
        log.info("service loaded", extra={"model": extractor.describe(), "gallery_size": service.gallery_size})
        return service

    @staticmethod
    def _open_index(settings: Settings, extractor: Extractor) -> GalleryIndex:
        return GalleryIndex.open(
            settings.index_dir,
            fingerprint=extractor.fingerprint,
            model=extractor.source,
            dim=extractor.dim,
            backend=settings.vector_backend,
            milvus_uri=settings.milvus_uri,
        )

    def _generation(self, index: GalleryIndex) -> _Generation:
        return _Generation(index, Searcher(self.extractor, index, self.settings.search_config(), prior=self.prior))

    def close(self) -> None:
        with self._write_lock:
            self._current.index.save()  # a warm FAISS cache for the next start; SQLite already holds every write
            self._current.close()

    def reload(self) -> None:
        """Re-open the index from disk (after an offline `landmarks index build`). Searches in flight
        finish on the old index, which closes when the last of them is done."""
        with self._write_lock:
            fresh = self._generation(self._open_index(self.settings, self.extractor))
            with self._generation_lock:
                retired, self._current = self._current, fresh
                retired.retired = True
                idle = retired.users == 0
            self._refresh_metadata()
            self.thumbnail.cache_clear()
        if idle:
            retired.close()

    @contextmanager
    def _using(self) -> Iterator[_Generation]:
        with self._generation_lock:
            generation = self._current
            generation.users += 1
        try:
            yield generation
        finally:
            with self._generation_lock:
                generation.users -= 1
                done = generation.retired and generation.users == 0
            if done:
                generation.close()

    @property
    def _index(self) -> GalleryIndex:
        """The current index, for writes (under the write lock) and cheap reads of SQLite."""
        return self._current.index

    def _refresh_metadata(self) -> None:
        store = self._index.store
        self.landmarks = store.landmarks()
        self.counts = store.image_counts()
        self.excluded_counts = store.excluded_counts()

    # --- what the service holds -------------------------------------------------------------------
    @property
    def gallery_size(self) -> int:
        return len(self._index)

    @property
    def empty_notice(self) -> str | None:
        return EMPTY_GALLERY_NOTICE.format(index_dir=self.settings.index_dir) if self.gallery_size == 0 else None

    @property
    def device_type(self) -> str:
        return self.extractor.device.type

    def describe_model(self) -> str:
        return self.extractor.describe()

    def landmark(self, landmark_id: str) -> Landmark | None:
        return self.landmarks.get(landmark_id)

    def sample_images(self) -> dict[str, int]:
        """The sample photo of each landmark (its lowest image id)."""
        return self._index.store.first_images()

    def images_of(self, landmark_id: str) -> tuple[list[int], list[tuple[int, Review]]]:
        """A landmark's photos: the ids of those that take part in matching, and the excluded ones with
        their reviews (`landmarks index clean`)."""
        store = self._index.store
        excluded = [(record.image_id, review) for record, review in store.exclusions_of(landmark_id)]
        left_out = {image_id for image_id, _ in excluded}
        return [r.image_id for r in store.images_of(landmark_id) if r.image_id not in left_out], excluded

    # --- searching --------------------------------------------------------------------------------
    def decode_cost(self, data: bytes) -> int:
        """Bytes that decoding this upload may take at its peak (from its header alone)."""
        return decoded_size_estimate(data, max_pixels=self.settings.max_pixels)

    def decode(self, data: bytes) -> Image.Image:
        return decode_image(data, max_pixels=self.settings.max_pixels, draft=self._draft)

    def embed(self, images: list[Image.Image]) -> list[Query]:
        """One model call for a batch of photos (the micro-batcher groups concurrent searches): a query
        per photo, its vector and, with spatial verification on, its local features."""
        with self._using() as generation:
            return generation.searcher.embed(images)

    @property
    def model_side(self) -> int:
        """The model's input side, which the photo kept for finding boxes is sized by (photo_for_crops)."""
        return self.extractor.preprocess.image_size

    def search_query(
        self, query: Query, k: int, photo: Image.Image | None = None, *, locate: bool = True, find_all: bool = False
    ) -> SearchOutcome:
        """PHOTO (the query's, upright, see `photo_for_crops`): find the named landmark's box in it too
        (LOCATE), and every landmark it shows (FIND_ALL)."""
        with self._using() as generation:
            result = generation.searcher.search([query], k)[0]
            region = generation.searcher.locate(photo, query, result) if photo is not None and locate else None
            found = detect(generation.searcher, photo, query, result) if photo is not None and find_all else None
            size = len(generation.index)
        return SearchOutcome(result, self.landmarks, self.counts, size, region, found)

    # --- gallery changes ------------------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One write at a time; a storage failure becomes StorageUnavailable (nothing was changed)."""
        with self._write_lock:
            try:
                yield
            except (OSError, sqlite3.Error) as exc:
                log.warning("gallery write failed", extra={"error": str(exc)})
                raise StorageUnavailable(str(exc)) from exc
            finally:
                self._refresh_metadata()

    def create_landmark(self, landmark: Landmark) -> Landmark:
        with self._writing():
            if landmark.landmark_id in self.landmarks:
                raise LandmarkExists(landmark.landmark_id)
            self._index.store.upsert_landmarks([landmark])
        return landmark

    def require_landmark(self, landmark_id: str) -> None:
        if landmark_id not in self.landmarks:
            raise UnknownLandmark(landmark_id)

    def add_photos(self, landmark_id: str, photos: list[PreparedPhoto]) -> AddOutcome:
        """Store photos durably and index them: acknowledged (returned) only once fsynced and committed.

        The same photo twice in one request is stored once (the second is reported as a duplicate);
        a photo already in this landmark's gallery keeps its image id.
        """
        folder = self.settings.index_dir.resolve() / UPLOADS_DIR / landmark_id  # rows hold absolute paths
        by_source: dict[str, str] = {}
        unique: list[tuple[PreparedPhoto, str]] = []
        duplicates = []
        for photo in photos:
            source = f"{UPLOAD_PREFIX}{landmark_id}/{hashlib.sha256(photo.data).hexdigest()[:24]}"
            if source in by_source:
                duplicates.append((photo.filename, by_source[source]))
                continue
            by_source[source] = photo.filename
            unique.append((photo, source))
        with self._writing():
            self.require_landmark(landmark_id)  # it may have been deleted while the photos were embedded
            existing = self._index.store.image_ids_by_source([source for _, source in unique])
            fresh = [(photo, source) for photo, source in unique if source not in existing]
            written: list[Path] = []
            try:
                if fresh:
                    folder.mkdir(parents=True, exist_ok=True)
                rows = []
                for photo, source in fresh:
                    path = folder / f"{source.rsplit('/', 1)[-1]}.img"
                    _write_durably(path, photo.data)
                    written.append(path)
                    rows.append((landmark_id, source, str(path), len(photo.data), 0.0, photo.vector, photo.prior))
                ids = self._index.add([], rows) if rows else []  # committed to SQLite before this returns
            except BaseException:
                for path in written:  # nothing was acknowledged: leave no file behind
                    path.unlink(missing_ok=True)
                raise
        new_ids = dict(zip((source for _, source in fresh), ids, strict=True))
        added = [(photo.filename, existing.get(source, new_ids.get(source))) for photo, source in unique]
        return AddOutcome(added=added, duplicates=duplicates)

    def delete_landmark(self, landmark_id: str) -> int:
        with self._writing():
            self.require_landmark(landmark_id)
            removed = self._index.remove_landmark(landmark_id)
            self.thumbnail.cache_clear()
            shutil.rmtree(self.settings.index_dir / UPLOADS_DIR / landmark_id, ignore_errors=True)
        return len(removed)

    def delete_image(self, image_id: int) -> None:
        with self._writing():
            record = self._index.image(image_id)
            if record is None:
                raise UnknownImage(image_id)
            self._index.remove([image_id])
            self.thumbnail.cache_clear()
            if record.source.startswith(UPLOAD_PREFIX):
                Path(record.path).unlink(missing_ok=True)

    def _remove_orphan_photos(self) -> None:
        """Files under INDEX_DIR/photos that no row names: left by a crash between the file's write and
        its commit (never acknowledged). Runs at start, before any upload can be in flight."""
        root = self.settings.index_dir / UPLOADS_DIR
        if not root.is_dir():
            return
        # Known by source key (upload/<landmark_id>/<digest> is stored as <landmark_id>/<digest>.img),
        # not by the stored path, whose spelling depends on how INDEX_DIR was given.
        known = {
            f"{source[len(UPLOAD_PREFIX) :]}.img" for source in self._index.store.sources_with_prefix(UPLOAD_PREFIX)
        }
        removed = 0
        for path in root.rglob("*"):
            if path.is_file() and path.relative_to(root).as_posix() not in known:
                path.unlink(missing_ok=True)
                removed += 1
        for folder in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
        if removed:
            log.warning("removed orphan upload files", extra={"count": removed, "folder": str(root)})

    # --- gallery photos ---------------------------------------------------------------------------
    def thumbnail_size(self, size: int) -> int:
        return max(bucket for bucket in THUMBNAIL_SIZES if bucket <= size)

    def _thumbnail(self, image_id: int, size: int) -> bytes:
        record = self._index.image(image_id)
        if record is None:
            raise UnknownImage(image_id)
        data = Path(record.path).read_bytes()
        with self.decode_budget.reserve(self.decode_cost(data)):
            return thumbnail_jpeg(data, size, max_pixels=self.settings.max_pixels)


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
