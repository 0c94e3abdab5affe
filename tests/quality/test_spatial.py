"""Spatial verification on real dev photos: local features and RANSAC inliers (the re-ranking they drive: tests/search/test_searcher.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from landmarks.images import decode_image
from landmarks.quality.local_features import LOCAL_FEATURES_FILE, LocalFeatureParams, LocalFeatureStore, extract
from landmarks.quality.spatial import count_inliers
from landmarks.search import SearchConfig
from tests.support import require_dev_data

# A Taj Mahal query, another Taj Mahal photo from a similar viewpoint, and a photo of the Victoria
# Memorial (white marble, a central dome among smaller ones) that the default global embedding finds
# more similar than the true match (cosine 0.758 against 0.740).
QUERY = "taj_mahal/005.jpg"  # a protocol query (index 5)
TRUE_MATCH = "taj_mahal/029.jpg"
LOOKALIKE = "victoria_memorial/032.jpg"
MIN_INLIERS = SearchConfig().spatial_min_inliers


def photo(relative: str):
    return decode_image(require_dev_data() / "images" / relative)


@pytest.fixture(scope="module")
def extractor(default_extractor):
    return default_extractor


def test_inliers_separate_the_true_landmark_from_a_lookalike(extractor):
    query, true_match, lookalike = (photo(p) for p in (QUERY, TRUE_MATCH, LOOKALIKE))
    vectors = extractor.embed_images([query, true_match, lookalike])
    # The embedding alone prefers the wrong landmark: the reason to verify.
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]
    features = [extract(image) for image in (query, true_match, lookalike)]
    assert all(len(f) > 100 for f in features)
    assert features[0].descriptors.dtype == np.uint8 and features[0].descriptors.shape[1] == 128
    right = count_inliers(features[0], features[1])
    wrong = count_inliers(features[0], features[2])
    assert right >= 15, right
    assert wrong < MIN_INLIERS, wrong
    assert right > 3 * max(wrong, 1)


def test_a_shared_watermark_strip_verifies_nothing():
    # Two India Gate stock photos whose only common points are the agency's caption strip at the
    # bottom: before overlay suppression they "verified" with 51 inliers.
    a, b = extract(photo("india_gate/025.jpg")), extract(photo("india_gate/026.jpg"))
    assert count_inliers(a, b) < MIN_INLIERS


def test_orb_features_are_binary_and_verify_too():
    params = LocalFeatureParams(kind="orb", max_features=1500)
    query, true_match, lookalike = (extract(photo(p), params) for p in (QUERY, TRUE_MATCH, LOOKALIKE))
    assert query.descriptors.shape[1] == 32 and query.kind == "orb"
    # Binary descriptors verify the same landmark and not the look-alike (24 and 10 inliers here).
    right, wrong = count_inliers(query, true_match), count_inliers(query, lookalike)
    assert right >= MIN_INLIERS, right
    assert right >= 2 * wrong, (right, wrong)


def test_feature_store_round_trip(tmp_path):
    store = LocalFeatureStore(tmp_path / LOCAL_FEATURES_FILE)
    features = extract(photo(QUERY))
    store.put([(7, "taj_mahal/015.jpg", 1.0, LocalFeatureParams().key, features)])
    back = store.get_many([7, 8], LocalFeatureParams().key)
    assert list(back) == [7]
    assert np.array_equal(back[7].descriptors, features.descriptors) and np.allclose(back[7].xy, features.xy)
    assert store.get_many([7], LocalFeatureParams(kind="orb").key) == {}  # other parameters: not a match
    store.delete([7])
    assert store.get_many([7], LocalFeatureParams().key) == {}
    store.close()


def test_rebuild_keeps_local_features_in_step_with_the_gallery(tmp_path, extractor):
    """The build hook: new photos get features, removed photos lose them."""
    from landmarks.evaluation.protocol import materialize_gallery
    from landmarks.gallery import scan_gallery
    from landmarks.index import build_index

    root = require_dev_data() / "images"
    photos = [(root / "taj_mahal" / f"{i:03d}.jpg", "taj_mahal") for i in (1, 2, 3)]
    gallery = materialize_gallery(photos, tmp_path / "gallery")
    build_index(scan_gallery(gallery), extractor, tmp_path / "index", progress=False)
    store = LocalFeatureStore(tmp_path / "index" / LOCAL_FEATURES_FILE)
    assert len(store.entries()) == 3
    (gallery / "taj_mahal" / "003.jpg").unlink()
    build_index(scan_gallery(gallery), extractor, tmp_path / "index", progress=False)
    assert sorted(source for source, _, _ in store.entries().values()) == ["taj_mahal/001.jpg", "taj_mahal/002.jpg"]
    store.close()
    assert Path(tmp_path / "index" / LOCAL_FEATURES_FILE).exists()
