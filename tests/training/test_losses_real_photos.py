"""ROADMAP and ArcFace actually train the real model: the loss falls over a few steps on real photos."""

from __future__ import annotations

import copy

import pytest
import torch

from landmarks.images import Preprocessor, decode_image
from landmarks.models import create_model
from landmarks.training.losses import build_loss
from tests.support import dev_protocol

LANDMARKS = ("hawa_mahal", "lotus_temple", "taj_mahal")
PER_LANDMARK = 2
IMAGE_SIZE = 128


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    protocol = dev_protocol()
    photos = {lid: [path for path, label in protocol.gallery if label == lid][:PER_LANDMARK] for lid in LANDMARKS}
    model_config = create_model("efficientnet_lite0", pretrained=False, image_size=IMAGE_SIZE).config
    preprocess = Preprocessor(IMAGE_SIZE, model_config.mean, model_config.std, model_config.interpolation)
    images = [torch.from_numpy(preprocess(decode_image(path))) for lid in LANDMARKS for path in photos[lid]]
    labels = torch.tensor([label for label in range(len(LANDMARKS)) for _ in range(PER_LANDMARK)])
    return torch.stack(images), labels


@pytest.fixture(scope="module")
def pretrained():
    torch.manual_seed(0)
    return create_model("efficientnet_lite0", image_size=IMAGE_SIZE)


def losses_over_steps(model, loss_fn, images, labels, steps: int) -> list[float]:
    model.train()
    for module in model.modules():  # six photos make poor batch statistics: keep ImageNet's
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    optimizer = torch.optim.AdamW(
        [{"params": model.parameters(), "lr": 1e-4}, {"params": loss_fn.parameters(), "lr": 1e-2}]
    )
    history = []
    for _ in range(steps):
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    with torch.no_grad():
        history.append(loss_fn(model(images), labels).item())
    return history


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("roadmap", {"tau": 0.01, "rho": 100.0, "delta": 0.05, "pos_margin": 0.9, "neg_margin": 0.6, "lambda": 0.5}),
        ("arcface", {"margin": 0.3, "scale": 30.0, "sub_centers": 2}),
    ],
)
def test_loss_decreases_over_a_few_steps(name, params, batch, pretrained):
    images, labels = batch
    model = copy.deepcopy(pretrained)
    torch.manual_seed(0)
    loss_fn = build_loss(name, params, embedding_dim=model.output_dim, num_classes=len(LANDMARKS))
    history = losses_over_steps(model, loss_fn, images, labels, steps=3)
    assert all(torch.isfinite(torch.tensor(history)))
    assert history[-1] < 0.8 * history[0], history
