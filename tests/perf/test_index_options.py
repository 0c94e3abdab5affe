"""The compressed IVF kinds and the IVF/HNSW options return the right neighbours on small clustered data."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from landmarks.index.rerank import FullVectors
from landmarks.index.vectors import INDEX_KINDS, VectorRows, needs_training, vector_index

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


# Each kind's floors (top-1 on the moved copy, recall@10); a kind added to vectors.KINDS needs its row.
# PQ at 16 bytes for 64 dimensions (2 bits a dimension) ranks coarsely; chance would give 0.003.
# ivf-pq-rerank scores its candidates on the full vectors: what its 4-bit codes lose, the second pass restores.
FLOORS = {
    "flat": (1.0, 1.0),
    "ivf": (0.95, 0.99),
    "ivf-sq8": (0.95, 0.95),
    "ivf-pq": (0.6, 0.4),
    "ivf-pq-rerank": (1.0, 0.99),
    "hnsw": (0.95, 0.99),
    "sq8": (1.0, 0.95),
    "pca-ivf-pq-sq8": (1.0, 0.95),
}
# How far each re-ranking kind's scores may be from the exact inner product: none for float32 full
# vectors; 8-bit codes of a dimension's range in 255 steps move a unit vector's score by about 1e-3.
RERANK_TOLERANCE = {"ivf-pq-rerank": 1e-5, "pca-ivf-pq-sq8": 5e-3}


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_each_kind_finds_the_moved_copy_and_most_exact_neighbours(data, kind):
    assert kind in FLOORS, f"give the new index kind {kind!r} its floors in FLOORS"
    top1_floor, recall_floor = FLOORS[kind]
    ids, vectors, queries, target_ids, exact = data
    index = vector_index(DIM, kind, use_gpu=False, nlist=32, train_size=1500, pq_bytes=16)
    index.rebuild(VectorRows.of(ids, vectors))
    index.tune(nprobe=32, ef_search=256)  # every cell: IVF misses nothing but what its codes lose
    scores, found = index.search(queries, 10)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    assert np.mean(found[:, 0] == target_ids) >= top1_floor
    assert recall_at_10(found, exact) >= recall_floor


def test_ivf_options_shape_the_index(data):
    ids, vectors, queries, _, exact = data
    index = vector_index(DIM, "ivf", use_gpu=False, nlist=40, train_size=1000, nprobe=1)
    index.rebuild(VectorRows.of(ids, vectors))
    ivf = faiss.extract_index_ivf(index._index)
    assert ivf.nlist == 40 and ivf.nprobe == 1
    narrow = recall_at_10(index.search(queries, 10)[1], exact)
    index.tune(nprobe=40)
    assert recall_at_10(index.search(queries, 10)[1], exact) == 1.0 > narrow


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_each_kind_survives_save_and_load(data, tmp_path, kind):
    ids, vectors, queries, *_ = data
    index = vector_index(DIM, kind, use_gpu=False, nlist=32, pq_bytes=16)
    index.rebuild(VectorRows.of(ids, vectors))
    index.save(tmp_path / f"{kind}.faiss")
    loaded = vector_index(DIM, kind, use_gpu=False)
    loaded.load(tmp_path / f"{kind}.faiss")
    np.testing.assert_array_equal(loaded.search(queries, 5)[1], index.search(queries, 5)[1])


@pytest.mark.parametrize("kind", sorted(RERANK_TOLERANCE))
def test_rerank_scores_are_the_full_vectors_and_follow_removals(data, tmp_path, kind):
    ids, vectors, queries, target_ids, _ = data
    index = vector_index(DIM, kind, use_gpu=False, nlist=32)
    index.rebuild(VectorRows.of(ids, vectors))
    assert faiss.extract_index_ivf(index.inner._index).nprobe == 16  # an eighth of the cells, at least 16
    scores, found = index.search(queries, 5)
    by_id = dict(zip(ids.tolist(), vectors, strict=True))
    exact = np.array([[by_id[i] @ q for i in row] for row, q in zip(found.tolist(), queries, strict=True)])
    # The full vectors' inner products (the codes' would be off by far more), and for the PCA kind
    # uncentred ones: a centred projection ranks by q·x less m·x.
    np.testing.assert_allclose(scores, exact, atol=RERANK_TOLERANCE[kind])
    assert np.mean(found[:, 0] == target_ids) == 1.0

    # Removed ids are never returned, also after a save and load; added again, they are found once.
    index.remove(target_ids[:10])
    assert len(index) == len(ids) - 10
    index.save(tmp_path / "v.faiss")
    loaded = vector_index(DIM, kind, use_gpu=False)
    loaded.load(tmp_path / "v.faiss")
    for live in (index, loaded):
        _, after = live.search(queries[:10], 5)
        assert not set(after.ravel()) & set(target_ids[:10].tolist())
        assert np.all(after >= 0)
    index.add(target_ids[:10], vectors[np.searchsorted(ids, target_ids[:10])])
    _, again = index.search(queries[:10], 5)
    assert again[:, 0].tolist() == target_ids[:10].tolist()
    assert all(len(set(row)) == 5 for row in again.tolist())

    # Removing over a tenth of the gallery re-encodes the rest; the remaining targets are still found.
    gone = np.setdiff1d(ids, target_ids)[:400]
    index.remove(gone)
    assert len(index) == len(ids) - 400 and len(index.inner) == len(index)
    assert index.search(queries, 1)[1][:, 0].tolist() == target_ids.tolist()

    # A missing or stale file of full vectors is a damaged cache (RuntimeError: the gallery rebuilds it).
    index.save(tmp_path / "v.faiss")
    (tmp_path / "v.full.npz").unlink()
    with pytest.raises(RuntimeError, match="missing"):
        vector_index(DIM, kind, use_gpu=False).load(tmp_path / "v.faiss")


@pytest.mark.parametrize(
    ("kind", "trained", "size", "due"),
    [
        ("flat", 10, 1_000_000, False),  # nothing to train
        ("sq8", 100, 255, False),  # still stored flat
        ("sq8", 100, 256, True),  # now large enough for codes
        ("sq8", 1000, 2000, False),
        ("sq8", 1000, 2001, True),  # doubled since training
        ("sq8", 1000, 499, True),  # halved
        ("ivf-pq-rerank", 500, 1000, True),  # IVF trains from 1,000 vectors
    ],
)
def test_codes_are_trained_again_when_the_gallery_outgrows_them(kind, trained, size, due):
    assert needs_training(kind, trained, size) is due


def test_pq_bytes_must_divide_the_dimension():
    with pytest.raises(ValueError, match="divide"):
        vector_index(DIM, "ivf-pq", pq_bytes=7)
    assert vector_index(1280, "ivf-pq").pq_bytes == 80


def test_the_command_line_offers_every_index_kind():
    from cli.index import INDEX_KINDS as offered
    from landmarks.index import INDEX_KINDS

    assert offered == INDEX_KINDS


def test_full_vectors_keep_one_vector_per_id_through_adds_and_removals(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((6, 4)).astype(np.float32)
    full = FullVectors(4)
    full.add(np.array([30, 10, 20]), vectors[:3])
    full.add(np.array([20, 40]), vectors[3:5])  # 20 again: its new vector
    full.remove(np.array([10, 99]))  # 99 was never there
    assert sorted(full.ids.tolist()) == [20, 30, 40] and len(full) == 3
    np.testing.assert_array_equal(full.decoded(full.rows(np.array([20, 30, 40]))), vectors[[3, 0, 4]])
    with pytest.raises(KeyError):
        full.rows(np.array([10]))
    full.save(tmp_path / "full.npz")
    loaded = FullVectors.load(tmp_path / "full.npz", 4)
    np.testing.assert_array_equal(loaded.decoded(loaded.rows(np.array([40, 30]))), vectors[[4, 0]])
    with pytest.raises(RuntimeError, match="shape"):
        FullVectors.load(tmp_path / "full.npz", 8)
    with pytest.raises(RuntimeError, match="uint8"):  # float32 rows are not 8-bit codes
        FullVectors.load(tmp_path / "full.npz", 4, coded=True)


def test_coded_full_vectors_keep_each_value_within_half_a_step(data, tmp_path):
    ids, vectors, *_ = data
    full = FullVectors(DIM, coded=True)
    full.train(VectorRows.of(np.arange(2000), vectors[:2000]))
    full.add(ids, vectors)  # a thousand rows outside the trained sample: clipped to its range at worst
    assert full._data.dtype == np.uint8 and full._data.nbytes == len(ids) * DIM
    step = full.span / 255
    decoded = full.decoded(full.rows(ids[:2000]))
    assert np.all(np.abs(decoded - vectors[:2000]) <= step / 2 + 1e-6)
    full.save(tmp_path / "coded.npz")
    loaded = FullVectors.load(tmp_path / "coded.npz", DIM, coded=True)
    np.testing.assert_array_equal(loaded.decoded(loaded.rows(ids)), full.decoded(full.rows(ids)))
