"""Training fixtures: a tiny but real run (real photos, the real default model) shared by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from landmarks.images import Preprocessor, decode_image
from landmarks.models import create_model
from tests.support import dev_protocol, require_dev_data, run_cli

TINY_LANDMARKS = ["charminar", "india_gate"]
# A batch of real photos the losses train on: two of each of three landmarks, small.
BATCH_LANDMARKS = ("hawa_mahal", "lotus_temple", "taj_mahal")
BATCH_PER_LANDMARK = 2
BATCH_IMAGE_SIZE = 128


@pytest.fixture(scope="session")
def real_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of BATCH_LANDMARKS' gallery photos, preprocessed for EfficientNet-Lite0."""
    protocol = dev_protocol()
    photos = {
        lid: [path for path, label in protocol.gallery if label == lid][:BATCH_PER_LANDMARK] for lid in BATCH_LANDMARKS
    }
    config = create_model("efficientnet_lite0", pretrained=False, image_size=BATCH_IMAGE_SIZE).config
    preprocess = Preprocessor(BATCH_IMAGE_SIZE, config.mean, config.std, config.interpolation)
    images = [torch.from_numpy(preprocess(decode_image(path))) for lid in BATCH_LANDMARKS for path in photos[lid]]
    labels = torch.tensor([label for label in range(len(BATCH_LANDMARKS)) for _ in range(BATCH_PER_LANDMARK)])
    return torch.stack(images), labels


def losses_over_steps(model, loss_fn, optimizer, images, labels, steps: int) -> list[float]:
    """The loss before each of `steps` optimiser steps, then after the last one."""
    model.train()
    for module in model.modules():  # six photos make poor batch statistics: keep ImageNet's
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
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


def write_tiny_config(path: Path, run_dir: Path, **overrides) -> Path:
    """Two landmarks, batches of 2×2 photos at 96 px, 2 epochs of 3 steps, a checkpoint every 2 steps."""
    config = {
        "run_dir": str(run_dir),
        "seed": 7,
        "checkpoint_every_steps": 2,
        "model": {"backbone": "efficientnet_lite0", "image_size": 96},
        "data": {
            "root": str(require_dev_data() / "images"),
            "landmarks": TINY_LANDMARKS,
            "classes_per_batch": 2,
            "samples_per_class": 2,
            "batches_per_epoch": 3,
            "workers": 0,
        },
        "loss": {
            "name": "roadmap",
            "tau": 0.01,
            "rho": 100,
            "delta": 0.05,
            "pos_margin": 0.9,
            "neg_margin": 0.6,
            "lambda": 0.5,
        },
        "optim": {"epochs": 2, "lr": 1.0e-4, "warmup_steps": 1},
    }
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        if field:
            config[section][field] = value
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """The run directory of an uninterrupted tiny run through the real `landmarks train`."""
    root = tmp_path_factory.mktemp("trained-run")
    config = write_tiny_config(root / "config.yaml", root / "run")
    result = run_cli("train", str(config), "--no-progress")
    assert result.returncode == 0, result.stderr + result.stdout
    return root / "run"
