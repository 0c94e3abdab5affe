"""The Milvus backend (through Milvus Lite) against FAISS: same neighbours, writes, resync, migration."""

from __future__ import annotations

import fcntl
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from landmarks.index import GalleryIndex, MilvusVectorIndex, Neighbour
from landmarks.index.gallery_index import MILVUS_FILE, STORE_FILE
from landmarks.index.store import GalleryStore
from landmarks.index.vectors import VectorRows
from tests.support import run_cli

TOP_K = 10
# FAISS and Milvus Lite sum the same products in different orders: scores agree to ~1e-6.
TIE = 1e-5


def copy_index(source: Path, target: Path) -> Path:
    """A private index (SQLite only: each backend fills itself from it), via SQLite's backup API
    so a copy taken while another process has the dev index open is still consistent."""
    target.mkdir(parents=True)
    src, dst = sqlite3.connect(source / STORE_FILE), sqlite3.connect(target / STORE_FILE)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


def open_index(directory: Path, **kwargs) -> GalleryIndex:
    store = GalleryStore(directory / STORE_FILE)
    meta = {key: store.get_meta(key) for key in ("fingerprint", "model", "dim")}
    store.close()
    return GalleryIndex.open(
        directory, fingerprint=meta["fingerprint"], model=meta["model"], dim=int(meta["dim"]), create=False, **kwargs
    )


def search(directory: Path, queries: np.ndarray, **kwargs) -> tuple[str, list[list[Neighbour]]]:
    index = open_index(directory, **kwargs)
    try:
        return index.backend, index.search(queries, TOP_K)
    finally:
        index.close()


@pytest.fixture(scope="module")
def gallery(dev_index) -> dict[int, np.ndarray]:
    store = GalleryStore(dev_index / STORE_FILE)
    ids, vectors, _ = store.vectors(int(store.get_meta("dim")))
    store.close()
    return dict(zip(ids.tolist(), vectors, strict=True))


@pytest.fixture(scope="module")
def queries(dev_query_vectors, gallery) -> np.ndarray:
    """Every protocol query and distractor, embedded by the model that built the index, then every
    gallery vector (each one's own photo is its nearest neighbour)."""
    return np.concatenate([*dev_query_vectors, np.stack(list(gallery.values()))])


def assert_same_neighbours(
    expected: list[list[Neighbour]], got: list[list[Neighbour]], queries: np.ndarray, gallery: dict[int, np.ndarray]
) -> None:
    """The same top-k ids in the same order; two photos may trade places only where their scores
    tie, which is checked against the exact score of the photo each backend put there."""
    assert len(got) == len(expected) == len(queries)
    for row, (want, have, query) in enumerate(zip(expected, got, queries, strict=True)):
        assert len(have) == len(want) == TOP_K, f"query {row}"
        assert len({n.image_id for n in have}) == TOP_K, f"query {row}: a photo returned twice"
        for rank, (a, b) in enumerate(zip(want, have, strict=True)):
            assert abs(a.score - b.score) < TIE, f"query {row} rank {rank}: score {b.score} instead of {a.score}"
            if a.image_id != b.image_id:
                exact = float(gallery[b.image_id] @ query)
                assert abs(exact - a.score) < TIE, (
                    f"query {row} rank {rank}: photo {b.image_id} instead of {a.image_id}, not a tie"
                )
            else:
                assert a.landmark_id == b.landmark_id


def test_faiss_and_milvus_lite_return_the_same_top10_on_the_dev_gallery(dev_index, tmp_path, gallery, queries):
    directory = copy_index(dev_index, tmp_path / "index")
    # Exact search on both, so that the scores agree to float rounding (8-bit codes are trained
    # differently by each).
    backend, expected = search(directory, queries, kind="flat")
    assert backend == "faiss"  # the default
    backend, got = search(directory, queries, backend="milvus")
    assert backend == "milvus"
    assert (directory / MILVUS_FILE).is_dir()
    assert_same_neighbours(expected, got, queries, gallery)


@pytest.mark.parametrize("backend", ["faiss", "milvus"])
def test_add_and_remove_on_each_backend_survive_a_reopen(dev_index, tmp_path, backend):
    directory = copy_index(dev_index, tmp_path / "index")
    index = open_index(directory, backend=backend)
    ids, vectors, labels = index.store.vectors(index.vectors.dim)
    size, removed, vector, landmark = len(index), int(ids[7]), vectors[7].copy(), labels[7]
    try:
        index.remove([removed])
        assert len(index) == size - 1
        assert removed not in [n.image_id for n in index.search(vector[None], TOP_K)[0]]
        [added] = index.add([], [(landmark, "upload/test/again.jpg", "/nowhere/again.jpg", 1, 0.0, vector)])
        assert len(index) == size
        top = index.search(vector[None], 1)[0][0]
        assert (top.image_id, top.landmark_id) == (added, landmark) and top.score > 0.999
        index.save()
    finally:
        index.close()

    reopened = open_index(directory)  # no backend given: the one the index was moved to
    try:
        assert reopened.backend == backend and len(reopened) == size
        found = [n.image_id for n in reopened.search(vector[None], TOP_K)[0]]
        assert found[0] == added and removed not in found
    finally:
        reopened.close()


