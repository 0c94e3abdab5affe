"""The gallery's metadata and vectors in SQLite: the durable source of truth of an index.

The FAISS file beside it is a cache that can always be rebuilt from here. SQLite's WAL journal
means an acknowledged write survives a crash.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landmarks.gallery import Landmark
from landmarks.index.vectors import CHUNK_ROWS, VectorRows

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS landmarks (
    landmark_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT, country TEXT, lat REAL, lon REAL,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS images (
    image_id INTEGER PRIMARY KEY AUTOINCREMENT,
    landmark_id TEXT NOT NULL REFERENCES landmarks(landmark_id),
    source TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    mtime REAL NOT NULL DEFAULT 0,
    vector BLOB NOT NULL,
    prior REAL  -- the landmark prior of the photo (landmarks.quality.prior); NULL: not computed yet
);
CREATE INDEX IF NOT EXISTS images_by_landmark ON images(landmark_id);
-- A person's or `landmarks index clean`'s verdict on a gallery photo, by source key, so that it outlives
-- re-embedding. "excluded": kept in the store, left out of matching; "kept": never flagged again.
CREATE TABLE IF NOT EXISTS reviews (
    source TEXT PRIMARY KEY,
    verdict TEXT NOT NULL CHECK (verdict IN ('excluded', 'kept')),
    reason TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL
);
"""
# The photos that take part in matching: every photo no review excluded.
MATCHED = "NOT EXISTS (SELECT 1 FROM reviews r WHERE r.source = images.source AND r.verdict = 'excluded')"


@dataclass(frozen=True)
class Review:
    source: str
    verdict: str  # "excluded" (left out of matching) or "kept" (a person looked: never flag it again)
    reason: str  # why: "no_landmark", "other_landmark" (landmarks.quality.cleaning), "operator"
    detail: str = ""  # a sentence a person reads
    at: float = 0.0  # when (Unix time)


@dataclass(frozen=True)
class ImageRecord:
    image_id: int
    landmark_id: str
    source: str
    path: str
    size: int
    mtime: float


class GalleryStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(images)")}
            if "prior" not in columns:  # an index made before the landmark prior
                self._db.execute("ALTER TABLE images ADD COLUMN prior REAL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- meta -----------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, values: dict[str, str]) -> None:
        with self._lock, self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", list(values.items()))

    # --- landmarks --------------------------------------------------------------------------------
    def upsert_landmarks(self, landmarks: Iterable[Landmark]) -> None:
        rows = [
            (lm.landmark_id, lm.name, lm.city, lm.country, lm.lat, lm.lon, json.dumps(lm.extra, ensure_ascii=False))
            for lm in landmarks
        ]
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT INTO landmarks(landmark_id, name, city, country, lat, lon, extra) VALUES (?,?,?,?,?,?,?) "
                "ON CONFLICT(landmark_id) DO UPDATE SET name=excluded.name, city=excluded.city, "
                "country=excluded.country, lat=excluded.lat, lon=excluded.lon, extra=excluded.extra",
                rows,
            )

    def landmarks(self) -> dict[str, Landmark]:
        with self._lock:
            rows = self._db.execute(
                "SELECT landmark_id, name, city, country, lat, lon, extra FROM landmarks"
            ).fetchall()
        return {row[0]: Landmark(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6])) for row in rows}

    def image_counts(self) -> dict[str, int]:
        """Photos per landmark that take part in matching (excluded ones are not counted)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT landmark_id, COUNT(*) FROM images WHERE {MATCHED} GROUP BY landmark_id"
            ).fetchall()
        return dict(rows)

    def delete_landmarks_without_images(self) -> None:
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM landmarks WHERE landmark_id NOT IN (SELECT DISTINCT landmark_id FROM images)")

    # --- images -----------------------------------------------------------------------------------
    def images(self) -> dict[str, ImageRecord]:
        """All image records by source key."""
        with self._lock:
            rows = self._db.execute("SELECT image_id, landmark_id, source, path, size, mtime FROM images").fetchall()
        return {row[2]: ImageRecord(*row) for row in rows}

    def image_ids_by_source(self, sources: list[str]) -> dict[str, int]:
        """The ids of the photos stored under these source keys (indexed lookups, not a table scan)."""
        found = {}
        with self._lock:
            for source in sources:
                row = self._db.execute("SELECT image_id FROM images WHERE source = ?", (source,)).fetchone()
                if row is not None:
                    found[source] = int(row[0])
        return found

    def sources_with_prefix(self, prefix: str) -> list[str]:
        """The source keys that start with PREFIX."""
        with self._lock:
            rows = self._db.execute(
                "SELECT source FROM images WHERE substr(source, 1, ?) = ?", (len(prefix), prefix)
            ).fetchall()
        return [row[0] for row in rows]

    def image(self, image_id: int) -> ImageRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT image_id, landmark_id, source, path, size, mtime FROM images WHERE image_id = ?", (image_id,)
            ).fetchone()
        return ImageRecord(*row) if row else None

    def images_of(self, landmark_id: str) -> list[ImageRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT image_id, landmark_id, source, path, size, mtime FROM images WHERE landmark_id = ? ORDER BY image_id",
                (landmark_id,),
            ).fetchall()
        return [ImageRecord(*row) for row in rows]

    def first_images(self) -> dict[str, int]:
        """The lowest image id of each landmark among its matched photos: its sample photo."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT landmark_id, MIN(image_id) FROM images WHERE {MATCHED} GROUP BY landmark_id"
            ).fetchall()
        return dict(rows)

    def matched_labels(self) -> dict[int, str]:
        """image_id -> landmark_id of the photos that take part in matching."""
        with self._lock:
            rows = self._db.execute(f"SELECT image_id, landmark_id FROM images WHERE {MATCHED}").fetchall()
        return dict(rows)

    def add_images(self, rows: Iterable[tuple]) -> list[int]:
        """Insert or replace (landmark_id, source, path, size, mtime, vector[, prior]) rows; returns their ids.
        prior: the photo's landmark prior, or None (not computed)."""
        ids = []
        with self._lock, self._transaction():
            for landmark_id, source, path, size, mtime, vector, *rest in rows:
                prior = float(rest[0]) if rest and rest[0] is not None else None
                self._db.execute("DELETE FROM images WHERE source = ?", (source,))
                cursor = self._db.execute(
                    "INSERT INTO images(landmark_id, source, path, size, mtime, vector, prior) VALUES (?,?,?,?,?,?,?)",
                    (landmark_id, source, path, size, mtime, np.asarray(vector, np.float32).tobytes(), prior),
                )
                ids.append(int(cursor.lastrowid))
            self._bump_generation()
        return ids

    def delete_images(self, image_ids: Iterable[int]) -> None:
        with self._lock, self._transaction():
            rows = [(int(i),) for i in image_ids]
            self._db.executemany(
                "DELETE FROM reviews WHERE source IN (SELECT source FROM images WHERE image_id = ?)", rows
            )
            self._db.executemany("DELETE FROM images WHERE image_id = ?", rows)
            self._bump_generation()

    def delete_landmark(self, landmark_id: str) -> list[ImageRecord]:
        """Remove a landmark and its photos in one transaction; returns the removed photos."""
        with self._lock, self._transaction():
            removed = self.images_of(landmark_id)
            self._db.execute(
                "DELETE FROM reviews WHERE source IN (SELECT source FROM images WHERE landmark_id = ?)", (landmark_id,)
            )
            self._db.execute("DELETE FROM images WHERE landmark_id = ?", (landmark_id,))
            self._db.execute("DELETE FROM landmarks WHERE landmark_id = ?", (landmark_id,))
            self._bump_generation()
        return removed

    def set_priors(self, priors: Iterable[tuple[int, float]]) -> None:
        """Store (image_id, landmark prior) pairs; ids no longer in the gallery are ignored."""
        with self._lock, self._transaction():
            self._db.executemany(
                "UPDATE images SET prior = ? WHERE image_id = ?", [(float(p), int(i)) for i, p in priors]
            )

    def priors(self) -> dict[int, float]:
        """The landmark prior of every photo that has one."""
        with self._lock:
            rows = self._db.execute("SELECT image_id, prior FROM images WHERE prior IS NOT NULL").fetchall()
        return {int(image_id): float(prior) for image_id, prior in rows}

    def without_prior(self) -> list[ImageRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT image_id, landmark_id, source, path, size, mtime FROM images WHERE prior IS NULL ORDER BY image_id"
            ).fetchall()
        return [ImageRecord(*row) for row in rows]

    # --- reviews (gallery cleaning) ------------------------------------------------------------------
    def set_reviews(self, reviews: Iterable[Review]) -> None:
        """Record verdicts on photos (replacing earlier ones); sources not in the gallery are ignored."""
        now = time.time()
        rows = [(r.source, r.verdict, r.reason, r.detail, r.at or now, r.source) for r in reviews]
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO reviews(source, verdict, reason, detail, at) "
                "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM images WHERE source = ?)",
                rows,
            )
            self._bump_generation()

    def clear_reviews(self, sources: Iterable[str] | None = None) -> int:
        """Lift the exclusions of SOURCES (default: all): those photos match again; "kept" verdicts stay.
        Returns how many were lifted."""
        with self._lock, self._transaction():
            if sources is None:
                removed = self._db.execute("DELETE FROM reviews WHERE verdict = 'excluded'").rowcount
            else:
                removed = sum(
                    self._db.execute(
                        "DELETE FROM reviews WHERE source = ? AND verdict = 'excluded'", (source,)
                    ).rowcount
                    for source in sources
                )
            self._bump_generation()
        return int(removed)

    def reviews(self) -> dict[str, Review]:
        """Every verdict, by source key."""
        with self._lock:
            rows = self._db.execute("SELECT source, verdict, reason, detail, at FROM reviews").fetchall()
        return {row[0]: Review(*row) for row in rows}

    def excluded_among(self, sources: list[str]) -> set[str]:
        """Which of these source keys a review excluded (indexed lookups, not a table scan)."""
        with self._lock:
            return {
                source
                for source in sources
                if self._db.execute(
                    "SELECT 1 FROM reviews WHERE source = ? AND verdict = 'excluded'", (source,)
                ).fetchone()
            }

    def exclusions_of(self, landmark_id: str) -> list[tuple[ImageRecord, Review]]:
        """A landmark's excluded photos with their reviews, by image id."""
        with self._lock:
            rows = self._db.execute(
                "SELECT i.image_id, i.landmark_id, i.source, i.path, i.size, i.mtime, "
                "r.source, r.verdict, r.reason, r.detail, r.at FROM images i JOIN reviews r ON r.source = i.source "
                "WHERE i.landmark_id = ? AND r.verdict = 'excluded' ORDER BY i.image_id",
                (landmark_id,),
            ).fetchall()
        return [(ImageRecord(*row[:6]), Review(*row[6:])) for row in rows]

    def excluded_counts(self) -> dict[str, int]:
        """Excluded photos per landmark."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT landmark_id, COUNT(*) FROM images WHERE NOT {MATCHED} GROUP BY landmark_id"
            ).fetchall()
        return dict(rows)

    @property
    def generation(self) -> int:
        """Bumped by every change of the photos: tells whether a FAISS cache is stale."""
        return int(self.get_meta("generation", "0"))

    def _bump_generation(self) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES ('generation', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    def count(self) -> int:
        """How many photos take part in matching (excluded ones are not counted)."""
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM images WHERE {MATCHED}").fetchone()[0])

    def vectors(
        self, dim: int, *, matched_only: bool = True, landmark_id: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(ids, vectors, landmark_ids) of the gallery's matched photos (matched_only=False: of every
        photo, excluded ones included; landmark_id: of that landmark's only), ordered by image id."""
        ids, vectors, labels = [], [], []
        for image_id, label, blob in self._iter_vectors(matched_only, landmark_id):
            ids.append(image_id)
            labels.append(label)
            vectors.append(np.frombuffer(blob, dtype=np.float32))
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, dim), np.float32), []
        return np.asarray(ids, np.int64), np.stack(vectors), labels

    def vector_rows(self, dim: int, ids: np.ndarray) -> VectorRows:
        """The vectors of these image ids (ascending), read a chunk at a time each time they are read:
        a rebuild of a million-photo gallery never holds all its vectors (15 GB of the default model's)."""
        ids = np.asarray(ids, dtype=np.int64)

        def read() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for start in range(0, len(ids), CHUNK_ROWS):
                wanted = ids[start : start + CHUNK_ROWS]
                with self._lock:
                    rows = self._db.execute(
                        "SELECT image_id, vector FROM images WHERE image_id BETWEEN ? AND ? ORDER BY image_id",
                        (int(wanted[0]), int(wanted[-1])),
                    ).fetchall()
                found = np.fromiter((image_id for image_id, _ in rows), np.int64, len(rows))
                keep = np.isin(found, wanted, assume_unique=True)  # ids between them that are not asked for
                vectors = np.empty((int(keep.sum()), dim), np.float32)
                for row, at in enumerate(np.flatnonzero(keep)):
                    vectors[row] = np.frombuffer(rows[at][1], dtype=np.float32)
                yield found[keep], vectors

        return VectorRows(ids, dim, read)

    def _iter_vectors(self, matched_only: bool, landmark_id: str | None = None) -> Iterator[tuple[int, str, bytes]]:
        conditions = ([MATCHED] if matched_only else []) + (["landmark_id = ?"] if landmark_id is not None else [])
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT image_id, landmark_id, vector FROM images {where} ORDER BY image_id",
                () if landmark_id is None else (landmark_id,),
            ).fetchall()
        yield from rows

    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.db.execute("ROLLBACK")
            return
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error:
            # A failed COMMIT (disk full, I/O error) can leave the transaction open, and then every
            # later write on this connection fails with "cannot start a transaction within a transaction".
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
