"""Session fixtures shared by every test package: the dev index and a running API over it."""

from __future__ import annotations

import os

# Several processes (the tests, API servers, Streamlit) share two cores: OpenMP threads that spin
# while waiting would starve the others, making a training step ten times slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from landmarks.evaluation.protocol import materialize_gallery  # noqa: E402
from tests.support import (  # noqa: E402
    LITE_LANDMARKS,
    LITE_MODEL,
    LITE_PHOTOS_PER_LANDMARK,
    ApiServer,
    dev_protocol,
    require_dev_data,
    run_cli,
)


@pytest.fixture(scope="session", autouse=True)
def shared_model_cache() -> None:
    """Models loaded in the test process cache their ONNX exports where the CLI and the service do
    (LANDMARKS_CACHE_DIR, read at the edge by api.settings), so each export is made once a machine,
    not once in the tests and again in every `landmarks` subprocess."""
    from api.settings import Settings
    from landmarks.models import runtime

    cache_dir = Settings.from_env().cache_dir
    if cache_dir is not None:
        runtime.DEFAULT_CACHE_DIR = cache_dir


@pytest.fixture(scope="session")
def dev_gallery(tmp_path_factory) -> Path:
    """The protocol's gallery as a folder per landmark (symbolic links to the shared photos)."""
    protocol = dev_protocol()
    root = require_dev_data()
    return materialize_gallery(
        protocol.gallery, tmp_path_factory.mktemp("dev-gallery"), root / "images" / "landmarks.csv"
    )


@pytest.fixture(scope="session")
def dev_index(dev_gallery, tmp_path_factory) -> Path:
    """An index over the protocol's gallery, built with the real CLI and the default model."""
    out = tmp_path_factory.mktemp("dev-index")
    result = run_cli("index", "build", str(dev_gallery), "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr + result.stdout
    return out


@pytest.fixture(scope="session")
def every_photo_index(dev_index, tmp_path_factory) -> Path:
    """Every dev photo indexed as an operator would (`index build` of the whole folder, here growing a
    copy of the dev index, then `calibrate` with no flags). Tests that change it work on a copy."""
    index = shutil.copytree(dev_index, tmp_path_factory.mktemp("every-photo") / "index")
    built = run_cli("index", "build", str(require_dev_data() / "images"), "--out", str(index), "--no-progress")
    assert built.returncode == 0, built.stderr + built.stdout
    calibrated = run_cli("calibrate", "--index", str(index), "--no-progress", timeout=900)
    assert calibrated.returncode == 0, calibrated.stderr + calibrated.stdout
    return index


@pytest.fixture(scope="session")
def default_extractor():
    """The default model as the CLI and the service run it (ONNX Runtime, the export cached), loaded
    once for every test that embeds in-process: three times faster than eager PyTorch on two cores."""
    from landmarks.models import load_extractor

    return load_extractor(device="cpu", runtime="auto")


@pytest.fixture(scope="session")
def dev_query_vectors(default_extractor, dev_index) -> tuple[np.ndarray, np.ndarray]:
    """The protocol's landmark queries and distractors, embedded once by the model that built the
    dev index (embedding them costs half a minute on two cores)."""
    from landmarks.images import decode_image
    from landmarks.index.gallery_index import STORE_FILE
    from landmarks.index.store import GalleryStore

    store = GalleryStore(dev_index / STORE_FILE)
    try:
        assert default_extractor.fingerprint == store.get_meta("fingerprint"), (
            "the dev index was built by another model"
        )
    finally:
        store.close()
    protocol = dev_protocol()
    queries = default_extractor.embed_images([decode_image(path) for path, _ in protocol.queries])
    distractors = default_extractor.embed_images([decode_image(path) for path in protocol.distractors])
    return queries, distractors


@pytest.fixture(scope="session")
def lite_index(tmp_path_factory) -> Path:
    """A small index built by the real CLI with Lite0 (a pristine copy: tests copy it before writing)."""
    protocol = dev_protocol()
    chosen = protocol.landmark_ids[:LITE_LANDMARKS]
    photos = [
        (path, label)
        for label in chosen
        for path, _ in [p for p in protocol.gallery if p[1] == label][:LITE_PHOTOS_PER_LANDMARK]
    ]
    gallery = materialize_gallery(
        photos, tmp_path_factory.mktemp("lite-gallery"), require_dev_data() / "images" / "landmarks.csv"
    )
    out = tmp_path_factory.mktemp("lite-index") / "index"
    result = run_cli("index", "build", str(gallery), "--out", str(out), "--model", LITE_MODEL, "--no-progress")
    assert result.returncode == 0, result.stderr + result.stdout
    return out


@pytest.fixture(scope="session")
def api_server(dev_index):
    with ApiServer(dev_index) as server:
        yield server


@pytest.fixture(scope="session")
def empty_api_server(tmp_path_factory):
    """The service as a fresh machine runs it: no index yet."""
    with ApiServer(tmp_path_factory.mktemp("empty") / "index") as server:
        yield server


@pytest.fixture(scope="session")
def clip_checkpoint(tmp_path_factory):
    """A CLIP ViT-B/16 weights file as the Hugging Face hub ships open_clip's (`open_clip_pytorch_model.bin`:
    the whole model's state dict, text tower included, image tower under `visual.*`), holding the weights
    of a randomly initialised model: real weights cannot be downloaded here, and the loading path is the same.
    """
    import open_clip
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        model = open_clip.create_model("ViT-B-16", pretrained=None, load_weights=False)
    path = tmp_path_factory.mktemp("clip") / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    yield path
    path.unlink()  # 600 MB: pytest keeps the last runs' temporary folders
