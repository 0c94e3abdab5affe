"""An index folder: SQLite metadata and vectors (the truth) plus a FAISS file (a cache of it).

INDEX_DIR/gallery.sqlite   landmarks, images, vectors, and the model fingerprint
INDEX_DIR/vectors.faiss    the FAISS index, rebuilt from SQLite when missing or stale
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landmarks.gallery import Landmark
from landmarks.index.store import GalleryStore, ImageRecord
from landmarks.index.vectors import VectorIndex

log = logging.getLogger(__name__)

STORE_FILE = "gallery.sqlite"
FAISS_FILE = "vectors.faiss"


class FingerprintMismatch(RuntimeError):
    """The index was built by a different model than the one asked to use it."""


@dataclass(frozen=True)
class Neighbour:
    image_id: int
    landmark_id: str
    score: float


@dataclass
class IndexInfo:
    fingerprint: str
    model: str
    dim: int
    kind: str
    size: int
    landmarks: int
    extra: dict = field(default_factory=dict)


class GalleryIndex:
    """Vectors + metadata of one gallery, for one model. Searches are thread-safe."""

    def __init__(self, directory: Path, store: GalleryStore, vectors: VectorIndex) -> None:
        self.directory = directory
        self.store = store
        self.vectors = vectors
        self._lock = threading.RLock()
        self._labels: dict[int, str] = {}

    # --- opening ----------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        fingerprint: str,
        model: str,
        dim: int,
        kind: str | None = None,
        create: bool = True,
    ) -> GalleryIndex:
        """Open INDEX_DIR for this model; create it empty when it does not exist yet.

        Refuses an index built by another model: its vectors would be meaningless.
        """
        directory = Path(directory)
        store_path = directory / STORE_FILE
        if not store_path.exists() and not create:
            raise FileNotFoundError(f"no index at {directory} (expected {STORE_FILE}); build one with `landmarks index build`")
        store = GalleryStore(store_path)
        stored = store.get_meta("fingerprint")
        if stored is None:
            store.set_meta({"fingerprint": fingerprint, "model": model, "dim": str(dim), "kind": kind or "flat"})
        elif stored != fingerprint:
            built_by = store.get_meta("model", "?")
            store.close()
            raise FingerprintMismatch(
                f"The index at {directory} was built by model {built_by} (fingerprint {stored}), "
                f"not by {model} (fingerprint {fingerprint}). Serve it with the model that built it, "
                f"or rebuild it: landmarks index build GALLERY_DIR --out {directory} --model {model}"
            )
        elif kind and kind != store.get_meta("kind"):
            store.set_meta({"kind": kind})
        index = cls(directory, store, VectorIndex(int(store.get_meta("dim")), store.get_meta("kind") or "flat"))
        index._load_vectors()
        return index

    def _load_vectors(self) -> None:
        faiss_path = self.directory / FAISS_FILE
        records = self.store.images()
        labels = {record.image_id: record.landmark_id for record in records.values()}
        loaded = False
        if faiss_path.exists() and self.store.get_meta("faiss_count") == str(len(records)):
            try:
                self.vectors.load(faiss_path)
                loaded = len(self.vectors) == len(records)
            except RuntimeError as exc:  # a damaged cache is rebuilt, never fatal
                log.warning("FAISS file %s unreadable (%s); rebuilding from the store", faiss_path, exc)
        if not loaded:
            self.rebuild_vectors()
        with self._lock:
            self._labels = labels

    def rebuild_vectors(self) -> None:
        ids, vectors, labels = self.store.vectors(self.vectors.dim)
        self.vectors.rebuild(ids, vectors)
        with self._lock:
            self._labels = dict(zip(ids.tolist(), labels, strict=True))
        self._save_vectors()

    def _save_vectors(self) -> None:
        self.vectors.save(self.directory / FAISS_FILE)
        self.store.set_meta({"faiss_count": str(len(self.vectors))})

    def close(self) -> None:
        self.store.close()

    # --- reading ----------------------------------------------------------------------------------
    @property
    def info(self) -> IndexInfo:
        return IndexInfo(
            fingerprint=self.store.get_meta("fingerprint") or "",
            model=self.store.get_meta("model") or "",
            dim=self.vectors.dim,
            kind=self.vectors.kind,
            size=len(self),
            landmarks=len(set(self._labels.values())),
        )

    def __len__(self) -> int:
        return len(self.vectors)

    def landmark_of(self, image_id: int) -> str | None:
        return self._labels.get(image_id)

    def search(self, queries: np.ndarray, k: int) -> list[list[Neighbour]]:
        scores, ids = self.vectors.search(queries, k)
        labels = self._labels
        return [
            [Neighbour(int(i), labels[int(i)], float(s)) for s, i in zip(row_scores, row_ids, strict=True) if i >= 0 and int(i) in labels]
            for row_scores, row_ids in zip(scores, ids, strict=True)
        ]

    def landmarks(self) -> dict[str, Landmark]:
        return self.store.landmarks()

    def image(self, image_id: int) -> ImageRecord | None:
        return self.store.image(image_id)

    # --- writing ----------------------------------------------------------------------------------
    def add(self, landmarks: Iterable[Landmark], rows: list[tuple[str, str, str, int, float, np.ndarray]]) -> list[int]:
        """Add (landmark_id, source, path, size, mtime, vector) rows; durable once this returns."""
        self.store.upsert_landmarks(landmarks)
        existing = self.store.images() if rows else {}
        replaced = [existing[row[1]].image_id for row in rows if row[1] in existing]
        ids = self.store.add_images(rows)
        with self._lock:
            if replaced:
                self.vectors.remove(np.asarray(replaced))
                for image_id in replaced:
                    self._labels.pop(image_id, None)
            if ids:
                self.vectors.add(np.asarray(ids), np.stack([row[5] for row in rows]))
                self._labels.update({image_id: row[0] for image_id, row in zip(ids, rows, strict=True)})
        return ids

    def remove(self, image_ids: Iterable[int]) -> None:
        image_ids = list(image_ids)
        self.store.delete_images(image_ids)
        with self._lock:
            self.vectors.remove(np.asarray(image_ids))
            for image_id in image_ids:
                self._labels.pop(image_id, None)

    def save(self) -> None:
        """Write the FAISS cache. SQLite is already durable; this only speeds up the next start."""
        self._save_vectors()
