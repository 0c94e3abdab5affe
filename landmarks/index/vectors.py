"""FAISS inner-product index over unit vectors (cosine similarity), keyed by gallery image ids.

Exact search by default; IVF and HNSW for large galleries. On a GPU when FAISS has GPU support and
a device is present; CPU otherwise.
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "ivf", "hnsw")


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class VectorIndex:
    """An id-mapped FAISS index. Thread-safe for concurrent searches and replacement."""

    def __init__(self, dim: int, kind: str = "flat", *, nprobe: int = 16, ef_search: int = 128, use_gpu: bool | None = None) -> None:
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
        self.dim, self.kind = dim, kind
        self.nprobe, self.ef_search = nprobe, ef_search
        self.use_gpu = gpu_available() if use_gpu is None else use_gpu
        self._lock = threading.RLock()
        self._index = self._empty(0)

    def _empty(self, expected: int) -> faiss.Index:
        if self.kind == "flat" or expected < 1000:
            # IVF needs enough points to train its cells; small galleries are exact anyway.
            base = faiss.IndexFlatIP(self.dim)
        elif self.kind == "ivf":
            nlist = max(16, int(4 * math.sqrt(expected)))
            base = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            base.nprobe = self.nprobe
        else:
            base = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = 80
            base.hnsw.efSearch = self.ef_search
        return faiss.IndexIDMap2(base)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the whole content (training IVF cells on the new vectors)."""
        index = self._empty(len(ids))
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids):
            base = faiss.downcast_index(index.index)
            if not base.is_trained:
                base.train(vectors)
            index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        index = self._to_device(index)
        with self._lock:
            self._index = index

    def _to_device(self, index: faiss.Index) -> faiss.Index:
        if not self.use_gpu or self.kind == "hnsw":  # FAISS has no GPU HNSW
            return index
        resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(resources, 0, index)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        with self._lock:
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (Q, k); missing neighbours have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with self._lock:
            index = self._index
        if index.ntotal == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return index.search(queries, min(k, index.ntotal))

    def save(self, path: Path) -> None:
        with self._lock:
            index = self._index
        if self.use_gpu and hasattr(faiss, "index_gpu_to_cpu") and self.kind != "hnsw":
            index = faiss.index_gpu_to_cpu(index)
        tmp = path.with_suffix(".tmp")
        faiss.write_index(index, str(tmp))
        tmp.replace(path)  # atomic: a crash never leaves a half-written index

    def load(self, path: Path) -> None:
        index = self._to_device(faiss.read_index(str(path)))
        with self._lock:
            self._index = index
