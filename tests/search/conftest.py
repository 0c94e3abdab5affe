"""The default model, loaded once for the session (the one the session's dev index is built with), and
a copy of the dev index with local features for the tests of spatial verification."""

from __future__ import annotations

import shutil

import pytest

from landmarks.index import GalleryIndex
from landmarks.quality.local_features import LOCAL_FEATURES_FILE, sync_local_features
from landmarks.search import SearchConfig

# The landmarks whose photos the spatial tests query and confuse (tests/quality/test_spatial.py's
# Taj Mahal and Victoria Memorial; the Alai Darwaza query that test_region.py pastes on a distractor).
SPATIAL_LANDMARKS = {"taj_mahal", "victoria_memorial", "alai_darwaza"}


@pytest.fixture(scope="package")
def extractor(default_extractor):
    return default_extractor


@pytest.fixture(scope="package")
def spatial_index(dev_index, extractor, tmp_path_factory):
    """A copy of the dev index with the local features of SPATIAL_LANDMARKS' photos (`index build`
    extracts them only with spatial verification on; a photo without them goes unverified)."""
    copy = shutil.copytree(dev_index, tmp_path_factory.mktemp("spatial") / "index")
    assert not (copy / LOCAL_FEATURES_FILE).exists()  # the default build spends no time on them
    index = GalleryIndex.open(
        copy, fingerprint=extractor.fingerprint, model=extractor.source, dim=extractor.dim, create=False
    )
    try:
        images = {key: rec for key, rec in index.store.images().items() if rec.landmark_id in SPATIAL_LANDMARKS}
        extracted, _ = sync_local_features(copy, images, SearchConfig().local_params)
        assert extracted == len(images) > 60
    finally:
        index.close()
    return copy
