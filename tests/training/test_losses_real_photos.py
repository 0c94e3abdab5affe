"""ROADMAP and ArcFace actually train the real model: the loss falls over a few steps on real photos."""

from __future__ import annotations

import copy

import pytest
import torch

from landmarks.models import create_model
from landmarks.training.losses import build_loss
from tests.training.conftest import BATCH_IMAGE_SIZE, BATCH_LANDMARKS, losses_over_steps


@pytest.fixture(scope="module")
def pretrained():
    torch.manual_seed(0)
    return create_model("efficientnet_lite0", image_size=BATCH_IMAGE_SIZE)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("roadmap", {"tau": 0.01, "rho": 100.0, "delta": 0.05, "pos_margin": 0.9, "neg_margin": 0.6, "lambda": 0.5}),
        ("arcface", {"margin": 0.3, "scale": 30.0, "sub_centers": 2}),
    ],
)
def test_loss_decreases_over_a_few_steps(name, params, real_batch, pretrained):
    images, labels = real_batch
    model = copy.deepcopy(pretrained)
    torch.manual_seed(0)
    loss_fn = build_loss(name, params, embedding_dim=model.output_dim, num_classes=len(BATCH_LANDMARKS))
    optimizer = torch.optim.AdamW(
        [{"params": model.parameters(), "lr": 1e-4}, {"params": loss_fn.parameters(), "lr": 1e-2}]
    )
    history = losses_over_steps(model, loss_fn, optimizer, images, labels, steps=3)
    assert all(torch.isfinite(torch.tensor(history)))
    assert history[-1] < 0.8 * history[0], history
