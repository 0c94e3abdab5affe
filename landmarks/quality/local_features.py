"""Local features (keypoints + descriptors) for spatial verification, cached per gallery photo.

Gallery photos get their features at index time (`landmarks index build` calls `sync_local_features`)
into INDEX_DIR/local_features.sqlite, keyed by image id and checked against the photo's source key,
modification time and the extraction parameters; a query's features are extracted per request. The
cache is optional: a Searcher over an index without it simply skips spatial verification.

Kinds: "sift" and "orb" (OpenCV), and "delf": a DELF network's attention-selected local features
(landmarks/quality/delf_features.py), from the model `LocalFeatureParams.model` names.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from landmarks.quality.delf_features import DEFAULT_DELF_MODEL, delf_model, extract_delf

log = logging.getLogger(__name__)

LOCAL_FEATURES_FILE = "local_features.sqlite"
KINDS = ("sift", "orb", "delf")
# How each kind's descriptors are stored: SIFT's integer bins and ORB's bits fit in bytes; DELF's are
# unit float vectors, which float16 keeps to ~1e-3 (cosine similarity is all that is asked of them).
DESCRIPTOR_DTYPES = {"sift": np.uint8, "orb": np.uint8, "delf": np.float16}
EMPTY_WIDTHS = {"sift": 128, "orb": 32}  # a photo without features still has a descriptor width

SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    image_id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    mtime REAL NOT NULL,
    params TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    count INTEGER NOT NULL,
    xy BLOB NOT NULL,
    descriptors BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class LocalFeatureParams:
    """How local features are extracted. Gallery and query must use the same parameters."""

    kind: str = "sift"
    max_side: int = 480  # photos are shrunk to this longest side first (never enlarged)
    max_features: int = 1000
    model: str = DEFAULT_DELF_MODEL  # kind "delf" only: a registered DELF model or a DELF checkpoint file

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown local feature kind {self.kind!r}; choose one of {', '.join(KINDS)}")

    @property
    def key(self) -> str:
        if self.kind == "delf":
            # The model's weights, not its name: features of a retrained checkpoint at the same path
            # must not be matched against the old ones.
            return f"delf:{self.max_side}:{self.max_features}:{delf_model(self.model)[1]}"
        return f"{self.kind}:{self.max_side}:{self.max_features}"

    @property
    def width(self) -> int:
        if self.kind == "delf":
            return delf_model(self.model)[0].output_dim
        return 128 if self.kind == "sift" else 32


@dataclass(frozen=True)
class LocalFeatures:
    xy: np.ndarray  # (n, 2) float32 keypoint positions in the (shrunk) image
    descriptors: np.ndarray  # (n, 128) uint8 SIFT, (n, 32) uint8 binary ORB, or (n, D) float16 unit DELF
    size: tuple[int, int]  # (width, height) of the image the positions refer to
    kind: str

    def __len__(self) -> int:
        return len(self.xy)


def _detector(params: LocalFeatureParams):
    # A detector per call: OpenCV detectors are cheap to create and not documented as thread-safe.
    if params.kind == "sift":
        return cv2.SIFT_create(nfeatures=params.max_features)
    return cv2.ORB_create(nfeatures=params.max_features)


def extract(image: Image.Image | np.ndarray, params: LocalFeatureParams = LocalFeatureParams()) -> LocalFeatures:
    """Keypoints and descriptors of an RGB PIL image (or, for SIFT and ORB, a grayscale uint8 array)."""
    if params.kind == "delf":
        if not isinstance(image, Image.Image):
            raise TypeError("DELF features need an RGB PIL image")
        xy, descriptors, size = extract_delf(
            image, model_spec=params.model, max_side=params.max_side, max_features=params.max_features
        )
        return LocalFeatures(xy, descriptors, size, params.kind)
    gray = np.asarray(image.convert("L")) if isinstance(image, Image.Image) else np.asarray(image, np.uint8)
    scale = params.max_side / max(gray.shape)
    if scale < 1:
        gray = cv2.resize(
            gray,
            (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
    keypoints, descriptors = _detector(params).detectAndCompute(gray, None)
    if descriptors is None or not keypoints:
        return LocalFeatures(
            np.zeros((0, 2), np.float32),
            np.zeros((0, params.width), np.uint8),
            (gray.shape[1], gray.shape[0]),
            params.kind,
        )
    xy = np.array([kp.pt for kp in keypoints], dtype=np.float32).reshape(-1, 2)
    # SIFT descriptors are integers in [0, 255] stored as float: uint8 keeps them exactly.
    descriptors = (
        np.clip(np.rint(descriptors), 0, 255).astype(np.uint8)
        if params.kind == "sift"
        else descriptors.astype(np.uint8)
    )
    return LocalFeatures(xy, descriptors, (gray.shape[1], gray.shape[0]), params.kind)


class LocalFeatureStore:
    """INDEX_DIR/local_features.sqlite: the features of each gallery photo, by image id.

    Reads go through a small LRU cache; all methods are thread-safe.
    """

    def __init__(self, path: Path, *, cache_size: int = 2048) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
        self._cache: OrderedDict[tuple[int, str], LocalFeatures] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def open_existing(cls, index_dir: Path) -> LocalFeatureStore | None:
        path = Path(index_dir) / LOCAL_FEATURES_FILE
        return cls(path) if path.exists() else None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def entries(self) -> dict[int, tuple[str, float, str]]:
        """image_id -> (source, mtime, params key) of every stored row."""
        with self._lock:
            rows = self._db.execute("SELECT image_id, source, mtime, params FROM features").fetchall()
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def params_keys(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT DISTINCT params FROM features").fetchall()}

    def put(self, rows: Iterable[tuple[int, str, float, str, LocalFeatures]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for image_id, source, mtime, params_key, features in rows:
                    self._db.execute(
                        "INSERT OR REPLACE INTO features VALUES (?,?,?,?,?,?,?,?,?)",
                        (
                            int(image_id),
                            source,
                            float(mtime),
                            params_key,
                            features.size[0],
                            features.size[1],
                            len(features),
                            np.ascontiguousarray(features.xy, np.float32).tobytes(),
                            np.ascontiguousarray(features.descriptors, DESCRIPTOR_DTYPES[features.kind]).tobytes(),
                        ),
                    )
                    self._drop_cached(int(image_id))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def delete(self, image_ids: Iterable[int]) -> None:
        ids = [(int(i),) for i in image_ids]
        with self._lock:
            self._db.executemany("DELETE FROM features WHERE image_id = ?", ids)
            for (image_id,) in ids:
                self._drop_cached(image_id)

    def _drop_cached(self, image_id: int) -> None:
        for key in [key for key in self._cache if key[0] == image_id]:
            del self._cache[key]

    def get_many(self, image_ids: Iterable[int], params_key: str) -> dict[int, LocalFeatures]:
        """Features of those ids that have them with these parameters (missing ids are left out)."""
        wanted = [int(i) for i in image_ids]
        found: dict[int, LocalFeatures] = {}
        with self._lock:
            missing = []
            for image_id in wanted:
                cached = self._cache.get((image_id, params_key))
                if cached is not None:
                    self._cache.move_to_end((image_id, params_key))
                    found[image_id] = cached
                else:
                    missing.append(image_id)
            if missing:
                marks = ",".join("?" * len(missing))
                rows = self._db.execute(
                    f"SELECT image_id, width, height, count, xy, descriptors FROM features WHERE params = ? AND image_id IN ({marks})",
                    (params_key, *missing),
                ).fetchall()
                kind = params_key.split(":", 1)[0]
                dtype = DESCRIPTOR_DTYPES[kind]
                for image_id, width, height, count, xy, descriptors in rows:
                    features = LocalFeatures(
                        np.frombuffer(xy, np.float32).reshape(count, 2),
                        np.frombuffer(descriptors, dtype).reshape(count, -1)
                        if count
                        else np.zeros((0, EMPTY_WIDTHS.get(kind, 0)), dtype),
                        (width, height),
                        kind,
                    )
                    found[image_id] = features
                    self._cache[(image_id, params_key)] = features
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return found


def sync_local_features(
    index_dir: Path,
    images: dict,
    params: LocalFeatureParams = LocalFeatureParams(),
    *,
    workers: int = 2,
    progress: bool = False,
    draft: float | None = None,
) -> tuple[int, int]:
    """Bring INDEX_DIR/local_features.sqlite in line with the index's images.

    `images` is `GalleryStore.images()` (source key -> ImageRecord). Photos without features (or
    whose file or the parameters changed) are extracted on `workers` threads; rows of photos no
    longer in the index are dropped. draft: JPEGs are decoded at reduced size, at least DRAFT times
    the longest side the features need (landmarks.index.loading.Pipeline.draft; None: full size).
    Returns (extracted, removed).
    """
    from landmarks.images import ImageError, decode_image, draft_size

    store = LocalFeatureStore(Path(index_dir) / LOCAL_FEATURES_FILE)
    try:
        stored = store.entries()
        records = {record.image_id: record for record in images.values()}
        gone = [image_id for image_id in stored if image_id not in records]
        if gone:
            store.delete(gone)
        todo = [
            record
            for image_id, record in records.items()
            if stored.get(image_id) != (record.source, float(record.mtime), params.key)
        ]

        decode_at = draft_size([params.max_side], draft)

        def work(record):
            try:
                return record, extract(decode_image(Path(record.path), draft=decode_at), params)
            except (ImageError, OSError) as exc:
                log.warning("no local features for %s: %s", record.source, exc)
                return record, None

        extracted = 0
        bar = None
        if progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="local features", unit=" photos", dynamic_ncols=True)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for start in range(0, len(todo), 64):
                done = [(r, f) for r, f in pool.map(work, todo[start : start + 64]) if f is not None]
                store.put((r.image_id, r.source, float(r.mtime), params.key, f) for r, f in done)
                extracted += len(done)
                if bar is not None:
                    bar.update(len(todo[start : start + 64]))
        if bar is not None:
            bar.close()
        return extracted, len(gone)
    finally:
        store.close()


def sync_for_index(index, params: LocalFeatureParams, *, progress: bool = False, draft: float | None = None) -> None:
    """The index build's hook: local features for every photo of a GalleryIndex, with the parameters
    the search configuration uses (`SearchConfig.local_params`)."""
    extracted, removed = sync_local_features(
        index.directory, index.store.images(), params, progress=progress, draft=draft
    )
    log.info("local features: %d photos extracted, %d removed (%s)", extracted, removed, params.key)
