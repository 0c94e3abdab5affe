"""Index builds: incremental growth, corrupt photos, fingerprints, and the FAISS cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

from landmarks.gallery import scan_gallery
from landmarks.images import decode_image
from landmarks.index import FingerprintMismatch, GalleryIndex, build_index
from landmarks.index.gallery_index import FAISS_FILE
from landmarks.index.vectors import VectorRows
from landmarks.models import load_extractor
from tests.support import dev_protocol, run_cli


@pytest.fixture(scope="module")
def extractor():
    return load_extractor(image_size=160)


@pytest.fixture
def photos():
    protocol = dev_protocol()
    chosen = ("taj_mahal", "charminar", "golden_temple")
    return [item for lid in chosen for item in [(p, label) for p, label in protocol.gallery if label == lid][:4]]


def link(photos, root):
    for path, landmark_id in photos:
        (root / landmark_id).mkdir(parents=True, exist_ok=True)
        target = root / landmark_id / path.name
        if not target.exists():
            os.symlink(path, target)


def test_rebuild_on_a_grown_gallery_embeds_only_new_photos(tmp_path, photos, extractor):
    gallery_dir, out = tmp_path / "gallery", tmp_path / "index"
    link(photos[:8], gallery_dir)
    first = build_index(scan_gallery(gallery_dir), extractor, out, progress=False)
    assert (first.added, first.total) == (8, 8)

    link(photos[8:], gallery_dir)
    second = build_index(scan_gallery(gallery_dir), extractor, out, progress=False)
    assert (second.added, second.unchanged, second.total) == (len(photos) - 8, 8, len(photos))

    (gallery_dir / photos[0][1] / photos[0][0].name).unlink()
    third = build_index(scan_gallery(gallery_dir), extractor, out, progress=False)
    assert (third.added, third.removed, third.total) == (0, 1, len(photos) - 1)

    index = GalleryIndex.open(out, fingerprint=extractor.fingerprint, model=extractor.source, dim=extractor.dim)
    vector = extractor.embed_images([decode_image(photos[1][0])])
    top = index.search(vector, 1)[0][0]
    assert top.landmark_id == photos[1][1] and top.score > 0.99
    index.close()


def test_corrupt_photos_are_reported_and_skipped(tmp_path, photos, extractor):
    gallery_dir = tmp_path / "gallery"
    link(photos[:3], gallery_dir)
    bad = gallery_dir / photos[0][1] / "broken.jpg"
    bad.write_bytes(photos[0][0].read_bytes()[:2000])
    (gallery_dir / photos[0][1] / "empty.png").write_bytes(b"")
    report = build_index(scan_gallery(gallery_dir), extractor, tmp_path / "index", progress=False)
    assert report.total == 3
    assert sorted(key.rsplit("/", 1)[1] for key, _ in report.skipped) == ["broken.jpg", "empty.png"]


def test_an_index_refuses_another_model(tmp_path, photos, extractor):
    gallery_dir, out = tmp_path / "gallery", tmp_path / "index"
    link(photos[:2], gallery_dir)
    build_index(scan_gallery(gallery_dir), extractor, out, progress=False)
    other = load_extractor(image_size=128)
    with pytest.raises(FingerprintMismatch, match="rebuild it"):
        GalleryIndex.open(out, fingerprint=other.fingerprint, model=other.source, dim=other.dim)
    with pytest.raises(FingerprintMismatch):
        build_index(scan_gallery(gallery_dir), other, out, progress=False)


def test_serve_refuses_an_index_of_another_model_with_a_clear_message(tmp_path, photos, extractor):
    gallery_dir, out = tmp_path / "gallery", tmp_path / "index"
    link(photos[:2], gallery_dir)
    build_index(scan_gallery(gallery_dir), extractor, out, progress=False)  # built at 160 px
    result = run_cli("serve", "--index", str(out), "--port", "1", timeout=120)  # default model: 320 px
    assert result.returncode == 2
    assert "was built by model" in result.stderr and "landmarks index build" in result.stderr


def test_a_damaged_faiss_cache_is_rebuilt_from_the_store(tmp_path, photos, extractor):
    gallery_dir, out = tmp_path / "gallery", tmp_path / "index"
    link(photos[:4], gallery_dir)
    build_index(scan_gallery(gallery_dir), extractor, out, progress=False)
    (out / FAISS_FILE).write_bytes(b"garbage")
    index = GalleryIndex.open(out, fingerprint=extractor.fingerprint, model=extractor.source, dim=extractor.dim)
    assert len(index) == 4
    ids, vectors, _ = index.store.vectors(extractor.dim)
    assert index.search(vectors[:1], 1)[0][0].image_id == ids[0]
    index.close()


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "ivf-pq-rerank"])
def test_index_kinds_find_the_same_nearest_neighbours(kind):
    from landmarks.index import vector_index

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 64))
    vectors = (centres[rng.integers(0, 50, 3000)] + 0.1 * rng.normal(size=(3000, 64))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = vector_index(64, kind)
    index.rebuild(VectorRows.of(np.arange(3000) + 10, vectors))
    _, ids = index.search(vectors[:100], 1)
    assert np.mean(ids[:, 0] == np.arange(100) + 10) >= 0.95


def test_an_index_made_before_the_landmark_prior_gets_one_per_photo_without_re_embedding(tmp_path, photos, extractor):
    import sqlite3

    from landmarks.index.gallery_index import STORE_FILE
    from landmarks.index.store import GalleryStore
    from landmarks.quality.prior import load_prior

    gallery_dir, out = tmp_path / "gallery", tmp_path / "index"
    link(photos, gallery_dir)
    build_index(scan_gallery(gallery_dir), extractor, out, progress=False, local_features=None)
    # The schema of an index made before the prior: no `prior` column.
    with sqlite3.connect(out / STORE_FILE) as db:
        db.execute("ALTER TABLE images DROP COLUMN prior")
    store = GalleryStore(out / STORE_FILE)  # migrates: the column comes back, empty
    assert store.priors() == {} and len(store.without_prior()) == len(photos)
    store.close()

    prior = load_prior()
    report = build_index(scan_gallery(gallery_dir), extractor, out, progress=False, local_features=None, prior=prior)
    assert (report.added, report.unchanged) == (0, len(photos))  # nothing re-embedded
    store = GalleryStore(out / STORE_FILE)
    priors = store.priors()
    records = store.images()
    store.close()
    assert len(priors) == len(photos)
    expected = prior.of_images([decode_image(photos[0][0])])[0]
    first = next(r.image_id for r in records.values() if r.path.endswith(photos[0][0].name) and photos[0][1] in r.path)
    assert abs(priors[first] - expected) < 1e-5
