"""Calibrated confidence: the fit itself, `landmarks calibrate` on the dev index, and the service using it."""

from __future__ import annotations

import json
import shutil

import httpx
import numpy as np
import pytest

from landmarks.index import GalleryIndex
from landmarks.quality.calibration import (
    CALIBRATION_FILE,
    FEATURES,
    Calibration,
    collect_samples,
    feature_vector,
    fit_logistic,
    fit_model,
)
from landmarks.search import SearchConfig, Searcher
from tests.support import ApiServer, dev_protocol, run_cli


def test_logistic_fit_is_monotone_even_when_the_data_says_otherwise():
    rng = np.random.default_rng(0)
    score = rng.uniform(0.3, 0.9, 400)
    noise = rng.normal(0, 1, 400)
    right = score + 0.05 * rng.normal(size=400) > 0.6
    # A feature anti-correlated with being right gets weight 0, never a negative one.
    x = np.stack([score, -score + 0.01 * noise, np.zeros(400)], axis=1)
    weights, _ = fit_logistic(x, right.astype(float))
    assert (weights >= 0).all() and weights[0] > 0 and weights[1] == 0
    model = fit_model(x, right, FEATURES)
    grid = [model.confidence(feature_vector(s, 0.05, 0)) for s in np.linspace(-1, 2, 61)]
    assert all(0.0 <= c <= 1.0 for c in grid)
    assert all(b >= a for a, b in zip(grid, grid[1:], strict=False))
    assert grid[0] < 0.05 and grid[-1] > 0.95


def test_fit_refuses_data_with_a_single_class():
    with pytest.raises(ValueError):
        fit_model(np.zeros((5, 3)), np.ones(5, bool), FEATURES)


@pytest.fixture(scope="module")
def calibrated_index(dev_index, tmp_path_factory):
    """A copy of the dev index, calibrated by the real command (the session's index stays untouched)."""
    copy = tmp_path_factory.mktemp("calibrated") / "index"
    shutil.copytree(dev_index, copy, ignore=shutil.ignore_patterns(CALIBRATION_FILE))
    result = run_cli("calibrate", "--index", str(copy), "--unknown-every", "3", "--no-progress", timeout=900)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "gallery_leave_one_out" in result.stdout and "saved" in result.stdout
    return copy


def test_calibrate_stores_a_monotone_model_for_the_default_configuration(calibrated_index):
    payload = json.loads((calibrated_index / CALIBRATION_FILE).read_text())
    calibration = Calibration.load(calibrated_index / CALIBRATION_FILE)
    model = calibration.model_for(SearchConfig().signature())
    assert model is not None, list(payload["models"])
    report = model.report
    # Fitted on the gallery only: 530 leave-one-out searches plus every third photo with its landmark left out.
    assert report["sources"]["gallery_leave_one_out"] == 530 and report["sources"]["gallery_unknown_landmark"] == 177
    assert "negatives" not in report["sources"]
    assert all(w >= 0 for w in model.weights) and model.weights[0] > 0
    scores = np.linspace(0.0, 1.2, 49)
    for margin, inliers in [(0.0, 0), (0.05, 0), (0.05, 20)]:
        curve = [model.confidence(feature_vector(s, margin, inliers)) for s in scores]
        assert all(0.0 <= c <= 1.0 for c in curve)
        assert all(b >= a for a, b in zip(curve, curve[1:], strict=False))
        assert curve[0] < 0.1 < 0.9 < curve[-1]
    assert 0.0 < model.threshold < 1.0
    # The default operating point answers 98% of the right leave-one-out answers.
    assert report["at_threshold"]["right_answered"] >= 0.97
    assert report["at_threshold"]["negatives_refused"] > 0.1


def test_a_sampled_calibration_probes_what_it_is_asked_from_the_store(dev_index, default_extractor):
    """`calibrate --sample N` on a large gallery: N photos probed (and every second with its landmark left
    out), each photo's vector read from the store, never the whole gallery loaded into memory."""
    index = GalleryIndex.open_recorded(dev_index)
    try:
        searcher = Searcher(default_extractor, index, SearchConfig(calibrated=False))
        samples = collect_samples(searcher, sample=40, unknown_every=2)
        assert samples.counts() == {"gallery_leave_one_out": 40, "gallery_unknown_landmark": 20}
        assert searcher.gallery._gallery is None  # the in-memory gallery (15 GB at 1M) was never made
        assert (
            0.7
            < np.mean(
                [
                    right
                    for right, source in zip(samples.right, samples.source, strict=True)
                    if source == "gallery_leave_one_out"
                ]
            )
            <= 1.0
        )
        assert not any(
            right
            for right, source in zip(samples.right, samples.source, strict=True)
            if source == "gallery_unknown_landmark"
        )
        # The same probes as from the in-memory gallery that stages like query expansion need.
        gallery = searcher.gallery.get()
        for image_id in gallery.ids[::97].tolist():
            row = gallery.rows[image_id]
            for leave_out in (False, True):
                probed = searcher.gallery_probe(image_id, leave_landmark_out=leave_out)
                expected = searcher._search_one(
                    gallery.raw[row],
                    None,
                    1,
                    exclude_ids={image_id},
                    exclude_landmark=gallery.labels[row] if leave_out else None,
                )
                np.testing.assert_allclose(probed.features, expected.features)
                assert [lm.landmark_id for lm in probed.landmarks] == [lm.landmark_id for lm in expected.landmarks]
        assert searcher.gallery_probe(10**9) is None
    finally:
        index.close()
    refused = run_cli("calibrate", "--index", str(dev_index), "--sample", "2", "--no-progress")
    assert refused.returncode != 0 and "--sample: give at least 3" in refused.stderr + refused.stdout


def post(server: ApiServer, path, k: int = 5) -> dict:
    response = httpx.post(
        f"{server.url}/search",
        params={"k": k},
        files={"image": (path.name, path.read_bytes(), "image/jpeg")},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_service_names_landmarks_and_refuses_kitchens_with_the_calibration(calibrated_index):
    protocol = dev_protocol()
    queries = [(p, lid) for p, lid in protocol.queries if lid in {"taj_mahal", "golden_temple", "lotus_temple"}][:6]
    threshold = Calibration.load(calibrated_index / CALIBRATION_FILE).model_for(SearchConfig().signature()).threshold
    with ApiServer(calibrated_index) as server:
        answers = [post(server, path) for path, _ in queries]
        right = [
            a["landmark"] and a["landmark"]["landmark_id"] == lid for a, (_, lid) in zip(answers, queries, strict=True)
        ]
        assert sum(bool(r) for r in right) >= 5, answers
        confidences = [a["landmark"]["confidence"] for a in answers if a["landmark"]]
        assert all(threshold <= c <= 1.0 for c in confidences)
        refused = [post(server, path)["landmark"] is None for path in protocol.distractors[::6]]
        assert sum(refused) >= len(refused) - 1, refused
    # The operator's threshold wins over the calibration's: at 0.999 nothing is named.
    with ApiServer(calibrated_index, env={"LANDMARKS_THRESHOLD": "0.999"}) as server:
        answer = post(server, queries[0][0])
        assert answer["landmark"] is None and answer["matches"]
