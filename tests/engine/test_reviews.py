"""Reviews of gallery photos in the index (landmarks.index.store, GalleryIndex.review/restore): an
excluded photo leaves matching at once and after a restart, survives re-embedding, and comes back
whole; nothing is deleted."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from landmarks.index import GalleryIndex
from landmarks.index.store import Review


@pytest.fixture
def index(lite_index, tmp_path):
    opened = GalleryIndex.open_recorded(shutil.copytree(lite_index, tmp_path / "index"))
    yield opened
    opened.close()


def nearest_ids(index: GalleryIndex, vector: np.ndarray, k: int = 100) -> set[int]:
    return {neighbour.image_id for neighbour in index.search(vector[None, :], k)[0]}


def test_an_excluded_photo_is_never_matched_and_comes_back_on_restore(index):
    ids, vectors, labels = index.store.vectors(index.vectors.dim)
    total = len(ids)
    target, vector, landmark = int(ids[3]), vectors[3], labels[3]
    source = index.store.image(target).source
    assert target in nearest_ids(index, vector)

    index.review([Review(source, "excluded", "no_landmark", "a table, not the landmark")])
    assert target not in nearest_ids(index, vector)
    assert len(index) == index.store.count() == total - 1
    assert len(index.store.images()) == total  # kept in the store
    assert index.store.image_counts()[landmark] == labels.count(landmark) - 1
    assert index.store.excluded_counts() == {landmark: 1}
    [(record, review)] = index.store.exclusions_of(landmark)
    assert (record.image_id, review.reason, review.detail) == (target, "no_landmark", "a table, not the landmark")

    # Re-embedding the photo (an `index build` after its file changed) keeps it out of matching.
    index.add([], [(landmark, source, record.path, record.size, record.mtime + 1, vector)])
    assert target not in nearest_ids(index, vector) and len(index) == total - 1
    replaced = index.store.image_ids_by_source([source])[source]
    assert replaced not in nearest_ids(index, vector)

    # Opened again (a restart), it stays out of matching until its exclusion is lifted.
    index.save()
    reopened = GalleryIndex.open_recorded(index.directory)
    try:
        assert len(reopened) == total - 1 and replaced not in nearest_ids(reopened, vector)
        assert reopened.restore() == 1
        assert replaced in nearest_ids(reopened, vector) and len(reopened) == total
        assert reopened.store.excluded_counts() == {}
    finally:
        reopened.close()


def test_kept_verdicts_survive_a_restore_and_deleted_photos_take_their_review(index):
    records = sorted(index.store.images().values(), key=lambda r: r.image_id)
    first, second = records[0], records[1]
    index.review([Review(first.source, "kept", "operator"), Review(second.source, "excluded", "operator")])
    index.review([Review("no/such/photo.jpg", "excluded", "operator")])  # ignored: not in the gallery
    assert set(index.store.reviews()) == {first.source, second.source}
    assert index.restore() == 1  # the exclusion lifted, the person's "kept" stays
    assert set(index.store.reviews()) == {first.source}
    index.remove([first.image_id])
    assert index.store.reviews() == {}
