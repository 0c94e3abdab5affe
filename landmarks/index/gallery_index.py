"""An index folder: SQLite metadata and vectors (the truth) plus a FAISS file (a cache of it).

INDEX_DIR/gallery.sqlite   landmarks, images, vectors, and the model fingerprint
INDEX_DIR/vectors.faiss    the FAISS index, rebuilt from SQLite when missing or stale
INDEX_DIR/milvus.db        with the Milvus backend and no server URI: the Milvus Lite database
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landmarks.gallery import Landmark
from landmarks.index.milvus import MilvusVectorIndex, VectorStore
from landmarks.index.store import GalleryStore, ImageRecord, Review
from landmarks.index.vectors import DEFAULT_KIND, needs_training, vector_index

log = logging.getLogger(__name__)

STORE_FILE = "gallery.sqlite"
FAISS_FILE = "vectors.faiss"
MILVUS_FILE = "milvus.db"
BACKENDS = ("faiss", "milvus")


class FingerprintMismatch(RuntimeError):
    """The index was built by a different model than the one asked to use it."""


def recorded_model(directory: Path) -> str | None:
    """The model that built the index at DIRECTORY (its name, or its file's name), or None without one.

    Read-only and cheap: no model, no FAISS, no writes; callers use it to pick the model to load.
    """
    path = Path(directory) / STORE_FILE
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None  # not ours or damaged: opening it for real says so
    return row[0] if row else None


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


def milvus_vectors(directory: Path, store: GalleryStore, uri: str | None = None) -> MilvusVectorIndex:
    """The Milvus collection of the index at DIRECTORY, at URI or where the index last had it."""
    uri = uri or store.get_meta("milvus_uri") or str(Path(directory) / MILVUS_FILE)
    collection = store.get_meta("milvus_collection")
    if collection is None:
        # Unique, not derived from the folder: indexes in different folders may share one server.
        collection = f"landmarks_{uuid.uuid4().hex[:16]}"
        store.set_meta({"milvus_collection": collection})
    return MilvusVectorIndex(uri, collection, int(store.get_meta("dim")), store.get_meta("kind") or DEFAULT_KIND)


class GalleryIndex:
    """Vectors + metadata of one gallery, for one model. Searches are thread-safe."""

    backend = "faiss"  # where `vectors` lives: "faiss" (in-process, cached in FAISS_FILE) or "milvus"

    def __init__(self, directory: Path, store: GalleryStore, vectors: VectorStore) -> None:
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
        backend: str | None = None,
        milvus_uri: str | None = None,
    ) -> GalleryIndex:
        """Open INDEX_DIR for this model; create it empty when it does not exist yet.

        Refuses an index built by another model: its vectors would be meaningless.
        BACKEND (default: the one the index was built or migrated for, else faiss) and MILVUS_URI
        (default: the index's last one, else INDEX_DIR/milvus.db) say where the vectors live; a
        different one than before is filled from SQLite and recorded, which is how indexes migrate.
        """
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"unknown vector backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        directory = Path(directory)
        store_path = directory / STORE_FILE
        if not store_path.exists() and not create:
            raise FileNotFoundError(
                f"no index at {directory} (expected {STORE_FILE}); build one with `landmarks index build`"
            )
        store = GalleryStore(store_path)
        stored = store.get_meta("fingerprint")
        rekinded = False
        if stored is None:
            store.set_meta({"fingerprint": fingerprint, "model": model, "dim": str(dim), "kind": kind or DEFAULT_KIND})
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
            rekinded = True  # the FAISS file holds the old kind's codes
        stored_backend = store.get_meta("backend") or "faiss"
        backend = backend or stored_backend
        moved = backend != stored_backend or (
            backend == "milvus" and milvus_uri not in (None, store.get_meta("milvus_uri"))
        )
        try:
            if backend == "milvus":
                vectors: VectorStore = milvus_vectors(directory, store, milvus_uri)
            else:
                vectors = vector_index(int(store.get_meta("dim")), store.get_meta("kind") or DEFAULT_KIND)
        except Exception:
            store.close()
            raise
        index = cls(directory, store, vectors)
        index.backend = backend
        if moved:
            # Whatever the new place held is stale: fill it from the truth, then record the move,
            # so an interrupted migration leaves the index on its old backend.
            log.info("moving the vectors of %s from %s to %s", directory, stored_backend, backend)
            index.rebuild_vectors()
            store.set_meta(
                {"backend": backend, **({"milvus_uri": milvus_uri} if backend == "milvus" and milvus_uri else {})}
            )
        elif rekinded:
            index.rebuild_vectors()
        else:
            index._load_vectors()
        return index

    @classmethod
    def open_recorded(cls, directory: Path, **options) -> GalleryIndex:
        """Open an existing index for the model that built it, without that model (for work on stored
        vectors: cleaning, migrating). options: open's kind, backend and milvus_uri. Raises FileNotFoundError
        when there is no index, ValueError when it holds nothing yet."""
        path = Path(directory) / STORE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no index at {directory}")
        store = GalleryStore(path)
        try:
            fingerprint, model, dim = (store.get_meta(key) for key in ("fingerprint", "model", "dim"))
        finally:
            store.close()
        if fingerprint is None:
            raise ValueError(f"the index at {directory} is empty: build it first with `landmarks index build`")
        return cls.open(directory, fingerprint=fingerprint, model=model or "", dim=int(dim), create=False, **options)

    def _sync_milvus(self) -> None:
        """Milvus keeps its own vectors; a count that differs from SQLite's means a write reached
        one and not the other (a crash between them, a collection dropped on the server): refill it."""
        labels = self.store.matched_labels()
        if len(self.vectors) != len(labels):
            log.warning(
                "Milvus holds %d vectors for %d photos of %s; refilling it from the store",
                len(self.vectors),
                len(labels),
                self.directory,
            )
            self.rebuild_vectors()
        with self._lock:
            self._labels = labels

    def _load_vectors(self) -> None:
        if self.backend == "milvus":
            self._sync_milvus()
            return
        faiss_path = self.directory / FAISS_FILE
        labels = self.store.matched_labels()
        loaded = False
        if faiss_path.exists() and self.store.get_meta("faiss_generation") == str(self.store.generation):
            try:
                self.vectors.load(faiss_path)
                loaded = len(self.vectors) == len(labels)
            except RuntimeError as exc:  # a damaged cache is rebuilt, never fatal
                log.warning("FAISS file %s unreadable (%s); rebuilding from the store", faiss_path, exc)
        if not loaded:
            self.rebuild_vectors()
        with self._lock:
            self._labels = labels

    def rebuild_vectors(self) -> None:
        """Fill the vectors from the store, training the index's codes (or cells) on them."""
        labels = self.store.matched_labels()
        ids = np.fromiter(sorted(labels), np.int64, len(labels))
        self.vectors.rebuild(self.store.vector_rows(self.vectors.dim, ids))
        with self._lock:
            self._labels = labels
        if self.backend == "faiss":
            self.store.set_meta({"trained_size": str(len(ids))})
        self._save_vectors()

    def _needs_training(self, size: int) -> bool:
        """Whether the FAISS codes no longer fit the gallery's size (Milvus trains its own)."""
        if self.backend != "faiss":
            return False
        trained = self.store.get_meta("trained_size")
        # An index made before sizes were recorded is trained anew at its next build.
        return trained is not None and needs_training(self.vectors.kind, int(trained), size)

    def _save_vectors(self) -> None:
        if self.backend == "milvus":  # Milvus stores the vectors itself: no FAISS file to write
            self.vectors.flush()
            return
        with self._lock:  # no write may slip between the snapshot and its generation stamp
            generation = self.store.generation
            self.vectors.save(self.directory / FAISS_FILE)
        self.store.set_meta({"faiss_generation": str(generation)})

    def close(self) -> None:
        if self.backend == "milvus":
            self.vectors.close()  # lets another process open a Milvus Lite database
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

    def search(self, queries: np.ndarray, k: int) -> list[list[Neighbour]]:
        scores, ids = self.vectors.search(queries, k)
        labels = self._labels
        results = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            # A photo deleted while this search ran has no label any more: leave it out.
            found = ((int(i), labels.get(int(i)), float(s)) for s, i in zip(row_scores, row_ids, strict=True) if i >= 0)
            results.append([Neighbour(i, label, s) for i, label, s in found if label is not None])
        return results

    def landmarks(self) -> dict[str, Landmark]:
        return self.store.landmarks()

    def labels(self) -> dict[int, str]:
        """image id -> landmark id of every photo that takes part in matching (a copy)."""
        with self._lock:
            return dict(self._labels)

    def label_of(self, image_id: int) -> str | None:
        """The landmark of a photo that takes part in matching; None for an excluded or unknown id."""
        return self._labels.get(int(image_id))

    def image(self, image_id: int) -> ImageRecord | None:
        return self.store.image(image_id)

    # --- writing ----------------------------------------------------------------------------------
    def add(self, landmarks: Iterable[Landmark], rows: list[tuple]) -> list[int]:
        """Add (landmark_id, source, path, size, mtime, vector[, prior]) rows; durable once this returns."""
        # One row per source key: the store keeps the last of several, so the index must too (two
        # vectors for one row would leave a ghost that search returns and the store does not know).
        rows = list({row[1]: row for row in rows}.values())
        with self._lock:
            self.store.upsert_landmarks(landmarks)
            # Re-adding a photo (same source key) replaces it: its old vector must leave the index.
            replaced = list(self.store.image_ids_by_source([row[1] for row in rows]).values())
            ids = self.store.add_images(rows)
            self._forget(replaced)
            # A re-embedded photo that a review excluded stays out of matching.
            excluded = self.store.excluded_among([row[1] for row in rows])
            matched = [(image_id, row) for image_id, row in zip(ids, rows, strict=True) if row[1] not in excluded]
            if matched:
                self.vectors.add(np.asarray([i for i, _ in matched]), np.stack([row[5] for _, row in matched]))
                self._labels.update({image_id: row[0] for image_id, row in matched})
            if self._needs_training(len(self._labels)):
                # A gallery grown through uploads past its codes' size: train them on what it holds now.
                log.info(
                    "the gallery of %s has grown to %d photos: training its codes again",
                    self.directory,
                    len(self._labels),
                )
                self.rebuild_vectors()
        return ids

    def review(self, reviews: Iterable[Review]) -> None:
        """Record verdicts on gallery photos: excluded ones leave matching at once (and stay in the store)."""
        reviews = list(reviews)
        with self._lock:
            self.store.set_reviews(reviews)
            excluded = {r.source for r in reviews if r.verdict == "excluded"}
            ids = self.store.image_ids_by_source(sorted(excluded)).values()
            self._forget([i for i in ids if i in self._labels])

    def restore(self, sources: Iterable[str] | None = None) -> int:
        """Lift the exclusions of SOURCES (default: all), so those photos match again; returns how many."""
        sources = None if sources is None else list(sources)
        if sources == []:
            return 0  # nothing to lift: no write, and the FAISS cache stays valid
        with self._lock:
            removed = self.store.clear_reviews(sources)
            if not removed:
                return 0
            labels = self.store.matched_labels()
            back = np.fromiter(sorted(set(labels) - set(self._labels)), np.int64)
            for ids, vectors in self.store.vector_rows(self.vectors.dim, back).read():
                self.vectors.add(ids, vectors)
                self._labels.update({image_id: labels[image_id] for image_id in ids.tolist()})
        return removed

    def remove(self, image_ids: Iterable[int]) -> None:
        image_ids = list(image_ids)
        with self._lock:
            self.store.delete_images(image_ids)
            self._forget(image_ids)

    def remove_landmark(self, landmark_id: str) -> list[ImageRecord]:
        with self._lock:
            removed = self.store.delete_landmark(landmark_id)
            self._forget([record.image_id for record in removed])
        return removed

    def _forget(self, image_ids: list[int]) -> None:
        if image_ids:
            self.vectors.remove(np.asarray(image_ids))
        for image_id in image_ids:
            self._labels.pop(image_id, None)

    def save(self) -> None:
        """Write the FAISS cache. SQLite is already durable; this only speeds up the next start."""
        self._save_vectors()
