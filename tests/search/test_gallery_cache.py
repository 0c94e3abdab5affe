"""The gallery cache: multi-scale gallery vectors embedded once into INDEX_DIR/multiscale_vectors.npz."""

from __future__ import annotations

from landmarks.evaluation.protocol import materialize_gallery
from landmarks.gallery import scan_gallery
from landmarks.images import decode_image
from landmarks.index import GalleryIndex, build_index
from landmarks.search import MULTISCALE_FILE, SearchConfig, Searcher
from tests.support import dev_protocol

LANDMARKS = ("taj_mahal", "lotus_temple", "charminar")


def test_multiscale_search_embeds_the_gallery_once_and_finds_the_landmark(extractor, tmp_path):
    protocol = dev_protocol().restricted_to(set(LANDMARKS))
    gallery = [item for lid in LANDMARKS for item in [g for g in protocol.gallery if g[1] == lid][:6]]
    folder = materialize_gallery(gallery, tmp_path / "gallery")
    build_index(scan_gallery(folder), extractor, tmp_path / "index", progress=False)
    index = GalleryIndex.open(
        tmp_path / "index", fingerprint=extractor.fingerprint, model=extractor.source, dim=extractor.dim, create=False
    )
    try:
        config = SearchConfig(scales=(1.0, 1.2), calibrated=False)
        searcher = Searcher(extractor, index, config)
        queries = [(path, lid) for path, lid in protocol.queries if lid in LANDMARKS][::2]
        results = [searcher.search_images([decode_image(path)], 5)[0] for path, _ in queries]
        assert (tmp_path / "index" / MULTISCALE_FILE).exists()
        right = sum(r.landmarks[0].landmark_id == lid for r, (_, lid) in zip(results, queries, strict=True))
        assert right >= len(queries) - 1, [
            (r.landmarks[0].landmark_id, lid) for r, (_, lid) in zip(results, queries, strict=True)
        ]
        # A second searcher reads the cache instead of embedding the gallery again.
        mtime = (tmp_path / "index" / MULTISCALE_FILE).stat().st_mtime
        again = Searcher(extractor, index, config)
        assert (
            again.search_images([decode_image(queries[0][0])], 5)[0].landmarks[0].landmark_id
            == results[0].landmarks[0].landmark_id
        )
        assert (tmp_path / "index" / MULTISCALE_FILE).stat().st_mtime == mtime
    finally:
        index.close()
