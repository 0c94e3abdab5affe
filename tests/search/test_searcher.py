"""Searcher: `embed` gives Query objects that carry their local features to `search`; verification re-ranks."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace

import numpy as np

from landmarks.images import decode_image
from landmarks.index import GalleryIndex
from landmarks.search import Query, SearchConfig, Searcher
from tests.quality.test_spatial import LOOKALIKE, QUERY, TRUE_MATCH, photo


def open_index(directory, extractor) -> GalleryIndex:
    return GalleryIndex.open(
        directory, fingerprint=extractor.fingerprint, model=extractor.source, dim=extractor.dim, create=False
    )


def test_embed_returns_queries_with_their_local_features_and_search_answers_them_as_search_images(
    spatial_index, extractor
):
    index = open_index(spatial_index, extractor)
    searcher = Searcher(extractor, index, SearchConfig(spatial=True, calibrated=False))
    try:
        assert searcher.spatial_active
        images = [photo(QUERY), photo(LOOKALIKE)]
        queries = searcher.embed(images)
        assert [type(q) for q in queries] == [Query, Query]
        assert all(q.vector.shape == (extractor.dim,) and q.local is not None and len(q.local) > 100 for q in queries)
        by_query, by_images = searcher.search(queries, 10), searcher.search_images(images, 10)
        for a, b in zip(by_query, by_images, strict=True):
            assert (a.matches, a.landmarks, a.landmark, a.confidence, a.inliers) == (
                b.matches,
                b.landmarks,
                b.landmark,
                b.confidence,
                b.inliers,
            )
            np.testing.assert_array_equal(a.features, b.features)
        assert max(by_query[0].inliers.values()) > 0  # the query's own local features reached the verification
        assert not searcher.search([Query(queries[0].vector)], 10)[0].inliers  # none given: unverified
    finally:
        searcher.close()
    plain = Searcher(extractor, index, SearchConfig(spatial=False, calibrated=False))
    try:
        [query] = plain.embed(images[:1])
        assert query.local is None
        np.testing.assert_allclose(query.vector, queries[0].vector, atol=1e-4)
    finally:
        plain.close()
        index.close()


def image_id(index: GalleryIndex, relative: str) -> int:
    return index.store.images()[relative].image_id


def test_searcher_reranks_the_true_match_above_the_lookalike(spatial_index, extractor):
    """Through the gallery's local features (INDEX_DIR/local_features.sqlite)."""
    index = open_index(spatial_index, extractor)
    try:
        right, wrong = image_id(index, TRUE_MATCH), image_id(index, LOOKALIKE)
        plain = SearchConfig(spatial=False, aggregate_top=1, group_matches=False, calibrated=False)
        results = {}
        for name, config in {
            "plain": plain,
            "verified": SearchConfig(spatial=True, aggregate_top=1, group_matches=False, calibrated=False),
        }.items():
            searcher = Searcher(extractor, index, config)
            result = searcher.search_images([photo(QUERY)], 20)[0]
            order = [m.image_id for m in result.matches]
            assert right in order and wrong in order
            results[name] = (order.index(right), order.index(wrong), result)
            searcher.close()
        assert results["plain"][0] > results["plain"][1]  # cosine: lookalike first
        assert results["verified"][0] < results["verified"][1]  # verified: true match first
        assert results["verified"][2].inliers[right] >= 15
        assert results["verified"][2].features[2] > 0  # the inliers feature reaches the calibration
    finally:
        index.close()


def test_index_without_local_features_falls_back_and_says_so_once(dev_index, extractor, tmp_path, caplog):
    copy = tmp_path / "index"
    shutil.copytree(dev_index, copy, ignore=shutil.ignore_patterns("local_features*", "calibration.json"))
    index = open_index(copy, extractor)
    try:
        with caplog.at_level(logging.WARNING, logger="landmarks.search"):
            searcher = Searcher(extractor, index, SearchConfig(spatial=True))
            results = [searcher.search_images([photo(QUERY)], 5)[0] for _ in range(2)]
        assert not searcher.spatial_active
        assert all(r.matches and not r.inliers for r in results)
        assert len([r for r in caplog.records if "local features" in r.getMessage()]) == 1
    finally:
        index.close()


def test_the_prior_gate_refuses_a_distractor_that_the_embedding_alone_would_name(dev_index, extractor):
    from landmarks.quality.prior import load_prior
    from tests.support import dev_protocol

    index = open_index(dev_index, extractor)
    config = SearchConfig(calibrated=False, threshold=0.05)  # a low bar: the embedding names every distractor
    gated = Searcher(extractor, index, config, prior=load_prior())
    ungated = Searcher(extractor, index, replace(config, prior_keep=0.0), prior=load_prior())
    try:
        assert ungated.prior is None and ungated.prior_floor() is None
        floor = gated.prior_floor()
        assert floor is not None and 0.0 < floor < 0.2  # measured 0.06: 2% of the gallery's photos sit lower
        photos = [decode_image(path) for path in dev_protocol().distractors[:6]]
        queries = gated.embed(photos)
        assert all(q.prior is not None for q in queries)
        for query, with_gate, without in zip(
            queries, gated.search(queries, 5), ungated.search(queries, 5), strict=True
        ):
            assert without.landmark is not None and without.refusal is None  # named by the embedding alone
            assert with_gate.matches == without.matches  # the closest photos are still shown
            if query.prior < floor:
                assert with_gate.landmark is None and with_gate.refusal == "not_a_landmark"
                assert with_gate.confidence < gated.threshold
        assert sum(r.refusal == "not_a_landmark" for r in gated.search(queries, 5)) >= 5
        # A query without a prior (an older client of the engine) is not gated.
        assert gated.search([Query(queries[0].vector)], 5)[0].refusal is None
    finally:
        gated.close()
        ungated.close()
        index.close()
