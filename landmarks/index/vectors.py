"""FAISS inner-product index over unit vectors (cosine similarity), keyed by gallery image ids.

Exact search by default; IVF and HNSW for large galleries, IVF with compressed codes (8-bit scalar
quantisation, or product quantisation) when the vectors outgrow memory, and "ivf-pq-rerank" for speed at
a million photos: 4-bit PQ codes scanned with SIMD pick candidates, which are then scored exactly on the
full vectors. bench/index_scale.py compares them at 10k to 1M vectors. On a GPU when FAISS has GPU
support and a device is present; CPU otherwise.
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "ivf", "hnsw", "ivf-sq8", "ivf-pq", "ivf-pq-rerank")
CPU_ONLY_KINDS = ("hnsw", "ivf-pq", "ivf-pq-rerank")
SMALL_BATCH = 4  # fewer queries than this search on the calling thread alone
MIN_CANDIDATES = 256  # "ivf-pq-rerank" scores at least this many candidates exactly, even for k=1
RESCORE_CHUNK = 16  # queries re-scored together: their candidates' full vectors are copied out


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class VectorIndex:
    """An id-mapped FAISS index. Thread-safe for concurrent searches and replacement."""

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        *,
        nprobe: int | None = None,
        ef_search: int = 128,
        use_gpu: bool | None = None,
        nlist: int | None = None,
        train_size: int | None = None,
        pq_bytes: int | None = None,
        rerank: int = 32,
    ) -> None:
        """nprobe: IVF cells searched (default 16; for "ivf-pq-rerank", whose probes are cheap, an
        eighth of the cells: bench/index_scale.py); nlist: IVF cells (default 4·√n); train_size: train
        IVF on at most this many vectors, drawn at random (k-means on every vector of a million-photo gallery takes hours on a few cores);
        pq_bytes: bytes per vector of "ivf-pq" (a divisor of dim; default about dim/16); rerank: for
        "ivf-pq-rerank", candidates scored exactly per neighbour asked for (at least MIN_CANDIDATES)."""
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
        self.dim, self.kind = dim, kind
        self.nprobe, self.ef_search, self.rerank = nprobe, ef_search, rerank
        self.nlist, self.train_size = nlist, train_size
        self.pq_bytes = pq_bytes or next(m for m in range(max(1, dim // 16), 0, -1) if dim % m == 0)
        if kind == "ivf-pq" and dim % self.pq_bytes:
            raise ValueError(f"pq_bytes={self.pq_bytes} must divide the dimension {dim}")
        self.use_gpu = gpu_available() if use_gpu is None else use_gpu
        self._lock = threading.RLock()
        self._index = self._empty(0)
        # "ivf-pq-rerank" keeps the full vectors beside the codes, by id, for the exact second pass.
        self._exact = FullVectors(dim) if kind == "ivf-pq-rerank" else None
        # FAISS's fast-scan lists corrupt their packed codes when an id is removed from them, so a
        # removal there only leaves the codes stale (skipped when searching) until a compaction.
        self._stale: set[int] = set()

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
            elif self.kind == "ivf-pq":
                base = faiss.IndexIVFPQ(quantizer, self.dim, nlist, self.pq_bytes, 8, faiss.METRIC_INNER_PRODUCT)
            else:
                # 4-bit codes, one per 4 dimensions: coarse alone, but the fast-scan kernel reads them from SIMD registers, so thousands of candidates cost less
                # than the exact scoring of a few hundred.
                base = faiss.IndexIVFPQFastScan(quantizer, self.dim, nlist, max(2, self.dim // 4), 4, faiss.METRIC_INNER_PRODUCT)
                # Codes of the offset from the cell's centre rank candidates better than codes of the
                # vector: at 100k, 16 candidates per neighbour then reached the recall 32 did without.
                base.by_residual = True
            base.nprobe = self.nprobe or (max(16, nlist // 8) if self.kind == "ivf-pq-rerank" else 16)
        else:
            base = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = 80
            base.hnsw.efSearch = self.ef_search
        return faiss.IndexIDMap2(base)

    def __len__(self) -> int:
        return len(self._exact) if self._exact is not None else int(self._index.ntotal)

    def _has_fast_scan_codes(self) -> bool:
        return self._exact is not None and isinstance(faiss.downcast_index(self._index.index), faiss.IndexIVF)

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
        exact = None
        if self._exact is not None:
            exact = FullVectors(self.dim)
            exact.add(np.asarray(ids, dtype=np.int64), vectors)
        with self._lock:
            self._index, self._exact, self._stale = index, exact, set()

    def tune(self, *, nprobe: int | None = None, ef_search: int | None = None, rerank: int | None = None) -> None:
        """Change the live index's speed/recall trade-off (IVF cells probed, HNSW candidate list,
        candidates re-scored exactly)."""
        with self._lock:
            self.nprobe = nprobe or self.nprobe
            self.ef_search = ef_search or self.ef_search
            self.rerank = rerank or self.rerank
            base = faiss.downcast_index(self._index.index) if hasattr(self._index, "index") else self._index
            if nprobe and hasattr(base, "nprobe"):
                base.nprobe = nprobe
            if hasattr(base, "hnsw"):
                base.hnsw.efSearch = self.ef_search

    def _to_device(self, index: faiss.Index) -> faiss.Index:
        # FAISS has no GPU HNSW nor fast-scan; IVF-PQ at this width would need float16 lookup tables
        # there, untested.
        if not self.use_gpu or self.kind in CPU_ONLY_KINDS:
            return index
        resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(resources, 0, index)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors, ids = np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        with self._lock:
            self._index.add_with_ids(vectors, ids)
            if self._exact is not None:
                self._exact.add(ids, vectors)
                # An id added again is live: its stale codes now only duplicate it (merged when searching).
                self._stale.difference_update(ids.tolist())

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        with self._lock:
            if self._has_fast_scan_codes():
                self._exact.remove(ids)
                self._stale.update(ids.tolist())
                # Stale codes take candidate places: re-encode once they are a tenth of the gallery.
                if len(self._stale) > len(self) // 10:
                    self._compact()
                return
            self._index.remove_ids(ids)
            if self._exact is not None:
                self._exact.remove(ids)

    def _compact(self) -> None:
        """Re-encode the live vectors into empty lists of the same trained cells and codebooks."""
        lists = faiss.clone_index(self._index.index)
        lists.reset()
        index = faiss.IndexIDMap2(lists)
        index.add_with_ids(self._exact.vectors, self._exact.ids)
        self._index, self._stale = index, set()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (Q, k); missing neighbours have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with self._lock:
            index, exact, stale = self._index, self._exact, np.fromiter(self._stale, np.int64, len(self._stale))
            fast_scan = self._has_fast_scan_codes()
        total = len(self)
        if total == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        k = min(k, total)
        if fast_scan:
            _, candidates = self._search(index, queries, min(max(k * self.rerank, MIN_CANDIDATES), index.ntotal))
            if len(stale):
                candidates[np.isin(candidates, stale)] = -1
            parts = [rescore(exact, queries[i : i + RESCORE_CHUNK], candidates[i : i + RESCORE_CHUNK], k) for i in range(0, len(queries), RESCORE_CHUNK)]
            return np.concatenate([scores for scores, _ in parts]), np.concatenate([ids for _, ids in parts])
        return self._search(index, queries, k)

    @staticmethod
    def _search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if len(queries) >= SMALL_BATCH:
            return index.search(queries, k)
        # FAISS shares work out by query, so a few queries gain nothing from OpenMP's threads and, on
        # busy cores, wait for them to wake: one IVF query at 10k vectors took 15 ms with 2 threads and
        # under 1 ms with one (bench/index_scale.py). The setting is the calling thread's own.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return index.search(queries, k)
        finally:
            faiss.omp_set_num_threads(threads)

    def save(self, path: Path) -> None:
        with self._lock:
            index, exact = self._index, self._exact
        if self.use_gpu and hasattr(faiss, "index_gpu_to_cpu") and self.kind not in CPU_ONLY_KINDS:
            index = faiss.index_gpu_to_cpu(index)
        if exact is not None:
            exact.save(full_vectors_path(path))
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(index, str(tmp))
        tmp.replace(path)  # atomic: a crash never leaves a half-written index

    def load(self, path: Path) -> None:
        """Raises RuntimeError when the file (or, for "ivf-pq-rerank", its vectors) cannot be read."""
        index = self._to_device(faiss.read_index(str(path)))
        exact, stale = None, set()
        if self._exact is not None:
            companion = full_vectors_path(path)
            if not companion.is_file():
                raise RuntimeError(f"{companion} is missing")
            exact = FullVectors.load(companion, self.dim)
            coded, live = faiss.vector_to_array(index.id_map), exact.ids
            if np.setdiff1d(live, coded).size:  # the two files come from different writes
                raise RuntimeError(f"{companion} holds vectors that {path} does not index")
            stale = set(np.setdiff1d(coded, live).tolist())
        with self._lock:
            self._index, self._exact, self._stale = index, exact, stale


def full_vectors_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.full.npz")


class FullVectors:
    """The full vectors by id, for exact re-scoring, in NumPy memory: NumPy asks the kernel for huge
    pages, and gathering 640 random rows of a 1M x 1280 array took 0.8 ms there against 2-5 ms from
    FAISS's own storage on these (virtual) machines. Ids are found by binary search in a sorted copy
    (a dict of a million ids took 4 ms for 320 look-ups). Removal moves the last rows into the holes."""

    def __init__(self, dim: int) -> None:
        self._data = np.empty((0, dim), np.float32)
        self._ids = np.empty(0, np.int64)
        self._count = 0
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # (sorted ids, their rows), rebuilt after writes

    def __len__(self) -> int:
        return self._count

    @property
    def ids(self) -> np.ndarray:
        return self._ids[: self._count]

    @property
    def vectors(self) -> np.ndarray:
        return self._data[: self._count]

    def _positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, found) of ids: rows is only meaningful where found."""
        if self._sorted is None:
            order = np.argsort(self.ids, kind="stable")
            self._sorted = (self.ids[order], order)
        keys, order = self._sorted
        if not len(keys):
            return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
        at = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
        return order[at], keys[at] == ids

    def rows(self, ids: np.ndarray) -> np.ndarray:
        rows, found = self._positions(ids)
        if not found.all():
            raise KeyError(f"ids not stored: {ids[~found][:5].tolist()}")
        return rows

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        rows, known = self._positions(ids)
        self._data[rows[known]] = vectors[known]  # an id added again takes its new vector
        fresh, first = np.unique(ids[~known], return_index=True)
        if not len(fresh):
            return
        needed = self._count + len(fresh)
        if needed > len(self._data):  # grow by a quarter: a photo added to a 1M gallery copies 5 GB once in a while, not each time
            capacity = max(needed, len(self._data) * 5 // 4 + 1024)
            data, stored = np.empty((capacity, self._data.shape[1]), np.float32), np.empty(capacity, np.int64)
            data[: self._count], stored[: self._count] = self.vectors, self.ids
            self._data, self._ids = data, stored
        self._data[self._count : needed] = vectors[~known][first]
        self._ids[self._count : needed] = fresh
        self._count, self._sorted = needed, None

    def remove(self, ids: np.ndarray) -> None:
        rows, found = self._positions(ids)
        gone = np.unique(rows[found])
        if not len(gone):
            return
        remaining = self._count - len(gone)
        holes = gone[gone < remaining]
        movers = np.setdiff1d(np.arange(remaining, self._count), gone)  # as many as there are holes
        self._data[holes], self._ids[holes] = self._data[movers], self._ids[movers]
        self._count, self._sorted = remaining, None

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as out:
            np.savez(out, ids=self.ids, vectors=self.vectors)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, dim: int) -> FullVectors:
        try:
            with np.load(path) as stored:
                ids, vectors = stored["ids"].astype(np.int64), stored["vectors"]
        except (OSError, ValueError, KeyError) as exc:
            raise RuntimeError(f"{path} is unreadable: {exc}") from exc
        if vectors.shape != (len(ids), dim):
            raise RuntimeError(f"{path} holds vectors of shape {vectors.shape}, not (n, {dim})")
        if len(np.unique(ids)) != len(ids):
            raise RuntimeError(f"{path} holds an id twice")
        full = cls(dim)
        full._data, full._ids, full._count = np.ascontiguousarray(vectors, np.float32), ids, len(ids)
        return full


def rescore(exact: FullVectors, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each query's candidates (id -1: none) by exact inner product on the full vectors."""
    candidates = np.sort(candidates, axis=1)
    candidates[:, 1:][candidates[:, 1:] == candidates[:, :-1]] = -1  # an id coded twice counts once
    scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
    found = candidates >= 0
    if found.any():
        vectors = exact.vectors[exact.rows(candidates[found])]
        rows = np.nonzero(found)[0]
        scores[found] = np.einsum("nd,nd->n", vectors, queries[rows])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    ids = np.where(np.isfinite(best), np.take_along_axis(candidates, order, axis=1), -1)
    return np.where(np.isfinite(best), best, np.finfo(np.float32).min).astype(np.float32), ids  # FAISS's "none"
