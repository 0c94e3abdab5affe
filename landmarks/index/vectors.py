"""FAISS inner-product index over unit vectors (cosine similarity), keyed by gallery image ids.

Exact search over 8-bit codes by default ("sq8", DEFAULT_KIND), or over float32 ("flat"); IVF and HNSW
for large galleries, IVF with compressed codes (8-bit scalar quantisation, or product quantisation) when
the vectors outgrow memory, and "ivf-pq-rerank" / "pca-ivf-pq-sq8" for speed at a million photos: 4-bit
PQ codes scanned with SIMD pick candidates, which are then re-scored on the full vectors (float32, or
8-bit codes of them; landmarks/index/rerank.py). bench/index_scale.py compares them at 10k to 1M
vectors. On a GPU when FAISS has GPU support and a device is present; CPU otherwise.

Each kind is one row of KINDS: its FAISS factory string, what it needs to be trained, where it may run,
and an optional wrapper that re-scores its results. A new kind is a new row.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

if TYPE_CHECKING:
    from landmarks.index.rerank import RerankIndex

log = logging.getLogger(__name__)

SMALL_BATCH = 4  # fewer queries than this search on the calling thread alone
CHUNK_ROWS = 32_768  # vectors read, coded and added at a time: 0.5 GB of the default model's 3,840-d float32
# At most this many vectors (drawn at random) train the codes and cells: a million of the default model's
# are 15 GB, and FAISS's k-means wants 39 points a cell (4·√1M = 4,000 cells: 156,000).
TRAIN_SAMPLE = 200_000


@dataclass(frozen=True)
class VectorRows:
    """Vectors keyed by image id, read chunk by chunk: a million of the default model's vectors are
    15 GB, so an index is built and refilled from them without ever holding them all (from an array,
    a memory map, or the gallery's SQLite store).

    ids: the ids expected, in the order read; read: a new iterator of (ids, float32 vectors) chunks
    each time it is called (an id that went missing since `ids` was taken is simply not read)."""

    ids: np.ndarray
    dim: int
    read: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]

    @classmethod
    def of(cls, ids: np.ndarray, vectors: np.ndarray) -> VectorRows:
        """Rows of an array (or a memory map: only a chunk is in memory at a time)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        dim = vectors.shape[1] if vectors.ndim == 2 else 0

        def read() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for start in range(0, len(ids), CHUNK_ROWS):
                chunk = np.ascontiguousarray(vectors[start : start + CHUNK_ROWS], dtype=np.float32)
                yield ids[start : start + CHUNK_ROWS], chunk

        return cls(ids, dim, read)

    def __len__(self) -> int:
        return len(self.ids)

    def sample(self, size: int, seed: int = 0) -> np.ndarray:
        """At most SIZE of the vectors, drawn at random (all of them when there are fewer)."""
        chosen = None
        if len(self.ids) > size:
            chosen = np.sort(np.random.default_rng(seed).choice(self.ids, size, replace=False))
        parts = [
            vectors if chosen is None else vectors[np.isin(ids, chosen, assume_unique=True)]
            for ids, vectors in self.read()
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)


@dataclass(frozen=True)
class IndexKind:
    """factory: FAISS index_factory string; {nlist} (IVF cells), {pq_bytes} and {fast_scan_m} (4-bit
    sub-quantisers, one per 4 dimensions) are filled in. min_vectors: below this many vectors the index
    is exact flat (IVF needs enough points to train its cells; small galleries are exact anyway).
    nprobe: default IVF cells probed, given the cell count. gpu: whether FAISS can run it on a GPU.
    configure: sets what the factory string cannot say. wrapper: wraps the FAISS index to re-score
    its results (called with the index and the options). pretrain: trains what the index's own
    training would get wrong (called with the index and the training sample, before it)."""

    factory: str
    min_vectors: int = 1000
    nprobe: Callable[[int], int] = lambda nlist: 16
    gpu: bool = True
    configure: Callable[[faiss.Index, FaissIndex], None] | None = None
    wrapper: Callable[..., RerankIndex] | None = None
    pretrain: Callable[[faiss.Index, np.ndarray], None] | None = None


def _ivf(base: faiss.Index) -> faiss.IndexIVF | None:
    """The IVF index inside BASE (itself, or behind a PCA), or None."""
    try:
        return faiss.extract_index_ivf(base)
    except RuntimeError:
        return None


def _hnsw(base: faiss.Index, owner: FaissIndex) -> None:
    base.hnsw.efConstruction = 80
    base.hnsw.efSearch = owner.ef_search


def _by_residual(base: faiss.Index, owner: FaissIndex) -> None:
    # Codes of the offset from the cell's centre rank candidates better than codes of the vector: at
    # 100k, 16 candidates per neighbour then reached the recall 32 did without.
    _ivf(base).by_residual = True


def _no_polysemous(base: faiss.Index, owner: FaissIndex) -> None:
    # FAISS's IVF-PQ reorders its codebooks by default so that Hamming distances between codes mean
    # something, for a polysemous search we never run: it took 12.6 s of a 0.2 s training on 1,500
    # 64-d vectors (tests/perf/test_index_options.py), and ranks nothing differently.
    faiss.downcast_index(_ivf(base)).do_polysemous_training = False


def _uncentred_pca(base: faiss.Index, sample: np.ndarray) -> None:
    # FAISS's own PCA subtracts the mean, and centred vectors rank by another score (q·x less m·x);
    # it also decomposes a d x d matrix, over a minute at 3,840 dims. The principal axes of the
    # uncentred vectors keep inner products (less what the dropped axes hold); here they come from
    # the Gram matrix of at most PCA_SAMPLE vectors, in seconds.
    pca = faiss.downcast_VectorTransform(base.chain.at(0))
    rows = sample[np.random.default_rng(0).permutation(len(sample))[:PCA_SAMPLE]].astype(np.float64)
    values, vectors = np.linalg.eigh(rows @ rows.T)
    keep = np.argsort(-values)[: pca.d_out]
    axes = (rows.T @ vectors[:, keep]) / np.sqrt(np.maximum(values[keep], 1e-12))  # (d_in, d_out), orthonormal
    faiss.copy_array_to_vector(np.ascontiguousarray(axes.T, np.float32).ravel(), pca.A)
    faiss.copy_array_to_vector(np.zeros(pca.d_out, np.float32), pca.b)
    faiss.copy_array_to_vector(np.zeros(pca.d_in, np.float32), pca.mean)
    pca.is_trained = True


def _rerank(index: FaissIndex, **options) -> RerankIndex:
    from landmarks.index.rerank import RerankIndex

    return RerankIndex(index, **options)


def _rerank_coded(index: FaissIndex, **options) -> RerankIndex:
    from landmarks.index.rerank import CODED_MIN_CANDIDATES, RerankIndex

    return RerankIndex(index, coded=True, min_candidates=CODED_MIN_CANDIDATES, **options)


# What the fast-scan kinds share: cheap probes, so an eighth of the cells; residual codes; CPU only.
_FAST_SCAN = {"nprobe": lambda nlist: max(16, nlist // 8), "gpu": False, "configure": _by_residual}

KINDS: dict[str, IndexKind] = {
    "flat": IndexKind("Flat", min_vectors=0),
    "ivf": IndexKind("IVF{nlist},Flat"),
    "hnsw": IndexKind("HNSW32,Flat", gpu=False, configure=_hnsw),  # FAISS has no GPU HNSW
    # Exact search over 8-bit codes (per-dimension range, trained on the gallery): a quarter of flat's
    # memory, and on the dev protocol the same R@1 and mAP@100 within 0.001 (README, "Compact
    # vectors"). Trained at each build; fewer photos than this are stored flat.
    "sq8": IndexKind("SQ8", min_vectors=256, gpu=False),
    # A quarter of the memory; unit vectors lose little at 8 bits a dimension.
    "ivf-sq8": IndexKind("IVF{nlist},SQ8"),
    # IVF-PQ at this width would need float16 lookup tables on a GPU, untested.
    "ivf-pq": IndexKind("IVF{nlist},PQ{pq_bytes}", gpu=False, configure=_no_polysemous),
    # 4-bit codes, one per 4 dimensions: coarse alone, but the fast-scan kernel reads them from SIMD
    # registers, so thousands of candidates cost less than the exact scoring of a few hundred; its
    # probes are cheap, so an eighth of the cells (bench/index_scale.py). FAISS has no GPU fast scan.
    "ivf-pq-rerank": IndexKind("IVF{nlist},PQ{fast_scan_m}x4fs", wrapper=_rerank, **_FAST_SCAN),
    # For wide vectors at a million photos (the default model's 3,840 dims): the shortlist comes from
    # 4-bit codes, one per 2 of the vectors' first PCA_DIMS principal axes (64 bytes), and is re-scored
    # on 8-bit codes of the full vectors: a quarter of flat's memory. At 10k synthetic 3,840-d vectors,
    # one code per 4 axes reached recall@10 0.956 at 320 candidates, one per 2 axes 0.993, and 512 axes
    # no more than 256 (bench/index_scale.py's vectors).
    "pca-ivf-pq-sq8": IndexKind(
        "PCA{pca_dims},IVF{nlist},PQ{pca_fast_scan_m}x4fs", wrapper=_rerank_coded, pretrain=_uncentred_pca, **_FAST_SCAN
    ),
}
PCA_DIMS = 256
PCA_SAMPLE = 2048  # vectors the axes of "pca-ivf-pq-sq8" are fitted on
INDEX_KINDS = tuple(KINDS)
# What a new index uses: exact search at a quarter of flat's memory, with the answers of flat on the dev
# protocol (bench/quality.py --kinds flat sq8; README, "Compact vectors").
DEFAULT_KIND = "sq8"
# Codes trained on a gallery fit a gallery of about that size: one that has doubled (or halved) since,
# or that has grown past the size a kind starts training at, gets its codes trained anew.
RETRAIN_GROWTH = 2.0
CPU_ONLY_KINDS = tuple(name for name, kind in KINDS.items() if not kind.gpu)


def needs_training(kind: str, trained_size: int, size: int) -> bool:
    """Whether an index of KIND whose codes (or cells) were trained on TRAINED_SIZE vectors should be
    trained again now that it holds SIZE: it was stored flat for being small and no longer is, or it has
    grown or shrunk by RETRAIN_GROWTH since."""
    spec = KINDS[kind]
    if spec.factory == "Flat":
        return False
    if trained_size < spec.min_vectors:
        return size >= spec.min_vectors
    return size > trained_size * RETRAIN_GROWTH or size * RETRAIN_GROWTH < trained_size


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def vector_index(dim: int, kind: str = "flat", *, rerank: int | None = None, **options) -> FaissIndex | RerankIndex:
    """The index of a kind, wrapped as its row says. options: those of FaissIndex; rerank: the
    wrapper's (for "ivf-pq-rerank", candidates scored exactly per neighbour asked for)."""
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    index = FaissIndex(dim, kind, **options)
    wrapper = KINDS[kind].wrapper
    if wrapper is None:
        return index
    return wrapper(index, **({} if rerank is None else {"rerank": rerank}))


class FaissIndex:
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
    ) -> None:
        """nprobe: IVF cells searched (default: the kind's); nlist: IVF cells (default 4·√n); train_size:
        train codes and cells on at most this many vectors, drawn at random (default TRAIN_SAMPLE:
        k-means on every vector of a million-photo gallery takes hours on a few cores); pq_bytes: bytes per vector of "ivf-pq" (a
        divisor of dim; default about dim/16)."""
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
        self.dim, self.kind, self.spec = dim, kind, KINDS[kind]
        self.nprobe, self.ef_search = nprobe, ef_search
        self.nlist, self.train_size = nlist, train_size or TRAIN_SAMPLE
        self.pq_bytes = pq_bytes or next(m for m in range(max(1, dim // 16), 0, -1) if dim % m == 0)
        if "{pq_bytes}" in self.spec.factory and dim % self.pq_bytes:
            raise ValueError(f"pq_bytes={self.pq_bytes} must divide the dimension {dim}")
        self.use_gpu = gpu_available() if use_gpu is None else use_gpu
        self._lock = threading.RLock()
        self._index = self._empty(0)

    def _empty(self, expected: int) -> faiss.Index:
        if expected < self.spec.min_vectors or self.spec.factory == "Flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        nlist = self.nlist or max(16, int(4 * math.sqrt(expected)))
        pca_dims = min(PCA_DIMS, self.dim)
        factory = self.spec.factory.format(
            nlist=nlist,
            pq_bytes=self.pq_bytes,
            fast_scan_m=max(2, self.dim // 4),
            pca_dims=pca_dims,
            pca_fast_scan_m=max(2, pca_dims // 2),
        )
        base = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)  # already of its own class
        if (ivf := _ivf(base)) is not None:
            ivf.nprobe = min(self.nprobe or self.spec.nprobe(nlist), nlist)
        if self.spec.configure is not None:
            self.spec.configure(base, self)
        return faiss.IndexIDMap2(base)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def is_flat(self) -> bool:
        """Whether the index is exact flat (its kind, or a gallery too small to train on)."""
        return isinstance(faiss.downcast_index(self._index.index), faiss.IndexFlat)

    def rebuild(self, rows: VectorRows) -> None:
        """Replace the whole content (training IVF cells on the new vectors)."""
        self.swap(self.build(rows))

    def build(self, rows: VectorRows) -> faiss.Index:
        """A new FAISS index of these vectors (codes and cells trained on them), not yet live: see swap."""
        index = self.trained(rows)
        for ids, vectors in rows.read():
            index.add_with_ids(vectors, ids)
        return self.placed(index)

    def trained(self, rows: VectorRows) -> faiss.Index:
        """A new empty index for these vectors, its codes and cells trained on a sample of them (on CPU:
        see placed)."""
        index = self._empty(len(rows))
        base = faiss.downcast_index(index.index)
        if len(rows) and not base.is_trained:
            sample = rows.sample(self.train_size)
            if self.spec.pretrain is not None:
                self.spec.pretrain(base, sample)
            base.train(sample)
        return index

    def swap(self, index: faiss.Index) -> None:
        with self._lock:
            self._index = index

    def snapshot(self) -> faiss.Index:
        """The live FAISS index, for search_index (a later write may change it, a rebuild replaces it)."""
        with self._lock:
            return self._index

    def refill(self, rows: VectorRows) -> None:
        """Replace the whole content, keeping the trained cells and codebooks (no training)."""
        with self._lock:
            lists = faiss.clone_index(self._index.index)
            lists.reset()
            index = faiss.IndexIDMap2(lists)
            for ids, vectors in rows.read():
                index.add_with_ids(vectors, ids)
            self._index = index

    def tune(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change the live index's speed/recall trade-off (IVF cells probed, HNSW candidate list)."""
        with self._lock:
            self.nprobe = nprobe or self.nprobe
            self.ef_search = ef_search or self.ef_search
            base = faiss.downcast_index(self._index.index) if hasattr(self._index, "index") else self._index
            if nprobe and (ivf := _ivf(base)) is not None:
                ivf.nprobe = min(nprobe, ivf.nlist)  # more than every cell is not a wider search: FAISS fails
            if hasattr(base, "hnsw"):
                base.hnsw.efSearch = self.ef_search

    def placed(self, index: faiss.Index) -> faiss.Index:
        """INDEX on the GPU when this index uses one (a copy), else itself."""
        if not self.use_gpu or not self.spec.gpu:
            return index
        resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(resources, 0, index)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors, ids = np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        with self._lock:
            self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        with self._lock:
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (Q, k); missing neighbours have id -1."""
        return search_index(self.snapshot(), queries, k)

    def save(self, path: Path, index: faiss.Index | None = None) -> None:
        """Write the live index (or a snapshot of it) to path, atomically."""
        index = self.snapshot() if index is None else index
        if self.use_gpu and hasattr(faiss, "index_gpu_to_cpu") and self.spec.gpu:
            index = faiss.index_gpu_to_cpu(index)
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(index, str(tmp))
        tmp.replace(path)  # atomic: a crash never leaves a half-written index

    def read(self, path: Path) -> faiss.Index:
        """The index in the file, not yet live (see swap). Raises RuntimeError when it cannot be read."""
        return self.placed(faiss.read_index(str(path)))

    def load(self, path: Path) -> None:
        """Raises RuntimeError when the file cannot be read."""
        self.swap(self.read(path))


def index_ids(index: faiss.Index) -> np.ndarray:
    """Every id an id-mapped FAISS index holds codes for."""
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def search_index(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the k nearest of each query, each (Q, min(k, ntotal)); missing neighbours have id -1."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if index.ntotal == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    k = min(k, int(index.ntotal))
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
