"""DOLG and DELF train: ArcFace's loss falls over a few steps on real photos, with the new layers at the
head's rate, and `landmarks train` runs each end to end into a checkpoint that loads."""

from __future__ import annotations

import pytest
import torch

from cli import main
from landmarks.images import decode_image
from landmarks.models import create_model, load_extractor
from landmarks.models.delf import DelfNet
from landmarks.models.dolg import DolgNet
from landmarks.quality.local_features import LocalFeatureParams, extract
from landmarks.training.checkpoints import LAST
from landmarks.training.config import OptimSection
from landmarks.training.losses import build_loss
from landmarks.training.trainer import _param_groups
from tests.support import dev_protocol
from tests.training.conftest import (
    BATCH_IMAGE_SIZE,
    BATCH_LANDMARKS,
    losses_over_steps,
    write_tiny_config,
)

ARCFACE = {"margin": 0.3, "scale": 30.0}


@pytest.mark.parametrize("name", ["dolg_efficientnet_lite0", "delf_efficientnet_lite0"])
def test_arcface_loss_falls_with_the_trainers_parameter_groups(name, real_batch):
    images, labels = real_batch
    model = create_model(name, image_size=BATCH_IMAGE_SIZE)
    torch.manual_seed(0)
    loss_fn = build_loss("arcface", ARCFACE, embedding_dim=model.output_dim, num_classes=len(BATCH_LANDMARKS))
    optim = OptimSection(lr=1e-4)
    groups = _param_groups(model, loss_fn, optim)
    fast = {id(p) for group in groups if group["lr"] == 10 * optim.lr for p in group["params"]}
    new_layers = [id(p) for n, p in model.named_parameters() if not n.startswith("backbone.")]
    pretrained = [id(p) for n, p in model.named_parameters() if n.startswith("backbone.")]
    assert new_layers and all(p in fast for p in new_layers)  # every new layer at the head's rate
    assert not any(p in fast for p in pretrained)

    history = losses_over_steps(model, loss_fn, torch.optim.AdamW(groups), images, labels, steps=3)
    assert all(torch.isfinite(torch.tensor(history)))
    assert history[-1] < 0.8 * history[0], history


@pytest.mark.parametrize(
    ("name", "train_from", "network"),
    [("dolg_efficientnet_lite0", None, DolgNet), ("delf_efficientnet_lite0", "head.", DelfNet)],
    ids=["dolg", "delf-backbone-frozen"],
)
def test_landmarks_train_makes_a_checkpoint_that_loads(tmp_path, name, train_from, network):
    config = write_tiny_config(
        tmp_path / "config.yaml",
        tmp_path / "run",
        **{
            "model.backbone": name,
            "model.train_from": train_from,
            "loss": {"name": "arcface", **ARCFACE},
            "optim.epochs": 1,
            "data.batches_per_epoch": 2,
            "checkpoint_every_steps": 0,
        },
    )
    assert main(["train", str(config), "--no-progress"]) == 0
    checkpoint = tmp_path / "run" / LAST
    extractor = load_extractor(checkpoint, device="cpu")
    assert isinstance(extractor.module, network)
    photos = [decode_image(path) for path, _ in dev_protocol().queries[:2]]
    vectors = extractor.embed_images(photos)
    assert vectors.shape == (2, extractor.module.output_dim)

    untrained = create_model(name, image_size=extractor.config.image_size)
    trained_state, untrained_state = extractor.module.state_dict(), untrained.state_dict()
    changed = {key for key in trained_state if not torch.equal(trained_state[key], untrained_state[key])}
    assert any(key.startswith("head.") for key in changed)
    if train_from:  # the frozen backbone kept its ImageNet weights
        assert not any(key.startswith("backbone.") for key in changed)
        # A trained DELF checkpoint serves as the re-ranking stage's model, under its own features key.
        params = LocalFeatureParams(kind="delf", max_side=256, model=str(checkpoint))
        assert params.key != LocalFeatureParams(kind="delf", max_side=256).key
        assert len(extract(photos[0], params)) > 100
