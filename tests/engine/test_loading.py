"""The index build's photo pipeline: JPEGs decoded at reduced size, threads or worker processes, and a
build that resumes after kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from landmarks.gallery import scan_gallery
from landmarks.images import decode_image
from landmarks.index import GalleryIndex, build_index
from landmarks.index.gallery_index import STORE_FILE
from landmarks.index.loading import DEFAULT_PIPELINE, LEGACY_PIPELINE, PhotoLoader
from landmarks.models import load_extractor
from landmarks.quality.local_features import LocalFeatureParams, LocalFeatureStore
from landmarks.quality.prior import load_prior
from tests.engine.test_index_build import link
from tests.support import REPO_ROOT, dev_protocol


@pytest.fixture(scope="module")
def extractor():
    return load_extractor(image_size=160)


@pytest.fixture(scope="module")
def photos():
    protocol = dev_protocol()
    chosen = ("taj_mahal", "charminar", "golden_temple")
    return [item for lid in chosen for item in [(p, label) for p, label in protocol.gallery if label == lid][:4]]


def built(out, extractor):
    """(vectors, priors, local features) of an index, by source key."""
    index = GalleryIndex.open(out, fingerprint=extractor.fingerprint, model=extractor.source, dim=extractor.dim)
    try:
        records = index.store.images()
        ids, vectors, _ = index.store.vectors(extractor.dim)
        by_id = dict(zip(ids.tolist(), vectors, strict=True))
        priors = index.store.priors()
    finally:
        index.close()
    store = LocalFeatureStore.open_existing(out)
    features = store.get_many([r.image_id for r in records.values()], LocalFeatureParams().key)
    store.close()
    return {key: (by_id[r.image_id], priors.get(r.image_id), features.get(r.image_id)) for key, r in records.items()}


def test_threads_and_worker_processes_give_the_legacy_builds_vectors_priors_and_features(tmp_path, photos, extractor):
    gallery_dir = tmp_path / "gallery"
    link(photos, gallery_dir)
    broken = gallery_dir / photos[0][1] / "broken.jpg"
    broken.write_bytes(photos[0][0].read_bytes()[:2000])
    prior = load_prior()
    in_processes = replace(DEFAULT_PIPELINE, workers=1, min_photos_for_workers=0)
    results = {}
    # Threads are what every other index test builds with.
    for name, pipeline in (("legacy", LEGACY_PIPELINE), ("processes", in_processes)):
        report = build_index(
            scan_gallery(gallery_dir), extractor, tmp_path / name, pipeline=pipeline, progress=False, prior=prior
        )
        assert report.total == len(photos)
        # A photo that fails in a worker process is reported with its reason, as on a thread.
        assert [(key.rsplit("/", 1)[1], "truncated" in reason) for key, reason in report.skipped] == [
            ("broken.jpg", True)
        ]
        results[name] = built(tmp_path / name, extractor)

    legacy = results["legacy"]
    assert results["processes"].keys() == legacy.keys()
    for key, (vector, photo_prior, features) in results["processes"].items():
        # Dev photos (640 px at most) are not reduced for 480 px SIFT or a 224 px prior: same pixels.
        np.testing.assert_allclose(vector, legacy[key][0], atol=1e-5)
        assert photo_prior == pytest.approx(legacy[key][1], abs=1e-5)
        assert len(features) == len(legacy[key][2]) > 50
        np.testing.assert_array_equal(features.descriptors, legacy[key][2].descriptors)


def test_a_large_jpeg_is_decoded_at_reduced_size_and_embeds_as_the_full_decode_does(tmp_path, photos, extractor):
    with Image.open(photos[0][0]) as image:
        large = image.convert("RGB").resize((image.width * 5, image.height * 5), Image.Resampling.BICUBIC)
    path = tmp_path / "large.jpg"
    large.save(path, quality=90)
    loader = PhotoLoader(extractor.preprocess, load_prior().preprocess)
    assert loader.draft_size == 448  # twice the larger need: the prior's 224 px (the model's is 160)
    reduced = decode_image(path, draft=loader.draft_size)
    assert min(reduced.size) >= 448 and reduced.width <= large.width // 4  # DCT scaling, never below the need
    full = extractor.embed_arrays([extractor.preprocess(decode_image(path))])[0]
    fast = extractor.embed_arrays([loader(path).model_input])[0]
    assert float(full @ fast) > 0.99  # bench/indexing.py: 0.992 at the lowest, over 530 photos at 3,000 px


def test_a_killed_build_resumes_without_re_embedding(tmp_path):
    protocol = dev_protocol()
    gallery_dir, out = tmp_path / "gallery", tmp_path / "index"
    link(protocol.gallery[:48], gallery_dir)
    command = [sys.executable, "-m", "cli", "index", "build", str(gallery_dir), "--out", str(out)]
    command += ["--model", "efficientnet_lite0", "--batch-size", "8", "--no-progress"]
    env = {**os.environ, "LANDMARKS_LOCAL_FEATURES": "0"}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    committed, deadline = 0, time.monotonic() + 120
    while committed < 8 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        if (out / STORE_FILE).exists():
            with sqlite3.connect(out / STORE_FILE, timeout=5) as db:
                committed = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    assert process.poll() is None, "the build ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 8 <= committed < 48

    finished = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    summary = finished.stdout.strip().splitlines()[-1]
    unchanged = int(summary.split("unchanged ")[1].split(",")[0])
    added = int(summary.split("added ")[1].split(",")[0])
    assert unchanged >= committed and added + unchanged == 48 and "48 photos" in summary
