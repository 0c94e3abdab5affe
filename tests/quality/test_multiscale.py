"""Multi-scale descriptors on real photos (the cached gallery side: tests/search/test_gallery_cache.py)."""

from __future__ import annotations

import numpy as np
import pytest

from landmarks.images import decode_image
from landmarks.quality.multiscale import MultiScaleEmbedder, scale_sizes
from tests.support import dev_protocol


@pytest.fixture(scope="module")
def extractor(default_extractor):
    return default_extractor


def test_scale_one_is_the_plain_embedding_and_more_scales_differ(extractor):
    protocol = dev_protocol()
    images = [decode_image(path) for path, lid in protocol.queries if lid == "taj_mahal"][:2]
    assert extractor.config.image_size == 384  # the default model's own size
    assert scale_sizes(extractor, (1.0, 1.2, 0.8)) == [384, 448, 320]  # multiples of 32 nearest each scale
    single = MultiScaleEmbedder(extractor, (1.0,)).embed_images(images)
    assert np.allclose(single, extractor.embed_images(images), atol=1e-5)
    multi = MultiScaleEmbedder(extractor, (1.0, 1.2)).embed_images(images)
    assert np.allclose(np.linalg.norm(multi, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(multi, single, atol=1e-3)
    assert (multi * single).sum(axis=1).min() > 0.9  # the same photo, seen a little larger
