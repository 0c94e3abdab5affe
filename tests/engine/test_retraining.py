"""A new index gets the default compact kind, and its codes are trained again as its gallery grows."""

from __future__ import annotations

import numpy as np

from landmarks.gallery import Landmark
from landmarks.index import GalleryIndex
from landmarks.index.vectors import DEFAULT_KIND, KINDS

DIM = 32


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def open_index(directory) -> GalleryIndex:
    return GalleryIndex.open(directory, fingerprint="test-model", model="test-model", dim=DIM)


def add(index: GalleryIndex, vectors: np.ndarray, first: int) -> list[int]:
    rows = [
        ("somewhere", f"upload/somewhere/{first + n}.jpg", f"/nowhere/{first + n}.jpg", 1, 0.0, vector)
        for n, vector in enumerate(vectors)
    ]
    return index.add([Landmark("somewhere", "Somewhere")], rows)


def test_uploads_past_the_flat_size_train_the_codes_and_a_doubled_gallery_trains_them_again(tmp_path):
    threshold = KINDS[DEFAULT_KIND].min_vectors
    vectors = unit_vectors(4 * threshold + 10, seed=0)
    index = open_index(tmp_path)
    try:
        assert index.info.kind == DEFAULT_KIND == "sq8"
        add(index, vectors[: threshold - 1], 0)
        assert index.vectors.is_flat  # too few photos to train codes on: stored exact
        ids = add(index, vectors[threshold - 1 : threshold + 1], threshold - 1)
        assert not index.vectors.is_flat  # the upload that crossed the size trained them
        assert index.store.get_meta("trained_size") == str(threshold + 1)
        top = index.search(vectors[threshold : threshold + 1], 1)[0][0]
        assert top.image_id == ids[-1] and top.score > 0.99  # 8-bit codes: nearly, not exactly, 1
        # Grown to more than twice what the codes were trained on: trained again, on everything.
        add(index, vectors[threshold + 1 : 2 * threshold + 2], threshold + 1)
        assert index.store.get_meta("trained_size") == str(threshold + 1)
        add(index, vectors[2 * threshold + 2 :], 2 * threshold + 2)
        assert index.store.get_meta("trained_size") == str(len(vectors))
    finally:
        index.close()
    reopened = open_index(tmp_path)
    try:
        assert len(reopened) == len(vectors) and not reopened.vectors.is_flat
    finally:
        reopened.close()


def test_an_index_keeps_the_kind_it_was_built_with(tmp_path):
    index = GalleryIndex.open(tmp_path, fingerprint="test-model", model="test-model", dim=DIM, kind="flat")
    index.close()
    again = open_index(tmp_path)  # no kind asked for: the recorded one, not the default
    try:
        assert again.info.kind == "flat"
    finally:
        again.close()
