"""The gallery as the configured stages search it, held in memory, with its multi-scale vectors cached on disk.

Only the stages that compare a query with every gallery vector need it (multi-scale, DBA, query
expansion, and the gallery probes of `landmarks calibrate`); the plain search goes through the index.
Multi-scale gallery vectors are embedded from the photos once and kept in INDEX_DIR/multiscale_vectors.npz,
keyed by the model's fingerprint and the scales.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landmarks.index import GalleryIndex
from landmarks.models import Extractor
from landmarks.quality.expansion import database_augment
from landmarks.quality.multiscale import MultiScaleEmbedder
from landmarks.search.config import SearchConfig

log = logging.getLogger(__name__)

MULTISCALE_FILE = "multiscale_vectors.npz"


@dataclass
class _Gallery:
    """The gallery as the configured stages search it, held in memory (only when a stage needs it)."""

    size: int
    ids: np.ndarray
    labels: np.ndarray
    raw: np.ndarray  # query-side vectors of the gallery photos (multi-scale when configured)
    searched: np.ndarray  # what queries are compared with (DBA-augmented when configured)
    rows: dict[int, int]
    counts: dict[str, int]


class GalleryCache:
    """The in-memory gallery of one index under one configuration. Thread-safe."""

    def __init__(
        self, extractor: Extractor, index: GalleryIndex, config: SearchConfig, multiscale: MultiScaleEmbedder | None
    ) -> None:
        self.extractor = extractor
        self.index = index
        self.config = config
        self.multiscale = multiscale
        self._lock = threading.Lock()
        self._gallery: _Gallery | None = None

    def get(self) -> _Gallery:
        """The in-memory gallery, rebuilt when the index changed size since it was made."""
        size = len(self.index)
        current = self._gallery
        if current is not None and current.size == size:
            return current
        with self._lock:
            if self._gallery is not None and self._gallery.size == len(self.index):
                return self._gallery
            ids, vectors, labels = self.index.store.vectors(self.index.vectors.dim)
            raw = self._multiscale_gallery(ids, vectors) if self.config.multiscale else vectors
            searched = database_augment(raw, self.config.dba_k, self.config.dba_alpha) if self.config.dba_k > 1 else raw
            labels_array = np.asarray(labels, dtype=object)
            counts: dict[str, int] = {}
            for label in labels:
                counts[label] = counts.get(label, 0) + 1
            self._gallery = _Gallery(
                size,
                ids,
                labels_array,
                raw,
                np.ascontiguousarray(searched),
                {int(i): r for r, i in enumerate(ids.tolist())},
                counts,
            )
            return self._gallery

    def _multiscale_gallery(self, ids: np.ndarray, single: np.ndarray) -> np.ndarray:
        """Multi-scale gallery vectors, from INDEX_DIR/multiscale_vectors.npz, embedding what is missing."""
        from landmarks.images import ImageError, decode_image

        key = json.dumps({"fingerprint": self.extractor.fingerprint, "scales": [float(s) for s in self.config.scales]})
        path = Path(self.index.directory) / MULTISCALE_FILE
        cached: dict[int, np.ndarray] = {}
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as data:
                    if str(data["key"]) == key:
                        cached = dict(zip(data["ids"].tolist(), data["vectors"], strict=True))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("multi-scale cache %s unreadable (%s); recomputing", path, exc)
        out = np.empty_like(single)
        missing = [row for row, image_id in enumerate(ids.tolist()) if image_id not in cached]
        if missing:
            log.info("embedding %d gallery photos at scales %s (cached in %s)", len(missing), self.config.scales, path)
        for row, image_id in enumerate(ids.tolist()):
            if image_id in cached:
                out[row] = cached[image_id]
        for start in range(0, len(missing), 16):
            rows = missing[start : start + 16]
            images, good = [], []
            for row in rows:
                record = self.index.image(int(ids[row]))
                try:
                    images.append(decode_image(Path(record.path)))
                    good.append(row)
                except (ImageError, OSError, AttributeError) as exc:
                    log.warning(
                        "gallery photo %s unreadable for multi-scale (%s); using its single-scale vector", ids[row], exc
                    )
                    out[row] = single[row]
            if images:
                out[good] = self.multiscale.embed_images(images)
        if missing:
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez(tmp, key=np.array(key), ids=ids, vectors=out)
            tmp.replace(path)
        return out
