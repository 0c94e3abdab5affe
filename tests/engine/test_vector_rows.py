"""Indexes are built from vectors read a chunk at a time: a million of the default model's 3,840-d vectors
are 15 GB, so neither the store nor the index may ever hold them all at once (bench/million.py)."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

from landmarks.gallery import Landmark
from landmarks.index import vectors as vectors_module
from landmarks.index.store import GalleryStore
from landmarks.index.vectors import VectorRows, vector_index


def unit_vectors(count: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, count // 50), dim), dtype=np.float32)
    vectors = centres[rng.integers(0, len(centres), count)]
    vectors += 0.3 * rng.standard_normal((count, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def recorded(rows: VectorRows) -> tuple[VectorRows, list[int]]:
    """ROWS, noting the size of every chunk read from them."""
    sizes: list[int] = []

    def read():
        for ids, chunk in rows.read():
            sizes.append(len(chunk))
            yield ids, chunk

    return VectorRows(rows.ids, rows.dim, read), sizes


def test_rows_of_an_array_come_in_chunks_with_their_ids(monkeypatch):
    monkeypatch.setattr(vectors_module, "CHUNK_ROWS", 400)
    vectors = unit_vectors(1000, 8)
    ids = np.arange(1000, dtype=np.int64) * 3 + 7
    rows, sizes = recorded(VectorRows.of(ids, vectors))
    read = list(rows.read())
    assert sizes == [400, 400, 200]
    np.testing.assert_array_equal(np.concatenate([i for i, _ in read]), ids)
    np.testing.assert_array_equal(np.concatenate([v for _, v in read]), vectors)
    with pytest.raises(ValueError, match="999 ids for 1000 vectors"):
        VectorRows.of(ids[:-1], vectors)


def test_a_sample_is_drawn_from_every_chunk_and_is_whole_when_small(monkeypatch):
    monkeypatch.setattr(vectors_module, "CHUNK_ROWS", 100)
    vectors = unit_vectors(1000, 8)
    rows = VectorRows.of(np.arange(1000), vectors)
    sample = rows.sample(250)
    assert sample.shape == (250, 8)
    positions = [int(np.flatnonzero((vectors == row).all(axis=1))[0]) for row in sample]
    assert len(set(positions)) == 250  # distinct rows of the source
    assert len({p // 100 for p in positions}) == 10  # from every chunk, not the first ones read
    np.testing.assert_array_equal(rows.sample(250), sample)  # seeded: a rebuild trains on the same rows
    np.testing.assert_array_equal(rows.sample(5000), vectors)


@pytest.mark.parametrize("kind", ["sq8", "ivf-sq8", "ivf-pq-rerank", "pca-ivf-pq-sq8"])
def test_a_chunked_build_answers_as_a_whole_one(monkeypatch, kind):
    """The same vectors read in 7 chunks or in one give an index with the same answers."""
    vectors = unit_vectors(3000, 64, seed=1)
    ids = np.arange(3000, dtype=np.int64) * 5 + 1
    queries = vectors[::100]
    whole = vector_index(64, kind, use_gpu=False, nlist=32)
    whole.rebuild(VectorRows.of(ids, vectors))
    monkeypatch.setattr(vectors_module, "CHUNK_ROWS", 450)
    chunked = vector_index(64, kind, use_gpu=False, nlist=32)
    rows, sizes = recorded(VectorRows.of(ids, vectors))
    chunked.rebuild(rows)
    assert max(sizes) == 450
    for index in (whole, chunked):
        index.tune(nprobe=32)
    expected_scores, expected_ids = whole.search(queries, 10)
    scores, found = chunked.search(queries, 10)
    np.testing.assert_array_equal(found, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    np.testing.assert_array_equal(found[:, 0], ids[::100])  # each query finds itself


def peak_resident() -> int:
    """The process's peak resident memory since the last reset, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def test_a_wide_gallery_is_built_without_holding_its_vectors():
    """A gallery of 3,840-d vectors (the default model's), made a chunk at a time as the store reads them,
    builds the million-photo kind with less memory than its float32 vectors take: a chunk, the training
    sample and the 8-bit codes (a quarter), never the vectors themselves."""
    count, dim, chunk = 20_000, 3840, 1024

    def read():
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            yield np.arange(start, start + size), unit_vectors(size, dim, seed=start)

    rows = VectorRows(np.arange(count), dim, read)
    index = vector_index(dim, "pca-ivf-pq-sq8", use_gpu=False, nlist=64, train_size=1024)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident memory
    before = peak_resident()
    index.rebuild(rows)
    grown = peak_resident() - before
    float_bytes = count * dim * 4  # 307 MB; holding them, the build would grow by that plus the codes (77 MB)
    assert grown < 0.8 * float_bytes, (
        f"the build grew by {grown / 2**20:.0f} MB for {float_bytes / 2**20:.0f} MB of vectors"
    )
    _, found = index.search(unit_vectors(chunk, dim, seed=0)[:20], 1)
    np.testing.assert_array_equal(found[:, 0], np.arange(20))


def test_the_store_reads_the_asked_ids_a_chunk_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr("landmarks.index.store.CHUNK_ROWS", 4)
    store = GalleryStore(tmp_path / "gallery.sqlite")
    store.upsert_landmarks([Landmark("a", "A")])
    vectors = unit_vectors(10, 8)
    ids = store.add_images(("a", f"photo-{n}", f"/p/{n}.jpg", 1, 0.0, vectors[n]) for n in range(10))
    asked = np.asarray([ids[n] for n in (0, 2, 3, 5, 6, 7, 9)], np.int64)  # 1, 4 and 8 are not asked for
    rows, sizes = recorded(store.vector_rows(8, asked))
    store.delete_images([ids[5]])  # gone after the ids were taken: not read, never a wrong vector
    read = list(rows.read())
    assert sizes == [3, 3]
    np.testing.assert_array_equal(np.concatenate([i for i, _ in read]), [ids[n] for n in (0, 2, 3, 6, 7, 9)])
    np.testing.assert_array_equal(np.concatenate([v for _, v in read]), vectors[[0, 2, 3, 6, 7, 9]])
    assert list(store.vector_rows(8, np.zeros(0, np.int64)).read()) == []
    store.close()
