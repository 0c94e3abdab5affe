"""The checked-in training configs load and build, and a bad config fails with a message that says why."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cli import main
from landmarks.training import ConfigError, load_config
from landmarks.training.losses import build_loss
from landmarks.training.trainer import build_model
from tests.support import REPO_ROOT, dev_protocol

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))


def test_the_seed_rows_and_the_default_have_configs():
    names = {path.stem for path in CONFIGS}
    assert {"deit_small_roadmap", "resnet50_roadmap", "resnet50_arcface", "efficientnet_lite0_roadmap"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.stem)
def test_config_builds_a_model_and_loss_that_train_together(path: Path):
    config = load_config(path)
    model = build_model(replace(config, model=replace(config.model, pretrained=False)))  # no hub in tests
    loss_fn = build_loss(config.loss.name, config.loss.params, embedding_dim=model.output_dim, num_classes=5)
    size = 224 if "deit" in config.model.backbone else 64  # ViTs take one size only
    images = torch.randn(4, 3, size, size)
    loss = loss_fn(model(images), torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(loss)
    if config.model.embedding_dim:
        assert model.output_dim == config.model.embedding_dim


def test_demo_trains_on_every_other_dev_landmark():
    config = load_config(REPO_ROOT / "configs" / "demo_efficientnet_lite0_roadmap.yaml")
    assert config.data.landmarks == dev_protocol().landmark_ids[::2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("run_dir: x\ndata: {root: r, classes_per_bach: 4}\n", "unknown key(s) classes_per_bach"),
        ("run_dir: x\ndata: {root: r}\noptim: {lr: fast}\n", "optim.lr: 'fast' is not a valid float"),
        ("run_dir: x\ndata: {root: r}\nloss: {name: triplet}\n", "unknown loss 'triplet'"),
        ("data: {root: r}\n", "run_dir is required"),
        ("run_dir: x\n", "data.root is required"),
    ],
)
def test_bad_config_is_a_readable_error(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as raised:
        load_config(path)
    assert message in str(raised.value)
    assert main(["train", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_scientific_notation_without_a_dot_reads_as_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run_dir: x\ndata: {root: r}\noptim: {lr: 1e-5}\n")  # YAML 1.1 reads 1e-5 as a string
    assert load_config(path).optim.lr == 1e-5