def test_milvus_is_refilled_from_sqlite_when_their_counts_differ(dev_index, tmp_path):
    directory = copy_index(dev_index, tmp_path / "index")
    index = open_index(directory, backend="milvus")
    ids, vectors, _ = index.store.vectors(index.vectors.dim)
    index.close()
    store = GalleryStore(directory / STORE_FILE)
    store.delete_images(ids[:5].tolist())  # SQLite changes behind Milvus's back, as in a crash between the two
    store.close()

    index = open_index(directory)
    try:
        assert index.backend == "milvus" and len(index) == len(ids) - 5
        _, found = index.vectors.search(vectors[:5], 1)  # Milvus itself, not filtered by the labels
        assert not set(found[:, 0].tolist()) & set(ids[:5].tolist())
    finally:
        index.close()


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "sq8", "ivf-sq8"])
def test_milvus_index_kinds_find_the_nearest_neighbours(tmp_path, kind):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 64))
    vectors = (centres[rng.integers(0, 50, 3000)] + 0.1 * rng.normal(size=(3000, 64))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = MilvusVectorIndex(str(tmp_path / "kinds.db"), f"kinds_{kind}", 64, kind)
    try:
        index.rebuild(VectorRows.of(np.arange(3000) + 10, vectors))
        assert len(index) == 3000
        scores, ids = index.search(vectors[:100], 5)
        assert ids.shape == scores.shape == (100, 5)
        assert np.mean(ids[:, 0] == np.arange(100) + 10) >= 0.95
        assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    finally:
        index.close()


def lite_locked(path: Path) -> bool:
    """Whether a Milvus Lite server holds the database (its advisory flock on DB/LOCK)."""
    with (path / "LOCK").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def test_a_lite_database_stays_open_until_its_last_index_closes(tmp_path):
    # The API's hot reload opens the new index before it closes the old one, in one process.
    path = tmp_path / "shared.db"
    first = MilvusVectorIndex(str(path), "first", 4)
    second = MilvusVectorIndex(str(path), "second", 4)
    second.rebuild(VectorRows.of(np.arange(3), np.eye(3, 4, dtype=np.float32)))
    first.close()
    assert second.search(np.eye(1, 4, dtype=np.float32), 1)[1][0, 0] == 0
    assert lite_locked(path)
    second.close()
    assert not lite_locked(path)  # another process (`landmarks index build`) may open it now


def test_migrate_round_trip_through_the_cli_keeps_the_search_results(dev_index, tmp_path, gallery, queries):
    directory = copy_index(dev_index, tmp_path / "index")
    _, before = search(directory, queries, kind="flat")  # exact on both sides: see the test above

    result = run_cli("index", "migrate", str(directory), "--to", "milvus")
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"{len(gallery)} vectors in Milvus" in result.stdout
    backend, on_milvus = search(directory, queries)  # the index remembers where its vectors are
    assert backend == "milvus"
    assert_same_neighbours(before, on_milvus, queries, gallery)

    result = run_cli("index", "migrate", str(directory), "--to", "faiss")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "dropped Milvus collection" in result.stdout
    backend, after = search(directory, queries)
    assert backend == "faiss"
    assert [[n.image_id for n in row] for row in after] == [[n.image_id for n in row] for row in before]

    from milvus_lite.server_manager import server_manager_instance
    from pymilvus import MilvusClient

    lite = str(directory / MILVUS_FILE)
    client = MilvusClient(lite)
    try:
        assert client.list_collections() == []  # leaving Milvus left nothing behind there
    finally:
        client.close()
        server_manager_instance.release_server(lite)


def test_an_unreachable_milvus_leaves_the_index_on_its_old_backend(dev_index, tmp_path, queries):
    directory = copy_index(dev_index, tmp_path / "index")
    with pytest.raises(RuntimeError, match="cannot open Milvus at http://127.0.0.1:1"):
        open_index(directory, backend="milvus", milvus_uri="http://127.0.0.1:1")
    backend, found = search(directory, queries[:3])
    assert backend == "faiss" and all(len(row) == TOP_K for row in found)
