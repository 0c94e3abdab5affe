"""The faster embedding runtimes embed like eager PyTorch, on real dev photos, with the same fingerprint."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from landmarks.images import decode_image
from landmarks.models import export_torchscript, load_extractor
from landmarks.models.runtime import resolve_runtime
from tests.support import dev_protocol

SIZE = 160  # small photos keep the test fast; the export does not depend on the size


@pytest.fixture(scope="module")
def photos():
    """A few queries and, for each query's landmark, gallery photos of it and of other landmarks."""
    protocol = dev_protocol()
    queries = protocol.queries[::25][:4]
    gallery = protocol.gallery[::20][:24]
    return [decode_image(path) for path, _ in queries], [decode_image(path) for path, _ in gallery]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def eager():
    return load_extractor(device="cpu", image_size=SIZE)


@pytest.fixture(scope="module")
def onnx(cache):
    return load_extractor(device="cpu", image_size=SIZE, runtime="auto", cache_dir=cache)


def test_auto_is_onnx_on_cpu_with_the_weights_fingerprint(eager, onnx, cache):
    assert onnx.runtime == "onnx"
    # An index built eagerly serves with ONNX: the fingerprint is the weights', not the runtime's.
    assert onnx.fingerprint == eager.fingerprint
    assert list((cache / "onnx").glob(f"*{eager.fingerprint}.onnx"))


def test_onnx_embeds_like_eager_and_ranks_the_same(eager, onnx, photos):
    queries, gallery = photos
    expected = eager.embed_images(queries, batch_size=3), eager.embed_images(gallery, batch_size=16)
    got = onnx.embed_images(queries, batch_size=3), onnx.embed_images(gallery, batch_size=16)
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(have, axis=1), 1.0, atol=1e-5)
    # Every query's nearest gallery photo is the same one.
    np.testing.assert_array_equal((got[0] @ got[1].T).argmax(axis=1), (expected[0] @ expected[1].T).argmax(axis=1))


def test_the_sessions_a_search_runs_in_turn_let_their_idle_threads_sleep(onnx):
    """The embedding and the landmark prior alternate on every search: with ONNX Runtime's default
    spinning, each one's idle threads took the cores the other needed (x1.7 a photo on two cores,
    bench/sessions.py)."""
    from landmarks.quality.prior import load_prior

    sessions = {"embedding": onnx._onnx.session, "prior": load_prior().session}
    for name, session in sessions.items():
        options = session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0", name


def test_the_export_is_cached(onnx, cache):
    started = time.perf_counter()
    again = load_extractor(device="cpu", image_size=SIZE, runtime="onnx", cache_dir=cache)
    assert again.runtime == "onnx"
    # Opening the cached file: seconds, where the export took tens of them.
    assert time.perf_counter() - started < 15


def test_bf16_stays_close_to_eager(eager, photos):
    queries, _ = photos
    bf16 = load_extractor(device="cpu", image_size=SIZE, runtime="bf16")
    cosine = np.sum(bf16.embed_images(queries) * eager.embed_images(queries), axis=1)
    assert cosine.min() > 0.99


def test_torchscript_models_stay_eager_under_auto(eager, tmp_path, cache):
    path = export_torchscript(eager.module, tmp_path / "extractor.torchscript")
    assert load_extractor(path, device="cpu", runtime="auto", cache_dir=cache).runtime == "eager"


def test_cpu_runtimes_are_refused_on_cuda():
    net = torch.nn.Conv2d(3, 3, 1)
    assert resolve_runtime("auto", torch.device("cuda"), net) == "eager"
    with pytest.raises(ValueError, match="CPU runtime"):
        resolve_runtime("onnx", torch.device("cuda"), net)
    with pytest.raises(ValueError, match="unknown runtime"):
        resolve_runtime("tensorrt", torch.device("cpu"), net)


def test_auto_exports_depthwise_convolution_networks_and_keeps_transformers_eager():
    from landmarks.models import create_model

    convnet = create_model("efficientnet_lite0", pretrained=False, image_size=64)
    transformer = create_model("deit_small_patch16_224", pretrained=False)
    assert resolve_runtime("auto", torch.device("cpu"), convnet) == "onnx"
    assert resolve_runtime("auto", torch.device("cpu"), transformer) == "eager"
