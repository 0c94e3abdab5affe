"""Re-scoring of a coarse index's shortlist: the wrapper of "ivf-pq-rerank" and "pca-ivf-pq-sq8" (vectors.KINDS).

The wrapped FAISS index (4-bit PQ fast scan) picks k·rerank candidates (at least min_candidates); the
full vectors, kept beside the codes by id, score them: exactly (float32), or from 8-bit codes of every
dimension (a quarter of the memory; scores within about 0.001 of exact). On disk: the FAISS file as the
wrapped index writes it, and the full vectors beside it in `<stem>.full.npz` (ids, vectors, and for
8-bit codes each dimension's range).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from landmarks.index.vectors import CHUNK_ROWS, FaissIndex, VectorRows, index_ids, search_index

MIN_CANDIDATES = 256  # scored exactly at least, even for k=1
# For "pca-ivf-pq-sq8": its 4-bit codes of 256 principal axes rank a million 3,840-d vectors coarsely. At 1M
# (bench/million.py, k=10, nprobe 512) 320 candidates reached recall@10 0.84, 1,280 0.948, 2,560 0.962 in 8.7 ms.
CODED_MIN_CANDIDATES = 2560
RESCORE_BLOCK = 128  # coded rows converted to float at a time (2 MB of 3,840-d float32)
ENCODE_CHUNK = 65_536  # rows coded at a time


def full_vectors_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.full.npz")


class RerankIndex:
    """A FAISS index whose candidates are re-scored on the full vectors. Thread-safe like FaissIndex."""

    def __init__(
        self, inner: FaissIndex, *, rerank: int = 32, min_candidates: int = MIN_CANDIDATES, coded: bool = False
    ) -> None:
        """rerank: candidates re-scored per neighbour asked for (at least min_candidates); coded: keep
        the full vectors as 8-bit codes (trained at each rebuild) instead of float32."""
        self.inner, self.rerank, self.min_candidates, self.coded = inner, rerank, min_candidates, coded
        self.dim, self.kind = inner.dim, inner.kind
        self._lock = threading.RLock()
        self._exact = FullVectors(inner.dim, coded=coded)
        # FAISS's fast-scan lists corrupt their packed codes when an id is removed from them, so a
        # removal there only leaves the codes stale (skipped when searching) until a compaction.
        self._stale: set[int] = set()

    def __len__(self) -> int:
        return len(self._exact)

    def rebuild(self, rows: VectorRows) -> None:
        # Trained and filled while searches go on; codes and full vectors from one read of each chunk.
        index = self.inner.trained(rows)
        exact = FullVectors(self.dim, coded=self.coded, capacity=len(rows))
        exact.train(rows)
        for ids, vectors in rows.read():
            index.add_with_ids(vectors, ids)
            exact.add(ids, vectors)
        index = self.inner.placed(index)
        with self._lock:
            self.inner.swap(index)
            self._exact, self._stale = exact, set()

    def tune(self, *, rerank: int | None = None, min_candidates: int | None = None, **options) -> None:
        """rerank: candidates re-scored per neighbour; min_candidates: at least; the rest go to the wrapped index."""
        self.rerank = rerank or self.rerank
        self.min_candidates = min_candidates or self.min_candidates
        self.inner.tune(**options)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors, ids = np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        with self._lock:
            self.inner.add(ids, vectors)
            self._exact.add(ids, vectors)
            # An id added again is live: its stale codes now only duplicate it (merged when searching).
            self._stale.difference_update(ids.tolist())

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        with self._lock:
            self._exact.remove(ids)
            if self.inner.is_flat:  # a small gallery's exact index removes in place
                self.inner.remove(ids)
                return
            self._stale.update(ids.tolist())
            # Stale codes take candidate places: re-encode once they are a tenth of the gallery.
            if len(self._stale) > len(self) // 10:
                self.inner.refill(self._exact.as_rows())
                self._stale = set()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (Q, k); missing neighbours have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with self._lock:  # codes and full vectors of the same write
            index, exact, stale = (
                self.inner.snapshot(),
                self._exact,
                np.fromiter(self._stale, np.int64, len(self._stale)),
            )
        if len(exact) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        k = min(k, len(exact))
        _, candidates = search_index(index, queries, min(max(k * self.rerank, self.min_candidates), index.ntotal))
        if len(stale):
            candidates[np.isin(candidates, stale)] = -1
        return rescore(exact, queries, candidates, k)

    def save(self, path: Path) -> None:
        with self._lock:
            index, exact = self.inner.snapshot(), self._exact
        exact.save(full_vectors_path(path))
        self.inner.save(path, index)

    def load(self, path: Path) -> None:
        """Raises RuntimeError when the file or its full vectors cannot be read, or do not match."""
        companion = full_vectors_path(path)
        if not companion.is_file():
            raise RuntimeError(f"{companion} is missing")
        index = self.inner.read(path)
        exact = FullVectors.load(companion, self.dim, coded=self.coded)
        coded, live = index_ids(index), exact.ids
        if np.setdiff1d(live, coded).size:  # the two files come from different writes
            raise RuntimeError(f"{companion} holds vectors that {path} does not index")
        with self._lock:
            self.inner.swap(index)
            self._exact, self._stale = exact, set(np.setdiff1d(coded, live).tolist())


class FullVectors:
    """The full vectors by id, for re-scoring, in NumPy memory: NumPy asks the kernel for huge
    pages, and gathering 640 random rows of a 1M x 1280 array took 0.8 ms there against 2-5 ms from
    FAISS's own storage on these (virtual) machines. Ids are found by binary search in a sorted copy
    (a dict of a million ids took 4 ms for 320 look-ups). Removal moves the last rows into the holes.

    coded: rows are 8-bit codes of each dimension's range (`train`), as FAISS's SQ8: a value v is
    stored as round((v - low) / span · 255), clipped, and read back as low + code / 255 · span: within
    half a step of what was stored, the range's ends exactly."""

    def __init__(self, dim: int, *, coded: bool = False, capacity: int = 0) -> None:
        """capacity: rows to make room for at once (a rebuild knows its size: no copy while it grows)."""
        self.coded = coded
        self._data = np.empty((capacity, dim), np.uint8 if coded else np.float32)
        self._ids = np.empty(capacity, np.int64)
        self._count = 0
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # (sorted ids, their rows), rebuilt after writes
        self.low, self.span = np.full(dim, -1.0, np.float32), np.full(dim, 2.0, np.float32)  # unit vectors fit

    def train(self, rows: VectorRows) -> None:
        """Fit each dimension's range to these vectors, read chunk by chunk (coded rows only; before any add)."""
        if not self.coded or not len(rows):
            return
        low, high = np.full(rows.dim, np.inf, np.float32), np.full(rows.dim, -np.inf, np.float32)
        for _, vectors in rows.read():
            np.minimum(low, vectors.min(axis=0), out=low)
            np.maximum(high, vectors.max(axis=0), out=high)
        if np.isfinite(low).all():
            self.low, self.span = low, np.maximum(high - low, 1e-6).astype(np.float32)

    def _encode(self, vectors: np.ndarray) -> np.ndarray:
        if not self.coded:
            return vectors
        codes = np.empty(vectors.shape, np.uint8)
        for start in range(0, len(vectors), ENCODE_CHUNK):  # float temporaries of a chunk, not of a million rows
            part = np.asarray(vectors[start : start + ENCODE_CHUNK], np.float32)
            codes[start : start + len(part)] = np.clip(np.floor((part - self.low) / self.span * 255.0 + 0.5), 0, 255)
        return codes

    def inner_products(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """The inner product of QUERY with each of these stored rows."""
        data = self._data[rows]
        if not self.coded:
            return data @ query
        # q·(low + c/255·span) = q·low + c·(q∘span/255): the codes are never decoded. Converted to float
        # a block at a time, in cache: converting a thousand 3,840-d rows at once cost more than the
        # products (bench/million.py: 1,280 candidates took 17 ms, against 6 for 640).
        weights = query * (self.span / 255.0)
        out = np.empty(len(data), np.float32)
        for start in range(0, len(data), RESCORE_BLOCK):
            out[start : start + RESCORE_BLOCK] = data[start : start + RESCORE_BLOCK].astype(np.float32) @ weights
        return out + np.float32(query @ self.low)

    def decoded(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of these rows, as float32."""
        data = self._data[rows]
        if not self.coded:
            return data
        return self.low + data.astype(np.float32) / 255.0 * self.span

    def __len__(self) -> int:
        return self._count

    def as_rows(self) -> VectorRows:
        """The stored vectors as float32 rows, decoded a chunk at a time (a 1M gallery's 8-bit codes are
        3.8 GB; decoded at once, 15 GB)."""
        ids = self.ids.copy()

        def read():
            for start in range(0, len(ids), CHUNK_ROWS):
                yield ids[start : start + CHUNK_ROWS], self.decoded(np.arange(start, min(start + CHUNK_ROWS, len(ids))))

        return VectorRows(ids, self._data.shape[1], read)

    @property
    def ids(self) -> np.ndarray:
        return self._ids[: self._count]

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
        vectors = self._encode(vectors)
        self._data[rows[known]] = vectors[known]  # an id added again takes its new vector
        fresh_rows = np.flatnonzero(~known)
        fresh, first = np.unique(ids[fresh_rows], return_index=True)
        if not len(fresh):
            return
        needed = self._count + len(fresh)
        if needed > len(
            self._data
        ):  # grow by a quarter: a photo added to a 1M gallery copies 5 GB once in a while, not each time
            capacity = max(needed, len(self._data) * 5 // 4 + 1024)
            data, stored = np.empty((capacity, self._data.shape[1]), self._data.dtype), np.empty(capacity, np.int64)
            data[: self._count], stored[: self._count] = self._data[: self._count], self.ids
            self._data, self._ids = data, stored
        self._data[self._count : needed] = vectors[fresh_rows[first]]
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
            np.savez(out, ids=self.ids, vectors=self._data[: self._count], low=self.low, span=self.span)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, dim: int, *, coded: bool = False) -> FullVectors:
        full = cls(dim, coded=coded)
        try:
            with np.load(path) as stored:
                ids, vectors = stored["ids"].astype(np.int64), stored["vectors"]
                if coded:
                    full.low, full.span = stored["low"].astype(np.float32), stored["span"].astype(np.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise RuntimeError(f"{path} is unreadable: {exc}") from exc
        if vectors.shape != (len(ids), dim) or vectors.dtype != full._data.dtype:
            raise RuntimeError(
                f"{path} holds {vectors.dtype} vectors of shape {vectors.shape}, not {full._data.dtype} (n, {dim})"
            )
        if len(np.unique(ids)) != len(ids):
            raise RuntimeError(f"{path} holds an id twice")
        full._data, full._ids, full._count = np.ascontiguousarray(vectors), ids, len(ids)
        return full


def rescore(exact: FullVectors, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each query's candidates (id -1: none) by inner product on the full vectors as stored."""
    candidates = np.sort(candidates, axis=1)
    candidates[:, 1:][candidates[:, 1:] == candidates[:, :-1]] = -1  # an id coded twice counts once
    scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
    for row, (query, ids) in enumerate(zip(queries, candidates, strict=True)):
        positions = np.flatnonzero(ids >= 0)
        if len(positions):
            rows = exact.rows(ids[positions])
            order = np.argsort(rows)  # ascending rows: the gather walks memory forwards
            scores[row, positions[order]] = exact.inner_products(rows[order], query)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    ids = np.where(np.isfinite(best), np.take_along_axis(candidates, order, axis=1), -1)
    return np.where(np.isfinite(best), best, np.finfo(np.float32).min).astype(np.float32), ids  # FAISS's "none"
