"""A trained checkpoint exported to TorchScript embeds like the eager model and serves through the API."""

from __future__ import annotations

import httpx
import numpy as np

from landmarks.evaluation.protocol import materialize_gallery
from landmarks.gallery import scan_gallery
from landmarks.images import decode_image
from landmarks.index import build_index
from landmarks.models import load_extractor
from landmarks.training.checkpoints import LAST
from tests.support import ApiServer, dev_protocol, run_cli

LANDMARKS = {"gateway_of_india", "golden_temple", "victoria_memorial"}


def test_export_matches_eager_and_serves(trained_run, tmp_path):
    checkpoint = trained_run / LAST
    torchscript = tmp_path / "extractor.torchscript"
    result = run_cli("export", str(checkpoint), "--out", str(torchscript))
    assert result.returncode == 0, result.stderr + result.stdout
    assert torchscript.is_file()

    protocol = dev_protocol().restricted_to(LANDMARKS)
    gallery = [
        (path, lid) for lid in sorted(LANDMARKS) for path in [p for p, label in protocol.gallery if label == lid][:2]
    ]
    images = [decode_image(path) for path, _ in gallery]
    eager = load_extractor(checkpoint, device="cpu")
    traced = load_extractor(torchscript, device="cpu")
    assert traced.config == eager.config  # same input size and normalisation travel inside the file
    eager_vectors, traced_vectors = eager.embed_images(images), traced.embed_images(images)
    assert eager_vectors.shape == traced_vectors.shape == (len(images), 1280)
    assert np.abs(eager_vectors - traced_vectors).max() < 1e-4

    index_dir = tmp_path / "index"
    build_index(scan_gallery(materialize_gallery(gallery, tmp_path / "gallery")), traced, index_dir, progress=False)

    photo, landmark_id = gallery[0]
    with ApiServer(index_dir, extra_args=("--model", str(torchscript))) as server:
        response = httpx.post(
            f"{server.url}/search",
            files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
            params={"k": 3},
            timeout=60,
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["gallery_size"] == len(gallery)
    best = body["matches"][0]
    # The photo is in the gallery: the served model must find it at similarity 1, as the indexing model did.
    assert best["landmark_id"] == landmark_id and best["score"] > 0.999
