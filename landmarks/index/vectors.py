"""FAISS inner-product index over unit vectors (cosine similarity), keyed by gallery image ids.

Exact search by default; IVF and HNSW for large galleries, and IVF with compressed codes (8-bit scalar
quantisation, or product quantisation) when the vectors outgrow memory: bench/index_scale.py compares
them at 10k to 1M vectors. On a GPU when FAISS has GPU support and a device is present; CPU otherwise.
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "ivf", "hnsw", "ivf-sq8", "ivf-pq")
SMALL_BATCH = 4  # fewer queries than this search on the calling thread alone


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class VectorIndex:
    """An id-mapped FAISS index. Thread-safe for concurrent searches and replacement."""

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        *,
        nprobe: int = 16,
        ef_search: int = 128,
        use_gpu: bool | None = None,
        nlist: int | None = None,
        train_size: int | None = None,
        pq_bytes: int | None = None,
    ) -> None:
        """nlist: IVF cells (default 4·√n); train_size: train IVF on at most this many vectors, drawn
        at random (k-means on every vector of a million-photo gallery takes hours on a few cores);
        pq_bytes: bytes per vector of "ivf-pq" (a divisor of dim; default about dim/16)."""
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
        self.dim, self.kind = dim, kind
        self.nprobe, self.ef_search = nprobe, ef_search
        self.nlist, self.train_size = nlist, train_size
        self.pq_bytes = pq_bytes or next(m for m in range(max(1, dim // 16), 0, -1) if dim % m == 0)
        if kind == "ivf-pq" and dim % self.pq_bytes:
            raise ValueError(f"pq_bytes={self.pq_bytes} must divide the dimension {dim}")
        self.use_gpu = gpu_available() if use_gpu is None else use_gpu
        self._lock = threading.RLock()
        self._index = self._empty(0)

    def _empty(self, expected: int) -> faiss.Index:
        if self.kind == "flat" or expected < 1000:
            # IVF needs enough points to train its cells; small galleries are exact anyway.
            base = faiss.IndexFlatIP(self.dim)
        elif self.kind.startswith("ivf"):
            nlist = self.nlist or max(16, int(4 * math.sqrt(expected)))
            quantizer = faiss.IndexFlatIP(self.dim)
            if self.kind == "ivf":
                base = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            elif self.kind == "ivf-sq8":  # a quarter of the memory; unit vectors lose little at 8 bits a dimension
                base = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            else:
                base = faiss.IndexIVFPQ(quantizer, self.dim, nlist, self.pq_bytes, 8, faiss.METRIC_INNER_PRODUCT)
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
                sample = vectors
                if self.train_size is not None and len(vectors) > self.train_size:
                    rows = np.sort(np.random.default_rng(0).choice(len(vectors), self.train_size, replace=False))
                    sample = vectors[rows]
                base.train(sample)
            index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        index = self._to_device(index)
        with self._lock:
            self._index = index

    def tune(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change the live index's speed/recall trade-off (IVF cells probed, HNSW candidate list)."""
        with self._lock:
            self.nprobe = nprobe or self.nprobe
            self.ef_search = ef_search or self.ef_search
            base = faiss.downcast_index(self._index.index) if hasattr(self._index, "index") else self._index
            if hasattr(base, "nprobe"):
                base.nprobe = self.nprobe
            if hasattr(base, "hnsw"):
                base.hnsw.efSearch = self.ef_search

    def _to_device(self, index: faiss.Index) -> faiss.Index:
        # FAISS has no GPU HNSW; IVF-PQ at this width would need float16 lookup tables there, untested.
        if not self.use_gpu or self.kind in ("hnsw", "ivf-pq"):
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
        if len(queries) >= SMALL_BATCH:
            return index.search(queries, min(k, index.ntotal))
        # FAISS shares work out by query, so a few queries gain nothing from OpenMP's threads and, on
        # busy cores, wait for them to wake: one IVF query at 10k vectors took 15 ms with 2 threads and
        # under 1 ms with one (bench/index_scale.py). The setting is the calling thread's own.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return index.search(queries, min(k, index.ntotal))
        finally:
            faiss.omp_set_num_threads(threads)

    def save(self, path: Path) -> None:
        with self._lock:
            index = self._index
        if self.use_gpu and hasattr(faiss, "index_gpu_to_cpu") and self.kind not in ("hnsw", "ivf-pq"):
            index = faiss.index_gpu_to_cpu(index)
        tmp = path.with_suffix(".tmp")
        faiss.write_index(index, str(tmp))
        tmp.replace(path)  # atomic: a crash never leaves a half-written index

    def load(self, path: Path) -> None:
        index = self._to_device(faiss.read_index(str(path)))
        with self._lock:
            self._index = index
