"""The compressed IVF kinds and the IVF/HNSW options return the right neighbours on small clustered data."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from landmarks.index.vectors import VectorIndex

DIM = 64


@pytest.fixture(scope="module")
def data():
    """3,000 unit vectors in 60 clusters, and queries that are slightly moved copies of 50 of them."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((60, DIM))
    vectors = centres[rng.integers(0, 60, 3000)] + 0.35 * rng.standard_normal((3000, DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    targets = rng.choice(3000, 50, replace=False)
    queries = vectors[targets] + 0.01 * rng.standard_normal((50, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids = np.arange(3000, dtype=np.int64) * 7 + 5  # ids that are not positions
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    return ids, vectors, queries, ids[targets], ids[exact]


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)]))


# PQ at 16 bytes for 64 dimensions (2 bits a dimension) ranks coarsely; chance would give 0.003.
@pytest.mark.parametrize("kind, top1_floor, recall_floor", [("ivf", 0.95, 0.99), ("ivf-sq8", 0.95, 0.95), ("ivf-pq", 0.6, 0.4), ("hnsw", 0.95, 0.99)])
def test_each_kind_finds_the_moved_copy_and_most_exact_neighbours(data, kind, top1_floor, recall_floor):
    ids, vectors, queries, target_ids, exact = data
    index = VectorIndex(DIM, kind, use_gpu=False, nlist=32, train_size=1500, pq_bytes=16)
    index.rebuild(ids, vectors)
    index.tune(nprobe=32, ef_search=256)  # every cell: IVF misses nothing but what its codes lose
    scores, found = index.search(queries, 10)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    assert np.mean(found[:, 0] == target_ids) >= top1_floor
    assert recall_at_10(found, exact) >= recall_floor


def test_ivf_options_shape_the_index(data):
    ids, vectors, queries, _, exact = data
    index = VectorIndex(DIM, "ivf", use_gpu=False, nlist=40, train_size=1000, nprobe=1)
    index.rebuild(ids, vectors)
    ivf = faiss.extract_index_ivf(index._index)
    assert ivf.nlist == 40 and ivf.nprobe == 1
    narrow = recall_at_10(index.search(queries, 10)[1], exact)
    index.tune(nprobe=40)
    assert recall_at_10(index.search(queries, 10)[1], exact) == 1.0 > narrow


def test_compressed_kinds_survive_save_and_load(data, tmp_path):
    ids, vectors, queries, *_ = data
    for kind in ("ivf-sq8", "ivf-pq"):
        index = VectorIndex(DIM, kind, use_gpu=False, nlist=32, pq_bytes=16)
        index.rebuild(ids, vectors)
        index.save(tmp_path / f"{kind}.faiss")
        loaded = VectorIndex(DIM, kind, use_gpu=False)
        loaded.load(tmp_path / f"{kind}.faiss")
        np.testing.assert_array_equal(loaded.search(queries, 5)[1], index.search(queries, 5)[1])


def test_pq_bytes_must_divide_the_dimension():
    with pytest.raises(ValueError, match="divide"):
        VectorIndex(DIM, "ivf-pq", pq_bytes=7)
    assert VectorIndex(1280, "ivf-pq").pq_bytes == 80
